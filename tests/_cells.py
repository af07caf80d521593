"""Build a typed cell for a test from only the fields the test cares about."""

from __future__ import annotations

from typing import Any

from measure.cell import CellSpec

DEFAULTS: dict[str, Any] = {
    "model": "me5-small", "method": "probe", "backend": "ort-int8-s8", "train_dataset": "xnli",
    "train_split": "validation", "regime": "per_language", "train_config": {"en": 100},
    "seed": 0, "params": {}, "targets": [], "eval_cap": 0,
}


def spec(**fields: Any) -> CellSpec:
    """A ``CellSpec`` with ``fields`` over ``DEFAULTS``."""
    return CellSpec.from_dict({**DEFAULTS, **fields})
