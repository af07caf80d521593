"""Do the per-source probes' agreements carry what their label entropies do not?

Why: the profile's strongest signal is the per-source probes' predicted-label entropy, and
it fails silently on label-skewed pairs (80% entailment triples the XNLI error:
``predictor.studies.pair_conditions``). Agreement between classifiers is a label-free
accuracy estimate in its own right ("agreement on the line", Baek et al. 2022), and its
chance-corrected form, Cohen's kappa between two probes, discounts agreement that comes from
a shared label skew -- so it is a candidate for a feature that adds to the entropy and
resists skew. Measured here, before any refit, on the 22 shipped targets:

* per target, from the disjoint pairs (``measure.profile_protocols``, as shipped: XNLI test
  pairs outside the scored 2,000, AmericasNLI half A): each of the 15 per-source probes'
  labels; the mean pairwise agreement and Cohen's kappa over the 105 probe pairs; the mean
  and largest per-source label entropy;
* the target's *level*: the mean macro-F1 of the grid's single-source XNLI-validation cells
  (AmericasNLI: on half B, the half the profile never saw);
* leave one target out, per dataset: an OLS of the level on each feature set, MAE;
* with ``--conditions``: each feature's shift under a pairs condition (e.g. 80% entailment)
  against the as-drawn pairs, in units of its spread across the XNLI targets -- how far a
  skew moves it compared with the differences between languages it is meant to read.

    python -m predictor.studies.probe_agreement --conditions skew-entailment skew-contradiction
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from measure.knowledge.paths import MODELS, resolve_default
from measure.profile_protocols import (AMERICAS, PAIRS_CONDITIONS, XNLI_TARGETS, ProfileProtocol,
                                       profile_pairs)

FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "entropy (mean)": ("entropy_mean",),
    "entropy (mean, max)": ("entropy_mean", "entropy_max"),
    "kappa": ("kappa",),
    "agreement": ("agreement",),
    "entropy (mean) + kappa": ("entropy_mean", "kappa"),
    "entropy (mean, max) + kappa": ("entropy_mean", "entropy_max", "kappa"),
}
FEATURES = ("entropy_mean", "entropy_max", "agreement", "kappa")


def agreement_stats(labels: np.ndarray) -> dict[str, float]:
    """Mean pairwise agreement and Cohen's kappa over every pair of probes, and the mean and
    largest predicted-label entropy (bits) of ``labels`` (probes x pairs, values 0-2)."""
    labels = np.asarray(labels)
    shares = np.stack([(labels == c).mean(axis=1) for c in range(3)], axis=1)
    agree, kappa = [], []
    for i, j in itertools.combinations(range(len(labels)), 2):
        a = float((labels[i] == labels[j]).mean())
        chance = float(shares[i] @ shares[j])
        agree.append(a)
        kappa.append((a - chance) / (1.0 - chance) if chance < 1.0 else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(shares > 0, shares * np.log2(shares), 0.0).sum(axis=1)
    return {"agreement": float(np.mean(agree)), "kappa": float(np.mean(kappa)),
            "entropy_mean": float(ent.mean()), "entropy_max": float(ent.max())}


def loto_mae(frame: pd.DataFrame, columns: Sequence[str], target: str = "level") -> float:
    """Leave-one-target-out MAE of an OLS (with intercept) of ``target`` on ``columns``."""
    X = np.column_stack([np.ones(len(frame)), frame[list(columns)].to_numpy(float)])
    y = frame[target].to_numpy(float)
    err = []
    for i in range(len(frame)):
        keep = np.arange(len(frame)) != i
        beta, *_ = np.linalg.lstsq(X[keep], y[keep], rcond=None)
        err.append(abs(float(X[i] @ beta) - y[i]))
    return float(np.mean(err))


def target_levels(models: Path) -> pd.Series:
    """{language: mean macro-F1 of the grid's single-source XNLI-validation cells}, XNLI on
    the shipped table, AmericasNLI on half B of the parts table."""
    out = []
    for table, split in (("me5-small-probe.parquet", "test"),
                         ("me5-small-probe-americas-parts.parquet", "test/B-of-2")):
        d = pd.read_parquet(models / "measurements" / table)
        d = d[(d["k"] == 1) & (d["train_dataset"] == "xnli") & (d["target_split"] == split)]
        if split == "test":
            d = d[d["target_dataset"] == "xnli"]
        out.append(d.groupby("target_language")["macro_f1"].mean())
    return pd.concat(out)


def probe_labels(enc: Any, ref: Any, pairs: pd.DataFrame) -> np.ndarray:
    """Every per-source probe's predicted labels on ``pairs`` (probes x pairs)."""
    from measure.profile_reference import pair_features
    u = enc.encode(pairs["premise"].astype(str).tolist(), desc="premises")
    v = enc.encode(pairs["hypothesis"].astype(str).tolist(), desc="hypotheses")
    X = pair_features(u, v).astype(np.float64)
    return np.stack([ref.source_probe(i).probabilities_of(X).argmax(axis=1)
                     for i in range(len(ref.src_languages))])


def measure_features(data_dir: Path, ref: Any, enc: Any, condition: str = "as-drawn"
                     ) -> pd.DataFrame:
    """One row per shipped target: dataset, language and :func:`agreement_stats`."""
    rows = []
    protocol = ProfileProtocol("disjoint-pairs", part="A", pairs_condition=condition)
    for dataset, langs in (("xnli", XNLI_TARGETS), ("americas_nli", AMERICAS)):
        for lang in langs:
            pairs, _ = profile_pairs(data_dir, dataset, lang, protocol)
            rows.append({"dataset": dataset, "language": lang,
                         **agreement_stats(probe_labels(enc, ref, pairs))})
    return pd.DataFrame(rows)


def summarise(features: pd.DataFrame, levels: pd.Series,
              shifted: dict[str, pd.DataFrame] | None = None) -> dict[str, Any]:
    """Per dataset: each feature's correlation with the level and each feature set's LOTO
    MAE; per condition: each feature's mean shift on XNLI targets in across-target SDs."""
    f = features.assign(level=features["language"].map(levels)).dropna(subset=["level"])
    out: dict[str, Any] = {"datasets": {}, "conditions": {}}
    for ds, g in f.groupby("dataset"):
        out["datasets"][ds] = {
            "targets": int(len(g)),
            "correlation": {c: float(g[c].corr(g["level"])) for c in FEATURES},
            "loto_mae": {name: loto_mae(g, cols) for name, cols in FEATURE_SETS.items()}}
    base = f[f["dataset"] == "xnli"].set_index("language")
    for cond, other in (shifted or {}).items():
        o = other[other["dataset"] == "xnli"].set_index("language").loc[base.index]
        sd = base[list(FEATURES)].std(ddof=1)
        # a feature that does not vary across the targets has no spread to measure a shift in
        out["conditions"][cond] = {c: float((o[c] - base[c]).mean() / sd[c]) if sd[c] > 0
                                   else float("nan") for c in FEATURES}
    return out


def table(summary: dict[str, Any]) -> str:
    lines = ["| dataset | " + " | ".join(FEATURE_SETS) + " |",
             "| --- |" + " --- |" * len(FEATURE_SETS)]
    for ds, r in summary["datasets"].items():
        lines.append(f"| {ds} ({r['targets']}) | "
                     + " | ".join(f"{r['loto_mae'][n]:.2f}" for n in FEATURE_SETS) + " |")
    if summary["conditions"]:
        lines += ["", "| condition (XNLI) | " + " | ".join(FEATURES) + " |",
                  "| --- |" + " --- |" * len(FEATURES)]
        for cond, r in summary["conditions"].items():
            lines.append(f"| {cond} | " + " | ".join(f"{r[c]:+.2f} SD" for c in FEATURES) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m predictor.studies.probe_agreement",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=None)
    ap.add_argument("--data-dir", type=Path, default=None, help="NLI data root")
    ap.add_argument("--conditions", nargs="*", default=[],
                    choices=[c for c in PAIRS_CONDITIONS if c != "as-drawn"],
                    help="pairs conditions whose feature shifts to report")
    ap.add_argument("--out", type=Path, default=None, help="also write the summary as JSON")
    args = ap.parse_args(argv)
    from measure.data import resolve_data_dir
    from measure.profile import MemoEncoder
    from measure.profile_reference import REFERENCE_FILE, Reference
    models = args.models_dir or resolve_default(MODELS)
    ref_path = models / "profiles" / "me5-small" / REFERENCE_FILE
    if not ref_path.is_file():
        ap.error(f"{ref_path}: no reference (python -m measure.profile build-shipped)")
    ref = Reference.load(ref_path)
    data_dir = Path(resolve_data_dir(args.data_dir))
    enc = MemoEncoder("me5-small", str(ref.meta.get("backend", "ort-int8-s8")))
    features = measure_features(data_dir, ref, enc)
    shifted = {c: measure_features(data_dir, ref, enc, c) for c in args.conditions}
    summary = summarise(features, target_levels(models), shifted)
    summary["features"] = features.to_dict(orient="records")
    print(table(summary))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(f"(probes: {len(ref.src_languages)}; pairs: disjoint-pairs, part A)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
