"""Item keys (#22): which scored items translate one another, so a bootstrap can reweight
an item in every language at once."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from measure.data import load_parquet_split
from measure.knowledge.item_keys import (AMERICAS, ALIGNMENT_FILE, build_alignment, item_keys,
                                         premise_blocks)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "measure" / "resources" / ALIGNMENT_FILE
CUE = re.compile(r"\d+|[A-Z][A-Za-z]{2,}")


def _cues(frame: pd.DataFrame, rows: list[int]) -> set[str]:
    text = " ".join(frame["premise"].iloc[rows[:1]].astype(str).tolist()
                    + frame["hypothesis"].iloc[rows].astype(str).tolist())
    return set(CUE.findall(text))


def test_the_shipped_alignment_is_rebuilt_from_the_data(nli_dir: Path) -> None:
    shipped = pd.read_csv(SHIPPED)
    assert shipped.equals(build_alignment(nli_dir))


@pytest.mark.parametrize("lang", AMERICAS)
def test_each_americas_row_translates_an_xnli_pair_with_its_label(nli_dir: Path,
                                                                  lang: str) -> None:
    """Every row mapped, labels equal, premise blocks kept whole and in order, no XNLI pair
    used twice; shared digits/names are far more frequent than one block off."""
    table = pd.read_csv(SHIPPED)
    t = table[table["language"] == lang]
    test = load_parquet_split(nli_dir, "americas_nli", lang, "test")
    en = load_parquet_split(nli_dir, "xnli", "en", "test").set_index("pair_id")
    assert len(t) == len(test) and (t["xnli_pair_id"] >= 0).all()
    assert t["xnli_pair_id"].is_unique and t["xnli_pair_id"].is_monotonic_increasing
    assert (en.loc[t["xnli_pair_id"], "label"].to_numpy() == test["label"].to_numpy()).all()
    en_prem = en.loc[t["xnli_pair_id"], "premise"].to_numpy()
    hits, off = 0, 0
    for s, e in premise_blocks(test):
        assert len(set(en_prem[s:e])) == 1                   # one block maps into one block
        ids = t["xnli_pair_id"].iloc[s:e].tolist()
        mine = _cues(test, list(range(s, e)))
        theirs = _cues(en.reset_index(), [int(en.index.get_loc(i)) for i in ids])
        other = _cues(en.reset_index(), [int(en.index.get_loc(i)) + 3 for i in ids])
        hits += bool(mine & theirs)
        off += bool(mine & other)
    assert hits > 3 * off


def test_item_keys() -> None:
    ids = np.array([0, 5, 7])
    assert item_keys("xnli", "de", "test", ids).tolist() == [0, 5, 7]
    anli = item_keys("americas_nli", "nah", "test/B-of-2", np.array([0, 1, 2]))
    assert anli.tolist() == pd.read_csv(SHIPPED).query("language == 'nah'")[
        "xnli_pair_id"].iloc[:3].tolist()
    own = item_keys("xnli", "de", "validation", ids)
    assert (own >= 1 << 20).all() and len(set(own) & set(ids)) == 0
    # XNLI validation is parallel too: the same pair id is one key in every language
    assert own.tolist() == item_keys("xnli", "sw", "validation", ids).tolist()
    assert not set(own) & set(item_keys("americas_nli", "aym", "validation", ids))
