"""How the predictor does on AmericasNLI languages it has no profile and no rows for.

Why: three AmericasNLI languages are missing from the shipped data (Guarani ``gn``, Quechua
``quy``, Shipibo-Konibo ``shp``), so no CV protocol can score them. What can be checked:
for measured source configurations, their predictions should sit where the *measured*
AmericasNLI targets of the same configurations sit (the same class: absent from
pretraining, low-resource, a related script), and their intervals should cover that level.

    python -m predictor.studies.no_profile_check [--n 60] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd

from predictor.serving import load_predictor

UNPROFILED = ("gn", "quy", "shp")
MEASUREMENTS = "models/measurements/me5-small-probe.parquet"


def check(measurements: str = MEASUREMENTS, n: int = 60, seed: int = 0,
          predictor_dir: str | None = None) -> dict[str, float]:
    """Mean prediction for the unprofiled languages over ``n`` measured configurations, the
    measured AmericasNLI mean of the same configurations, and how many intervals (all three
    languages') cover it."""
    p = load_predictor(predictor_dir) if predictor_dir else load_predictor()
    m = pd.read_parquet(measurements)
    a = m[(m.target_dataset == "americas_nli") & (m.train_dataset == "xnli")
          & (m.train_split == "validation")]
    levels = a.groupby("train_config")["macro_f1"].mean()
    configs = a["train_config"].drop_duplicates().sample(n, random_state=seed)
    pred, meas, covered = [], [], 0
    for tc in configs:
        out = p.predict_records([{"model": "me5-small", "train_config": json.loads(tc),
                                  "target": t} for t in UNPROFILED])
        level = float(levels[tc])
        pred.append(np.mean([o["prediction"] for o in out]))
        meas.append(level)
        covered += all(o["lower"] <= level <= o["upper"] for o in out)
    return {"configs": n, "predicted": float(np.mean(pred)), "measured": float(np.mean(meas)),
            "covered": covered}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m predictor.studies.no_profile_check",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--measurements", default=MEASUREMENTS)
    ap.add_argument("--n", type=int, default=60, help="configurations to draw (default 60)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--predictor", default=None, help="fitted predictor directory")
    args = ap.parse_args(argv)
    r = check(args.measurements, args.n, args.seed, args.predictor)
    print(f"{'/'.join(UNPROFILED)} over {r['configs']} measured configurations: predicted "
          f"{r['predicted']:.1f} on average, measured AmericasNLI targets {r['measured']:.1f}; "
          f"the intervals cover that level in {r['covered']} of {r['configs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
