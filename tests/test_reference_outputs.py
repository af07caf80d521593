"""The shipped predictor answers exactly as recorded, through the API, the CLI and the app.

Why: restructuring the code must not move one prediction. ``tests/reference/reference.json``
holds the answers of the shipped ``models/`` to ~400 prediction rows, bad records, seven
recommendations, the feature model, 15 CLI runs, a 61-line batch and the app's services;
a deliberate change (a refit) regenerates it with the command in
``tests/reference/make_reference.py`` and says so in the commit.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent / "reference"


def _load_maker() -> Any:
    spec = importlib.util.spec_from_file_location("make_reference", HERE / "make_reference.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def _compare(a: Any, b: Any, path: str, diffs: list[str]) -> None:
    if len(diffs) > 20:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            diffs.append(f"{path}: keys {sorted(set(a) ^ set(b))[:5]} differ")
        for k in sorted(set(a) & set(b)):
            _compare(a[k], b[k], f"{path}.{k}", diffs)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            diffs.append(f"{path}: length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            _compare(x, y, f"{path}[{i}]", diffs)
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        if not math.isclose(a, b, rel_tol=0, abs_tol=1e-9):
            diffs.append(f"{path}: {a!r} != {b!r}")
    elif a != b:
        diffs.append(f"{path}: {str(a)[:200]!r} != {str(b)[:200]!r}")


@pytest.mark.slow
def test_shipped_predictor_answers_as_recorded() -> None:
    recorded = json.loads((HERE / "reference.json").read_text(encoding="utf-8"))
    now = json.loads(json.dumps(_load_maker().build(), sort_keys=True))
    diffs: list[str] = []
    _compare(now, recorded, "reference", diffs)
    assert not diffs, "answers moved:\n" + "\n".join(diffs)


@pytest.mark.slow
def test_meta_analysis_report_as_recorded() -> None:
    recorded = json.loads((HERE / "reference_report.json").read_text(encoding="utf-8"))
    now = json.loads(json.dumps(_load_maker().report_outputs(), sort_keys=True))
    diffs: list[str] = []
    _compare(now, recorded, "report", diffs)
    assert not diffs, "the report moved:\n" + "\n".join(diffs)
