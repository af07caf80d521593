"""Nested cross-validation: the spec per system chosen on the outer training rows only.

Every choice -- learner family, alpha, base, scope, the within-target stage -- is made by
an *inner* grouped CV on the outer training rows only (same grouping as the outer
protocol), so the outer numbers are not the ones the choice was made on. Features are
fitted (imputation values, one-hot categories; no scores) on the outer training rows and
cached per fold. The shipped model's specs are chosen by the same inner CV on all rows
(:func:`select_spec`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from predictor.features import TransferFeatures
from predictor.models.baselines import BASELINES, GroupMean
from predictor.models.references import REFERENCES, make_references
from predictor.models.learners import LEARNED
from predictor.selection.metrics import target_weighted, target_weighted_se
from predictor.selection.protocols import BASIS, Split, inner_splits, meta_of, protocol_splits
from predictor.selection.specs import (DEFAULT_SETTINGS, RULES, SELECTION_RULE, SelectionSettings,
                                       Spec, designs_by_spec, specs_for)
from predictor.selection.within import choose_within, record_within


#: the out-of-fold predictions with shifted profiles (``SelectionSettings.shifted_profiles_dir``)
SHIFTED_OOF = "model@shifted-profiles"


@dataclass
class NestedResult:
    protocol: str
    basis: str
    oof: dict[str, np.ndarray]                 # 'model' (nested choice) and each baseline
    choices: list[str]                         # the spec chosen in each outer fold
    splits: list[Split]
    seconds: float
    inner: list[dict[str, float]] = field(default_factory=list)
    rule: str = "min"                          # the selection rule ('fixed': no selection)
    # per outer fold: the selection info of choose_per_design
    selection: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Rows:
    """The columns of a :func:`~predictor.selection.protocols.prepare`d frame a search reads."""

    frame: pd.DataFrame
    y: np.ndarray
    meta: pd.DataFrame
    tg: np.ndarray
    ds: np.ndarray
    mm: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _Rows:
        return cls(frame, frame["score"].to_numpy(float), meta_of(frame),
                   frame["target_iso3"].astype(str).to_numpy(),
                   frame["dataset"].astype(str).to_numpy(), frame["mm"].astype(str).to_numpy())


# -- features -----------------------------------------------------------------------------------
def feature_matrix(frame: pd.DataFrame, train: np.ndarray,
                   profiles_dir: str | None = None) -> tuple[Any, np.ndarray]:
    """Features fitted on the training rows (no scores used), applied to every row."""
    tf = TransferFeatures(profiles_dir=profiles_dir)
    tf.fit(frame.iloc[train])
    return tf, tf.transform(frame)


def cached_feature_matrix(frame: pd.DataFrame, train: np.ndarray, key: Any,
                          cache: dict[Any, Any] | None, profiles_dir: str | None = None
                          ) -> tuple[Any, np.ndarray]:
    """:func:`feature_matrix`, memoised in ``cache`` under ``key`` when a cache is given.

    Why: the outer folds of one protocol, the ablation and the shipped-model selection ask
    for the same fitted feature matrices; building them is most of a fit's time."""
    if cache is not None and key in cache:
        return cache[key]
    out = feature_matrix(frame, train, profiles_dir)
    if cache is not None:
        cache[key] = out
    return out


def fit_specs(specs: Sequence[Spec], X: np.ndarray, y: np.ndarray, meta: pd.DataFrame,
              Xt: np.ndarray, meta_t: pd.DataFrame, seed: int = 0) -> dict[str, np.ndarray]:
    """Predictions of every spec on the test rows."""
    out: dict[str, np.ndarray] = {}
    for s in specs:
        out[s.name] = s.build(seed).fit(X, y, meta).predict(Xt, meta_t)
    return out


