"""The training configuration ``{language: n examples}`` as one validated, immutable type.

Why a type: a configuration enters xlt in many ways (``--train-config en:2490,de:2490``, a
batch line, the app's pickers, an HTTP request, a measured table, SumEval's published
files) and is used by every layer (features key it, the models group it by ISO 639-3 code,
the app matches measured to predicted by it). Each layer used to re-validate and convert it
again. A :class:`TrainConfig` is made once where a request enters (:meth:`TrainConfig.parse`,
:meth:`TrainConfig.from_text`, :meth:`TrainConfig.of`) and carries its derived forms
(``key``, ``iso``, ``json``), computed once.

Invariants of a parsed configuration: keys are language codes ``resolve_target`` knows, one
entry per language (``en`` and ``eng`` together are refused), counts are whole numbers in
1..MAX_EXAMPLES (zeros are dropped: SumEval lists every language with 0 for "not used"),
at least one language, sorted by code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from measure.knowledge.languages import UnknownLanguageError, resolve_target

#: examples per language beyond any NLI training set (MultiNLI has ~393k pairs): refused
MAX_EXAMPLES = 10_000_000
#: languages in one configuration (there are ~8,000 languages; a request naming more than
#: this many is not a training set): refused before any look-up
MAX_LANGUAGES = 200
#: the longest code shown back in an error message
_SHOWN = 40


class TrainConfigError(ValueError):
    """A value that cannot be a training configuration; the message names where and the fix."""


def shown(value: Any) -> str:
    """``repr(value)``, cut to a readable length (a 10 MB code is not echoed back whole)."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN - 5] + "...'"


def _count(lang: str, n: Any, where: str) -> int:
    """A whole number of examples 0..MAX_EXAMPLES, else :class:`TrainConfigError`."""
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        raise TrainConfigError(f"{where}: n for {shown(lang)} must be a whole number >= 0, "
                               f"got {shown(n)}")
    if isinstance(n, float) and (not math.isfinite(n) or n != int(n)):
        raise TrainConfigError(f"{where}: n for {shown(lang)} must be a whole number >= 0, "
                               f"got {shown(n)}")
    if n < 0:
        raise TrainConfigError(f"{where}: n for {shown(lang)} must be a whole number >= 0, "
                               f"got {shown(n)}")
    if n > MAX_EXAMPLES:
        size = f"{n:.3g}" if isinstance(n, float) or n < 10 ** 300 else "a number too large to show"
        raise TrainConfigError(f"{where}: n = {size} for {shown(lang)} is beyond any training set "
                               f"(at most {MAX_EXAMPLES:,} examples per language)")
    return int(n)


