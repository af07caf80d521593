"""The reference of a model's language profiles and the label-free estimates made with it.

Why a module of its own: the reference (``<profiles>/<model>/_reference.npz``: reference
centroids, the English probe with its ATC/DoC calibration and one probe per XNLI source
language; see :mod:`measure.profile` for how it is built) is what every profile is measured
against, and the label-free estimates (Garg et al. 2022, ATC; Guillory et al. 2021, DoC)
are what those probes say about a target's unlabelled pairs. Stored as ``.npz`` read with
``allow_pickle=False``: no code runs from a reference file.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from measure.knowledge.nli import LABELS
from measure.knowledge.paths import shipped_profiles_dir
from measure.methods.probe import pair_features
from measure.outputs import atomic_path
from measure.profile_inputs import ProfileInputError

REFERENCE_FILE = "_reference.npz"
SOURCE_STATS = ("atc", "doc", "mean_confidence", "label_entropy")


@dataclass
class Reference:
    """Reference centroids and the English-trained probe of one model."""

    languages: list[str]
    centroids: np.ndarray          # len(languages) x dim
    coef: np.ndarray               # 3 x 4*dim
    intercept: np.ndarray          # 3
    atc_threshold: float           # confidence threshold (Garg et al. 2022)
    source_accuracy: float         # out-of-fold accuracy on English, 0-1
    source_confidence: float       # out-of-fold mean max-softmax on English, 0-1
    meta: dict[str, Any]
    # the same probe trained on each source language (empty for a reference built before)
    src_languages: list[str] = dataclasses.field(default_factory=list)
    src_coef: np.ndarray | None = None        # len(src_languages) x 3 x 4*dim (float32)
    src_intercept: np.ndarray | None = None   # len(src_languages) x 3
    src_scalars: np.ndarray | None = None     # len(src_languages) x 3: threshold, acc, conf

    def probabilities(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self.probabilities_of(pair_features(u, v).astype(np.float64))

    def probabilities_of(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities of pair features ``X`` (computed once for many probes)."""
        return softmax(X @ self.coef.T + self.intercept)

    def source_probe(self, i: int) -> "Reference":
        """The probe trained on ``src_languages[i]`` as a centroid-less Reference (so
        ``label_free`` and ``probabilities`` apply to it unchanged)."""
        assert self.src_coef is not None and self.src_intercept is not None \
            and self.src_scalars is not None
        t, a, c = (float(x) for x in self.src_scalars[i])
        return Reference([], np.zeros((0, self.centroids.shape[1])),
                         self.src_coef[i].astype(np.float64),
                         self.src_intercept[i].astype(np.float64), t, a, c,
                         {"train": f"xnli/{self.src_languages[i]}/validation"})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:   # a file: no ".npz" appended
            self._savez(fh)

    def _savez(self, fh: Any) -> None:
        np.savez_compressed(fh, languages=np.array(self.languages), centroids=self.centroids,
                            coef=self.coef, intercept=self.intercept,
                            scalars=np.array([self.atc_threshold, self.source_accuracy,
                                              self.source_confidence]),
                            meta=np.array(json.dumps(self.meta, sort_keys=True)),
                            **({} if not self.src_languages else {
                                "src_languages": np.array(self.src_languages),
                                "src_coef": np.asarray(self.src_coef, dtype=np.float32),
                                "src_intercept": np.asarray(self.src_intercept, np.float64),
                                "src_scalars": np.asarray(self.src_scalars, np.float64)}))

    @classmethod
    def load(cls, path: Path) -> "Reference":
        with np.load(path, allow_pickle=False) as z:
            s = z["scalars"]
            per_src: dict[str, Any] = {}
            if "src_languages" in z.files:      # references built before have none
                per_src = {"src_languages": [str(x) for x in z["src_languages"]],
                           "src_coef": z["src_coef"], "src_intercept": z["src_intercept"],
                           "src_scalars": z["src_scalars"]}
            return cls([str(x) for x in z["languages"]], z["centroids"], z["coef"],
                       z["intercept"], float(s[0]), float(s[1]), float(s[2]),
                       json.loads(str(z["meta"])), **per_src)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits ``z`` (shifted by the row maximum: no overflow)."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def find_reference(profiles: Path, model: str) -> Path:
    """``profiles/model/_reference.npz``, else the shipped one (``models/profiles``)."""
    cand = profiles / model / REFERENCE_FILE
    if cand.is_file():
        return cand
    shipped = shipped_profiles_dir(required=False)
    if shipped is not None and (shipped / model / REFERENCE_FILE).is_file():
        return shipped / model / REFERENCE_FILE
    raise ProfileInputError(f"no reference for {model!r} in {profiles / model} or the shipped "
                            "models/profiles: build it with 'python -m measure.profile "
                            "build-shipped --data-dir DIR'")


def label_free(ref: Reference, probs: np.ndarray) -> dict[str, Any]:
    """Confidence, predicted-label distribution, its entropy, ATC and DoC of target pairs."""
    conf = probs.max(axis=1)
    pred = probs.argmax(axis=1)
    dist = np.bincount(pred, minlength=3) / len(pred)
    nz = dist[dist > 0]
    entropy = float(-(nz * np.log2(nz)).sum()) + 0.0   # no "-0.000" for one label
    doc = ref.source_accuracy - (ref.source_confidence - float(conf.mean()))
    return {"n_pairs": int(len(pred)), "mean_confidence": float(conf.mean()),
            "label_distribution": {k: float(p) for k, p in zip(LABELS, dist)},
            "label_entropy": entropy, "atc": 100.0 * float((conf > ref.atc_threshold).mean()),
            "doc": 100.0 * doc}


def label_free_by_source(ref: Reference, u: np.ndarray, v: np.ndarray
                         ) -> dict[str, dict[str, float]] | None:
    """{source: atc, doc, mean_confidence, label_entropy} of each per-source probe on the
    target pairs (embeddings ``u``, ``v``); None for a reference without per-source probes."""
    if not ref.src_languages:
        return None
    X = pair_features(u, v).astype(np.float64)
    out = {}
    for i, src in enumerate(ref.src_languages):
        probe = ref.source_probe(i)
        lf = label_free(probe, probe.probabilities_of(X))
        out[src] = {k: lf[k] for k in SOURCE_STATS}
    return out
