"""``python -m predictor.metaanalysis``: the meta-analysis report, and the README section
printed from its summary::

    python -m predictor.metaanalysis report --measurements TABLE... [--out DIR]
    python -m predictor.metaanalysis --measurements TABLE... [--out DIR]        (the same)
    python -m predictor.metaanalysis readme-section models/report/summary.json

``xlt-predict report`` is the same report (same options, same output): it calls
:func:`run_report`. Exit codes as ``xlt-predict``: 0 success, 1 unreadable data or model
directory, 2 a usage error. Project imports are made inside the commands, so ``--help``
and ``xlt-predict``'s other commands do not load the analysis.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from measure.knowledge.paths import models_subdir
from predictor.metaanalysis.defaults import ITEM_REPS

PROG = "python -m predictor.metaanalysis"
COMMANDS = ("report", "readme-section")


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    """The report's own options: the predictor whose card it cites and where it writes."""
    p.add_argument("--predictor", "--model-dir", dest="predictor", default=None,
                   metavar="DIR", help="fitted predictor whose CV table to include, if present "
                                       "(default: predictor/ in the models directory: "
                                       "$XLT_MODELS_DIR, else ./models or a parent's)")
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default: models/report, found like --predictor)")
    p.add_argument("--items", nargs="+", action="extend", type=Path, metavar="DIR",
                   help="per-item predictions of the --measurements tables (xlt-measure "
                        "export --items DIR): every interval is widened for item sampling, "
                        "resampled jointly across translations (repeatable)")
    p.add_argument("--item-reps", type=_item_reps, default=ITEM_REPS, metavar="N",
                   help=f"item replicates with --items (default {ITEM_REPS}; each one reruns "
                        "the point estimates, about 15 s on the shipped tables)")
    p.add_argument("--item-sds-out", type=Path, default=None, metavar="FILE",
                   help="with --items: also save every estimate's item-sampling SD to FILE "
                        "(JSON, a few hundred kB), for --item-sds")
    p.add_argument("--item-sds", type=Path, default=None, metavar="FILE",
                   help="instead of --items: widen every interval by the SDs of FILE "
                        "(--item-sds-out of a report on re-measured tables of the same "
                        "designs), for tables measured without item predictions")


