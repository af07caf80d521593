"""Reference outputs of the shipped predictor: predictions through every entry point.

Why: a restructure must not move a single prediction. This script asks the shipped
``models/`` the same questions through the Python API, the ``xlt-predict`` CLI (query,
recommend, batch, evaluate) and the app's services, and writes every answer to one JSON
file. ``tests/test_reference_outputs.py`` asks again and compares (numbers to 1e-9, text
exactly). Regenerate it only when a change is *meant* to move predictions (a refit),
and say so in the commit:

    python tests/reference/make_reference.py --out tests/reference/reference.json \
        --report-out tests/reference/reference_report.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"

XNLI = ["ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"]
AMERICAS = ["aym", "bzd", "cni", "gn", "hch", "nah", "oto", "quy", "shp", "tar"]
# measured, unmeasured registry, lang2vec-only, absent from pretraining, unknown coverage
TARGETS = ["sw", "en", "ur", "th", "aym", "quy", "gn", "shp", "yo", "eu", "cy", "am", "hr",
           "zu", "kk", "fi", "swh", "eng", "cym"]
ME5_CONFIGS = [{"en": 2490}, {"de": 2490}, {"sw": 2490}, {"en": 1245, "de": 1245},
               {"en": 2490, "ru": 2490, "zh": 2490}, {"hi": 50}, {"en": 830, "es": 830, "fr": 830},
               {lang: 2490 for lang in XNLI[:8]}, {lang: 166 for lang in XNLI},
               {"en": 2490, "quy": 500}, {"ar": 100000}]
BIG_CONFIGS = [{"en": 100000}, {"en": 100000, "hi": 10000, "de": 10000, "fr": 10000, "es": 10000},
               {"en": 10000, "hi": 1000}, {lang: 10000 for lang in XNLI[:10]},
               {"en": 50000, "sw": 5000, "ur": 5000, "hi": 5000, "ar": 5000, "zh": 5000}]


def _plain(v: Any) -> Any:
    """JSON-safe: numpy scalars/arrays, NaN as the string 'nan'."""
    try:
        import numpy as np
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, np.ndarray):
            v = v.tolist()
    except ImportError:
        pass
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _frame(df: Any) -> list[dict[str, Any]] | None:
    """A frame's records; None stays None (e.g. contributions of a non-linear model)."""
    return None if df is None else _plain(df.to_dict("records"))


def _cli(main: Any, argv: list[str], tmp: Path | None = None) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    shown = [a.replace(str(tmp), "<tmp>") if tmp else a for a in argv]
    return {"argv": shown, "rc": rc, "stdout": out.getvalue()}


def predictor_rows() -> list[dict[str, Any]]:
    rows = []
    for cfg in ME5_CONFIGS:
        for t in TARGETS:
            rows.append({"model": "me5-small", "method": "probe", "train_config": cfg, "target": t})
    for model in ("xlmr", "tulrv6"):
        for cfg in BIG_CONFIGS:
            for t in TARGETS[:12]:
                rows.append({"model": model, "method": "finetune", "train_config": cfg,
                             "target": t})
    return rows


BAD_RECORDS = [
    {"model": "nope", "train_config": {"en": 1}, "target": "sw"},
    {"model": "xlmr", "train_config": {"en": 0}, "target": "sw"},
    {"model": "xlmr", "train_config": {"xx-not": 5}, "target": "sw"},
    {"model": "xlmr", "train_config": {"en": 5}, "target": "notalanguage"},
    {"model": "xlmr", "train_config": {"en": -5}, "target": "sw"},
    {"model": "xlmr", "task": "pos", "train_config": {"en": 5}, "target": "sw"},
    {"model": "me5-small", "method": "finetune", "train_config": {"en": 5}, "target": "sw"},
    {"model": "xlmr", "train_config": "en:5", "target": "sw"},
    {"train_config": {"en": 5}, "target": "sw"},
    ["not", "an", "object"],
]

