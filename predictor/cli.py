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


def language_arg(text: str) -> str:
    """A language by code or by name ('Welsh' -> 'cy'; argparse type: an unknown one is a
    usage error naming close names, :func:`predictor.serving.wording.language_code`)."""
    from measure.knowledge.languages import UnknownLanguageError
    from predictor.serving.wording import language_code
    try:
        return language_code(text)
    except UnknownLanguageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _languages(text: str) -> list[str]:
    """Comma-separated languages, each a code or a name (:func:`language_arg`)."""
    return [language_arg(c) for c in _codes(text)]


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


def split_choice(text: str) -> tuple[str, str]:
    """'americas_nli=test/B-of-2' -> ('americas_nli', 'test/B-of-2')."""
    ds, sep, split = text.partition("=")
    if not sep or not ds or not split:
        raise argparse.ArgumentTypeError(f"expected DATASET=SPLIT (e.g. "
                                         f"'americas_nli=test/B-of-2'), got {text!r}")
    return ds, split


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
        frame, splits = dataset.one_split(frame, dict(getattr(args, "target_split", None) or []))
        kept, pools, dropped = dataset.single_pool(frame, dict(args.pool or []))
    except dataset.DataValidationError as exc:
        raise UsageError(str(exc)) from None
    if dropped:
        print(f"training pools: {pools}; {dropped} rows of other pools excluded (different "
              "designs are never pooled; choose with --pool MODEL|METHOD=POOL)", file=sys.stderr)
    return kept, {"pools": pools, "rows_other_pools_excluded": dropped,
                  **({"target_splits": splits} if splits else {})}


