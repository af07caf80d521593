"""``xlt-predict``: fit, evaluate and query the transfer-performance predictor.

Exit codes: 0 success, 1 a runtime failure (missing or tampered model directory,
unreadable data), 2 a usage error (bad option, unknown model or language, malformed
--train-config). Errors go to stderr; results to stdout (``--json`` for machines).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from measure.knowledge.paths import models_subdir
from measure.knowledge.train_config import TrainConfig, TrainConfigError
from predictor.metaanalysis.cli import add_data_arguments, add_output_arguments

DEFAULT_PREDICTOR_HELP = "predictor/ in the models directory: $XLT_MODELS_DIR, else ./models or a parent's"


class UsageError(ValueError):
    """Bad user input detected after parsing (exit 2)."""


def parse_train_config(text: str) -> TrainConfig:
    """'en:2490,de:2490' -> a validated TrainConfig (argparse type: a bad one is a usage error
    naming the item and the fix, before anything is loaded)."""
    try:
        return TrainConfig.from_text(text)
    except TrainConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--train-config: ")) from None


def _codes(text: str) -> list[str]:
    codes = [c.strip() for c in text.split(",") if c.strip()]
    if not codes:
        raise argparse.ArgumentTypeError("expected comma-separated language codes, e.g. sw,ur")
    return codes


def _emit(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, default=float))


# -- commands ------------------------------------------------------------------------------
def _load_frame(args: argparse.Namespace):
    from predictor import dataset
    from predictor.models import BASELINES, LEARNED
    if not args.measurements and not args.include_published:
        raise UsageError("no training data: pass --measurements PATH and/or drop "
                         "--no-include-published")
    known = set(LEARNED) | set(BASELINES)
    unknown = sorted(set(args.candidates or ()) - known)
    if unknown:
        raise UsageError(f"unknown --candidates {unknown}; learners: {list(LEARNED)} "
                         f"(baselines {list(BASELINES)} always run)")
    return dataset.build_dataset(args.measurements or (), include_published=args.include_published,
                                 published_dir=args.published_dir)


def pool_choice(text: str) -> tuple[str, str]:
    design, sep, pool = text.partition("=")
    if not sep or design.count("|") != 1 or not pool:
        raise argparse.ArgumentTypeError(f"expected MODEL|METHOD=POOL (e.g. "
                                         f"'me5-small|probe=xnli_mt9k/train'), got {text!r}")
    return design, pool


def training_frame(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The fit's rows: one training pool per (model, method) (``--pool``, else the largest),
    and what was kept and excluded, for the card."""
    from predictor import dataset
    frame = _load_frame(args)
    try:
        kept, pools, dropped = dataset.single_pool(frame, dict(args.pool or []))
    except dataset.DataValidationError as exc:
        raise UsageError(str(exc)) from None
    if dropped:
        print(f"training pools: {pools}; {dropped} rows of other pools excluded (different "
              "designs are never pooled; choose with --pool MODEL|METHOD=POOL)", file=sys.stderr)
    return kept, {"pools": pools, "rows_other_pools_excluded": dropped}


