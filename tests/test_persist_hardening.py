"""The model card is sealed with the model file, and model_file stays inside the model
directory (no ../, absolute paths or symlinks out): a downloaded model directory is loaded
automatically, so an edited card or a path out of it must be refused."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from predictor import persist
from predictor.persist import ModelIntegrityError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "m"
    persist.save({"point": None, "scale": None, "w": np.arange(3.0)}, d,
                 {"selected_model": "ridge", "intervals": {"quantile": np.float64(9.5), "level": 0.8},
                  "note": "é ü"})
    return d


def _edit(d: Path, **changes: object) -> None:
    card = json.loads((d / persist.CARD_FILE).read_text(encoding="utf-8"))
    card.update(changes)
    (d / persist.CARD_FILE).write_text(json.dumps(card, indent=2), encoding="utf-8")


def test_saved_card_is_sealed_and_loads(model_dir: Path) -> None:
    obj, card = persist.load(model_dir)
    assert card["card_sha256"] == persist.card_sha256(card)
    assert card["intervals"]["quantile"] == 9.5 and card["note"] == "é ü"
    # formatting of the file does not matter, only its content
    raw = json.loads((model_dir / persist.CARD_FILE).read_text(encoding="utf-8"))
    (model_dir / persist.CARD_FILE).write_text(json.dumps(raw, sort_keys=True))
    persist.load(model_dir)


def test_shipped_model_card_is_sealed() -> None:
    d = REPO / "models" / "predictor"
    card = persist.read_card(d)
    persist.verify_card(card, d / persist.CARD_FILE)


@pytest.mark.parametrize("change", [
    {"intervals": {"quantile": 0.01, "level": 0.8}},
    {"selected_model": "hgb"},
    {"card_sha256": "0" * 64},
    {"extra": 1},
])
def test_edited_card_is_refused(model_dir: Path, change: dict) -> None:
    _edit(model_dir, **change)
    with pytest.raises(ModelIntegrityError, match="modified"):
        persist.load(model_dir)


def test_card_without_seal_or_not_an_object(model_dir: Path) -> None:
    card = json.loads((model_dir / persist.CARD_FILE).read_text())
    del card["card_sha256"]
    (model_dir / persist.CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError, match="no card_sha256"):
        persist.load(model_dir)
    (model_dir / persist.CARD_FILE).write_text("[1, 2]")
    with pytest.raises(ModelIntegrityError, match="JSON object"):
        persist.load(model_dir)
    (model_dir / persist.CARD_FILE).write_bytes(b"{\xff}")
    with pytest.raises(ModelIntegrityError, match="not valid JSON"):
        persist.load(model_dir)


def _reseal(d: Path, **changes: object) -> None:
    """An attacker who also recomputes the seal: model_file must still stay inside."""
    card = json.loads((d / persist.CARD_FILE).read_text())
    card.update(changes)
    card["card_sha256"] = persist.card_sha256(card)
    (d / persist.CARD_FILE).write_text(json.dumps(card))


@pytest.mark.parametrize("name", ["../outside.skops", "/etc/passwd", "sub/x.skops", "..", "",
                                  5, None, "a\\..\\b"])
def test_model_file_cannot_leave_the_directory(model_dir: Path, name: object) -> None:
    outside = model_dir.parent / "outside.skops"
    shutil.copy(model_dir / persist.MODEL_FILE, outside)
    _reseal(model_dir, model_file=name)
    with pytest.raises(ModelIntegrityError, match="model_file"):
        persist.load(model_dir)


def test_symlink_out_is_refused(model_dir: Path) -> None:
    outside = model_dir.parent / "outside.skops"
    shutil.move(model_dir / persist.MODEL_FILE, outside)
    (model_dir / persist.MODEL_FILE).symlink_to(outside)
    with pytest.raises(ModelIntegrityError, match="leads outside"):
        persist.load(model_dir)


def test_cli_reports_edited_card_cleanly(model_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys
    shipped = tmp_path / "shipped"
    shutil.copytree(REPO / "models" / "predictor", shipped)
    card = json.loads((shipped / persist.CARD_FILE).read_text())
    original = json.dumps(card)
    text = re.sub(r'"quantile": [0-9.eE+-]+', '"quantile": 0.01', original, count=1)
    assert text != original, "the shipped card has no interval quantile to edit"
    (shipped / persist.CARD_FILE).write_text(text)
    proc = subprocess.run([sys.executable, "-m", "predictor.cli", "query", "--predictor",
                           str(shipped), "--model", "xlmr", "--train-config", "en:1000", "--target", "sw"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode != 0 and "modified" in proc.stderr and "Traceback" not in proc.stderr