# -- the search ---------------------------------------------------------------------------------
def nested_cv(frame: pd.DataFrame, protocol: str, *, settings: SelectionSettings = DEFAULT_SETTINGS,
              families: Sequence[str] = LEARNED, seed: int = 0, drop_columns: Sequence[str] = (),
              fixed: Spec | Mapping[str, Spec] | None = None,
              log: Callable[[str], None] | None = None,
              feature_cache: dict[Any, Any] | None = None) -> NestedResult:
    """Outer folds of ``protocol``; in each, the spec the inner CV (grouped, on the outer
    training rows only) picks under the settings' rule of the basis (see
    :func:`choose_per_design`) is refitted and predicts the outer test rows. ``fixed``
    skips the inner selection (ablations). ``frame`` must come from ``prepare``."""
    rule = settings.rule_for(BASIS[protocol])
    return nested_cv_rules(frame, protocol, rules=(rule,), settings=settings, families=families,
                           seed=seed, drop_columns=drop_columns, fixed=fixed, log=log,
                           feature_cache=feature_cache)[rule]


def nested_cv_rules(frame: pd.DataFrame, protocol: str, *, rules: Sequence[str] = RULES,
                    settings: SelectionSettings = DEFAULT_SETTINGS,
                    families: Sequence[str] = LEARNED, seed: int = 0,
                    drop_columns: Sequence[str] = (),
                    fixed: Spec | Mapping[str, Spec] | None = None,
                    log: Callable[[str], None] | None = None,
                    feature_cache: dict[Any, Any] | None = None,
                    inner_out: list[dict[str, Any]] | None = None) -> dict[str, NestedResult]:
    """:func:`nested_cv` under several selection rules at once: {rule: NestedResult}.

    The inner predictions of a fold are computed once and every rule chooses from the same
    ones; each distinct chosen spec is refitted once per outer fold. So the rules differ
    only in their choice, never in the noise of the inner CV. With ``settings.within_stage``,
    :func:`choose_within` then decides per system whether the unseen-target spec gets its
    within-target stage. ``inner_out`` (a list) gets, per outer fold, the inner per-target
    MAE table of each system (for re-analysis)."""
    t0 = time.perf_counter()
    for r in rules:
        if r not in RULES:
            raise ValueError(f"unknown selection rule {r!r}; choose one of {RULES}")
    rows = _Rows.of(frame)
    splits = protocol_splits(frame, protocol, seed=seed)
    if isinstance(fixed, Spec):
        fixed = {m: fixed for m in np.unique(rows.mm)}
    specs = specs_for(BASIS[protocol], families) if fixed is None else []
    # the reference predictors are the comparators of a model under selection; a fixed spec
    # (the ablation) is compared with itself
    refs = fixed is None and not drop_columns and BASIS[protocol] == "unseen-target"
    base_oof = {n: np.full(len(frame), np.nan)
                for n in (*BASELINES, *(REFERENCES if refs else ()))}
    model_oof = {r: np.full(len(frame), np.nan) for r in rules}
    shifted = settings.shifted_profiles_dir if fixed is None and not drop_columns \
        and BASIS[protocol] == "unseen-target" else None
    shifted_oof = {r: np.full(len(frame), np.nan) for r in rules}
    choices: dict[str, list[str]] = {r: [] for r in rules}
    inner_tables: dict[str, list] = {r: [] for r in rules}
    selections: dict[str, list] = {r: [] for r in rules}
    with threadpool_limits(limits=1):
        for i, (train, test) in enumerate(splits):
            X = _fold_matrix(frame, train, (protocol, seed, i), feature_cache, drop_columns,
                             settings.profiles_dir)
            names = _fold_names(frame, train, (protocol, seed, i), feature_cache,
                                settings.profiles_dir) if refs else None
            for b, p in _comparators(rows, X, train, test, names).items():
                base_oof[b][test] = p
            if fixed is not None:
                chosen = {r: dict(fixed) for r in rules}
            else:
                decisions = _choose_in_fold(rows, specs, protocol, train, X, rules, settings,
                                            seed, inner_out, fold=i)
                chosen = {r: decisions[r][0] for r in rules}
                for r in rules:
                    inner_tables[r].append(decisions[r][1])
                    selections[r].append(decisions[r][2])
            fitted: dict[str, Any] = {}
            for r in rules:
                choices[r].append("; ".join(f"{m}: {sp.name}"
                                            for m, sp in sorted(chosen[r].items())))
                model_oof[r][test] = predict_per_design(
                    chosen[r], X[train], rows.y[train], rows.meta.iloc[train], X[test],
                    rows.meta.iloc[test], seed, fitted=fitted)
            if shifted is not None:
                # the same fitted models, the held-out target profiled from a shifted source
                Xs = _fold_matrix(frame, train, (protocol, seed, i, "shifted"), feature_cache,
                                  (), shifted)
                for r in rules:
                    shifted_oof[r][test] = predict_per_design(
                        chosen[r], X[train], rows.y[train], rows.meta.iloc[train], Xs[test],
                        rows.meta.iloc[test], seed, fitted=fitted)
            if log:
                for r in rules:
                    log(f"{protocol} fold {i + 1}/{len(splits)}"
                        f"{'' if len(rules) == 1 else f' [{r}]'}: {choices[r][-1]} "
                        f"({time.perf_counter() - t0:.0f} s)")
    covered = np.zeros(len(frame), bool)
    for _, te in splits:
        covered[te] = True
    seconds = round(time.perf_counter() - t0, 1)
    out = {}
    for r in rules:
        oof = {"model": model_oof[r].copy(), **{b: v.copy() for b, v in base_oof.items()}}
        if shifted is not None:
            oof[SHIFTED_OOF] = shifted_oof[r].copy()
        for k in oof:
            oof[k][~covered] = np.nan
        out[r] = NestedResult(protocol, BASIS[protocol], oof, choices[r], splits, seconds,
                              inner_tables[r], "fixed" if fixed is not None else r,
                              selections[r])
    return out


