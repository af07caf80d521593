"""Time ``Predictor.recommend`` for two fitted predictors in one process, alternating.

Why one process and alternation: these machines are shared and noisy; two predictors timed
call by call see the same load, so their ratio means something where their absolute times
may not.

    python -m predictor.studies.bench_recommend --old OLD_DIR --new models/predictor \\
        [--targets quy,yo,eu] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time

from measure.knowledge.nli import XNLI_15
from predictor.serving import load_predictor


def bench(old_dir: str, new_dir: str, targets: list[str], ks: list[int], repeats: int = 3,
          model: str = "me5-small") -> list[dict[str, float]]:
    """Per k, the minimum over ``repeats`` of each predictor's recommend time (seconds)."""
    old, new = load_predictor(old_dir), load_predictor(new_dir)
    for p in (old, new):                         # first calls load lazy caches
        p.recommend(model, targets, XNLI_15, ks[0])
    out = []
    for k in ks:
        t: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(repeats):
            for label, p in (("old", old), ("new", new)):
                t0 = time.perf_counter()
                p.recommend(model, targets, XNLI_15, k)
                t[label].append(time.perf_counter() - t0)
        out.append({"k": k, "old": min(t["old"]), "new": min(t["new"])})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m predictor.studies.bench_recommend",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="fitted predictor directory (baseline)")
    ap.add_argument("--new", required=True, help="fitted predictor directory (compared)")
    ap.add_argument("--targets", default="quy,yo,eu")
    ap.add_argument("--ks", default="3,4,5,6")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    for r in bench(args.old, args.new, targets, [int(k) for k in args.ks.split(",")],
                   args.repeats):
        print(f"k = {r['k']}: old {1000 * r['old']:.0f} ms, new {1000 * r['new']:.0f} ms, "
              f"new / old {r['new'] / r['old']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
