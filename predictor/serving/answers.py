"""The JSON form of a recommendation, for every door that answers in JSON.

Why a module of its own: ``xlt-predict recommend --json`` and ``POST /recommend`` of
``xlt-predict serve`` must give the same fields with the same words, and the HTTP module
imports FastAPI, which the command line should not pay for.
"""

from __future__ import annotations

import math
from typing import Any

from measure.knowledge.train_config import TrainConfig
from predictor.serving.predictor import Predictor

#: the recommendation's attributes (``df.attrs``) every JSON answer carries
RANKING_ATTRS = ("model", "method", "objective", "k", "n_per_language", "targets",
                 "dropped_from_pool", "n_combinations", "noise_margin", "n_within_noise_of_best")


def ranked_details(p: Predictor, df: Any) -> list[dict[str, dict[str, Any]]]:
    """Per ranked set, per target: basis, out_of_support and reason of its prediction.

    Why asked again: the ranking keeps one number per (set, target) for thousands of sets;
    the few listed sets are predicted once more (the same rows, the same answers) for the
    words that go with them."""
    a = df.attrs
    sets = [r["sources"] for r in df.to_dict("records")]
    rows = [{"model": a["model"], "method": a["method"], "target": t,
             "train_config": TrainConfig.of(s, a["n_per_language"])}
            for s in sets for t in a["targets"]]
    pred = p.predict(rows).to_dict("records") if rows else []
    nt = len(a["targets"])
    return [{t: {"basis": str(r["basis"]), "out_of_support": bool(r["out_of_support"]),
                 "reason": str(r["reason"]) or None}
             for t, r in zip(a["targets"], pred[i * nt:(i + 1) * nt])}
            for i in range(len(sets))]


def set_reason(details: dict[str, dict[str, Any]]) -> str | None:
    """One set's reasons, each distinct reason once, prefixed by the targets it concerns."""
    by_reason: dict[str, list[str]] = {}
    for t, d in details.items():
        if d["reason"]:
            by_reason.setdefault(d["reason"], []).append(t)
    return "; ".join(f"{','.join(ts)}: {why}" for why, ts in by_reason.items()) or None


def ranking_json(p: Predictor, df: Any) -> dict[str, Any]:
    """A recommendation (:meth:`Predictor.recommend`'s frame) as plain JSON: its attributes,
    the interval level, and per listed set its objective, flags, reason and per-target
    prediction with interval, basis, support flag and reason."""
    a = df.attrs
    ranking = []
    for r, d in zip(df.to_dict("records"), ranked_details(p, df)):
        ranking.append({"rank": int(r["rank"]), "sources": list(r["sources"]),
                        "objective": round(float(r["objective"]), 2),
                        "within_noise_of_best": bool(r["within_noise_of_best"]),
                        "basis": r["basis"], "out_of_support": bool(r["out_of_support"]),
                        "reason": set_reason(d),
                        "per_target": {t: {"prediction": round(float(r[t]), 2),
                                           "lower": round(float(r[f"{t}_lower"]), 2),
                                           "upper": round(float(r[f"{t}_upper"]), 2), **d[t]}
                                       for t in a["targets"]}})
    return {**{k: _plain(a[k]) for k in RANKING_ATTRS},
            "interval_level": round(1 - p.card["intervals"]["alpha"], 4), "ranking": ranking}


def _plain(v: Any) -> Any:
    """numpy scalars as Python numbers, NaN as null (JSON has no NaN)."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item"):
        v = v.item()
    return None if isinstance(v, float) and math.isnan(v) else v
