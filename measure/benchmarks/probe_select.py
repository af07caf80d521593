"""How the probe's default hyper-parameters were chosen (``python -m measure.probe``).

5-fold cross-validation of probe settings on the English XNLI validation split only —
the training pool of the source language, never a target — with the cached embeddings
of ``model`` on ``backend``. The figures and the choice are in the docstring of
:mod:`measure.methods.probe`.
"""

from __future__ import annotations

from sklearn.model_selection import StratifiedKFold, cross_val_score

from measure.data import resolve_data_dir
from measure.encoders.embcache import default_cache_path
from measure.encoders.encoder import encoder_key_for
from measure.methods.probe import make_classifier, pair_features, split_vectors
from measure.methods.sampling import load_split

#: the settings compared: logistic regression (raw, then standardised features) and an MLP
GRID: tuple[dict, ...] = (*({"C": c} for c in (0.3, 1.0, 3.0, 30.0)),
                          *({"C": c, "scale": True} for c in (0.01, 0.05, 0.5, 5.0)),
                          {"classifier": "mlp"})


def select_hyperparameters(data_dir: str | None = None, model: str = "me5-small",
                           backend: str = "ort-int8") -> list[tuple[dict, float]]:
    """5-fold CV of probe settings on English XNLI validation only (never a target)."""
    root = str(resolve_data_dir(data_dir))
    u, v = split_vectors(str(default_cache_path()), encoder_key_for(model, backend), root,
                         "xnli", "en", "validation")
    y = load_split(root, "xnli", "en", "validation")["label"].to_numpy()
    X = pair_features(u, v)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    out = []
    for params in GRID:
        f1 = cross_val_score(make_classifier(params, 0), X, y, cv=cv, scoring="f1_macro").mean()
        out.append((params, 100 * float(f1)))
        print(f"{params}: macro-F1 {100 * f1:.2f}")
    return out


if __name__ == "__main__":
    select_hyperparameters()
