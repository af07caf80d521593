"""xlt-predict evaluate --markdown: the card's tables, as docs/results.md quotes them, in
words (no internal protocol, baseline or spec names) and with one sign convention."""

import json
from pathlib import Path

from predictor.card import card_markdown, card_text
from predictor.cli import main
from predictor.formatting import dataset_label, protocol_label, spec_label

CARD = Path(__file__).resolve().parents[1] / "models" / "predictor" / "model_card.json"
INTERNAL = ("mm_mean", "mm_class_mean", "target_mean", "unseen_target", "unseen_family",
            "unseen_config", "lasso(", "base=mm", "per-design", "hgb(")


def test_every_cv_row_and_group_is_printed():
    card = json.loads(CARD.read_text("utf-8"))
    md = card_markdown(card)
    for r in card["cv_by_dataset"]:
        assert (f"| {protocol_label(r['protocol'])} | {dataset_label(r['dataset'])} | "
                f"{r['targets']} | **{r['mae']:.2f}** |") in md
    for basis in ("unseen-target", "measured-target"):
        for group, g in card["intervals"][basis]["groups"].items():
            assert f"{group.replace('|', ' · ')} | {g['targets']} | {g['quantile']:.2f}" in md
    for r in card["ranking"]:
        assert f"**{r['spearman']['model']:.3f}**" in md
        for band in r.get("by_k", []):
            assert f"k = {band['k']} ({band['sets']}," in md


def test_plain_and_markdown_share_words_and_sign():
    """The change against the best baseline reads the same in both forms: negative = the
    predictor's MAE is lower (it was +47% in plain text and -47% in Markdown)."""
    card = json.loads(CARD.read_text("utf-8"))
    md, text = card_markdown(card), card_text(card)
    for out in (md, text.split("\nselected for")[0]):
        for word in INTERNAL:
            assert word not in out, word
    for r in card["cv_by_dataset"]:
        pct = f"{-100 * r['rel_improvement']:+.0f}%"
        assert f"| {pct} |" in md and f"({pct}, {r['targets_better']}/" in text
    assert "negative = better" in md and "negative = better" in text
    assert spec_label(card["selected_model"]) in text


def test_spec_labels_are_words():
    assert spec_label("lasso(alpha=0.03)|base=mm|per-design|+within-target hgb") == (
        "Lasso (α = 0.03) on the deviation from the design mean, one per design, "
        "+ within-target trees")
    assert spec_label("mm_class_mean") == "design × pretraining-class mean"
    assert spec_label("per design: xlmr|finetune: ridge(alpha=1)|base=mm_class|pooled") == (
        "xlmr · finetune: Ridge (α = 1) on the deviation from the design × pretraining-class "
        "mean, shared by all designs")
    assert dataset_label("own:me5-small:americas_nli") == "me5-small · AmericasNLI (own)"


def test_cli_markdown(capsys):
    assert main(["evaluate", "--predictor", str(CARD.parent), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Training rows:") and "### Ablation" in out