def cmd_fit(args: argparse.Namespace) -> int:
    from predictor.card import card_text
    from predictor.selection import SelectionSettings
    from predictor.training import fit_predictor

    frame, pool_info = training_frame(args)
    settings = SelectionSettings(inner_logo_max=25 if args.inner_loto else 0,
                                 within_stage=bool(args.within_stage))
    print(f"training rows: {len(frame)} ({frame['origin'].value_counts().to_dict()}); "
          "running nested grouped CV ...", file=sys.stderr)
    card = fit_predictor(frame, args.out, candidates=args.candidates, alpha=args.alpha,
                         seed=args.seed, ablation=args.ablation, settings=settings,
                         sources={"measurements": [str(p) for p in args.measurements or []],
                                  "include_published": args.include_published, **pool_info},
                         log=(lambda m: None) if args.json else None)
    if args.json:
        _emit({k: card[k] for k in ("selected_model", "seen_target_model", "cv",
                                    "cv_by_dataset", "intervals", "ranking", "ablation",
                                    "model_sha256")} | {"out": str(args.out)})
        return 0
    print(card_text(card))
    print(f"saved to {args.out} (sha256 {card['model_sha256'][:16]}...)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.recompute:
        import tempfile

        from predictor.training import fit_predictor
        frame, _ = training_frame(args)
        with tempfile.TemporaryDirectory() as tmp:
            card = fit_predictor(frame, tmp, candidates=args.candidates, seed=args.seed,
                                 ablation=False, log=lambda m: None)
    else:
        from predictor import persist
        card = persist.read_card(args.predictor)
    if args.json:
        _emit({k: card.get(k) for k in ("selected_model", "seen_target_model", "cv",
                                        "cv_by_dataset", "ranking", "ablation", "intervals")})
        return 0
    from predictor.card import card_markdown, card_text
    print(card_markdown(card) if args.markdown else card_text(card))
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from predictor.serving import load_predictor
    p = load_predictor(args.predictor, profiles=args.profiles)
    res = p.predict_one(args.model, args.method, args.train_config, args.target)
    method = p.resolve_method(args.model, args.method)
    metric = next(m["metric"] for m in p.models if m["model"] == args.model and m["method"] == method)
    if args.json:
        _emit({"model": args.model, "method": method, "target": args.target,
               "train_config": args.train_config.as_dict(), "metric": metric,
               **{k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()}})
        return 0
    nominal = 1 - p.card["intervals"]["alpha"]
    basis = ("from this target's own measurements" if res["basis"] == "measured-target"
             else "target not measured: predicted from its features")
    print(f"{args.model}/{method} -> {args.target}: {res['prediction']:.1f} {metric} "
          f"[{res['lower']:.1f}, {res['upper']:.1f}] ({nominal:.0%} interval; basis "
          f"{res['basis']}: {basis}; pretraining: {res['pretraining']}; profile: "
          f"{'yes' if res['profile'] else 'none'})")
    if res["out_of_support"]:
        print(f"outside the training support, interval widened: {res['reason']}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from predictor.serving import load_predictor
    p = load_predictor(args.predictor, profiles=args.profiles)
    df = p.recommend(args.model, args.targets, args.pool, args.k, method=args.method,
                     objective=args.objective, n_per_language=args.n_per_language, top=args.top,
                     include_targets=args.include_targets,
                     **({} if args.max_combinations is None
                        else {"max_combinations": args.max_combinations}))
    a = df.attrs
    if args.json:
        _emit({**{k: a[k] for k in ("model", "method", "objective", "k", "n_per_language",
                                    "targets", "dropped_from_pool", "n_combinations",
                                    "noise_margin", "n_within_noise_of_best")},
               "ranking": [{"rank": int(r["rank"]), "sources": r["sources"],
                            "objective": round(r["objective"], 2),
                            "within_noise_of_best": bool(r["within_noise_of_best"]),
                            "basis": r["basis"], "out_of_support": bool(r["out_of_support"]),
                            "per_target": {t: {"prediction": round(r[t], 2),
                                               "lower": round(r[f"{t}_lower"], 2),
                                               "upper": round(r[f"{t}_upper"], 2)}
                                           for t in a["targets"]}}
                           for r in df.to_dict("records")]})
        return 0
    print(f"{a['model']}/{a['method']}: best {a['k']}-language source sets for "
          f"{','.join(a['targets'])} by {a['objective']} predicted score "
          f"({a['n_combinations']} sets, {a['n_per_language']} examples per language)")
    if a["dropped_from_pool"]:
        print(f"(targets removed from the pool: {','.join(a['dropped_from_pool'])}; "
              "--include-targets keeps them)")
    for r in df.to_dict("records"):
        per = "  ".join(f"{t} {r[t]:.1f} [{r[f'{t}_lower']:.1f}, {r[f'{t}_upper']:.1f}]"
                        for t in a["targets"])
        print(f"{r['rank']:>3}. {'+'.join(r['sources']):<30} {a['objective']} "
              f"{r['objective']:.1f}{' ~' if r['within_noise_of_best'] else '  '} {per}")
    if a["n_within_noise_of_best"] > 1:
        print(f"~ {a['n_within_noise_of_best']} of these sets are within the predictor's ranking "
              f"noise of the best ({a['noise_margin']:.2f} points, from held-out targets): "
              "their order is not reliable")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    """Answer every input line with one output line, in order (blank lines get an error line).

    A bad line never stops the batch: it gets ``{"id", "error"}`` and the exit code stays 0;
    only an unusable input/output file or predictor exits non-zero
    (:mod:`predictor.serving.batch` holds the per-line rules).
    """
    from predictor.serving import answer_batch, load_predictor
    t0 = time.perf_counter()
    try:
        if args.input == "-":
            data = sys.stdin.buffer.read()
        else:
            path = Path(args.input)
            if path.is_dir():
                raise UsageError(f"--input {path} is a directory, not a JSONL file")
            data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"--input {args.input}: no such file") from None
    except OSError as exc:
        raise UsageError(f"--input {args.input}: cannot read ({exc.strerror or exc})") from None
    if args.output != "-":
        out_path = Path(args.output)
        if out_path.is_dir():
            raise UsageError(f"--output {out_path} is a directory; give a file name")
        if not out_path.parent.is_dir():
            raise UsageError(f"--output {out_path}: directory {out_path.parent} does not exist")
    p = load_predictor(args.predictor, profiles=getattr(args, "profiles", None))
    answer = answer_batch(p, data)
    text = "".join(r + "\n" for r in answer.lines)
    if args.output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        try:
            out_path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--output {out_path}: cannot write ({exc.strerror or exc})") from None
    print(f"{len(answer.lines)} lines, {answer.n_errors} errors, "
          f"{time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """The meta-analysis report: :func:`predictor.metaanalysis.cli.run_report`."""
    from predictor.metaanalysis.cli import run_report
    command = "xlt-predict report " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["report"] \
        else "xlt-predict report"
    return run_report(args, command, frame=_load_frame(args))


# -- parser --------------------------------------------------------------------------------
def _add_data_options(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)
    p.add_argument("--candidates", type=_codes, default=None,
                   help="comma-separated learners for the nested CV (default: ridge,lasso,hgb); "
                        "the baselines mm_mean, mm_class_mean, target_mean always run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool", type=pool_choice, action="append", metavar="MODEL|METHOD=POOL",
                   help="fit/evaluate: the training pool of a design, e.g. "
                        "'me5-small|probe=xnli_mt9k/train' (default: its largest pool; other "
                        "pools are excluded, never pooled)")


def _add_predictor_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictor", "--model-dir", dest="predictor", default=None,
                   metavar="DIR", help="fitted predictor directory (skops file + model card; "
                                       f"default: {DEFAULT_PREDICTOR_HELP})")
    p.add_argument("--profiles", type=Path, default=None, metavar="DIR",
                   help="language profiles (xlt-measure profile --profiles DIR) read before "
                        "the predictor's own (models/profiles): a language DIR has uses DIR's "
                        "profile, any other keeps the shipped one; a target with none is "
                        "flagged")


def _add_fit_parser(sub: Any) -> None:
    p = sub.add_parser("fit", help="fit and save the predictor",
                       description="Deduplicate rows; nested grouped CV (unseen target, unseen "
                                   "target family, unseen config, random) against per-design "
                                   "baselines; per-group conformal intervals; ranking and "
                                   "feature-family ablation; refit on all rows; save (skops + "
                                   "card).")
    _add_data_options(p)
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output directory (default: models/predictor, found like --predictor)")
    p.add_argument("--alpha", type=float, default=0.1, help="interval miscoverage (default 0.1)")
    p.add_argument("--inner-loto", action="store_true",
                   help="inner CV of the unseen-target model: leave one target out (up to 25 "
                        "targets) instead of 4 grouped folds; steadier choices, ~3x slower")
    p.add_argument("--ablation", action=argparse.BooleanOptionalAction, default=True,
                   help="drop-one-feature-family ablation into the card (default: yes)")
    p.add_argument("--within-stage", action=argparse.BooleanOptionalAction, default=True,
                   help="let the nested CV add the within-target stage (trees on the "
                        "residuals centred per target) to the unseen-target model, per "
                        "design (default: yes; --no-within-stage: a purely linear model "
                        "when the grid is, and a faster fit)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fit)


def _add_evaluate_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="grouped cross-validation table",
                       description="Print the CV table of a fitted predictor (from its card), or "
                                   "recompute it on data with --recompute.")
    _add_predictor_option(p)
    p.add_argument("--recompute", action="store_true",
                   help="run the CV on the data options below instead of reading the card")
    _add_data_options(p)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--markdown", action="store_true",
                     help="the validation tables as Markdown (what docs/results.md quotes)")
    p.set_defaults(func=cmd_evaluate)


def _add_query_parser(sub: Any) -> None:
    p = sub.add_parser("query", help="predict one configuration")
    _add_predictor_option(p)
    p.add_argument("--model", required=True, help="multilingual model id, e.g. xlmr, me5-small")
    p.add_argument("--method", default=None, help="training method (default: the model's only one)")
    p.add_argument("--train-config", required=True, type=parse_train_config, metavar="LANG:N,...",
                   help="supervised languages and examples, e.g. en:2490,de:2490")
    p.add_argument("--target", required=True, help="target language code (ISO 639-1/3)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_query)


def _add_recommend_parser(sub: Any) -> None:
    p = sub.add_parser("recommend", help="best source sets for targets")
    _add_predictor_option(p)
    p.add_argument("--model", required=True,
                   help="multilingual model id the predictor knows, e.g. xlmr, me5-small")
    p.add_argument("--method", default=None,
                   help="training method (default: the model's only one)")
    p.add_argument("--targets", required=True, type=_codes, metavar="L1,L2",
                   help="target language codes (ISO 639-1/3), comma-separated")
    p.add_argument("--pool", required=True, type=_codes, metavar="L1,L2,...",
                   help="candidate source languages")
    p.add_argument("--k", required=True, type=int, help="languages per source set")
    p.add_argument("--objective", choices=["mean", "worst"], default="mean",
                   help="rank sets by the mean predicted score over the targets, or by the "
                        "worst target (default mean)")
    p.add_argument("--n-per-language", type=int, default=None, metavar="N",
                   help="examples per source language (default: typical for the model)")
    p.add_argument("--top", type=int, default=5, help="how many sets to list (default 5)")
    p.add_argument("--include-targets", action="store_true",
                   help="allow targets in the source sets (few-shot instead of zero-shot)")
    p.add_argument("--max-combinations", type=int, default=None,
                   help="refuse pools with more k-subsets than this (default: the predictor's "
                        "cap, predictor.serving.recommend.MAX_COMBINATIONS = 50,000)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_recommend)


def _add_batch_parser(sub: Any) -> None:
    p = sub.add_parser("batch", help="predict a JSONL file",
                       description='Each input line: {"id": ..., "model": "xlmr", "task": "xnli", '
                                   '"train_config": {"en": 10000}, "target": "as", "method": '
                                   'optional}. Output line N answers input line N: {"id", '
                                   '"prediction", "lower", "upper"} (plus "warning" for sizes '
                                   'far beyond the training data) or {"id", "error"}. Blank, '
                                   'non-UTF-8 or malformed lines get an error line, so positions '
                                   'are kept; a bad line never stops the batch (exit 0). Exit 2 '
                                   'only for an unusable --input/--output file.')
    _add_predictor_option(p)
    p.add_argument("--input", required=True, help="JSONL file, one request per line ('-' = stdin)")
    p.add_argument("--output", required=True,
                   help="JSONL file, one answer per input line ('-' = stdout); overwritten")
    p.set_defaults(func=cmd_batch)


def _add_report_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="meta-analysis report (Markdown + PNG figures)",
                       description="How does zero-shot F1 change as the number of supervised "
                                   "languages grows? Effects per doubling of k with grouped 95% "
                                   "CIs, per model, regime and resource group; correlations; "
                                   "scaling curves; the predictor's CV table.")
    _add_data_options(p)
    add_output_arguments(p)
    p.set_defaults(func=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xlt-predict",
        description="Predict zero-shot cross-lingual NLI performance from typology, the number "
                    "of supervised languages, data sizes and pretraining coverage.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_fit_parser, _add_evaluate_parser, _add_query_parser, _add_recommend_parser,
                _add_batch_parser, _add_report_parser):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "out", "unset") is None:
        args.out = models_subdir("predictor" if args.command == "fit" else "report")
    from predictor.dataset import DataValidationError
    from predictor.features import ProfileError
    from predictor.persist import ModelIntegrityError
    from predictor.serving import PredictionInputError
    try:
        if getattr(args, "predictor", "unset") is None:
            from predictor.serving import default_predictor_dir
            args.predictor = default_predictor_dir()
        return int(args.func(args) or 0)
    except (PredictionInputError, UsageError, ProfileError) as exc:
        print(f"xlt-predict {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ModelIntegrityError, DataValidationError, FileNotFoundError) as exc:
        print(f"xlt-predict {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `xlt-predict query ... | head`: the reader left, not an error
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