def _comparators(rows: _Rows, X: np.ndarray, train: np.ndarray, test: np.ndarray,
                 names: list[str] | None) -> dict[str, np.ndarray]:
    """The fold's test-row predictions of every group-mean baseline and, given the fold's
    feature names, of every reference predictor, all fitted on the fold's training rows."""
    tr, te = rows.meta.iloc[train], rows.meta.iloc[test]
    out = {b: GroupMean(b).fit(None, rows.y[train], tr).predict(None, te) for b in BASELINES}
    for b, est in (make_references(names).items() if names is not None else ()):
        out[b] = est.fit(X[train], rows.y[train], tr).predict(X[test], te)
    return out


def _fold_names(frame: pd.DataFrame, train: np.ndarray, key: Any,
                feature_cache: dict[Any, Any] | None, profiles_dir: str | None) -> list[str]:
    """The column names of the outer fold's feature matrix."""
    tf, _ = cached_feature_matrix(frame, train, key, feature_cache, profiles_dir)
    return [str(n) for n in tf.get_feature_names_out()]


def _fold_matrix(frame: pd.DataFrame, train: np.ndarray, key: Any,
                 feature_cache: dict[Any, Any] | None, drop_columns: Sequence[str],
                 profiles_dir: str | None = None) -> np.ndarray:
    """The outer fold's feature matrix (fitted on its training rows), less ``drop_columns``."""
    tf, X = cached_feature_matrix(frame, train, key, feature_cache, profiles_dir)
    if drop_columns:
        names = list(tf.get_feature_names_out())
        keep = [j for j, n in enumerate(names) if n not in set(drop_columns)]
        X = X[:, keep]
    return X


