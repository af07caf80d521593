"""What the learners cannot know about pretraining classes: borrowing, chance floors, ranges.

Why a policy on top of the learners: a system trained on targets of one pretraining class
only (every SumEval target is in XLM-R's corpus) extrapolates without limit for another
class (XLM-R on Yoruba went below 0). So an unmeasured target of a class its system never
measured borrows the class's effect from systems that measured it
(:mod:`predictor.models.class_transfer`), a configuration of a kind no training row had
gets a lower bound at chance, and an out-of-support point is held within the range of the
system's measured targets. Everything is read from the measured-target models, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from measure.knowledge.coverage import pretraining_class
from measure.knowledge.nli import CHANCE
from predictor.arrays import first_seen
from predictor.models import SeenTargetModel
from predictor.models.class_transfer import design_levels, fit_transfers, present_level
from predictor.serving.support import add_reason


def system_class_codes(meta: pd.DataFrame) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """(code of each row's (system, pretraining class), the distinct pairs)."""
    mc, mu = pd.factorize(meta["mm"].to_numpy(dtype=object))
    pc, pu = pd.factorize(meta["pclass"].to_numpy(dtype=object))
    codes, first = first_seen(mc.astype(np.int64) * max(len(pu), 1) + pc)
    return codes, [(str(mu[mc[i]]), str(pu[pc[i]])) for i in first.tolist()]


def _class_of(model: str) -> Callable[[str], str]:
    """The pretraining class of a target language for ``model``."""
    return lambda target: pretraining_class(target, model)


class ClassPolicy:
    """Class transfer, chance floors and target ranges of every system, built from its
    measured-target model (``seen``: system -> model) and the card's ``support``."""

    def __init__(self, seen: Mapping[str, SeenTargetModel],
                 support: Mapping[str, Any]) -> None:
        self.support = support
        self.target_means = {mm: m.target_means(mm) for mm, m in seen.items()}
        levels = {mm: design_levels(means, _class_of(mm.split("|")[0]))
                  for mm, means in self.target_means.items()}
        #: borrowed effects by pretraining class (:func:`fit_transfers`)
        self.transfers = fit_transfers(levels)
        #: each system's present-class level (None without one), its measured classes
        self.level_of = {mm: present_level(lv) for mm, lv in levels.items()}
        self.classes_of = {mm: sorted(lv) for mm, lv in levels.items()}
        #: the pretraining classes of each system's training source languages
        self.source_classes = {
            mm: {pretraining_class(x, mm.split("|")[0]) for x in m.source_languages()}
            for mm, m in seen.items()}

    def never_measured(self, mm: str, pcl: str) -> bool:
        """Whether system ``mm`` has a present level but no measured target of class ``pcl``."""
        return self.level_of.get(mm) is not None and pcl not in self.classes_of.get(mm, [pcl])

    def borrowed(self, codes: np.ndarray, pairs: list[tuple[str, str]],
                 seen: np.ndarray) -> np.ndarray:
        """Rows whose point :meth:`borrow` replaces; ``codes`` and ``pairs`` from
        :func:`system_class_codes`."""
        hit = [pcl in self.transfers and self.never_measured(mm, pcl) for mm, pcl in pairs]
        if not any(hit):
            return np.zeros(len(codes), bool)
        return np.asarray(hit, bool)[codes] & ~np.asarray(seen, bool)

    def borrow(self, codes: np.ndarray, pairs: list[tuple[str, str]], seen: np.ndarray,
               point: np.ndarray, reason: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Unmeasured targets of a pretraining class their system never measured.

        An absent target of a system trained on present targets only (XLM-R, T-ULRv6 on
        SumEval) is predicted from the class's position between chance and the system's
        present level, borrowed from systems that measured both classes, and its interval
        spans the donors' range. A target of unknown coverage keeps its (present-like,
        range-limited) point, but its interval reaches down to what an absent target would
        get: unknown coverage means either. With no system to borrow from, the lower bound
        reaches chance. Changes ``point`` and ``reason`` in place; returns (lower floor,
        upper ceiling) for the bounds (+inf / -inf where none applies). Worked out once
        per distinct (system, class).
        """
        floor, ceil = np.full(len(codes), np.inf), np.full(len(codes), -np.inf)
        unseen = ~np.asarray(seen, bool)
        for c, (mm, pcl) in enumerate(pairs):
            if not self.never_measured(mm, pcl):
                continue
            level = self.level_of[mm]
            sel = (codes == c) & unseen
            if not sel.any():
                continue
            tr = self.transfers.get(pcl)
            if tr is not None:
                point[sel] = tr.point(level)
                floor[sel], ceil[sel] = tr.bounds(level)
                add_reason(reason, sel, f"predicted as {pcl} from pretraining: {tr.describe()}")
            elif pcl == "unknown" and "absent" in self.transfers:
                floor[sel] = self.transfers["absent"].bounds(level)[0]
                add_reason(reason, sel, "the prediction assumes the target is in pretraining; "
                           "the lower bound is what an absent target would get")
            else:
                # no system of this predictor measured the class (e.g. one fitted on SumEval
                # alone): nothing to borrow, and nothing says the target is not near chance
                floor[sel] = CHANCE
                add_reason(reason, sel, f"no design of this predictor measured a target "
                           f"{pcl} from pretraining: the prediction treats it like a present "
                           "one, and the lower bound reaches chance")
        return floor, ceil

    def chance_floors(self, rows: pd.DataFrame, meta: pd.DataFrame, floor: np.ndarray,
                      reason: list[str]) -> None:
        """Lower bounds down to chance where the configuration is of a kind no training row
        had: a source language of a pretraining class no training source had (every
        shipped system was trained on the 15 XNLI languages, all present; a probe on
        Quechua text the encoder never saw is a situation the learners know nothing
        about), or fewer examples in every supervised language than the system's smallest
        per-language training size (the learners are flat below it). Changes ``floor``
        and ``reason`` in place; worked out once per distinct (configuration, system)."""
        if not len(rows):
            return
        tcs = rows["train_config"].tolist()
        cfg_id = meta["cfg_id"].to_numpy(dtype=np.int64)
        mm_code, mm_uniq = pd.factorize(meta["mm"].astype(str).to_numpy(dtype=object))
        combo, first = first_seen(cfg_id * len(mm_uniq) + mm_code)
        firsts = first.tolist()
        odd_of = self._odd_sources({str(m) for m in mm_uniq.tolist()},
                                   set().union(*(tcs[i].keys() for i in firsts)))
        lo_of = {str(m): self.support.get(str(m), {}).get("n_per_language", [0, 0])[0]
                 for m in mm_uniq.tolist()}
        texts: list[str] = []
        for i in firsts:
            mm, tc = str(mm_uniq[mm_code[i]]), tcs[i]
            why = []
            odd_langs = odd_of[mm]
            if odd_langs and not odd_langs.keys().isdisjoint(tc):
                odd = [f"{lang} ({odd_langs[lang]})" for lang in tc
                       if lang in odd_langs and tc[lang] > 0]
                if odd:
                    known = self.source_classes.get(mm) or set()
                    why.append(f"source language {', '.join(odd)} from pretraining, while "
                               f"every training row's sources were {'/'.join(sorted(known))}: "
                               "the learners cannot tell what that costs, so the lower bound "
                               "reaches chance")
            if max(tc.values(), default=0) < lo_of[mm]:
                why.append("every supervised language has fewer examples than any training "
                           "row: the learning curve below that was not measured, so the "
                           "lower bound reaches chance")
            texts.append("; ".join(why) if why else "")
        hit = np.array([bool(t) for t in texts], dtype=bool)
        if not hit.any():
            return
        rows_hit = np.flatnonzero(hit[combo])
        floor[rows_hit] = np.minimum(floor[rows_hit], CHANCE)
        for i in rows_hit.tolist():
            text = texts[combo[i]]
            reason[i] = f"{reason[i]}; {text}" if reason[i] else text

    def _odd_sources(self, systems: set[str], langs: set[str]) -> dict[str, dict[str, str]]:
        """Per system: those of ``langs`` whose pretraining class none of the system's
        training sources had (language -> class); {} for a system without measured sources."""
        odd_of: dict[str, dict[str, str]] = {}
        for mm in systems:
            known = self.source_classes.get(mm)
            model = mm.split("|")[0]
            cls = {lang: pretraining_class(lang, model) for lang in langs} if known else {}
            odd_of[mm] = {lang: c for lang, c in cls.items() if c not in known}
        return odd_of

    def target_range(self, mm: str) -> tuple[float, float] | None:
        """(lowest, highest) mean score of the system's measured targets."""
        vals = self.target_means.get(str(mm))
        if not vals:
            return None
        return min(vals.values()), max(vals.values())

    def keep_in_range(self, point: np.ndarray, rows: np.ndarray, mm_list: list[str]) -> None:
        """Clamp ``point`` (in place) where ``rows`` is true to the range of the row's
        system's measured target means: outside the support a linear learner extrapolates
        without limit."""
        ranges: dict[str, tuple[float, float] | None] = {}
        for i in np.flatnonzero(rows).tolist():
            if mm_list[i] not in ranges:
                ranges[mm_list[i]] = self.target_range(mm_list[i])
            lo_hi = ranges[mm_list[i]]
            if lo_hi is not None:
                point[i] = min(max(point[i], lo_hi[0]), lo_hi[1])
