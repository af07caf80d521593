"""What goes with an answer in words: its basis, its support flag and reason, its interval
level, and a language named the way a person names it.

Why one module: ``xlt-predict query`` and ``recommend`` print the same answers the JSON
forms carry (:mod:`predictor.serving.answers`, shared with the HTTP API); a number without
its basis, flag and interval level reads as trustworthy (the README's ``recommend`` example
was out of support for every set and its text output said nothing).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from measure.knowledge.languages import (UnknownLanguageError, registry_table, resolve_target,
                                         search_languages)
from predictor.serving.answers import set_reason

#: a metric's name in text output
METRIC_WORDS = {"macro_f1": "macro-F1", "accuracy": "accuracy"}

#: what each prediction basis means, in the words every output uses
BASIS_WORDS = {"measured-target": "from this target's own measurements",
               "unseen-target": "target not measured: predicted from its features"}


def language_code(text: str) -> str:
    """A language given by code or by name, as the app's pickers take it: 'cy', 'cym' or
    'Welsh' -> a code :func:`~measure.knowledge.languages.resolve_target` accepts.

    An unknown one raises ``UnknownLanguageError`` naming the languages whose name contains
    it, or whose name is close ('Welsch' -> Welsh (cy)); a name used to get only code
    look-alikes ('Welsh' -> 'lsh, esh')."""
    text = text.strip()
    try:
        resolve_target(text)
        return text
    except UnknownLanguageError as exc:
        unknown = str(exc)
    matches = search_languages(text, limit=8)
    exact = [m for m in matches if m.name.lower() == text.lower()]
    if exact:
        return exact[0].code
    if matches:
        raise UnknownLanguageError(f"unknown language {text!r}; languages whose name contains "
                                   "it: " + ", ".join(f"{m.name} ({m.code})" for m in matches))
    table = registry_table()
    names = dict(zip(table["name"], table["code"]))
    close = difflib.get_close_matches(text, list(names), n=5, cutoff=0.75)
    if close:
        unknown += "; or by name: " + ", ".join(f"{n} ({names[n]})" for n in close)
    raise UnknownLanguageError(unknown)


def query_text(model: str, method: str, target: str, metric: str, res: Mapping[str, Any],
               level: float) -> list[str]:
    """The lines ``xlt-predict query`` prints: the number, its interval and level, basis,
    pretraining class and profile; then the support reason when there is one."""
    lines = [f"{model}/{method} -> {resolve_target(target).name} ({target}): "
             f"{res['prediction']:.1f} {METRIC_WORDS.get(metric, metric)} "
             f"[{res['lower']:.1f}, {res['upper']:.1f}] ({level:.0%} interval; basis "
             f"{res['basis']}: {BASIS_WORDS.get(res['basis'], '')}; pretraining: "
             f"{res['pretraining']}; profile: {'yes' if res['profile'] else 'none'})"]
    if res["out_of_support"]:
        lines.append(f"outside the training support, interval widened: {res['reason']}")
    if res.get("interval_note"):
        lines.append(f"note: {res['interval_note']}")
    if res.get("profile_note"):
        lines.append(f"note: {res['profile_note']}")
    return lines


def recommend_text(df: pd.DataFrame, details: Sequence[Mapping[str, Any]],
                   level: float) -> list[str]:
    """The lines ``xlt-predict recommend`` prints, from the ranking and its
    :func:`~predictor.serving.answers.ranked_details`: settings and interval level, each
    target's basis, the ranked sets ('!' marks an out-of-support prediction, '~' a set
    within the ranking noise of the best), then the noise note and the reasons."""
    a = df.attrs
    lines = [f"{a['model']}/{a['method']}: best {a['k']}-language source sets for "
             f"{','.join(a['targets'])} by {a['objective']} predicted score "
             f"({a['n_combinations']} sets, {a['n_per_language']:,} examples per language; "
             f"[{level:.0%} interval] per target)"]
    if details:
        lines.append("basis: " + "; ".join(f"{t} {d['basis']} ({BASIS_WORDS.get(d['basis'], '')})"
                                           for t, d in details[0].items()))
    if a["dropped_from_pool"]:
        lines.append(f"(targets removed from the pool: {','.join(a['dropped_from_pool'])}; "
                     "--include-targets keeps them)")
    for r, d in zip(df.to_dict("records"), details):
        per = "  ".join(f"{t} {r[t]:.1f} [{r[f'{t}_lower']:.1f}, {r[f'{t}_upper']:.1f}]"
                        f"{'!' if d[t]['out_of_support'] else ''}" for t in a["targets"])
        lines.append(f"{r['rank']:>3}. {'+'.join(r['sources']):<30} {a['objective']} "
                     f"{r['objective']:.1f}{' ~' if r['within_noise_of_best'] else '  '} {per}")
    if a["n_within_noise_of_best"] > 1:
        lines.append(f"~ {a['n_within_noise_of_best']} of these sets are within the "
                     f"predictor's ranking noise of the best ({a['noise_margin']:.2f} points, "
                     "from held-out targets): their order is not reliable")
    reasons = dict.fromkeys(why for d in details if (why := set_reason(d)))
    if reasons:
        lines.append("! outside the training support, interval widened: "
                     + " | ".join(reasons))
    return lines
