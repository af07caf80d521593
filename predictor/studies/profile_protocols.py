"""Unseen-target error under each profile protocol, against the strongest simple predictors.

Why: a profile built from the very pairs a target is scored on is a label-free estimate of
that score, not a prediction for a language we have not seen. This study runs the nested
leave-one-target-out CV (the shipped search and settings) once per protocol, each with its
own profile directory and the target rows that protocol may be scored against:

* ``scored-pairs``   -- today's profiles (600 test pairs that overlap the scored items);
* ``disjoint-pairs`` -- XNLI: test pairs outside the scored subset; AmericasNLI: profiles
  from one half of the test items, scored on the other half, then swapped (two runs whose
  errors are averaged per target);
* ``shifted-pairs``  -- pairs from the target's validation split, which translate the
  probes' own training items (a shifted source; AmericasNLI scored on the full test set);
* ``text-only``      -- tokenizer and centroid features only (no pairs);
* ``none``           -- no profile at all.

Every figure is per dataset with every target weighted equally, with the best reference
predictor (``predictor.models.references``) fitted on the same folds and a 95% bootstrap
CI over target languages of the difference; 90% interval coverage per group and per target
comes from the same out-of-fold residuals (targets left out in turn).

    python -m predictor.studies.profile_protocols --out models/studies/profile-protocols.json
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from measure.knowledge.paths import MODELS, resolve_default
from predictor import intervals
from predictor.dataset import build_dataset, read_measurements, single_pool, tidy_own
from predictor.features import NO_PROFILES
from predictor.selection import SelectionSettings, nested_cv, prepare
from predictor.selection.metrics import bootstrap_diff, per_target_mae
from predictor.studies import study_parser

MAIN_TABLE = "measurements/me5-small-probe.parquet"
PARTS_TABLE = "measurements/me5-small-probe-americas-parts.parquet"
PARTS = ("A", "B")
PROTOCOLS = ("disjoint-pairs", "scored-pairs", "shifted-pairs", "text-only", "none")


def _part_split(part: str) -> str:
    return f"test/{part}-of-2"


def protocol_runs(models: Path, protocol: str) -> list[dict[str, Any]]:
    """The runs of a protocol: each (profiles directory, which AmericasNLI scores). A run's
    AmericasNLI rows are scored on the part its profiles were NOT built from."""
    if protocol == "disjoint-pairs":
        return [{"profiles": models / f"profiles-disjoint-{p}",
                 "americas": _part_split("B" if p == "A" else "A")} for p in PARTS]
    where = {"scored-pairs": models / "profiles-scored-pairs", "shifted-pairs": models / "profiles-shifted-validation",
             "text-only": models / "profiles-text-only", "none": None}[protocol]
    return [{"profiles": where, "americas": "test"}]


def training_rows(models: Path, published: str | None, americas: str) -> pd.DataFrame:
    """The predictor's training rows with AmericasNLI scored on ``americas`` ('test': the
    full test sets of the shipped table; a part: the parts table)."""
    frame = build_dataset([models / MAIN_TABLE], include_published=True,
                          published_dir=published)
    if americas != "test":
        frame = frame[frame["target_dataset"] != "americas_nli"]
        raw = read_measurements(models / PARTS_TABLE)
        raw = raw[raw["target_split"] == americas]
        frame = pd.concat([frame, tidy_own(raw, source=str(models / PARTS_TABLE))],
                          ignore_index=True)
    kept, _, _ = single_pool(frame)
    d, _ = prepare(kept)
    return d.reset_index(drop=True)


def run_protocol(models: Path, protocol: str, settings: SelectionSettings,
                 published: str | None, log: Any) -> dict[str, Any]:
    """Out-of-fold predictions of the model and every reference, per run of the protocol,
    as one long table (dataset, target, row, run, y, predictions)."""
    parts = []
    for i, run in enumerate(protocol_runs(models, protocol)):
        d = training_rows(models, published, run["americas"])
        prof = run["profiles"]
        if prof is not None and not Path(prof).is_dir():
            raise FileNotFoundError(f"{prof}: build it with python -m measure.profile "
                                    f"build-shipped --protocol {protocol}")
        s = SelectionSettings(inner_logo_max=settings.inner_logo_max,
                              within_stage=settings.within_stage,
                              profiles_dir=NO_PROFILES if prof is None else str(prof))
        t0 = time.perf_counter()
        res = nested_cv(d, "unseen_target", settings=s, feature_cache={})
        log(f"{protocol} run {i + 1}: {time.perf_counter() - t0:.0f} s")
        part = pd.DataFrame({"dataset": d["dataset"], "target": d["target_iso3"].astype(str),
                             "mm": d["mm"], "pclass": d["pclass"], "y": d["score"],
                             "run": i, "config": d["config_id"]})
        for name, p in res.oof.items():
            part[name] = p
        parts.append(part)
    return {"oof": pd.concat(parts, ignore_index=True)}


def summarise(oof: pd.DataFrame, *, alpha: float = 0.1, seed: int = 0) -> dict[str, Any]:
    """Per dataset: the model's MAE, every comparator's, the best comparator and the
    difference with its target-bootstrap CI; per target MAE; interval coverage."""
    comparators = [c for c in oof.columns if c not in {"dataset", "target", "mm", "pclass", "y",
                                                       "run", "config", "model", "target_mean"}]
    out: dict[str, Any] = {"datasets": {}, "intervals": {}}
    for ds, g in oof.groupby("dataset"):
        pt = {n: per_target_mae(g["y"].to_numpy(), g[n].to_numpy(), g["target"].to_numpy())
              for n in ("model", *comparators)}
        best = min(comparators, key=lambda b: pt[b].mean())
        diff, lo, hi = bootstrap_diff(pt["model"].to_numpy(), pt[best].to_numpy(), seed=seed)
        out["datasets"][ds] = {
            "targets": int(len(pt["model"])), "mae": float(pt["model"].mean()),
            "comparators": {b: float(pt[b].mean()) for b in comparators},
            "best_comparator": best, "diff": diff, "diff_ci": [lo, hi],
            "relative": float(pt["model"].mean() / pt[best].mean() - 1),
            "per_target": {t: float(v) for t, v in pt["model"].items()}}
    cal = intervals.calibrate_groups(oof["y"].to_numpy(), oof["model"].to_numpy(),
                                     oof["target"].to_numpy(), oof["mm"].to_numpy(),
                                     oof["pclass"].to_numpy(), alpha=alpha)
    out["intervals"] = {k: {"targets": v["targets"], "half_width": v["quantile"],
                            "coverage": v["coverage"],
                            "per_target_coverage": v["per_target_coverage"]}
                        for k, v in cal["groups"].items()}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = study_parser("predictor.studies.profile_protocols", __doc__, inner_loto=True)
    ap.add_argument("--protocols", default=",".join(PROTOCOLS),
                    help=f"comma-separated, of {', '.join(PROTOCOLS)}")
    args = ap.parse_args(argv)
    models = args.models_dir or resolve_default(MODELS)
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    bad = sorted(set(protocols) - set(PROTOCOLS))
    if bad:
        ap.error(f"unknown protocols {bad}; choose from {', '.join(PROTOCOLS)}")
    settings = SelectionSettings(inner_logo_max=25 if args.inner_loto else 0)
    summary, tables = {}, []
    for p in protocols:
        res = run_protocol(models, p, settings, args.published_dir,
                           lambda m: print(m, file=sys.stderr, flush=True))
        summary[p] = summarise(res["oof"])
        tables.append(res["oof"].assign(protocol=p))
        for ds, r in summary[p]["datasets"].items():
            print(f"{p:<15} {ds:<30} {r['mae']:.2f} vs {r['best_comparator']} "
                  f"{r['comparators'][r['best_comparator']]:.2f}  {r['diff']:+.2f} "
                  f"[{r['diff_ci'][0]:+.2f}, {r['diff_ci'][1]:+.2f}]")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": {"inner_logo_max": settings.inner_logo_max},
                                    "protocols": summary}, indent=1), encoding="utf-8")
    pd.concat(tables, ignore_index=True).to_parquet(args.out.with_suffix(".oof.parquet"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
