"""How much a target's unseen-target prediction moves when its profile pairs are resampled.

Why: a profile is estimated from a few hundred unlabelled pairs, so two samples of the same
language's pairs give two profiles and two predictions. The intervals are calibrated on
held-out targets whose profiles are one such sample each, so on average they contain this
noise; this study measures it per target, to say which targets' predictions hinge on it.
Each bootstrap directory holds the same targets' profiles built from pairs resampled with
replacement (``python -m measure.profile build-shipped --bootstrap-seed S``).

    python -m predictor.studies.profile_noise --profiles models/profiles-disjoint-A \\
        --bootstrap models/profiles-disjoint-A-boot{1,2,3,4,5}
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from predictor.dataset import build_dataset, single_pool
from predictor.models import row_meta
from predictor.serving import load_predictor

MAIN_TABLE = Path("models/measurements/me5-small-probe.parquet")


def unseen_predictions(p, rows: pd.DataFrame, profiles: str) -> np.ndarray:
    """The unseen-target model's predictions for ``rows`` with features read from
    ``profiles`` (the measured-target memory is not used: every target is treated as new)."""
    tf = copy.copy(p.features)
    tf.profiles_dir = str(profiles)
    X = tf.transform(rows)
    meta = row_meta(rows)
    out = np.full(len(rows), np.nan)
    for m in np.unique(meta["mm"]):
        sel = (meta["mm"] == m).to_numpy()
        out[sel] = p.unseen[str(m)].predict(X[sel], meta[sel].reset_index(drop=True))
    return out


def profile_noise(predictor: str | None, profiles: str, boots: Sequence[str],
                  table: Path = MAIN_TABLE) -> pd.DataFrame:
    """Per target: the mean over its zero-shot rows of the SD of the prediction across the
    bootstrap profiles, the mean shift from the reference profile, and the rows used."""
    p = load_predictor(predictor)
    frame, _, _ = single_pool(build_dataset([table], include_published=False))
    rows = frame[frame["zero_shot"]][["model", "method", "train_config", "target"]]
    rows = rows.reset_index(drop=True)
    ref = unseen_predictions(p, rows, profiles)
    draws = np.column_stack([unseen_predictions(p, rows, b) for b in boots])
    out = pd.DataFrame({"target": rows["target"], "sd": draws.std(axis=1, ddof=1),
                        "shift": draws.mean(axis=1) - ref})
    return out.groupby("target").agg(sd=("sd", "mean"), shift=("shift", "mean"),
                                     rows=("sd", "size")).round(3)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m predictor.studies.profile_noise",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--predictor", default=None, help="fitted predictor directory")
    ap.add_argument("--profiles", required=True, help="the reference profiles directory")
    ap.add_argument("--bootstrap", nargs="+", required=True, help="bootstrap directories")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = profile_noise(args.predictor, args.profiles, args.bootstrap)
    if args.json:
        print(json.dumps(res.to_dict(orient="index")))
    else:
        print(res.to_string())
        print(f"mean over targets: sd {res['sd'].mean():.2f}, |shift| "
              f"{res['shift'].abs().mean():.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
