"""Honest model selection: grouped protocols, nested CV, target-weighted metrics, reports.

Layers, bottom up: :mod:`.metrics` (per-target errors, bootstrap, rank correlations),
:mod:`.protocols` (data prep, outer and inner splits, the leak check), :mod:`.specs` (the
grid, the selection rules, :class:`SelectionSettings`), :mod:`.within` (the within-target
decision), :mod:`.nested` (the nested search and the shipped model's choice),
:mod:`.reports` and :mod:`.ranking` (what the card reports).
"""

from predictor.selection.metrics import bootstrap_diff, per_target_mae, spearman, tw_mae
from predictor.selection.nested import (SHIFTED_OOF, NestedResult, choose_per_design,
                                        feature_matrix, nested_cv, nested_cv_rules, select_spec)
from predictor.selection.protocols import (BASIS, PROTOCOLS, SELECTION_PROTOCOL, LeakError,
                                           assert_no_leak, dedupe, inner_splits, meta_of, prepare,
                                           protocol_splits)
from predictor.selection.ranking import K_BANDS, ranking_report
from predictor.selection.reports import cv_records, protocol_report
from predictor.selection.specs import (DEFAULT_SETTINGS, RULE_TEXT, RULES, SelectionSettings, Spec,
                                       designs_by_spec, specs_for)
from predictor.selection.within import choose_within

__all__ = ["BASIS", "DEFAULT_SETTINGS", "K_BANDS", "PROTOCOLS", "RULES", "RULE_TEXT", "SHIFTED_OOF",
           "SELECTION_PROTOCOL", "LeakError", "NestedResult", "SelectionSettings", "Spec",
           "assert_no_leak", "bootstrap_diff", "choose_per_design", "choose_within", "cv_records",
           "dedupe", "designs_by_spec", "feature_matrix", "inner_splits", "meta_of", "nested_cv",
           "nested_cv_rules", "per_target_mae", "prepare", "protocol_report", "protocol_splits",
           "ranking_report", "select_spec", "spearman", "specs_for", "tw_mae"]
