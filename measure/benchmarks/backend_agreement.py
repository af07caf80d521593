"""How much two measured tables of the same grid differ, cell by cell, per target.

Why: the encoder backend (``ort-int8`` unsigned vs ``ort-int8-s8`` signed weights) and
speed changes to the cell phase must not move what is measured. Two exports of the same
grid are matched on everything that defines a cell except the config fields named in
``--ignore`` (by default the backend, which is part of the cell hash), and the macro-F1
differences are summarised per target: mean ΔF1 (B − A), mean |ΔF1| and max |ΔF1|.

    python -m measure.benchmarks.backend_agreement A.parquet B.parquet [--markdown]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

#: the columns that identify one (cell, target) row apart from the config's own fields
KEY = ["model", "method", "train_dataset", "train_split", "regime", "train_config", "seed",
       "target_dataset", "target_language", "target_split"]


def _cell_key(config_json: str, ignore: tuple[str, ...]) -> str:
    config = json.loads(config_json)
    for field in ignore:
        config.pop(field, None)
    return json.dumps(config, sort_keys=True)


def paired(a: pd.DataFrame, b: pd.DataFrame, ignore: tuple[str, ...] = ("backend",)
           ) -> pd.DataFrame:
    """Rows of ``a`` and ``b`` for the same cell and target, with ``delta`` = F1(b) − F1(a).

    ValueError when a table holds a (cell, target) twice or the tables share no row."""
    frames = []
    for name, df in (("a", a), ("b", b)):
        df = df.assign(cell=[_cell_key(c, ignore) for c in df["config_json"]])
        if df.duplicated(["cell", *KEY]).any():
            raise ValueError(f"table {name} holds a (cell, target) row twice")
        frames.append(df[["cell", *KEY, "macro_f1"]])
    both = frames[0].merge(frames[1], on=["cell", *KEY], suffixes=("_a", "_b"))
    if both.empty:
        raise ValueError("the two tables share no (cell, target) row: are they the same grid?")
    return both.assign(delta=both["macro_f1_b"] - both["macro_f1_a"])


def per_target(both: pd.DataFrame) -> pd.DataFrame:
    """Per target: rows, mean ΔF1, mean |ΔF1|, max |ΔF1|, and an ``all`` row last."""
    both = both.assign(abs_delta=both["delta"].abs())
    g = both.groupby(["target_dataset", "target_language"])
    out = pd.DataFrame({"cells": g.size(), "mean_delta": g["delta"].mean(),
                        "mean_abs_delta": g["abs_delta"].mean(),
                        "max_abs_delta": g["abs_delta"].max()}).reset_index()
    total = pd.DataFrame([{"target_dataset": "all", "target_language": "",
                           "cells": len(both), "mean_delta": both["delta"].mean(),
                           "mean_abs_delta": both["abs_delta"].mean(),
                           "max_abs_delta": both["abs_delta"].max()}])
    return pd.concat([out, total], ignore_index=True)


def markdown(table: pd.DataFrame) -> str:
    lines = ["| target | cells | mean ΔF1 | mean \\|ΔF1\\| | max \\|ΔF1\\| |",
             "| --- | --- | --- | --- | --- |"]
    for r in table.itertuples(index=False):
        name = f"{r.target_dataset} {r.target_language}".strip()
        lines.append(f"| {name} | {r.cells} | {r.mean_delta:+.2f} | {r.mean_abs_delta:.2f} | "
                     f"{r.max_abs_delta:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m measure.benchmarks.backend_agreement",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="the reference table (parquet export)")
    ap.add_argument("b", type=Path, help="the table compared with it")
    ap.add_argument("--ignore", nargs="*", default=["backend"],
                    help="config fields that may differ between matched cells (default: backend)")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args(argv)
    try:
        a, b = pd.read_parquet(args.a), pd.read_parquet(args.b)
        table = per_target(paired(a, b, tuple(args.ignore)))
    except (OSError, ValueError, KeyError) as exc:
        print(f"backend_agreement: error: {exc}", file=sys.stderr)
        return 2
    if args.markdown:
        print(markdown(table))
    else:
        print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
