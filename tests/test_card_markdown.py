"""xlt-predict evaluate --markdown: the card's tables, as docs/results.md quotes them."""

import json
from pathlib import Path

from predictor.card import card_markdown
from predictor.cli import main

CARD = Path(__file__).resolve().parents[1] / "models" / "predictor" / "model_card.json"


def test_every_cv_row_and_group_is_printed():
    card = json.loads(CARD.read_text("utf-8"))
    md = card_markdown(card)
    for r in card["cv_by_dataset"]:
        assert f"| {r['protocol']} | {r['dataset']} | {r['targets']} | **{r['mae']:.2f}** |" in md
    for basis in ("unseen-target", "measured-target"):
        for group, g in card["intervals"][basis]["groups"].items():
            assert f"{group.replace('|', ' · ')} | {g['targets']} | {g['quantile']:.2f}" in md
    for r in card["ranking"]:
        assert f"**{r['spearman']['model']:.3f}**" in md
        for band in r.get("by_k", []):
            assert f"k = {band['k']} ({band['sets']}," in md


def test_cli_markdown(capsys):
    assert main(["evaluate", "--predictor", str(CARD.parent), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Training rows:") and "### Ablation" in out