class TrainConfig(Mapping[str, int]):
    """``{language code: n}`` with n > 0, one entry per language, sorted by code; immutable
    and hashable (equal configurations hash equally, whatever object holds them).

    Compares equal to a plain ``dict`` with the same entries, so measured tables and requests
    match by value."""

    __slots__ = ("_items", "_dict", "_hash", "_key", "_iso", "_json")

    def __init__(self, items: Iterable[tuple[str, int]]) -> None:
        """Trusted constructor: ``items`` are already valid (use :meth:`parse` for input)."""
        self._items: tuple[tuple[str, int], ...] = tuple(sorted(items))
        self._dict = dict(self._items)
        self._hash = hash(self._items)
        self._key: tuple[tuple[str, float], ...] | None = None
        self._iso: dict[str, float] | None = None
        self._json: str | None = None

    # -- making one -------------------------------------------------------------------------
    @classmethod
    def parse(cls, value: Any, *, where: str = "train_config") -> TrainConfig:
        """A validated configuration from a mapping (or a :class:`TrainConfig`, returned as is).

        Refuses, naming ``where``: a non-mapping, a key that is not a known language code, two
        codes of one language, a count that is not a whole number in 0..MAX_EXAMPLES, more
        than MAX_LANGUAGES entries, and no language with n > 0. The first unknown code stops
        the check (each unknown code costs a search for close matches)."""
        if isinstance(value, TrainConfig):
            return value
        if not isinstance(value, Mapping):
            raise TrainConfigError(f"{where}: expected a mapping {{language: n}}, got "
                                   f"{type(value).__name__}")
        if len(value) > MAX_LANGUAGES:
            raise TrainConfigError(f"{where}: {len(value):,} languages; a configuration has at "
                                   f"most {MAX_LANGUAGES}")
        counts: dict[str, int] = {}
        iso_of: dict[str, str] = {}
        for lang, n in value.items():
            if not isinstance(lang, str):
                raise TrainConfigError(f"{where}: language keys must be strings, got {shown(lang)}")
            count = _count(lang, n, where)
            try:
                iso = resolve_target(lang).iso639_3
            except UnknownLanguageError as exc:
                raise TrainConfigError(f"{where}: {exc}") from None
            if count == 0:
                continue
            if iso in iso_of:
                raise TrainConfigError(f"{where}: {shown(iso_of[iso])} and {shown(lang)} are the "
                                       f"same language ({iso}); list each language once")
            iso_of[iso] = lang
            counts[lang] = count
        if not counts:
            raise TrainConfigError(f"{where}: no language with n > 0 (nothing was trained on)")
        return cls(counts.items())

    @classmethod
    def from_text(cls, text: str, *, where: str = "--train-config") -> TrainConfig:
        """'en:2490,de:2490' -> a validated configuration (the command line's form)."""
        out: dict[str, int] = {}
        for part in (p.strip() for p in str(text).split(",")):
            if not part:
                continue
            lang, sep, n = part.partition(":")
            lang = lang.strip()
            if not sep or not lang:
                raise TrainConfigError(f"{where}: bad item {shown(part)}: use LANG:N pairs, e.g. "
                                       "en:2490,de:2490")
            n = n.strip()
            if not n.isdigit():
                raise TrainConfigError(f"{where}: bad item {shown(part)}: N must be a whole "
                                       "number >= 0")
            if len(n) > 12:
                raise TrainConfigError(f"{where}: n for {shown(lang)} is beyond any training set "
                                       f"(at most {MAX_EXAMPLES:,} examples per language)")
            if lang in out:
                raise TrainConfigError(f"{where}: names {shown(lang)} twice")
            out[lang] = int(n)
        return cls.parse(out, where=where)

    @classmethod
    def of(cls, languages: Iterable[str], n: int) -> TrainConfig:
        """``n`` examples in each of ``languages`` (codes validated by the caller, e.g. a
        recommendation pool): the source sets ``recommend`` ranks."""
        return cls((lang, int(n)) for lang in languages)

    @classmethod
    def read(cls, value: Any) -> TrainConfig | None:
        """A configuration from a measured table, for display: also takes the JSON text the
        results store exports, looks no language up and never raises. None for a value that
        cannot be read; an empty configuration when every count is 0."""
        if isinstance(value, TrainConfig):
            return value
        if isinstance(value, (str, bytes)):
            try:
                value = json.loads(value)
            except ValueError:
                return None
        if not isinstance(value, Mapping):
            return None
        items = []
        for lang, n in value.items():
            if not isinstance(lang, str):
                return None
            try:
                count = _count(lang, n, "")
            except TrainConfigError:
                return None
            if count > 0:
                items.append((lang, count))
        return cls(items)

    @classmethod
    def coerce(cls, value: Any) -> TrainConfig:
        """:meth:`read`, for rows that must hold a configuration (a model's input table): an
        unreadable or empty value raises :class:`TrainConfigError`. A configuration that
        entered through :meth:`parse` comes back as it is, with its derived forms."""
        tc = cls.read(value)
        if tc is None:
            raise TrainConfigError(f"train_config must be a mapping {{language: n}} of whole "
                                   f"numbers >= 0, got {shown(value)}")
        if not tc:
            raise TrainConfigError("train_config has no language with n > 0")
        return tc

    # -- the Mapping protocol ---------------------------------------------------------------
    def __getitem__(self, lang: str) -> int:
        return self._dict[lang]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, lang: object) -> bool:
        return lang in self._dict

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TrainConfig):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._dict == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"TrainConfig({self._dict!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (TrainConfig, (self._items,))

    # -- derived forms, each computed once -------------------------------------------------
    @property
    def k(self) -> int:
        """The number of supervised languages."""
        return len(self._items)

    @property
    def total(self) -> int:
        """Examples over all languages."""
        return sum(n for _, n in self._items)

    @property
    def key(self) -> tuple[tuple[str, float], ...]:
        """((code, n as float), ...) sorted by code: the features' key of the configuration."""
        if self._key is None:
            self._key = tuple((lang, float(n)) for lang, n in self._items)
        return self._key

    @property
    def iso(self) -> dict[str, float]:
        """{ISO 639-3 code: n}: 'sw' and 'swh' are one source language to the models.

        (A parsed configuration has one entry per language; one read from a table may not,
        and then the counts of one language add up.)"""
        if self._iso is None:
            out: dict[str, float] = {}
            for lang, n in self._items:
                iso = resolve_target(lang).iso639_3
                out[iso] = out.get(iso, 0.0) + float(n)
            self._iso = out
        return dict(self._iso)

    @property
    def json(self) -> str:
        """Canonical JSON text, e.g. '{"de":2490,"en":2490}': the configuration's id in tables."""
        if self._json is None:
            self._json = json.dumps(self._dict, separators=(",", ":"))
        return self._json

    def as_dict(self) -> dict[str, int]:
        """A plain dict (for JSON output)."""
        return dict(self._dict)
