"""Pure computations behind the Scaling and Transfer grid pages (no Streamlit).

Why separate: what a page draws (medians, the transfer matrix) lives in plain functions
that tests call directly with known inputs. The *estimates* of the effect of k (slopes,
CIs, saturation) are not computed here: the pages read them from the report's
``summary.json`` (``predictor.metaanalysis``), so the app and the report give one answer.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from predictor.metaanalysis.prepare import design_of

CELL_KEYS = ["regime", "target_group", "cell_hash", "k", "seed", "sources"]


def cell_points(rows: pd.DataFrame, adjust_targets: bool = True) -> pd.DataFrame:
    """One point per (training cell, target group): mean macro-F1 over the group's targets.

    Why per cell: each cell is one independent training run; averaging its targets
    within a group keeps a run from counting once per target language.

    Why adjust: with zero-shot rows only, the set of targets behind a point changes with
    k (a target that becomes a source drops out), so a raw group mean mixes the effect of
    k with *which* targets remain — e.g. at large k only the AmericasNLI languages are
    left among the low-resource targets, and the raw mean falls. With ``adjust_targets``
    each row's score is taken relative to its target's mean over all runs of the
    (regime, group), plus the group's mean target level: a within-target comparison,
    the same one the report's mixed model makes.
    """
    if rows.empty:
        return pd.DataFrame(columns=[*CELL_KEYS, "macro_f1", "targets"])
    if adjust_targets:
        rows = rows.copy()
        keys = ["regime", "target_group"]
        target_mean = rows.groupby([*keys, "target_language"])["macro_f1"].transform("mean")
        level = (rows.groupby([*keys, "target_language"])["macro_f1"].mean()
                 .groupby(level=[0, 1]).mean().rename("level").reset_index())
        rows = rows.merge(level, on=keys, how="left")
        rows["macro_f1"] = rows["macro_f1"] - target_mean.to_numpy() + rows["level"]
    return (rows.groupby(CELL_KEYS, as_index=False)
            .agg(macro_f1=("macro_f1", "mean"), targets=("target_language", "nunique")))


def k_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Median and interquartile range of the points per (regime, group, k)."""
    if points.empty:
        return pd.DataFrame(columns=["regime", "target_group", "k", "median", "q25", "q75", "n"])
    g = points.groupby(["regime", "target_group", "k"])["macro_f1"]
    return pd.DataFrame({"median": g.median(), "q25": g.quantile(0.25), "q75": g.quantile(0.75),
                         "n": g.size()}).reset_index()


def transfer_matrix(rows: pd.DataFrame) -> pd.DataFrame:
    """Single-source transfer: mean macro-F1 (over seeds and regimes) per (source, target).

    ``rows`` must already be filtered to one model/method/pool; only k == 1 cells are
    used. Columns: source, target, macro_f1, sd, runs, zero_shot.
    """
    single = rows[rows["k"] == 1]
    if single.empty:
        return pd.DataFrame(columns=["source", "target", "macro_f1", "sd", "runs", "zero_shot"])
    g = single.groupby(["source_language", "target_language"])["macro_f1"]
    out = pd.DataFrame({"macro_f1": g.mean(), "sd": g.std(ddof=1).fillna(0.0),
                        "runs": g.size()}).reset_index()
    out = out.rename(columns={"source_language": "source", "target_language": "target"})
    out["zero_shot"] = out["source"] != out["target"]
    return out


def design_cells(directory) -> dict[str, set[str]]:
    """Cell hashes per measurement design (``predictor.metaanalysis.prepare.design_of``).

    The measured tables of one pool can hold several designs (the random-set grid, add-one,
    Shapley, greedy); the scaling chart draws the grid only, as the report estimates it.
    """
    out: dict[str, set[str]] = {}
    directory = Path(directory)
    if not directory.is_dir():
        return out
    for path in sorted([*directory.glob("*.parquet"), *directory.glob("*.csv")]):
        try:
            col = (pd.read_parquet(path, columns=["cell_hash"]) if path.suffix == ".parquet"
                   else pd.read_csv(path, usecols=["cell_hash"]))["cell_hash"]
        except Exception:  # noqa: BLE001 - unreadable files are reported by data.measurements
            continue
        out.setdefault(design_of(path), set()).update(col.astype(str))
    return out


def best_sources(summary: dict | None, mm: tuple[str, str], pool: str | None) -> dict[str, str]:
    """Target → its best single source language, as the report found it (macro-F1 singles
    of the chosen model, method and pool; every regime and class merged)."""
    out: dict[str, str] = {}
    for e in _grid_estimates(summary, mm, pool):
        out.update((e.get("slope_given_contains_best") or {}).get("best_sources") or {})
    return out


def _grid_estimates(summary: dict | None, mm: tuple[str, str], pool: str | None) -> list[dict]:
    """The report's macro-F1 scaling estimates of the random-set grid for one model, method
    and pool: what the Scaling page's toggle and interval chart read."""
    return [e for e in (summary or {}).get("scaling", [])
            if (e.get("model"), e.get("method")) == tuple(mm) and e.get("pool") == pool
            and e.get("metric") == "macro_f1" and e.get("design", "grid") == "grid"]


def holds_best_source(rows: pd.DataFrame, best: dict[str, str]) -> pd.Series:
    """Whether each row's source set holds its target's best single source (False where the
    target has none on record)."""
    return pd.Series([best.get(t) in str(s).split("+") if t in best else False
                      for t, s in zip(rows["target_language"], rows["sources"])],
                     index=rows.index, dtype=bool)


def k_mean_intervals(summary: dict | None, mm: tuple[str, str], pool: str | None,
                     regimes: list[str]) -> pd.DataFrame:
    """The report's mean per k with its 95% CI per (regime, class): the curve's intervals."""
    recs = [{"regime": e["regime"], "target_class": e["target_class"], **p}
            for e in _grid_estimates(summary, mm, pool) if e.get("regime") in regimes
            for p in e.get("per_k_mean") or []]
    return pd.DataFrame(recs, columns=["regime", "target_class", "k", "mean", "ci_low",
                                       "ci_high"])