RECOMMEND = [
    dict(model="me5-small", targets=["quy", "aym"], pool=XNLI, k=2),
    dict(model="me5-small", targets=["sw", "ur"], pool=XNLI, k=3, objective="worst"),
    dict(model="me5-small", targets=["yo"], pool=XNLI[:9], k=1, top=10),
    dict(model="me5-small", targets=["eu", "cy"], pool=XNLI[:10], k=4, n_per_language=500),
    dict(model="xlmr", targets=["sw", "ur"], pool=["en", "de", "fr", "es", "ru", "zh", "ar", "hi",
                                                     "tr"], k=3),
    dict(model="tulrv6", targets=["hi"], pool=XNLI, k=5, include_targets=True),
    dict(model="xlmr", targets=["quy", "am"], pool=XNLI[:8], k=5, objective="worst"),
]


def api_outputs() -> dict[str, Any]:
    from predictor.serving import load_predictor
    p = load_predictor(MODELS / "predictor")
    rows = predictor_rows()
    out: dict[str, Any] = {"rows": rows, "predict": _frame(p.predict(rows))}
    out["predict_records"] = _plain(p.predict_records(rows[:40] + BAD_RECORDS))
    out["predict_one"] = [_plain(p.predict_one(r["model"], r["method"], r["train_config"],
                                               r["target"])) for r in rows[::23]]
    out["recommend"] = []
    for kw in RECOMMEND:
        df = p.recommend(**kw)
        out["recommend"].append({"kwargs": kw, "rows": _frame(df),
                                 "attrs": _plain(dict(df.attrs))})
    fm = p.feature_model()
    X = p.features.transform(rows[:60])
    out["feature_model"] = {"predict": _plain(fm.predict(X)),
                            "contributions": _plain(fm.contributions(X)),
                            "within_points": _plain(fm.within_points(X))}
    return out


def cli_outputs(tmp: Path) -> dict[str, Any]:
    from predictor.cli import main
    runs = [["evaluate", "--markdown"], ["evaluate"], ["evaluate", "--json"]]
    for t in ("sw", "quy", "yo", "en", "cy"):
        runs.append(["query", "--model", "me5-small", "--train-config", "en:2490,de:2490",
                     "--target", t, "--json"])
        runs.append(["query", "--model", "xlmr", "--train-config",
                     "en:100000,hi:10000,de:10000,fr:10000,es:10000", "--target", t])
    runs.append(["recommend", "--model", "xlmr", "--targets", "sw,ur", "--k", "3", "--pool",
                 "en,de,fr,es,ru,zh,ar,hi,tr"])
    runs.append(["recommend", "--model", "me5-small", "--targets", "quy,aym", "--k", "2",
                 "--pool", ",".join(XNLI), "--json"])
    src = tmp / "requests.jsonl"
    lines = [json.dumps({"id": i, **r}) for i, r in enumerate(predictor_rows()[::7])]
    lines += [json.dumps({"id": "bad", **b}) if isinstance(b, dict) else json.dumps(b)
              for b in BAD_RECORDS]
    lines += ["", "{not json", json.dumps({"id": "dup", "model": "xlmr",
                                           "train_config": {"en": 5, "eng": 5}, "target": "sw"}),
              json.dumps({"id": "huge", "model": "xlmr", "train_config": {"en": 5_000_000},
                          "target": "sw"})]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    dst = tmp / "answers.jsonl"
    batch = _cli(main, ["batch", "--input", str(src), "--output", str(dst)], tmp)
    batch["output"] = dst.read_text(encoding="utf-8")
    return {"runs": [_cli(main, r) for r in runs], "batch": batch}


