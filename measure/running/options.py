"""The cell options beyond source sets and budgets: target parts, target shots, centring.

Why a module of its own: each option is one key of a batch config whose value must be
checked against the data and against the other options before any work -- a part count,
labelled target pairs that must come from a split no target is scored on and must fit
the budget, a probe centred on language means that must exist and must not read a scored
row -- and the batch config (:mod:`measure.running.config`) only has to call these checks.

* ``[[targets]] parts = 2``: every language of the split is scored on each part (A, B) of
  :func:`measure.methods.sampling.part_indices` separately (``target_split`` ``test/A-of-2``).
* ``[[sources]] shots = { split = "americas_nli/validation", languages = ["aym"],
  n = [0, 25, 100, 400] }``: each source set of the group is also trained with n labelled
  pairs of one shot language (one cell per language and n; n = 0 is the plain cell). Under
  ``fixed_total`` the shots come out of the total (sources get total - n), under
  ``per_language`` they come on top.
* ``[probe] centre = "language"``: see :mod:`measure.methods.probe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from measure.cell import PART_LETTERS, CellSpec, Target, parse_shot_key, shot_key
from measure.data import SplitRef
from measure.methods.probe import centring_split
from measure.running.checks import ConfigError, Pools, check_langs, is_int, split_ref, table

SHOT_KEYS = {"split", "languages", "n"}
SHOTS_EXAMPLE = 'shots = { split = "americas_nli/validation", languages = ["aym"], n = [0, 100] }'


def target_parts(value: Any, key: str) -> int:
    """``[[targets]] parts``: absent (0: the split whole) or 2..26 parts."""
    if value is None:
        return 0
    if not is_int(value) or not 2 <= value <= len(PART_LETTERS):
        raise ConfigError(f"{key} = {value!r}: expected an integer 2..{len(PART_LETTERS)} (the "
                          "split cut in that many label-stratified parts, each scored on its "
                          "own), or leave it out to score the split whole")
    return value


@dataclass(frozen=True)
class Shots:
    """A group's target shots: labelled pairs of each language of ``dataset/split``."""

    dataset: str
    split: str
    languages: tuple[str, ...]
    counts: tuple[int, ...]

    def variants(self) -> list[tuple[dict[str, int], int]]:
        """[(a cell's ``target_shots``, n)]: the plain cell once for n = 0, then one per
        (language, n > 0)."""
        out: list[tuple[dict[str, int], int]] = [({}, 0)] if 0 in self.counts else []
        return out + [({shot_key(self.dataset, self.split, lang): n}, n)
                      for lang in self.languages for n in self.counts if n > 0]


#: a group without shots: the plain cell only
NO_SHOTS: list[tuple[dict[str, int], int]] = [({}, 0)]


def group_shots(value: Any, key: str, pools: Pools, targets: list[Target]) -> Shots | None:
    """``[[sources]] shots``, checked: a split with data for each language, counts that fit
    it, and a split that no ``[[targets]]`` table scores for that language."""
    if value is None:
        return None
    value = table(value, key, SHOT_KEYS, SHOTS_EXAMPLE)
    for req in ("split", "n"):
        if req not in value:
            raise ConfigError(f"{key} needs {req!r}, e.g. {SHOTS_EXAMPLE}")
    ds, split = split_ref(value["split"], f"{key}.split")
    langs = check_langs(value.get("languages", "*"), pools.languages(ds, split, key),
                        f"{key}.languages", f"{ds}/{split}")
    counts = value["n"] if isinstance(value["n"], list) else [value["n"]]
    if (not counts or not all(is_int(n) and n >= 0 for n in counts)
            or len(set(counts)) != len(counts)):
        raise ConfigError(f"{key}.n = {value['n']!r}: expected distinct integers >= 0 (labelled "
                          "target pairs per cell; 0 = the cell without shots), e.g. "
                          "n = [0, 25, 100]")
    for lang in langs:
        for t in targets:
            if t.dataset == ds and t.split == split and lang in t.languages:
                raise ConfigError(f"{key}: shots of {lang!r} from {ds}/{split}, which the config "
                                  "scores: take them from a split that is never scored (e.g. "
                                  f"{ds}/validation), or drop {lang!r} from that target")
        have = pools.size(ds, lang, split)
        if max(counts) > have:
            raise ConfigError(f"{key}.n: {max(counts)} shots of {lang!r} exceed the {have} pairs "
                              f"in {ds}/{lang}/{split}; lower n")
    return Shots(ds, split, tuple(langs), tuple(counts))


def source_budget(key: str, regime: str, budget: int, n: int) -> int:
    """What the sources get when a cell also trains on ``n`` shots: total - n under
    ``fixed_total`` (the shots count towards the total), the budget under ``per_language``."""
    if regime != "fixed_total" or not n:
        return budget
    if n >= budget:
        raise ConfigError(f"{key}.shots.n = {n} leaves nothing of the fixed total {budget} for "
                          "the sources; lower n or raise budget.total")
    return budget - n


def check_shots_fit(key: str, shots: Shots, pool: tuple[str, str], regime: str,
                    tc: dict[str, int], n: int, pools: Pools) -> None:
    """Shots from the training pool's own split (a translation of it: the same pair ids)
    are drawn first and the sources avoid them: the split must hold both."""
    if not n or (shots.dataset, shots.split) != pool:
        return
    used = sum(tc.values()) if regime == "fixed_total" else max(tc.values())
    for lang in shots.languages:
        size = pools.size(shots.dataset, lang, shots.split)
        if used + n > size:
            raise ConfigError(f"{key}.shots: {n} shots of {lang!r} from the pool "
                              f"{shots.dataset}/{shots.split} and the {used} rows the sources "
                              f"draw there do not fit in its {size} rows; lower n or the budget")


def check_centring(cells: list[CellSpec], pools: Pools, check_data: bool) -> None:
    """``[probe] centre = "language"``: every language a cell reads has its centring split
    (:func:`measure.methods.probe.centring_split`), and no target is centred with the text
    it is scored on."""
    need: dict[tuple[str, str, str], str] = {}
    for cell in cells:
        if cell.method != "probe" or cell.params.get("centre", "none") != "language":
            continue
        for t in cell.targets:
            split = centring_split(cell, t.dataset)
            if split == t.split:
                raise ConfigError(
                    f"[probe].centre = 'language' would centre the target {t.dataset}/{t.split} "
                    "with the mean of the text it is scored on: score another split, or leave "
                    "out centre")
            need.update({(t.dataset, lang, split): f"{t.dataset} target {lang!r}"
                         for lang in t.languages})
        for key in cell.target_shots:
            ds, _, lang = parse_shot_key(key)
            need[(ds, lang, centring_split(cell, ds))] = f"shot language {lang!r}"
    for (ds, lang, split), what in sorted(need.items()):
        if not pools.has(ds, lang, split):
            raise ConfigError(f"[probe].centre = 'language' centres {what} with the mean of its "
                              f"unscored {ds}/{split} text, and {ds}/{lang}/{split} does not "
                              "exist: add that file, drop the language, or leave out centre")
    if check_data and need:
        pools.validate({SplitRef(ds, lang, split) for ds, lang, split in need})