def cmd_fit(args: argparse.Namespace) -> int:
    from predictor.card import card_text
    from predictor.persist import signing_key
    from predictor.selection import SelectionSettings
    from predictor.training import fit_predictor

    signing_key()  # an empty $XLT_MODEL_KEY fails now, not after the fit
    frame, pool_info = training_frame(args)
    settings = SelectionSettings(inner_logo_max=25 if args.inner_loto else 0,
                                 within_stage=bool(args.within_stage),
                                 shifted_profiles_dir=(str(args.calibrate_shifted)
                                                       if args.calibrate_shifted else None))
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
               "interval_level": round(1 - p.card["intervals"]["alpha"], 4),
               **{k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()}})
        return 0
    from predictor.serving.wording import query_text
    print("\n".join(query_text(args.model, method, args.target, metric, res,
                               1 - p.card["intervals"]["alpha"])))
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from predictor.serving import load_predictor
    p = load_predictor(args.predictor, profiles=args.profiles)
    df = p.recommend(args.model, args.targets, args.pool, args.k, method=args.method,
                     objective=args.objective, n_per_language=args.n_per_language, top=args.top,
                     include_targets=args.include_targets,
                     **({} if args.max_combinations is None
                        else {"max_combinations": args.max_combinations}))
    from predictor.serving.answers import ranked_details, ranking_json
    if args.json:
        _emit(ranking_json(p, df))
        return 0
    from predictor.serving.wording import recommend_text
    print("\n".join(recommend_text(df, ranked_details(p, df),
                                   1 - p.card["intervals"]["alpha"])))
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    """Answer every input line with one output line, in order (blank lines get an error line).

    A bad line never stops the batch: it gets ``{"id", "error"}`` and the exit code stays 0;
    only an unusable input/output file or predictor exits non-zero
    (:mod:`predictor.serving.batch` holds the per-line rules).
    """
    from predictor.serving import answer_batch, load_predictor
    from predictor.serving.batch import (BatchFileError, output_target, read_input,
                                         write_output)
    t0 = time.perf_counter()
    try:
        out_path = output_target(args.output, args.input)   # before stdin is read
        data = read_input(args.input)
    except BatchFileError as exc:
        raise UsageError(str(exc)) from None
    p = load_predictor(args.predictor, profiles=getattr(args, "profiles", None))
    answer = answer_batch(p, data)
    text = "".join(r + "\n" for r in answer.lines)
    if out_path is None:
        flush_stdout(text)
    else:
        write_output(out_path, text)      # OutputError (exit 1): the previous file is intact
    print(f"{len(answer.lines)} lines, {answer.n_errors} errors, "
          f"{time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The JSON HTTP API (:mod:`predictor.serving.http`): the address is bound before the
    predictor loads (a port in use fails at once), a non-loopback address is warned about,
    and the process serves until Ctrl-C."""
    try:
        from predictor.serving.http import (BindError, bind_socket, create_app, is_loopback,
                                            run_server, url_of)
    except ImportError as exc:
        raise UsageError(f"serve needs FastAPI and uvicorn ({exc.name} is not installed): "
                         "reinstall xlt from its checkout (`pip install .`), or `pip install "
                         "fastapi uvicorn`") from None
    from predictor.serving import default_predictor_dir, load_predictor
    for name, value in (("--max-items", args.max_items), ("--max-body-kb", args.max_body_kb)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    directory = (args.models_dir / "predictor" if args.models_dir is not None
                 else args.serve_predictor or default_predictor_dir())
    try:
        sock = bind_socket(args.host, args.port)
    except BindError as exc:
        raise UsageError(str(exc)) from None
    t0 = time.perf_counter()
    p = load_predictor(directory, profiles=args.profiles)
    app = create_app(p, max_body_bytes=args.max_body_kb * 1024, max_items=args.max_items,
                     source=str(directory))
    if not is_loopback(sock):
        print(f"xlt-predict serve: warning: listening on {url_of(sock)}, reachable from other "
              "machines; the API has no authentication or TLS (put a proxy that has them in "
              "front, or keep the default --host 127.0.0.1)", file=sys.stderr)
    print(f"xlt-predict serve: {directory} loaded in {time.perf_counter() - t0:.1f} s; "
          f"listening on {url_of(sock)} (API docs at /docs; Ctrl-C stops)", file=sys.stderr,
          flush=True)
    run_server(app, sock)
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
                   help="language profiles (xlt-measure profile --profiles DIR) read beside "
                        "the predictor's own (models/profiles): an unmeasured target DIR has "
                        "a profile for uses it, any other keeps the shipped one; a target "
                        "with none is flagged (default: your profiles directory, "
                        "$XLT_PROFILES_DIR else the per-user data directory, where "
                        "xlt-measure profile writes, when it exists)")


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
    p.add_argument("--calibrate-shifted", type=Path, default=None, metavar="DIR",
                   help="profiles of the training targets from a shifted source (python -m "
                        "measure.profile build-shipped --pairs-source validation): each held-out "
                        "target is also predicted with these, and the intervals are calibrated "
                        "on both residual sets")
    p.add_argument("--target-split", type=split_choice, action="append",
                   metavar="DATASET=SPLIT",
                   help="the split a target dataset's training rows are scored on, e.g. "
                        "'americas_nli=test/B-of-2' (default: the whole split; a part is "
                        "never mixed with it)")
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
    p.add_argument("--target", required=True, type=language_arg,
                   help="target language: a code (ISO 639-1/3) or a name, e.g. sw or Swahili")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_query)


def _add_recommend_parser(sub: Any) -> None:
    p = sub.add_parser("recommend", help="best source sets for targets")
    _add_predictor_option(p)
    p.add_argument("--model", required=True,
                   help="multilingual model id the predictor knows, e.g. xlmr, me5-small")
    p.add_argument("--method", default=None,
                   help="training method (default: the model's only one)")
    p.add_argument("--targets", required=True, type=_languages, metavar="L1,L2",
                   help="target languages, comma-separated: codes (ISO 639-1/3) or names")
    p.add_argument("--pool", required=True, type=_languages, metavar="L1,L2,...",
                   help="candidate source languages: codes or names, comma-separated")
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
                                   'for an unusable --input/--output file (checked before any '
                                   'work), 1 when the answers cannot be written (a full disk: '
                                   'the previous --output file is left intact).')
    _add_predictor_option(p)
    p.add_argument("--input", required=True, help="JSONL file, one request per line ('-' = stdin)")
    p.add_argument("--output", required=True,
                   help="JSONL file, one answer per input line ('-' = stdout); replaced "
                        "atomically once every line is answered; never the --input file")
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


def _add_serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="a JSON HTTP API (the predictor loaded once)",
                       description="Serve the predictor over HTTP: POST /predict (one request "
                                   "object or a list, batch's fields and per-item errors), POST "
                                   "/recommend, GET /languages, /model, /health; OpenAPI docs at "
                                   "/docs. Listens on 127.0.0.1 unless --host says otherwise.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; another "
                        "address is reachable from the network, with no authentication)")
    p.add_argument("--port", type=int, default=8600, help="port (default 8600; 0: a free one)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--models-dir", type=Path, default=None, metavar="DIR",
                       help="a models directory (its predictor/ and profiles/)")
    where.add_argument("--predictor", dest="serve_predictor", type=Path, default=None,
                       metavar="DIR", help=f"a fitted predictor directory (default: "
                                           f"{DEFAULT_PREDICTOR_HELP})")
    p.add_argument("--profiles", type=Path, default=None, metavar="DIR",
                   help="language profiles read before the predictor's own (as for query)")
    p.add_argument("--max-items", type=int, default=1000, metavar="N",
                   help="most request objects in one POST /predict (default 1000)")
    p.add_argument("--max-body-kb", type=int, default=1024, metavar="KB",
                   help="largest request body in KiB (default 1024)")
    p.set_defaults(func=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xlt-predict",
        description="Predict zero-shot cross-lingual NLI performance from typology, the number "
                    "of supervised languages, data sizes and pretraining coverage.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_fit_parser, _add_evaluate_parser, _add_query_parser, _add_recommend_parser,
                _add_batch_parser, _add_report_parser, _add_serve_parser):
        add(sub)
    return parser


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null: what is still buffered cannot fail again at exit."""
    import os
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):   # no real file descriptor (a test's captured stdout)
        pass