def _choose_in_fold(rows: _Rows, specs: Sequence[Spec], protocol: str, train: np.ndarray,
                    X: np.ndarray, rules: Sequence[str], settings: SelectionSettings,
                    seed: int, inner_out: list[dict[str, Any]] | None, fold: int
                    ) -> dict[str, tuple[dict[str, Spec], dict[str, dict[str, float]],
                                         dict[str, Any]]]:
    """{rule: (spec per system, inner scores, selection info)} of one outer fold: the inner
    predictions once, every rule's choice from them, then the within-target decision
    (rules that chose the same specs share one: its tree fits are the expensive part)."""
    errs: dict[str, list] = {s.name: [] for s in specs}
    for itr, ite in inner_splits(rows.frame, train, protocol, seed=seed,
                                 logo_max=settings.inner_logo_max):
        preds = fit_specs(specs, X[itr], rows.y[itr], rows.meta.iloc[itr], X[ite],
                          rows.meta.iloc[ite], seed)
        for name, p in preds.items():
            errs[name].append((ite, p))
    tables = per_target_inner(errs, rows.y, rows.tg, rows.ds, rows.mm)
    if inner_out is not None:
        inner_out.append({"fold": fold, "tables": tables})
    decided: dict[tuple, tuple[dict[str, Spec], dict[str, Any]]] = {}
    out = {}
    for r in rules:
        info: dict[str, Any] = {}
        chosen, score = choose_from_tables(specs, tables, rule=r, info=info)
        if settings.within_stage:
            key = tuple(sorted((m, sp.name) for m, sp in chosen.items()))
            if key not in decided:
                w_info: dict[str, Any] = {}
                decided[key] = (choose_within(rows.frame, train, protocol, chosen, X, seed,
                                              info=w_info), w_info)
            chosen = record_within(*decided[key], info)
        out[r] = (chosen, score, info)
    return out


def select_spec(frame: pd.DataFrame, protocol: str, *,
                settings: SelectionSettings = DEFAULT_SETTINGS,
                families: Sequence[str] = LEARNED, seed: int = 0,
                feature_cache: dict[Any, Any] | None = None, info: dict[str, Any] | None = None
                ) -> tuple[dict[str, Spec], dict[str, dict[str, float]]]:
    """The spec per system for the shipped model: inner CV of ``protocol`` on *all* rows,
    chosen under the settings' rule of the basis, then (``settings.within_stage``) the
    within-target stage decided by :func:`choose_within`; ``info`` gets the rule's details."""
    basis = BASIS[protocol]
    specs = specs_for(basis, families)
    rows = _Rows.of(frame)
    everything = np.arange(len(frame))
    _, X = cached_feature_matrix(frame, everything, ("all", seed), feature_cache,
                                 settings.profiles_dir)
    errs: dict[str, list] = {s.name: [] for s in specs}
    with threadpool_limits(limits=1):
        for itr, ite in inner_splits(frame, everything, protocol, seed=seed,
                                     logo_max=settings.inner_logo_max):
            for name, p in fit_specs(specs, X[itr], rows.y[itr], rows.meta.iloc[itr], X[ite],
                                     rows.meta.iloc[ite], seed).items():
                errs[name].append((ite, p))
    best, score = choose_per_design(specs, errs, rows.y, rows.tg, rows.ds, rows.mm,
                                    rule=settings.rule_for(basis), info=info)
    if settings.within_stage:
        w_info: dict[str, Any] = {}
        best = record_within(choose_within(frame, everything, protocol, best, X, seed,
                                           info=w_info), w_info, info)
    return best, score


# -- choosing -----------------------------------------------------------------------------------
def per_target_inner(errs: Mapping[str, list], y: np.ndarray, tg: np.ndarray, ds: np.ndarray,
                     mm: np.ndarray) -> dict[str, pd.DataFrame]:
    """{system: DataFrame} of inner-CV MAE per (dataset, target) row and spec column."""
    out: dict[str, pd.DataFrame] = {}
    for m in np.unique(mm):
        cols = {}
        for name, parts in errs.items():
            idx = np.concatenate([a for a, _ in parts])
            p = np.concatenate([b for _, b in parts])
            sel = mm[idx] == m
            if sel.any():
                cols[name] = pd.Series(np.abs(p[sel] - y[idx][sel])).groupby(
                    [ds[idx][sel], tg[idx][sel]]).mean()
        if cols:
            out[str(m)] = pd.DataFrame(cols)
    return out


