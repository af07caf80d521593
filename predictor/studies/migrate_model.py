"""Convert a predictor directory written as skops (before the arrays format) to the arrays
format, checking that no prediction moves.

Why a one-off command: predictors fitted before :mod:`predictor.persist` stored arrays load
through skops (~3 s, every scikit-learn estimator imported); converted, the same fit loads
in milliseconds. The card keeps everything it said (training data, CV, intervals, library
versions of the fit) and records what it was converted from; its checksum (and, with
``$XLT_MODEL_KEY`` set, its HMAC) is made anew.

    python -m predictor.studies.migrate_model models/predictor            # in place
    python -m predictor.studies.migrate_model models/predictor --out DIR  # a copy

Before anything is written, every regressor's predictions on the feature rows of a grid of
requests (each system x targets x training configurations) are compared with the skops
regressors': they must be identical, bit for bit. In place, the old ``predictor.skops`` is
removed once the new card (which no longer names it) is in place.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from predictor import persist
from predictor.features import as_rows
from predictor.models import SeenTargetModel, ZModel
from predictor.models.compact import compact_from_state

#: targets of the check grid besides each system's own (measured and unmeasured classes)
CHECK_TARGETS = ("sw", "ur", "de", "hi", "quy", "yo", "cy", "eu", "ta", "gn", "zu", "bo")
CHECK_CONFIGS = ({"en": 2490}, {"en": 10000}, {"en": 2490, "de": 2490},
                 {"en": 1000, "hi": 1000, "ar": 1000, "zh": 1000}, {"fr": 500, "ru": 500})


def convert(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle with every model's regressors as arrays (the features unchanged)."""
    return {"features": bundle["features"],
            "unseen": {m: ZModel.from_state(st).to_state() for m, st in bundle["unseen"].items()},
            "seen": {m: SeenTargetModel.from_state(st).to_state()
                     for m, st in bundle["seen"].items()}}


def _regressors(bundle: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for part in ("unseen", "seen"):
        for m, st in bundle[part].items():
            z = st["within"] if part == "seen" else st
            for group in ("regs", "within_regs"):
                for k, reg in z[group].items():
                    out[f"{part}:{m}:{group}:{k}"] = reg
    return out


def check_identical(old: dict[str, Any], new: dict[str, Any], card: dict[str, Any]) -> int:
    """Compare every regressor of ``old`` (scikit-learn) and ``new`` (arrays) on the feature
    rows of a request grid; the number of rows compared, or ``SystemExit`` on a difference."""
    rows = [{"model": s["model"], "method": s["method"], "train_config": tc, "target": t}
            for s in card.get("models", []) for t in CHECK_TARGETS for tc in CHECK_CONFIGS]
    X = old["features"].transform(as_rows(rows))
    X_mem = np.column_stack([X, np.linspace(-2, 2, len(X)), np.linspace(0, 1, len(X))])
    a, b = _regressors(old), _regressors(new)
    if set(a) != set(b):
        raise SystemExit(f"regressors differ: {sorted(set(a) ^ set(b))}")
    for name, reg in a.items():
        Xr = X_mem if name.startswith("seen:") else X
        want, got = reg.predict(Xr), compact_from_state(b[name]).predict(Xr)
        if not np.array_equal(want, got):
            worst = float(np.max(np.abs(want - got)))
            raise SystemExit(f"{name}: predictions differ (max {worst:.3g}); nothing written")
    return len(X)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m predictor.studies.migrate_model",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("directory", type=Path, help="a predictor directory (model_card.json + "
                                                 "predictor.skops)")
    ap.add_argument("--out", type=Path, default=None,
                    help="write the converted predictor here (default: in place)")
    args = ap.parse_args(argv)
    try:
        card = persist.read_card(args.directory)
        if card.get(persist.FORMAT_KEY) == persist.MODEL_FORMAT:
            print(f"{args.directory}: already in the arrays format; nothing to do",
                  file=sys.stderr)
            return 0
        old, card = persist.load(args.directory)
    except (persist.ModelIntegrityError, FileNotFoundError) as exc:
        print(f"migrate_model: error: {exc}", file=sys.stderr)
        return 1
    new = convert(old)
    n = check_identical(old, new, card)
    out = args.out or args.directory
    old_file = persist.model_path_for(args.directory, card)
    record = {"converted_from": {"model_file": old_file.name,
                                 "model_sha256": card["model_sha256"]}}
    persist.save(new, out, {**card, **record}, keep_library_versions=True)
    if out.resolve() == args.directory.resolve() and old_file.name != persist.MODEL_FILE:
        old_file.unlink(missing_ok=True)
    size = (out / persist.MODEL_FILE).stat().st_size
    print(f"{out}: {persist.MODEL_FILE} written ({size / 1e6:.1f} MB; was {old_file.name}); "
          f"{len(_regressors(new))} regressors identical on {n} feature rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