def app_outputs() -> dict[str, Any]:
    from app.services import PredictorService
    from predictor.serving import load_predictor
    svc = PredictorService(load_predictor(MODELS / "predictor"), MODELS / "predictor")
    me5 = next(c for c in svc.models if c.model == "me5-small")
    xlmr = next(c for c in svc.models if c.model == "xlmr")
    out: dict[str, Any] = {"models": [c.label for c in svc.models]}
    pred, errs = svc.predict(me5, {"en": 2490, "de": 2490}, ["sw", "quy", "yo", "aym", "en"])
    out["predict"] = {"frame": _frame(pred), "errors": errs}
    pred, errs = svc.predict(xlmr, {"en": 100000, "hi": 10000}, ["sw", "am", "quy"])
    out["predict_xlmr"] = {"frame": _frame(pred), "errors": errs}
    out["gains"] = _frame(svc.marginal_gains(me5, {"en": 2490}, ["sw", "quy"],
                                             XNLI, 2490))
    out["recommend_k"] = _frame(svc.recommend(me5, ["quy", "aym"], XNLI, k=2))
    out["recommend_total"] = _frame(svc.recommend(me5, ["sw"], XNLI[:8],
                                                  total_examples=4980, k_max=3))
    out["explain"] = _frame(svc.explain_sets(me5, [{"en": 2490}, {"de": 2490, "fr": 2490}],
                                             ["sw", "quy"]))
    out["contributions"] = _frame(svc.contributions(
        [{"model": "me5-small", "method": "probe", "train_config": {"en": 2490}, "target": t}
         for t in ("sw", "quy", "yo")]))
    out["partial_dependence"] = _frame(svc.partial_dependence(
        [{"model": "me5-small", "method": "probe", "train_config": {"en": 2490, "de": 2490},
          "target": t} for t in ("sw", "quy", "aym", "ur")], "k"))
    out["coverage_text"] = svc.coverage_text
    out["cv_table"] = _frame(svc.cv_table())
    return out


REPORT_TABLES = ["me5-small-probe.parquet", "me5-small-probe-add-one.parquet",
                 "me5-small-probe-shapley.parquet", "me5-small-probe-greedy.parquet",
                 "me5-small-probe-dilution.parquet", "me5-small-probe-few-shot.parquet",
                 "me5-small-probe-dilution-centred.parquet",
                 "me5-small-probe-few-shot-centred.parquet",
                 "me5-small-probe-add-one-centred.parquet"]


#: the item-sampling SDs the shipped report is widened with (README's report command)
ITEM_SDS = MODELS / "report" / "item_sds.json"


def report_outputs() -> dict[str, Any]:
    """The meta-analysis (``xlt-predict report`` on the nine shipped tables, widened by the
    shipped item SDs, as README runs it): summary.json and report.md, with the output
    directory written as <out>."""
    from predictor.cli import main
    with tempfile.TemporaryDirectory() as tmp:
        tables = [str(MODELS / "measurements" / t) for t in REPORT_TABLES]
        run = _cli(main, ["report", "--measurements", *tables, "--predictor",
                          str(MODELS / "predictor"), "--item-sds", str(ITEM_SDS),
                          "--out", tmp], Path(tmp))
        text = (Path(tmp) / "report.md").read_text(encoding="utf-8")
        summary = (Path(tmp) / "summary.json").read_text(encoding="utf-8")
        clean = [(s.replace(tmp, "<out>").replace(str(MODELS), "<models>"))
                 for s in (run["stdout"], text, summary)]
    return {"rc": run["rc"], "stdout": clean[0], "report_md": clean[1],
            "summary": json.loads(clean[2])}


def build() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return {"api": api_outputs(), "cli": cli_outputs(Path(tmp)), "app": app_outputs()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="the predictions' JSON file")
    ap.add_argument("--report-out", type=Path, default=None,
                    help="also the meta-analysis report's JSON file (~45 s)")
    args = ap.parse_args(argv)
    if args.report_out is not None:
        args.report_out.write_text(json.dumps(report_outputs(), indent=1, sort_keys=True,
                                              ensure_ascii=False) + "\n", encoding="utf-8")
    ref = build()
    args.out.write_text(json.dumps(ref, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    n = len(ref["api"]["predict"]) + len(ref["api"]["predict_records"])
    print(f"wrote {args.out}: {n} API predictions, {len(ref['cli']['runs'])} CLI runs, "
          f"batch of {ref['cli']['batch']['output'].count(chr(10))} lines", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