class GuardedStdout:
    """``sys.stdout`` while a command runs: a write that fails (a full device, ENOSPC) is
    one OutputError line naming standard output (exit 1), wherever the command printed;
    a closed pipe stays a BrokenPipeError (exit 0)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def write(self, text: str) -> int:
        return self._guard(self.stream.write, text)

    def flush(self) -> None:
        self._guard(self.stream.flush)

    @staticmethod
    def _guard(call: Any, *a: Any) -> Any:
        from measure.outputs import OutputError
        try:
            return call(*a)
        except BrokenPipeError:
            raise
        except OSError as exc:
            _stdout_to_devnull()
            raise OutputError(f"cannot write to standard output ({exc.strerror or exc}): free "
                              "space, or write to a file (batch: --output FILE)") from None


def flush_stdout(text: str = "") -> None:
    """Write ``text`` to stdout and flush it now (failures: :class:`GuardedStdout`)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def _input_problem(path: Path) -> str | None:
    """Why a ``--measurements`` path cannot be read as one (None: it can, or it is missing,
    which the data layer reports): a FIFO would block the read forever."""
    import stat
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or (stat.S_ISDIR(mode) and path.suffix == ".parquet"):
        return None
    what = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, socket or device)"
    return (f"is {what}: pass a results store (.sqlite) or an export from "
            "`xlt-measure export` (.parquet/.csv)")


def check_paths(args: argparse.Namespace) -> None:
    """Paths on the command line that cannot work, refused (UsageError, exit 2) before the
    predictor or the data loads: a ``--profiles`` that is not a directory, a
    ``--measurements`` FIFO or directory, an ``--out`` (fit, report) that is a file or is
    not writable."""
    from measure.outputs import OutputError, check_writable_dir
    from predictor.features.profiles import profiles_dir_problem
    if getattr(args, "profiles", None) is not None:
        problem = profiles_dir_problem(args.profiles)
        if problem:
            raise UsageError(problem)
    for path in getattr(args, "measurements", None) or ():
        problem = _input_problem(Path(path))
        if problem:
            raise UsageError(f"--measurements {path} {problem}")
    if args.command in ("fit", "report") and getattr(args, "out", None) is not None:
        try:
            check_writable_dir(args.out, "--out directory", "pass --out DIR, a writable "
                               "directory")
        except OutputError as exc:
            raise UsageError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "out", "unset") is None:
        args.out = models_subdir("predictor" if args.command == "fit" else "report")
    from measure.outputs import OutputError
    from predictor.dataset import DataValidationError
    from predictor.features import ProfileError
    from predictor.persist import ModelIntegrityError
    from predictor.serving import PredictionInputError
    real_stdout, sys.stdout = sys.stdout, GuardedStdout(sys.stdout)
    try:
        if getattr(args, "predictor", "unset") is None:
            from predictor.serving import default_predictor_dir
            args.predictor = default_predictor_dir()
        check_paths(args)                 # before any long work
        if getattr(args, "profiles", "unset") is None and args.command != "evaluate":
            from predictor.serving import default_profiles_dir
            args.profiles = default_profiles_dir()
        rc = int(args.func(args) or 0)
        flush_stdout()                    # a full device fails here, not at exit
        return rc
    except (PredictionInputError, UsageError, ProfileError) as exc:
        print(f"xlt-predict {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ModelIntegrityError, DataValidationError, FileNotFoundError, OutputError) as exc:
        print(f"xlt-predict {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `xlt-predict query ... | head`: the reader left, not an error
        _stdout_to_devnull()
        return 0
    except OSError as exc:   # unreadable or vanished files: one line, not a traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"xlt-predict {args.command}: error: {exc.strerror or exc}{where} (check the "
              "path and its permissions)", file=sys.stderr)
        return 1
    finally:
        sys.stdout = real_stdout


if __name__ == "__main__":
    raise SystemExit(main())
