"""Which scored items are translations of one another: one key per source item.

Why: an item-level bootstrap must reweight an item in every language that translates it
at once, or the intervals over targets come out too narrow (the targets' item noise is
shared, not independent). XNLI test is 15-way parallel: ``pair_id`` is the item. The
AmericasNLI test sets translate XNLI test pairs -- row for row the first 251 premise blocks
of XNLI test (3 hypotheses per premise) less one block -- but their row numbers do not say
which: Nahuatl (738 rows) and Otomi (748) lack a few rows, so the same row number is
another pair there. ``measure/resources/americas_nli_test_items.csv`` maps each AmericasNLI
test row to the XNLI test ``pair_id`` it translates, found by aligning the premise blocks'
gold-label sequences monotonically (every block's labels must match). The labels decide;
digits and capitalised names shared with the English text are a check
(``tests/test_item_keys.py``: the aligned blocks share them far more often than blocks one
position off). Build it with ``python -m measure.knowledge.item_keys --data-dir DIR``.

Keys: XNLI test items keep their ``pair_id``; an AmericasNLI test row gets the XNLI test
``pair_id`` it translates; anything else (other splits, unmapped rows) gets a key of its
own per (dataset, split, pair_id), which assumes those items are translated nowhere else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

ALIGNMENT_FILE = "americas_nli_test_items.csv"
AMERICAS = ("aym", "bzd", "cni", "hch", "nah", "oto", "tar")
#: keys of items outside XNLI test start here (XNLI test has 5,010 pair ids)
OWN_KEY_BASE = 1 << 20
_OWN_KEY_STRIDE = 1 << 20          # per (dataset, split): room for a million pair ids


def premise_blocks(frame: pd.DataFrame) -> list[tuple[int, int]]:
    """(start, end) row ranges of consecutive rows sharing one premise."""
    prem = frame["premise"].astype(str).str.strip().tolist()
    out, start = [], 0
    for i in range(1, len(prem) + 1):
        if i == len(prem) or prem[i] != prem[start]:
            out.append((start, i))
            start = i
    return out


def _is_subsequence(small: Sequence[int], big: Sequence[int]) -> bool:
    it = iter(big)
    return all(s in it for s in small)


def align_blocks(target: pd.DataFrame, reference: pd.DataFrame) -> dict[int, int]:
    """{target row: reference row} from a monotone alignment of premise blocks: each target
    block to one reference block whose gold labels contain its own in order (reference
    blocks may be skipped; a target block left unmatched costs more than any skip)."""
    tb, rb = premise_blocks(target), premise_blocks(reference)
    lt, lr = target["label"].to_numpy(), reference["label"].to_numpy()
    fits = np.array([[_is_subsequence(tuple(lt[s:e]), tuple(lr[u:v])) for u, v in rb]
                     for s, e in tb], dtype=bool)
    n_t, n_r = len(tb), len(rb)
    neg = -1e9
    score = np.full((n_t + 1, n_r + 1), neg)
    score[0, :] = 0.0
    move = np.zeros((n_t + 1, n_r + 1), np.int8)      # 1 skip reference, 2 match, 3 drop
    for i in range(1, n_t + 1):
        for j in range(1, n_r + 1):
            best, how = score[i, j - 1], 1
            if fits[i - 1, j - 1] and score[i - 1, j - 1] + 1.0 > best:
                best, how = score[i - 1, j - 1] + 1.0, 2
            if score[i - 1, j] - 2.0 > best:
                best, how = score[i - 1, j] - 2.0, 3
            score[i, j], move[i, j] = best, how
    rows: dict[int, int] = {}
    i, j = n_t, n_r
    while i > 0 and j > 0:
        how = move[i, j]
        if how == 2:
            (s, e), (u, v) = tb[i - 1], rb[j - 1]
            ref_rows = iter(range(u, v))
            for r in range(s, e):                     # rows in order, by label
                rows[r] = next(q for q in ref_rows if lr[q] == lt[r])
            i, j = i - 1, j - 1
        elif how == 1:
            j -= 1
        else:
            i -= 1
    return rows


def build_alignment(data_dir: Path) -> pd.DataFrame:
    """(language, pair_id, xnli_pair_id) for every AmericasNLI test row (-1: unmatched)."""
    from measure.data import load_parquet_split
    ref = load_parquet_split(data_dir, "xnli", "en", "test")
    parts = []
    for lang in AMERICAS:
        test = load_parquet_split(data_dir, "americas_nli", lang, "test")
        rows = align_blocks(test, ref)
        mapped = [int(ref["pair_id"].iloc[rows[i]]) if i in rows else -1
                  for i in range(len(test))]
        parts.append(pd.DataFrame({"language": lang, "pair_id": test["pair_id"].astype(int),
                                   "xnli_pair_id": mapped}))
    return pd.concat(parts, ignore_index=True)


@lru_cache(maxsize=1)
def _alignment() -> dict[tuple[str, int], int]:
    with resources.files("measure.resources").joinpath(ALIGNMENT_FILE).open(
            encoding="utf-8") as fh:
        table = pd.read_csv(fh)
    return {(str(r.language), int(r.pair_id)): int(r.xnli_pair_id)
            for r in table.itertuples() if int(r.xnli_pair_id) >= 0}


def _own_keys(dataset: str, split: str, pair_ids: np.ndarray) -> np.ndarray:
    """Keys for items translated nowhere else we know of: one block per (dataset, split)."""
    import zlib
    block = 1 + zlib.crc32(f"{dataset}/{split.split('/')[0]}".encode()) % 2000
    return OWN_KEY_BASE + block * _OWN_KEY_STRIDE + np.asarray(pair_ids, dtype=np.int64)


def item_keys(dataset: str, language: str, split: str, pair_ids: Sequence[int]) -> np.ndarray:
    """One key per item: equal keys are translations of one source item (module docs).
    ``split`` may name a part (``test/B-of-2``): parts keep their rows' pair ids."""
    ids = np.asarray(pair_ids, dtype=np.int64)
    base = split.split("/")[0]
    if dataset == "xnli" and base == "test":
        return ids.copy()
    if dataset == "americas_nli" and base == "test":
        table = _alignment()
        own = _own_keys(dataset, split, ids)
        return np.array([table.get((language, int(p)), int(o)) for p, o in zip(ids, own)],
                        dtype=np.int64)
    return _own_keys(dataset, split, ids)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m measure.knowledge.item_keys",
                                 description="build the AmericasNLI -> XNLI test item table")
    ap.add_argument("--data-dir", type=Path, default=None, help="NLI data root")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"default: measure/resources/{ALIGNMENT_FILE} in this checkout")
    args = ap.parse_args(argv)
    from measure.data import resolve_data_dir
    table = build_alignment(resolve_data_dir(args.data_dir))
    out = args.out or Path(__file__).resolve().parent.parent / "resources" / ALIGNMENT_FILE
    table.to_csv(out, index=False)
    unmatched = int((table["xnli_pair_id"] < 0).sum())
    print(f"{out}: {len(table)} rows, {table['xnli_pair_id'].ge(0).sum()} mapped, "
          f"{unmatched} unmatched", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
