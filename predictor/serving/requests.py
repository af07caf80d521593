"""What a prediction request may ask: the predictor's systems and the checks on one record.

Why a module of its own: every door into the predictor (the Python API, ``xlt-predict
query``/``batch``/``recommend``, the app, the coming HTTP service) must refuse the same
requests with the same words, and none of these checks needs a fitted model, only the
card's list of systems (one (model, method) pair each).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from measure.knowledge.languages import UnknownLanguageError, resolve_target
from measure.knowledge.train_config import TrainConfig, TrainConfigError, shown


class PredictionInputError(ValueError):
    """A prediction request the predictor cannot answer (unknown model, language, ...)."""


class Systems:
    """The (model, method) systems of a card (``card['models']``), in the card's order."""

    def __init__(self, entries: Iterable[Mapping[str, Any]]) -> None:
        self.entries = list(entries)
        self.methods: dict[str, list[str]] = {}
        for m in self.entries:
            self.methods.setdefault(m["model"], []).append(m["method"])

    def resolve_method(self, model: Any, method: Any = None) -> str:
        """The method for ``model``: the given one if valid, else the model's only method."""
        if not isinstance(model, str) or model not in self.methods:
            raise PredictionInputError(f"unknown model {shown(model)}; this predictor knows "
                                       f"{sorted(self.methods)}")
        methods = self.methods[model]
        if method is None:
            if len(methods) > 1:
                raise PredictionInputError(f"model {model!r} has several methods {methods}: "
                                           "pass one as 'method'")
            return methods[0]
        if method not in methods:
            raise PredictionInputError(f"model {model!r} has no method {shown(method)}; "
                                       f"known: {methods}")
        return str(method)

    def info(self, model: str, method: str) -> dict[str, Any]:
        """The card's entry of one system (origin, metric, typical size, targets)."""
        for m in self.entries:
            if m["model"] == model and m["method"] == method:
                return dict(m)
        raise PredictionInputError(f"unknown model/method {model}/{method}")


def validate_record(rec: Any, systems: Systems) -> dict[str, Any]:
    """A clean row {model, method, train_config, target} or ``PredictionInputError``."""
    if not isinstance(rec, Mapping):
        raise PredictionInputError(f"expected an object, got {type(rec).__name__}")
    task = rec.get("task", "xnli")
    if task != "xnli":
        raise PredictionInputError(f"unknown task {shown(task)}; the predictor covers 'xnli' "
                                   "(3-way NLI)")
    missing = [c for c in ("model", "train_config", "target") if c not in rec]
    if missing:
        raise PredictionInputError(f"missing field(s) {missing}")
    method = systems.resolve_method(rec["model"], rec.get("method"))
    target = rec["target"]
    if not isinstance(target, str) or not target.strip():
        raise PredictionInputError(f"target must be a language code such as 'sw', got "
                                   f"{shown(target)}")
    target = target.strip()
    try:
        tc = TrainConfig.parse(rec["train_config"])
        resolve_target(target)
    except (TrainConfigError, UnknownLanguageError) as exc:
        raise PredictionInputError(str(exc)) from None
    return {"model": rec["model"], "method": method, "train_config": tc, "target": target}


def known_language(code: str) -> str:
    """``code``'s ISO 639-3, or ``PredictionInputError`` naming the unknown code."""
    try:
        return resolve_target(code).iso639_3
    except UnknownLanguageError as exc:
        raise PredictionInputError(str(exc)) from None


def without_missing_method(rec: Mapping[str, Any]) -> dict[str, Any]:
    """``rec`` without a ``method`` that is None or NaN (a frame's empty cell): the model's
    only method is meant."""
    return {k: v for k, v in rec.items() if not (k == "method" and _missing(v))}


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
