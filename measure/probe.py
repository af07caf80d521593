"""The probe method: frozen encoder features + a scikit-learn classifier.

Premise and hypothesis are embedded separately (mean pooling, e5 ``query: `` prefix) and
combined as [u, v, |u−v|, u·v] (Conneau et al., 2017). The classifier's hyperparameters
are fixed in the config, never tuned on a target language. The defaults were chosen by
5-fold cross-validation on the English XNLI validation split (the training pool itself,
source language only): logistic regression on the raw features (the embeddings are
L2-normalised, so their scale is already comparable), C in {0.3, 1, 3, 30} gave macro-F1
59.6 / 61.2 / 60.4 / 55.8, while standardised features did worse (50.4–54.0 for C in
{0.01, 0.05, 0.5, 5}) and an MLP reached 51.6. Reproduce: ``python -m measure.probe``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, f1_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

DEFAULT_PROBE = {"classifier": "logreg", "C": 1.0, "max_iter": 2000, "hidden": 256, "scale": False}
CLASSIFIERS = ("logreg", "mlp")


@dataclass(frozen=True)
class ProbeParams:
    """The ``[probe]`` table, validated when the config is loaded (before any work).

    classifier: ``logreg`` or ``mlp``; C: inverse regularisation strength of the logistic
    regression (> 0); max_iter: solver iterations (>= 1); hidden: MLP hidden units (>= 1);
    scale: standardise the pair features first. Types are strict (a bool is not a number).
    """

    classifier: str = "logreg"
    C: float = 1.0
    max_iter: int = 2000
    hidden: int = 256
    scale: bool = False

    @classmethod
    def from_dict(cls, raw: Any) -> "ProbeParams":
        """Validate a ``[probe]`` table; ValueError names the key and the fix."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ValueError(f"[probe] must be a table (e.g. [probe] C = 1.0), got {raw!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(raw) - set(fields)
        if unknown:
            hints = []
            for key in sorted(unknown):
                close = [f for f in fields if f.lower() == str(key).lower()]
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"[probe]: unknown key(s) {', '.join(hints)}; allowed: {sorted(fields)}")
        for name, value in raw.items():
            want = type(fields[name].default)
            if want is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            elif want is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, want)
            if not ok:
                raise ValueError(f"[probe].{name} = {value!r}: expected {want.__name__} "
                                 f"(default {fields[name].default!r})")
        p = cls(**{k: (float(v) if type(fields[k].default) is float else v) for k, v in raw.items()})
        if p.classifier not in CLASSIFIERS:
            raise ValueError(f"[probe].classifier = {p.classifier!r}: use one of {CLASSIFIERS}")
        if not (math.isfinite(p.C) and p.C > 0):
            raise ValueError(f"[probe].C = {raw.get('C')!r}: must be a finite number > 0 (default 1.0)")
        if not 1 <= p.max_iter <= 1_000_000:
            raise ValueError(f"[probe].max_iter = {p.max_iter}: must be in 1..1000000 (default 2000)")
        if not 1 <= p.hidden <= 100_000:
            raise ValueError(f"[probe].hidden = {p.hidden}: must be in 1..100000 (default 256)")
        return p


def pair_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[u, v, |u−v|, u·v]: symmetric and asymmetric cues a linear model can use."""
    return np.hstack([u, v, np.abs(u - v), u * v]).astype(np.float32, copy=False)


def make_classifier(params: dict, seed: int) -> Pipeline:
    p = {**DEFAULT_PROBE, **params}
    if p["classifier"] == "logreg":
        clf = LogisticRegression(C=float(p["C"]), max_iter=int(p["max_iter"]), random_state=seed)
    elif p["classifier"] == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=(int(p["hidden"]),), alpha=1e-3,
                            early_stopping=True, validation_fraction=0.1,
                            max_iter=int(p["max_iter"]), random_state=seed)
    else:
        raise ValueError(f"unknown probe classifier {p['classifier']!r}: use 'logreg' or 'mlp'")
    return make_pipeline(StandardScaler(), clf) if p["scale"] else make_pipeline(clf)


def score(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Macro-F1 and accuracy on the 0–100 scale, plus the 3×3 confusion matrix (rows = gold)."""
    return {
        "macro_f1": 100.0 * float(f1_score(y_true, y_pred, average="macro", labels=[0, 1, 2],
                                           zero_division=0)),
        "accuracy": 100.0 * float(np.mean(y_true == y_pred)),
        "n": int(len(y_true)),
        "confusion": confusion_matrix(y_true, y_pred, labels=[0, 1, 2]).tolist(),
    }


def select_hyperparameters(data_dir: str | None = None, model: str = "me5-small",
                           backend: str = "ort-int8") -> list[tuple[dict, float]]:
    """5-fold CV of probe settings on English XNLI validation only (never a target)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from measure.cells import default_cache_path, load_split, split_vectors
    from measure.data import resolve_data_dir
    from measure.engine import encoder_key_for

    root = str(resolve_data_dir(data_dir))
    u, v = split_vectors(str(default_cache_path()), encoder_key_for(model, backend), root,
                         "xnli", "en", "validation")
    y = load_split(root, "xnli", "en", "validation")["label"].to_numpy()
    X = pair_features(u, v)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    grid = [{"C": c} for c in (0.3, 1.0, 3.0, 30.0)] + \
        [{"C": c, "scale": True} for c in (0.01, 0.05, 0.5, 5.0)] + [{"classifier": "mlp"}]
    out = []
    for params in grid:
        f1 = cross_val_score(make_classifier(params, 0), X, y, cv=cv, scoring="f1_macro").mean()
        out.append((params, 100 * float(f1)))
        print(f"{params}: macro-F1 {100 * f1:.2f}")
    return out


if __name__ == "__main__":
    select_hyperparameters()
