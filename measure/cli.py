"""``xlt-measure``: run measurement batches and manage the results store.

Usage errors exit 2 with the problem on stderr; a finished command exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

from measure.benchmarks.encoder_bench import run_bench
from measure.benchmarks.seq2seq_bench import run_seq2seq_bench
from measure.cell import cell_hash
from measure.data import DataError, available_splits, load_parquet_split, resolve_data_dir
from measure.designs import add_greedy_arguments
from measure.encoders.embcache import EmbeddingCacheError, default_cache_path
from measure.knowledge.languages import UnknownLanguageError, registry_table, resolve_target
from measure.outputs import OutputError
from measure.profile import add_profile_arguments
from measure.running.config import ConfigError, check_model, load_batch
from measure.running.engine import check_cache_dir, run_local
from measure.stack import install_hint, measure_stack_problem
from measure.items import check_items_dir
from measure.store import (ResultStore, StoreError, check_export_target, export_items,
                           export_results)

DEFAULT_STORE = Path("results/xlt.sqlite")


def _fail(msg: str, code: int = 2) -> int:
    print(f"xlt-measure: error: {msg}", file=sys.stderr)
    return code


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _int_at_least(low: int):
    """argparse type: an integer >= ``low`` (a bad value is a usage error, exit 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def cmd_status(args: argparse.Namespace) -> int:
    try:
        with ResultStore(args.store, readonly=True) as store:
            summary = store.summary()
    except StoreError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"store: {summary['path']}")
    print(f"cells done: {summary['cells_done']}  failed: {summary['cells_failed']}  "
          f"result rows: {summary['result_rows']}")
    for row in summary["by_model"]:
        secs = row["compute_seconds"] or 0.0
        print(f"  {row['model']:<12} {row['method']:<9} {row['regime']:<13} "
              f"{row['cells']:>6} cells  {secs / 3600:6.2f} compute-hours")
    if summary["by_target"]:
        print("macro-F1 per target over finished cells (zero-shot: target not a source)")
        print(f"  {'target':<28} {'cells':>6} {'mean':>6} {'min':>6} {'max':>6} "
              f"{'zero-shot mean':>15}")
        for t in summary["by_target"]:
            zs = t["zero_shot_mean_f1"]
            zs_txt = f"{zs:6.1f} ({t['zero_shot_cells']})" if zs is not None else "-"
            name = f"{t['dataset']}/{t['split']} {t['language']}"
            print(f"  {name:<28} {t['cells']:>6} {t['mean_f1']:6.1f} {t['min_f1']:6.1f} "
                  f"{t['max_f1']:6.1f} {zs_txt:>15}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    try:  # exporting onto the store (or its WAL/lock files) would destroy the results
        check_export_target(args.out, args.store)
        if args.items is not None:
            check_items_dir(args.items)
        with ResultStore(args.store, readonly=True) as store:
            out = export_results(store, args.out)   # atomic: a killed export keeps the old file
            items = export_items(store, args.items) if args.items is not None else None
    except (StoreError, ValueError) as exc:          # OutputError is a ValueError
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write {args.out} ({exc.strerror or exc})")
    print(out)
    if items is not None:
        print(f"{items[0]} (per-item predictions of {items[1]} result rows)")
    return 0


def cmd_languages(args: argparse.Namespace) -> int:
    if args.code is not None:
        try:
            lang = resolve_target(args.code)
        except UnknownLanguageError as exc:
            return _fail(str(exc))
        print(json.dumps(lang.__dict__, indent=2))
        return 0
    print(registry_table().to_string(index=False))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    try:
        root = resolve_data_dir(args.data_dir)
        avail = available_splits(root)
    except (DataError, OSError) as exc:
        return _fail(str(exc))
    if not avail:
        return _fail(f"no NLI splits in {root}: expected {root}/{{dataset}}/{{language}}/"
                     "{split}.parquet; pass --data-dir or set XLT_DATA_DIR")
    print(f"data directory: {root}")
    bad: list[str] = []
    for ds, langs in avail.items():
        for lang, splits in langs.items():
            sizes = []
            for split in splits:
                try:  # report every bad file, not just the first
                    sizes.append(f"{split}={len(load_parquet_split(root, ds, lang, split))}")
                except DataError as exc:
                    sizes.append(f"{split}=BAD")
                    bad.append(str(exc))
            print(f"{ds:<14} {lang:<4} {' '.join(sizes)}")
    if bad:
        for msg in bad:
            _fail(msg)
        return _fail(f"{_plural(len(bad), 'bad file')} in {root}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if args.address and args.engine != "ray":
        return _fail("--address is the Ray cluster address: use it with --engine ray")
    try:
        batch = load_batch(args.config, args.data_dir)
    except ConfigError as exc:
        return _fail(str(exc))
    if args.dry_run:
        done: set[str] = set()
        if args.store.exists():
            try:
                with ResultStore(args.store, readonly=True) as store:
                    done = store.done_hashes()
            except StoreError as exc:
                return _fail(str(exc))
        stored = sum(1 for c in batch.cells if cell_hash(c) in done)
        per = Counter((c.regime, len(c.sources)) for c in batch.cells)
        print(f"{_plural(len(batch.cells), 'cell')}: {stored} already in {args.store}, "
              f"{len(batch.cells) - stored} to run")
        for (regime, k), n in sorted(per.items()):
            print(f"  {regime:<13} k={k:<3} {_plural(n, 'cell')}")
        return 0
    if args.engine == "ray":
        try:
            from measure.running.ray_engine import run_ray
        except ImportError as exc:
            return _fail(f"the Ray engine is not available ({exc}); Ray comes with the "
                         f"measure extra: {install_hint()}")
    try:  # a cache directory that is a file, read-only or full fails now, not after embedding
        check_cache_dir(default_cache_path())
    except OutputError as exc:
        return _fail(str(exc))
    try:  # the lock file keeps a second run off a busy store (exit 2)
        store = ResultStore(args.store, lock=True)
    except StoreError as exc:
        return _fail(str(exc))
    with store:
        try:
            if args.engine == "ray":
                from measure.running.ray_engine import RayEngineError
                try:
                    summary = run_ray(batch, store, address=args.address)
                except RayEngineError as exc:
                    return _fail(str(exc))
            else:
                summary = run_local(batch, store, workers=args.workers)
        except (StoreError, OutputError, EmbeddingCacheError) as exc:
            return _fail(str(exc))
    if summary.phases is not None:   # where the time went: every speed-up is a ratio of these
        print(summary.phases.report(), file=sys.stderr)
    print(f"planned {summary.planned}, skipped {summary.skipped}, done {summary.done}, "
          f"failed {summary.failed} in {summary.seconds:.0f} s; store {args.store}")
    return 1 if summary.failed else 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.seq2seq:
        try:
            run_seq2seq_bench(args.data_dir, n_texts=args.texts or 128, shapes=args.shapes,
                              batch_size=args.batch_size)
        except DataError as exc:
            return _fail(str(exc))
        return 0
    try:  # a bad --model fails now, not after a network timeout inside transformers
        check_model(args.model, "probe")
        check_cache_dir(default_cache_path())   # the model and its exports are written there
    except ConfigError as exc:
        return _fail(str(exc).replace("model = ", "--model "))
    except OutputError as exc:
        return _fail(str(exc))
    try:
        run_bench(args.model, args.data_dir, n_texts=args.texts or 2000, eval_cap=args.eval_cap,
                  train_cap=args.train_cap, rounds=args.rounds)
    except DataError as exc:
        return _fail(str(exc))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xlt-measure",
        description="Measure zero-shot cross-lingual transfer: train on source languages, "
                    "evaluate macro-F1 on every target, store the results.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a measurement batch described by a TOML config")
    p.add_argument("config", type=Path, help="batch config (TOML); see docs/measuring.md 'Batch configs'")
    p.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"results store (default {DEFAULT_STORE})")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="NLI data root (default $XLT_DATA_DIR, else ../shared/data/nli)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="where cells run: local worker processes, or a Ray cluster "
                        "(--address; Ray comes with the measure extra) (default local)")
    p.add_argument("--workers", type=_int_at_least(1), default=None,
                   help="local worker processes, >= 1 (default: CPUs for probe batches, 1 for "
                        "finetune/seq2seq)")
    p.add_argument("--address", default=None, help="Ray cluster address (with --engine ray)")
    p.add_argument("--dry-run", action="store_true", help="validate and list the cells, run nothing")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="summarise a results store")
    p.add_argument("--store", type=Path, default=DEFAULT_STORE,
                   help=f"results store to read (default {DEFAULT_STORE}); never written")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("export", help="export the results table to Parquet or CSV")
    p.add_argument("--store", type=Path, default=DEFAULT_STORE,
                   help=f"results store to read (default {DEFAULT_STORE}); never written")
    p.add_argument("--out", type=Path, required=True, help="output file (.parquet or .csv)")
    p.add_argument("--items", type=Path, default=None, metavar="DIR",
                   help="also write the per-item predictions (predictions.parquet and "
                        "item_sets.parquet) into DIR: what an item-level bootstrap reads")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bench", help="benchmark PyTorch vs ONNX Runtime encoding and F1 drift")
    p.add_argument("--seq2seq", action="store_true", help="benchmark mT5 rank classification")
    p.add_argument("--model", default="me5-small", help="encoder id or directory (default me5-small)")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--texts", type=_int_at_least(1), default=None,
                   help="texts to time (default 2000; with --seq2seq: pairs, default 128)")
    p.add_argument("--shapes", choices=["mt5-small", "tiny"], default="mt5-small",
                   help="with --seq2seq: shapes of the random mT5 (default mt5-small)")
    p.add_argument("--batch-size", type=_int_at_least(1), default=16,
                   help="with --seq2seq: pairs per batch, for generate() and rank alike (default 16)")
    p.add_argument("--eval-cap", type=_int_at_least(0), default=0,
                   help="cap on test pairs per drift target (default 0 = all 5,010)")
    p.add_argument("--train-cap", type=_int_at_least(0), default=0,
                   help="cap on the probe's English training pairs (default 0 = all 2,490)")
    p.add_argument("--rounds", type=_int_at_least(1), default=3,
                   help="interleaved timing rounds; each backend's best counts (default 3)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("languages", help="show the language registry, or resolve one code")
    p.add_argument("code", nargs="?", help="a dataset, ISO 639-1 or ISO 639-3 code")
    p.set_defaults(func=cmd_languages)

    p = sub.add_parser("data", help="list the NLI splits found in the data directory")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="NLI data root laid out as {dataset}/{language}/{split}.parquet (default "
                        "$XLT_DATA_DIR, else shared/data/nli beside the working directory or a "
                        "parent, else beside the checkout)")
    p.set_defaults(func=cmd_data)

    add_greedy_arguments(sub.add_parser(
        "greedy", help="greedy forward selection of source sets (oracle upper bound on the test targets)"))

    add_profile_arguments(sub.add_parser(
        "profile", help="profile a language in the model's own space from unlabelled text"))
    return parser


#: commands that embed, train or evaluate: they need the ``measure`` extra (torch, ...)
NEEDS_MEASURE_STACK = {"run", "bench", "greedy", "profile"}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in NEEDS_MEASURE_STACK:   # one line with the install command, no traceback
        problem = measure_stack_problem()
        if problem:
            return _fail(problem.replace("this command", f"xlt-measure {args.command}", 1))
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `xlt-measure data | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


if __name__ == "__main__":
    raise SystemExit(main())
