"""The cells progress bar advances by each cell's expected cost, so its ETA is the whole
batch's: cells run cheapest first, and a bar counting cells would promise the end of a
batch of 2,490-row singles and 37,350-row 15-language sets far too early."""

from __future__ import annotations

from pathlib import Path

from measure.cell import CellRecord
from measure.running.config import build_batch
from measure.running.engine import CELL_OVERHEAD_ROWS, Recorder, cell_cost, cheap_first
from measure.store import ResultStore

CONFIG = {
    "name": "eta", "model": "me5-small", "method": "probe", "eval_cap": 100,
    "budget": {"per_language": 1000},
    "targets": [{"split": "xnli/test", "languages": ["en"]}],
    "sources": [{"pool": "xnli/validation", "languages": ["en", "de", "fr", "es"],
                 "singles": True, "pairs_from": ["en", "de"]},
                {"pool": "xnli/validation", "sets": [["en", "de", "fr", "es"]]}],
}


def test_cost_follows_training_rows(nli_dir: Path) -> None:
    cells = cheap_first(build_batch(CONFIG, nli_dir).cells)
    costs = [cell_cost(c) for c in cells]
    assert costs == sorted(costs)
    assert costs[0] == 1000 + CELL_OVERHEAD_ROWS and costs[-1] == 4000 + CELL_OVERHEAD_ROWS


def test_bar_advances_by_cost_and_counts_cells(nli_dir: Path, tmp_path: Path) -> None:
    cells = cheap_first(build_batch(CONFIG, nli_dir).cells)        # 4 singles, 1 pair, 1 four-set
    assert len(cells) == 6
    with ResultStore(tmp_path / "s.sqlite") as store:
        rec = Recorder(store, cells, progress=False)
        total = sum(cell_cost(c) for c in cells)
        assert rec.total_cost == total
        for c in cells[:5]:
            rec(CellRecord(config=c, status="failed", error="test"))
        # 5 of 6 cells are done (83%), but 4,500 of 13,000 cost units remain: the bar is at 65%
        assert rec.cost_done == total - cell_cost(cells[-1]) == 8_500 and total == 13_000
        assert rec.failed == 5 and rec.postfix() == "5/6 cells"
        assert rec.timer.cells == 5 and "store" in rec.timer.wall
