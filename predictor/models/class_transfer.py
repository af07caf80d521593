"""Borrowing the effect of a pretraining class from systems that measured it.

Why: every SumEval target (XLM-R, T-ULRv6) is present in its model's pretraining corpus, so
those designs have never seen a language the model was not pretrained on. Asked about
Quechua, their learner had nothing to go on: it extrapolated (XLM-R on Yoruba went below 0)
and was then held inside the measured targets' range, 74.7 [67.4, 82.1] accuracy for XLM-R
on Quechua, where published zero-shot XLM-R results on AmericasNLI are near chance. The own
me5-small design *has* measured absent targets (AmericasNLI) and present ones (XNLI). What
transfers between designs is not a score (accuracy ~80 vs macro-F1 ~55) but the class's
position between chance and the design's present-class level:

    r_t = (mean score of target t - chance) / (mean over present targets - chance)

measured per target of the class in every donor design (a design with at least
``MIN_TARGETS`` targets of the class and of 'present'). A recipient design without the
class predicts ``chance + mean(r) * (its present level - chance)``, and its interval reaches
from the lowest to the highest donor target's r, in the recipient's units: the spread of
the donors' own targets is the only evidence of how far a new language of the class can
fall (with 7 donor targets the range of a new exchangeable one is covered about 75% of the
time, so the interval is also never narrower than the recipient's out-of-support one).

Scores are 3-way NLI (accuracy or macro-F1, 0-100), so chance is 100/3. The mean ratio is
kept within [0, 1]: a donor's below-chance macro-F1 (a probe collapsing onto one label)
does not mean a fine-tuned model's accuracy falls below chance; the interval still spans
the donors' range.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from measure.knowledge.nli import CHANCE

MIN_TARGETS = 3             # per class and per donor design, as for interval groups


@dataclass(frozen=True)
class Transfer:
    """What a recipient design without ``pclass`` predicts for a target of that class."""

    pclass: str
    ratio: float                          # mean relative position, within [0, 1]
    low: float                            # lowest donor target's r
    high: float                           # highest donor target's r
    donors: dict[str, list[str]] = field(default_factory=dict)   # design -> its targets

    def point(self, present_level: float) -> float:
        return CHANCE + self.ratio * (present_level - CHANCE)

    def bounds(self, present_level: float) -> tuple[float, float]:
        """(lower, upper): the donors' range of r in the recipient's units."""
        a, b = (CHANCE + r * (present_level - CHANCE) for r in (self.low, self.high))
        return min(a, b), max(a, b)

    def describe(self) -> str:
        who = "; ".join(f"{mm}: {len(ts)} targets" for mm, ts in sorted(self.donors.items()))
        return (f"its class's position between chance (0) and the model's present-class level "
                f"(1), {self.ratio:.2f} (range {self.low:.2f} to {self.high:.2f}), is borrowed "
                f"from {who}")


def design_levels(target_means: Mapping[str, float], pclass_of: Callable[[str], str]
                  ) -> dict[str, list[tuple[str, float]]]:
    """{pclass: [(target, mean score)]} of one design's measured targets."""
    out: dict[str, list[tuple[str, float]]] = {}
    for target, mean in target_means.items():
        if np.isfinite(mean):
            out.setdefault(pclass_of(target), []).append((target, float(mean)))
    return out


def present_level(levels: Mapping[str, list[tuple[str, float]]]) -> float | None:
    """Mean score over a design's present targets (each target once), None without them."""
    pres = levels.get("present", [])
    return float(np.mean([m for _, m in pres])) if pres else None


def fit_transfers(designs: Mapping[str, Mapping[str, list[tuple[str, float]]]]
                  ) -> dict[str, Transfer]:
    """One :class:`Transfer` per non-present class that some design measured well enough.

    ``designs``: {design: {pclass: [(target, mean score)]}} (see :func:`design_levels`).
    Every donor target counts once; a donor whose present level is within 1 point of
    chance is skipped (the ratio would divide by noise).
    """
    ratios: dict[str, list[float]] = {}
    donors: dict[str, dict[str, list[str]]] = {}
    for mm, levels in designs.items():
        pres = levels.get("present", [])
        level = present_level(levels)
        if len(pres) < MIN_TARGETS or level is None or abs(level - CHANCE) < 1.0:
            continue
        for pclass, items in levels.items():
            if pclass == "present" or len(items) < MIN_TARGETS:
                continue
            ratios.setdefault(pclass, []).extend(
                (m - CHANCE) / (level - CHANCE) for _, m in items)
            donors.setdefault(pclass, {})[mm] = sorted(t for t, _ in items)
    out = {}
    for pclass, r in ratios.items():
        arr = np.asarray(r, float)
        out[pclass] = Transfer(pclass=pclass, ratio=float(np.clip(arr.mean(), 0.0, 1.0)),
                               low=float(arr.min()), high=float(arr.max()),
                               donors=donors[pclass])
    return out
