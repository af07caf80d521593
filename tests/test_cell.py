"""The typed cell keeps every stored cell hash: its JSON is exactly the old cell dict's."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from measure.cell import CellSpec, canonical_json, cell_hash

REPO = Path(__file__).resolve().parent.parent
TABLES = [p for p in sorted((REPO / "models" / "measurements").glob("*.parquet"))
          if "config_json" in pq.read_schema(p).names]  # cell tables (not the greedy path)


@pytest.mark.parametrize("path", TABLES, ids=[p.name for p in TABLES])
def test_every_committed_cell_hash_is_recomputed_through_cellspec(path: Path) -> None:
    cells = pd.read_parquet(path, columns=["cell_hash", "config_json"]).drop_duplicates()
    assert len(cells) > 0
    for h, config_json in zip(cells["cell_hash"], cells["config_json"]):
        raw = json.loads(config_json)
        spec = CellSpec.from_dict(raw)
        assert canonical_json(spec.to_dict()) == canonical_json(raw)
        assert cell_hash(spec) == spec.hash == h


def test_cellspec_is_frozen_and_travels_to_workers() -> None:
    raw = json.loads(pd.read_parquet(TABLES[0], columns=["config_json"])["config_json"].iloc[0])
    spec = CellSpec.from_dict(raw)
    with pytest.raises(AttributeError):
        spec.seed = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.train_config["en"] = 1  # type: ignore[index]
    again = pickle.loads(pickle.dumps(spec))
    assert again == spec and again.hash == spec.hash
