"""What the nested search chooses among, and how it chooses.

A :class:`Spec` is one grid point (learner family, parameters, base, scope, within-target
stage); :func:`specs_for` is the grid of a basis; the selection rules (``RULES``) pick one
spec per system from its inner-CV table; :class:`SelectionSettings` are the fit's choices
about the search itself, passed as an argument from ``xlt-predict fit`` down to every
split and recorded in the card.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from predictor.models.learners import (BASES, GRID, LEARNED, SCOPES, WITHIN_HGB, ZModel,
                                        spec_name)
from predictor.models.seen_target import SeenTargetModel

# how the inner CV picks a spec per system (see nested.choose_per_design):
# 'min' -- the lowest inner target-weighted MAE;
# '1se' -- the simplest spec (Spec.complexity) whose inner MAE is within one standard error
#          of the lowest (Breiman et al. 1984; Hastie, Tibshirani & Friedman, ESL 7.10)
RULES = ("min", "1se")
# the default per basis. 'min' stays: on the shipped data the nested MAE under 1se vs min
# was no better overall (mean over datasets 3.31 vs 3.30 for unseen targets, slightly worse
# for measured targets) -- 1se removes HGB / alpha=100 outliers but often goes too simple
SELECTION_RULE = {"unseen-target": "min", "measured-target": "min"}
RULE_TEXT = {"min": "the lowest inner target-weighted MAE",
             "1se": "one standard error -- the simplest spec (ridge before hgb, higher alpha, "
                    "pooled before per-design, base mm before mm_class) whose inner "
                    "target-weighted MAE is within one SE (paired per-target difference) of "
                    "the lowest"}


@dataclass(frozen=True)
class SelectionSettings:
    """How the nested search is run (``xlt-predict fit`` options), recorded in the card.

    ``inner_logo_max``: the unseen-target inner CV leaves one target out when an outer
    training fold has at most this many targets (``--inner-loto``: 25), else 4
    target-grouped folds (0, the default: ~3x cheaper). ``within_stage``: whether the
    search may add the within-target stage to the unseen-target model, per system
    (``--no-within-stage``: never). ``unseen_rule`` / ``measured_rule``: the selection rule
    (``RULES``) of each basis. ``profiles_dir``: where the features read language profiles
    (None: the models directory's ``profiles/``; ``NO_PROFILES``: none) -- how a profile
    protocol is evaluated (``predictor.studies.profile_protocols``); the shipped fit reads
    the models directory's. ``shifted_profiles_dir``: profiles of the same targets from a
    shifted source (other splits, other text); the unseen-target folds also predict their
    held-out target with those, and the intervals are calibrated on both residual sets."""

    inner_logo_max: int = 0
    within_stage: bool = True
    unseen_rule: str = SELECTION_RULE["unseen-target"]
    measured_rule: str = SELECTION_RULE["measured-target"]
    profiles_dir: str | None = None
    shifted_profiles_dir: str | None = None

    def __post_init__(self) -> None:
        for r in (self.unseen_rule, self.measured_rule):
            if r not in RULES:
                raise ValueError(f"unknown selection rule {r!r}; choose one of {RULES}")

    @property
    def rules(self) -> dict[str, str]:
        """{basis: rule}, in the card's order."""
        return {"unseen-target": self.unseen_rule, "measured-target": self.measured_rule}

    def rule_for(self, basis: str) -> str:
        return self.rules[basis]


#: what ``xlt-predict fit`` runs without options
DEFAULT_SETTINGS = SelectionSettings()


@dataclass
class Spec:
    """One grid point: a learner family, its parameters and (seen basis) the shrinkage."""

    family: str
    params: dict[str, Any]
    seen: bool = False            # True: SeenTargetModel (target mean + within-target learner)
    base: str = "mm"              # ZModel base: 'mm' or 'mm_class' (unseen-target model)
    scope: str = "pooled"         # 'pooled' or 'design' (one regressor per system)
    within: bool = False          # unseen-target model + its within-target stage (WITHIN_HGB)

    @property
    def name(self) -> str:
        if self.seen:
            return "target_mean+" + spec_name(self.family, self.params, None, self.scope)
        return spec_name(self.family, self.params, self.base, self.scope) \
            + ("|+within-target hgb" if self.within else "")

    def complexity(self) -> tuple:
        """Sort key, simplest first, for the one-standard-error rule.

        Lexicographic: (1) family -- ridge (linear), then lasso (linear, but the choice of
        columns is itself fitted), then hgb (trees: interactions, thresholds); (2) the
        family's regularisation -- for ridge and lasso a *higher* alpha is simpler (fewer
        effective degrees of freedom), for hgb fewer/smaller trees and larger leaves;
        (3) scope -- 'pooled' (one slope vector shared by every system, in SD units)
        before 'design' (one per system: D times the slopes, each from one system's rows);
        (4) base -- 'mm' (one mean per system) before 'mm_class' (up to three: one per
        pretraining class). (3) and (4) order structural alternatives by the number of
        fitted parameters; they come after the penalty because the penalty is the knob
        the rule is classically applied to (ESL's ridge/lasso paths)."""
        fam = {"ridge": 0, "lasso": 1, "hgb": 2}.get(self.family, 3)
        p = self.params
        if self.family in ("ridge", "lasso"):
            reg: tuple = (-float(p.get("alpha", 1.0)),)
        elif self.family == "hgb":
            reg = (float(p.get("max_leaf_nodes", 31)), float(p.get("max_iter", 100)),
                   -float(p.get("min_samples_leaf", 20)),
                   -float(p.get("l2_regularization", 0.0)))
        else:
            reg = ()
        return (fam, reg, self.scope != "pooled", self.base != "mm", self.within, self.name)

    def build(self, seed: int = 0, designs: Sequence[str] | None = None) -> Any:
        """The unfitted model; ``designs`` limits the within-target stage to those systems
        (the ones this spec answers for)."""
        if self.seen:
            return SeenTargetModel(self.family, self.params, seed, scope=self.scope)
        return ZModel(self.family, self.params, seed, base=self.base, scope=self.scope,
                      within=WITHIN_HGB if self.within else None, within_designs=designs)


def specs_for(basis: str, families: Sequence[str] = LEARNED) -> list[Spec]:
    """The grid of a basis: every family's grid points, scopes and (unseen targets) bases."""
    out = []
    for fam in families:
        linear = fam in ("ridge", "lasso")
        grid = GRID[fam] if (basis != "unseen-target" or linear) else GRID[fam][:1]
        for params in grid:
            # trees split on the model one-hots and the pretraining flags themselves: one
            # pooled variant (the grid is priced in HGB fits on two shared cores)
            scopes = SCOPES if linear else ("pooled",)
            bases = BASES if linear else ("mm",)
            for scope in scopes:
                if basis == "unseen-target":
                    out += [Spec(fam, dict(params), False, b, scope) for b in bases]
                else:
                    out.append(Spec(fam, dict(params), True, "mm", scope))
    return out


def designs_by_spec(per_design: Mapping[str, Spec]) -> dict[str, tuple[Spec, list[str]]]:
    """{spec name: (the spec, the systems it answers for)}: each distinct spec is fitted
    once for all its systems (its within-target stage, if any, only for those)."""
    out: dict[str, tuple[Spec, list[str]]] = {}
    for m, sp in per_design.items():
        out.setdefault(sp.name, (sp, []))[1].append(m)
    return out