def _item_reps(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 3:
        raise argparse.ArgumentTypeError("at least 3 replicates (an SD needs them)")
    return n


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """Where the measured and published results come from (shared with xlt-predict fit)."""
    p.add_argument("--measurements", nargs="+", action="extend", type=Path, metavar="PATH",
                   help="own results: a results store (.sqlite) or exports (.parquet/.csv); "
                        "repeatable")
    p.add_argument("--include-published", action=argparse.BooleanOptionalAction, default=True,
                   help="add the SumEval 2022 XNLI results (XLM-R, T-ULRv6) (default: yes)")
    p.add_argument("--published-dir", type=Path, default=None,
                   help="directory holding sumeval2022/ (default: $XLT_PUBLISHED_DIR, else "
                        "shared/data/published beside the working directory or a parent)")


def _load_frame(args: argparse.Namespace) -> Any:
    from predictor import dataset
    return dataset.build_dataset(args.measurements or (), include_published=args.include_published,
                                 published_dir=args.published_dir)


def _signed(x: Any) -> str:
    return "nan" if x is None else f"{x:+.2f}"


def _print_headline(summary: dict) -> None:
    """One line per headline estimate and per published estimate."""
    f = _signed
    for e in summary["headline"]["macro_f1"] + summary["headline"]["kappa"]:
        print(f"{e['model']:<10} {e['pool']:<16} {e['regime']:<13} {e['metric']:<8} "
              f"{e['target_class']:<9} {f(e['slope'])} per doubling of k  95% CI "
              f"[{f(e['ci'][0])}, {f(e['ci'][1])}]  bootstrap [{f(e['boot_ci'][0])}, "
              f"{f(e['boot_ci'][1])}]  saturation k {e['saturation_k']}  "
              f"({e['n_targets']} targets)")
    for e in summary["published"]:
        print(f"{e['model']:<10} published {e['target_class']:<9} {f(e['slope_within'])} per "
              f"doubling of k  bootstrap [{f(e['boot_ci_low'])}, {f(e['boot_ci_high'])}]  "
              f"rho(k, config mean) {f(e['spearman_k_config_mean'])}")


def run_report(args: argparse.Namespace, command: str, frame: Any = None) -> int:
    """Build the report from parsed options (``frame``: the data rows, when the caller loaded
    them already) and print the headline, one line per estimate."""
    from predictor import persist
    from predictor.metaanalysis.report import build_report

    if args.out is None:
        args.out = models_subdir("report")
    if args.predictor is None:
        args.predictor = models_subdir("predictor")
    if frame is None:
        frame = _load_frame(args)
    card = None
    if args.predictor and Path(args.predictor).is_dir():
        card = persist.read_card(args.predictor)
    if getattr(args, "items", None) and not args.measurements:
        print("error: --items widens the intervals of --measurements tables: pass them too",
              file=sys.stderr)
        return 2
    for d in getattr(args, "items", None) or ():
        if not Path(d).is_dir():
            print(f"error: --items {d}: not a directory (write one with xlt-measure export "
                  "--store STORE --out TABLE --items DIR)", file=sys.stderr)
            return 2
    items, sds, sds_out = (getattr(args, "items", None) or (), getattr(args, "item_sds", None),
                           getattr(args, "item_sds_out", None))
    problem = _item_option_problem(args, items, sds, sds_out)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        summary = build_report(frame, args.out, card=card, command=command,
                               measurements=args.measurements or (), items=items,
                               item_reps=getattr(args, "item_reps", ITEM_REPS),
                               item_sds_out=sds_out, item_sds=sds,
                               log=lambda m: print(m, file=sys.stderr, flush=True))
    except (FileNotFoundError, ValueError) as exc:
        if not (items or sds):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_headline(summary)
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def _item_option_problem(args: argparse.Namespace, items: Any, sds: Path | None,
                         sds_out: Path | None) -> str | None:
    """What is wrong with the item options (None: nothing), before any work."""
    from predictor.metaanalysis.report import item_options_problem
    problem = item_options_problem(items, sds, sds_out)
    if problem:
        return problem
    if sds and not args.measurements:
        return "--item-sds widens the intervals of --measurements tables: pass them too"
    if sds and not Path(sds).is_file():
        return (f"--item-sds {sds}: no such file (write one with xlt-predict report "
                "--measurements TABLES --items DIRS --item-sds-out FILE)")
    if sds_out and Path(sds_out).is_dir():
        return f"--item-sds-out {sds_out} is a directory: name a file"
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="The meta-analysis report, and "
                                     "README's section printed from its summary.json.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("report", help="report.md, summary.json and figures (the default)",
                       description="How does zero-shot F1 change as the number of supervised "
                                   "languages grows? Effects per doubling of k with grouped "
                                   "95% CIs, per model, regime and target class; the designs; "
                                   "correlations; scaling curves.")
    add_data_arguments(p)
    add_output_arguments(p)
    p = sub.add_parser("readme-section", help="README's meta-analysis section from summary.json")
    p.add_argument("summary", type=Path, help="summary.json of a report (models/report/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    typed = list(sys.argv[1:] if argv is None else argv)
    given = typed
    if typed and typed[0] not in (*COMMANDS, "-h", "--help"):
        given = ["report", *typed]          # the report is the default command
    args = build_parser().parse_args(given)
    if args.command == "readme-section":
        from predictor.metaanalysis.answer import readme_section
        print(readme_section(json.loads(args.summary.read_text(encoding="utf-8"))), end="")
        return 0
    if not args.measurements and not args.include_published:
        print(f"{PROG}: error: no data: pass --measurements PATH and/or drop "
              "--no-include-published", file=sys.stderr)
        return 2
    from predictor.dataset import DataValidationError
    from predictor.persist import ModelIntegrityError
    try:
        return run_report(args, " ".join([PROG, *typed]))
    except (ModelIntegrityError, DataValidationError, FileNotFoundError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
