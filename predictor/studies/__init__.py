"""One-off studies of the data and the predictor, each a command
(``python -m predictor.studies.<name>``); nothing in the predictor imports them.

``noise_floor`` -- how much within-target variation any configuration feature can explain;
``no_profile_check`` -- where languages without profile or rows land; ``bench_recommend``
-- two fitted predictors' recommend times, alternated in one process; ``profile_protocols``,
``pair_conditions``, ``profile_noise`` -- what the profile's pairs must be;
``spec_averaging``, ``probe_agreement``, ``interval_scales`` -- attempts at the #21 goals.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def study_parser(module: str, doc: str | None, *, inner_loto: bool = False
                 ) -> argparse.ArgumentParser:
    """The options every nested-CV study shares (models and published data directories, the
    JSON output, optionally the shipped fit's leave-one-target-out inner CV); the study adds
    its own. ``module``: the study's ``__name__``; ``doc``: its docstring (first line:
    the description)."""
    ap = argparse.ArgumentParser(prog=f"python -m {module}",
                                 description=(doc or "").splitlines()[0] if doc else None)
    ap.add_argument("--models-dir", type=Path, default=None,
                    help="models directory (default: the shipped models/)")
    ap.add_argument("--published-dir", default=None)
    if inner_loto:
        ap.add_argument("--inner-loto", action="store_true",
                        help="leave-one-target-out inner CV, as the shipped fit (slower)")
    ap.add_argument("--out", type=Path, required=True, help="JSON summary (+ .oof.parquet)")
    return ap
