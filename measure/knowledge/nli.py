"""The NLI task's constants and the two small rules every package applies to its rows.

Why here: the measurement code, the predictor, the meta-analysis and the app all speak of
the same three labels, the same chance level, the same two datasets and the same notion of
"zero-shot" and "training pool"; each used to spell them out itself.
"""

from __future__ import annotations

from collections.abc import Mapping

#: the label order of every stored dataset and confusion matrix (rows = gold labels)
LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")

#: accuracy and macro-F1 of a uniform guess over the three labels
CHANCE: float = 100.0 / 3

#: XNLI's 15 languages (dataset codes): the source pool of every design and the app's default
XNLI_15: tuple[str, ...] = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw",
                            "th", "tr", "ur", "vi", "zh")

#: AmericasNLI's languages as its test sets name them (Mager et al., 2021)
AMERICAS_NLI: tuple[str, ...] = ("aym", "bzd", "cni", "hch", "nah", "oto", "tar")


def pool_name(train_dataset: object, train_split: object) -> str:
    """Where a cell's training examples came from, e.g. 'xnli/validation'.

    Two pools are two experiments (human-translated XNLI validation vs machine-translated
    XNLI-MT), so every analysis keeps them apart by this name."""
    return f"{train_dataset}/{train_split}"


def is_zero_shot(train_config: Mapping[str, float], target: str) -> bool:
    """True when ``target`` is not among the configuration's supervised languages (n > 0)."""
    n = train_config.get(target, 0)
    return not (n and n > 0)
