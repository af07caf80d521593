"""The meta-analysis report: files, designs in summary.json only when their tables exist,
and one answer everywhere (summary.json = report.md = README = Home = Scaling)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predictor.metaanalysis.summary import headline, headline_markdown
from predictor.dataset import build_dataset
from predictor.metaanalysis.report import build_report

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models" / "report" / "summary.json"


def _table(sets, seeds, design_rng, regime="fixed_total") -> pd.DataFrame:
    """Raw export rows: score = target base + 1 per doubling of k + set noise."""
    rows = []
    for s in sets:
        eff = design_rng.normal(0, 0.5)
        for seed in seeds:
            for t, base in [("sw", 50), ("ur", 48), ("aym", 33), ("bzd", 34), ("de", 58),
                            ("fr", 57), ("ru", 56)]:
                f1 = base + np.log2(len(s)) + eff + design_rng.normal(0, 0.2)
                d = int(round(f1 * 3))
                rows.append({"cell_hash": f"{'+'.join(s)}-{seed}", "model": "me5-small",
                             "method": "probe", "train_dataset": "xnli",
                             "train_split": "validation", "regime": regime,
                             "train_config": json.dumps({x: 2490 // len(s) for x in s}),
                             "k": len(s), "total_examples": 2490, "seed": seed,
                             "target_dataset": "americas_nli" if t in ("aym", "bzd") else "xnli",
                             "target_language": t, "target_split": "test", "macro_f1": f1,
                             "accuracy": f1, "n": 900,
                             "confusion": json.dumps([[d, 300 - d, 0], [0, d, 300 - d],
                                                      [300 - d, 0, d]]),
                             "train_seconds": 1.0, "eval_seconds": 1.0, "code_version": "t",
                             "config_json": "{}", "zero_shot": t not in s})
    return pd.DataFrame(rows)


LANGS = ["ar", "bg", "el", "en", "es", "hi", "th", "tr", "vi", "zh"]


def test_report_with_designs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grid = [(x,) for x in LANGS] + [tuple(sorted(rng.choice(LANGS, k, replace=False)))
                                    for k in (2, 3, 4, 6, 8) for _ in range(6)]
    gpath = tmp_path / "me5-small-probe.parquet"
    _table(sorted(set(grid)), (0, 1), rng).to_parquet(gpath)
    five = ["ar", "en", "es", "hi", "zh"]
    shap = [c for r in range(1, 6) for c in itertools.combinations(five, r)]
    spath = tmp_path / "me5-small-probe-shapley.parquet"
    _table(shap, (0,), rng).to_parquet(spath)
    frame = build_dataset([gpath], include_published=False)

    summary = build_report(frame, tmp_path / "report", measurements=[gpath], reps=60)
    assert "shapley" not in summary and "add_one" not in summary        # no table, no entry
    assert summary["member_gaps"] and summary["headline"]["macro_f1"]
    summary = build_report(frame, tmp_path / "report", measurements=[gpath, spath], reps=60)
    assert summary["designs"] == ["grid", "shapley"]
    assert summary["shapley"] and "add_one" not in summary and "best_vs_random" not in summary
    bases = [("ar",), ("en",), ("ar", "hi"), ("en", "zh")]
    ext = sorted({tuple(sorted(b + (x,))) for b in bases for x in ("es", "th") if x not in b})
    apath = tmp_path / "me5-small-probe-add-one.parquet"
    _table(sorted(set(bases) | set(ext)), (0, 1), rng).to_parquet(apath)
    summary = build_report(frame, tmp_path / "report", measurements=[gpath, apath, spath],
                           reps=60)
    assert summary["designs"] == ["add-one", "grid", "shapley"]
    allsizes = [a for a in summary["add_one"] if a["base_size"] is None
                and a["metric"] == "macro_f1" and a["regime"] == "fixed_total"]
    assert {a["target_class"] for a in allsizes} == {"absent", "xnli-low", "high"}
    assert all(a["gain"] > 0 for a in allsizes)          # log2(k) in the formula: adding helps
    assert all(r["add_one_gain"] is not None for r in summary["headline"]["macro_f1"])
    sh = summary["shapley"][0]
    assert sh["full_set"] == "+".join(five) and len(sh["languages"]) == 5
    est = {(e["metric"], e["target_class"]): e for e in summary["scaling"]}
    assert set(est) == {(m, c) for m in ("macro_f1", "kappa") for c in ("absent", "xnli-low", "high")}
    e = est[("macro_f1", "high")]
    assert e["boot_ci_low"] < 1.0 < e["boot_ci_high"]                    # the known slope
    text = (tmp_path / "report" / "report.md").read_text()
    assert text.startswith("# Does adding supervised languages help low-resource targets?")
    assert "**Answer, as measured**" in text.split("##")[0]               # the answer opens it
    assert headline_markdown(summary) in text
    for fig in summary["figures"]:
        assert (tmp_path / "report" / fig).stat().st_size > 10_000


def test_report_on_published_data(tmp_path: Path, published_dir: Path) -> None:
    frame = build_dataset([], include_published=True, published_dir=published_dir)
    summary = build_report(frame, tmp_path, reps=100)
    assert {(e["model"], e["target_class"]) for e in summary["published"]} == {
        (m, c) for m in ("xlmr", "tulrv6") for c in ("xnli-low", "high")}
    for e in summary["published"]:
        assert e["boot_ci_low"] <= e["slope_within"] <= e["boot_ci_high"]
        assert -1 <= e["spearman_k_config_mean"] <= 1
    text = (tmp_path / "report.md").read_text()
    assert "SumEval" in text and "Pearson" in text


def test_metaanalysis_command_line(tmp_path: Path, capsys) -> None:
    from predictor.metaanalysis.answer import readme_section
    from predictor.metaanalysis.cli import main
    summary = {"command": "xlt-predict report", "classes": {"rule": "a rule"}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert main(["readme-section", str(tmp_path / "summary.json")]) == 0
    out = capsys.readouterr().out
    assert out == readme_section(summary)
    assert "python -m predictor.metaanalysis readme-section" in out
    # the report is the default command; with no data at all it is a usage error
    assert main(["--no-include-published", "--out", str(tmp_path / "r")]) == 2
    assert "no data" in capsys.readouterr().err and not (tmp_path / "r").exists()


# -- one answer everywhere ---------------------------------------------------------------------
def _readme_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("### The meta-analysis")
    end = text.index("\n### ", start + 5)
    return text[start:end]


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped report")
def test_readme_report_and_summary_show_the_same_headline() -> None:
    summary = json.loads(SHIPPED.read_text())
    table = headline_markdown(summary)
    assert table and table in _readme_section()
    assert table in (REPO / "models" / "report" / "report.md").read_text()
    assert summary["command"] in _readme_section()
    # every signed number in README's section that looks like a slope is one of summary's
    nums = {f"{x:+.2f}" for r in headline(summary) for x in
            [r["slope"], *r["ci"], *r["boot_ci"], r["gap_best"], r["gap_mean"],
             r["add_one_gain"]] if x is not None}
    for found in re.findall(r"\*\*([+-]\d+\.\d\d)\*\*", _readme_section()):
        assert found in nums


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped report")
@pytest.mark.parametrize("page", ["Home.py", "pages/3_Scaling.py"])
def test_home_and_scaling_show_the_summary_headline(page: str, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("XLT_MODELS_DIR", str(REPO / "models"))
    at = AppTest.from_file(str(REPO / "app" / page), default_timeout=240)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    body = "\n".join(str(m.value) for m in at.markdown)
    assert headline_markdown(json.loads(SHIPPED.read_text())) in body