def choose_from_tables(specs: Sequence[Spec], tables: Mapping[str, pd.DataFrame], *,
                       rule: str | None = None, info: dict[str, Any] | None = None
                       ) -> tuple[dict[str, Spec], dict[str, dict[str, float]]]:
    """:func:`choose_per_design` from the per-target tables of :func:`per_target_inner`."""
    if rule is None:
        seen = bool(specs) and specs[0].seen
        rule = SELECTION_RULE["measured-target" if seen else "unseen-target"]
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; choose one of {RULES}")
    best: dict[str, Spec] = {}
    score: dict[str, dict[str, float]] = {}
    for m, t in tables.items():
        score[m] = {name: target_weighted(t[name]) for name in t.columns}
        cands = [s for s in specs if s.name in score[m]]
        if not cands:
            continue
        low = min(cands, key=lambda s: (score[m][s.name], s.name))
        pick, se = low, {}
        if rule == "1se":
            # paired: every spec is scored on the same inner targets, so the targets'
            # difficulty cancels in the difference; the SE of the best spec's own MAE would
            # mostly measure how unlike each other the targets are (AmericasNLI vs XNLI)
            se = {s.name: target_weighted_se(t[s.name] - t[low.name]) for s in cands}
            ok = [s for s in cands if score[m][s.name] - score[m][low.name] <= se[s.name]]
            pick = min(ok, key=lambda s: s.complexity())
        best[m] = pick
        if info is not None:
            info[m] = {"rule": rule, "lowest": low.name, "lowest_mae": score[m][low.name],
                       "chosen": pick.name, "chosen_mae": score[m][pick.name],
                       "chosen_se_of_difference": se.get(pick.name, 0.0),
                       "targets": int(len(t))}
    return best, score


def choose_per_design(specs: Sequence[Spec], errs: Mapping[str, list], y: np.ndarray,
                      tg: np.ndarray, ds: np.ndarray, mm: np.ndarray, *,
                      rule: str | None = None, info: dict[str, Any] | None = None
                      ) -> tuple[dict[str, Spec], dict[str, dict[str, float]]]:
    """Per system, from the inner predictions ``errs`` ({spec: [(rows, pred)]}): each
    spec's inner target-weighted MAE on that system's rows (``score``) and the chosen spec
    (``best``). Why per system: one score scale's choice (e.g. AmericasNLI's large errors)
    must not pick the hyper-parameters of another (SumEval).

    ``rule`` (default: ``SELECTION_RULE`` of the specs' basis):

    * ``'min'`` -- the spec with the lowest inner MAE (ties: by name);
    * ``'1se'`` -- the one-standard-error rule (Breiman et al. 1984, CART; Hastie,
      Tibshirani & Friedman, ESL 7.10): the *simplest* spec (:meth:`Spec.complexity`)
      whose inner MAE exceeds the lowest by at most one standard error of that excess.
      The SE is of the *paired* per-target difference to the lowest spec (targets the
      units, weighted as in ``tw_mae``, stratified by dataset). Why: with ~14 inner
      targets the lowest MAE is picked partly for its noise (a spec with a low inner MAE
      -- HGB, alpha=100 -- lost to the mean baseline on the outer targets of SumEval);
      among specs the inner CV cannot tell apart, the simpler one varies less from fold
      to fold.

    ``info`` (a dict) gets per system the rule, the lowest and the chosen spec with their
    MAEs and the SE."""
    return choose_from_tables(specs, per_target_inner(errs, y, tg, ds, mm), rule=rule,
                              info=info)


def predict_per_design(best: Mapping[str, Spec], X: np.ndarray, y: np.ndarray,
                       meta: pd.DataFrame, Xt: np.ndarray, meta_t: pd.DataFrame,
                       seed: int = 0, fitted: dict[str, Any] | None = None) -> np.ndarray:
    """Each test row predicted by its system's spec (each distinct spec fitted once; across
    calls on the same training rows too when they share ``fitted``)."""
    out = np.full(len(meta_t), np.nan)
    mm_t = meta_t["mm"].astype(str).to_numpy()
    fitted = {} if fitted is None else fitted
    for name, (sp, mms) in designs_by_spec(best).items():
        sel = np.isin(mm_t, mms)
        if sel.any():
            key = f"{name} for {','.join(sorted(mms))}" if sp.within else name
            if key not in fitted:
                fitted[key] = sp.build(seed, designs=mms).fit(X, y, meta)
            out[sel] = fitted[key].predict(Xt[sel], meta_t[sel].reset_index(drop=True))
    return out
