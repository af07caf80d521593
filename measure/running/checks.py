"""The checks every value of a batch config goes through, and the error they raise.

Why a module of its own: the batch config (:mod:`measure.running.config`) and the cell
options it validates (:mod:`measure.running.options`: target parts, target shots, probe
centring) read the same typed checks -- a split reference, a strict integer, a table with
only known keys, languages with data in a pool -- so each rule and its message lives once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from measure.data import (DataError, SplitRef, available_splits, languages_with_split,
                          validate_splits)
from measure.knowledge.languages import UnknownLanguageError, resolve_target

MAX_SEED = 2**32 - 1  # numpy / scikit-learn random_state range


class ConfigError(ValueError):
    """A batch config problem; the message names the key and the fix."""


def split_ref(value: Any, key: str) -> tuple[str, str]:
    """(dataset, split) of a ``dataset/split`` string (a part name such as ``test/A-of-2``
    or a language path is not one)."""
    if not isinstance(value, str) or value.count("/") != 1:
        raise ConfigError(f"{key} = {value!r}: expected 'dataset/split', e.g. 'xnli/validation'")
    ds, split = value.split("/")
    return ds, split


def is_int(value: Any) -> bool:
    """TOML integers only: a bool is not an int here (``seeds = [true]`` is a mistake)."""
    return isinstance(value, int) and not isinstance(value, bool)


def int_list(value: Any, key: str) -> list[int]:
    """Seeds: a non-empty list of integers in 0..2**32-1 (a bare integer is one seed)."""
    if is_int(value):
        value = [value]
    if not isinstance(value, list) or not value or not all(is_int(v) for v in value):
        raise ConfigError(f"{key} must be a non-empty list of integers, e.g. {key.split('.')[-1]} = [0, 1, 2]; "
                          f"got {value!r}")
    bad = [v for v in value if not 0 <= v <= MAX_SEED]
    if bad:
        raise ConfigError(f"{key}: seed {bad[0]} is out of range; seeds are integers 0..{MAX_SEED}")
    return value


def table(value: Any, key: str, allowed: set[str], example: str) -> dict[str, Any]:
    """A TOML table with only known keys (a typo is an error, never silently ignored)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a table, e.g. {example}; got {value!r}")
    unknown = set(value) - allowed
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return value


class Pools:
    """Which languages each dataset/split has, and how many examples (read lazily)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.avail = available_splits(root)
        self._sizes: dict[tuple[str, str, str], int] = {}
        self._checked: set[SplitRef] = set()

    def languages(self, ds: str, split: str, key: str) -> list[str]:
        try:
            return languages_with_split(self.root, ds, split, self.avail)
        except DataError as exc:
            raise ConfigError(f"{key}: {exc}") from None

    def has(self, ds: str, lang: str, split: str) -> bool:
        """Does ``ds/lang/split`` exist (as a parquet file of the layout)?"""
        return split in self.avail.get(ds, {}).get(lang, [])

    def size(self, ds: str, lang: str, split: str) -> int:
        k = (ds, lang, split)
        if k not in self._sizes:
            path = self.root / ds / lang / f"{split}.parquet"
            try:
                self._sizes[k] = pq.ParquetFile(path).metadata.num_rows
            except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for bad files
                raise ConfigError(f"bad data file: {path}: not a readable parquet file "
                                  f"({type(exc).__name__}: {exc})") from None
        return self._sizes[k]

    def validate(self, refs: set[SplitRef]) -> None:
        """Load and check each file once, as ``xlt-measure data`` does (exit 2 naming it)."""
        todo = refs - self._checked
        try:
            sizes = validate_splits(self.root, todo)
        except DataError as exc:
            raise ConfigError(f"bad data file: {exc}") from None
        self._checked |= todo
        self._sizes.update({(r.dataset, r.language, r.split): n for r, n in sizes.items()})


def check_langs(langs: Any, allowed: list[str], key: str, where: str = "this pool") -> list[str]:
    if langs == "*":
        return list(allowed)
    if not isinstance(langs, list) or not all(isinstance(x, str) for x in langs):
        raise ConfigError(f"{key} must be '*' or a list of language codes, e.g. [\"en\", \"de\"]; "
                          f"got {langs!r}")
    if not langs:
        raise ConfigError(f"{key} is empty: list at least one language or use '*'")
    for lang in langs:
        if lang not in allowed:
            raise ConfigError(f"{key}: {no_data_message(lang, allowed, where)}")
    if len(set(langs)) != len(langs):
        raise ConfigError(f"{key}: duplicate languages in {langs}")
    return list(langs)


def no_data_message(lang: str, allowed: list[str], where: str) -> str:
    """Why ``lang`` cannot be used here: an unknown code, or a known language without data."""
    with_data = f"languages with data in {where}: {', '.join(sorted(allowed))}"
    try:
        known = resolve_target(lang)
    except UnknownLanguageError as exc:
        return f"{exc}; {with_data}"
    if known.code != lang and known.code in allowed:
        return (f"language {lang!r} ({known.name}) is spelled {known.code!r} in the data: "
                f"use {known.code!r}")
    return f"language {lang!r} ({known.name}) has no data in {where}; {with_data}"
