"""What a measurement cell is (``CellSpec``), what it yields (``CellRecord``) and its hash.

Why a module of its own: the config builds cells, the methods run them, the engines
schedule them and the store files them; all four read this one definition, which
depends on nothing else in xlt, so none of them has to import another to know what a
cell is.

A cell's identity is the SHA-256 of its canonical JSON (sorted keys, no spaces). The
JSON of a ``CellSpec`` (``to_dict``) is exactly the plain dict the batch config built
before the type existed, so every stored cell hash and every shipped table stays valid
(``tests/test_cell.py`` recomputes the hashes of the committed tables).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


def canonical_json(obj: Any) -> str:
    """The one serialisation a cell is hashed and stored in."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Target:
    """One evaluated split: every listed language of ``dataset/split``."""

    dataset: str
    split: str
    languages: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "split": self.split, "languages": list(self.languages)}


@dataclass(frozen=True)
class CellSpec:
    """Everything that determines a cell's result (the rows come from ``seed``).

    ``train_config`` maps each source language to its number of training examples;
    ``params`` is the method's settings table (``[probe]`` or ``[train]``) as written in
    the config (validated by the method's params class); ``eval_cap`` > 0 caps each
    target at a fixed, label-stratified subset of that many rows.
    """

    model: str
    method: str
    backend: str
    train_dataset: str
    train_split: str
    regime: str
    train_config: Mapping[str, int]
    seed: int
    params: Mapping[str, Any]
    targets: tuple[Target, ...]
    eval_cap: int = 0

    def __post_init__(self) -> None:  # read-only views: a frozen cell is never edited
        object.__setattr__(self, "train_config", MappingProxyType(dict(self.train_config)))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    def __reduce__(self) -> tuple[Any, ...]:  # worker processes and Ray get the JSON form
        return (CellSpec.from_dict, (self.to_dict(),))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CellSpec:
        """A cell from its JSON form (a stored ``config_json`` or a config's expansion)."""
        return cls(model=raw["model"], method=raw["method"], backend=raw["backend"],
                   train_dataset=raw["train_dataset"], train_split=raw["train_split"],
                   regime=raw["regime"], train_config=raw["train_config"], seed=raw["seed"],
                   params=raw["params"],
                   targets=tuple(Target(t["dataset"], t["split"], tuple(t["languages"]))
                                 for t in raw["targets"]),
                   eval_cap=raw["eval_cap"])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: exactly the keys and values the hash has always been taken over."""
        return {"model": self.model, "method": self.method, "backend": self.backend,
                "train_dataset": self.train_dataset, "train_split": self.train_split,
                "regime": self.regime, "train_config": dict(self.train_config),
                "seed": self.seed, "params": _plain(self.params),
                "targets": [t.to_dict() for t in self.targets], "eval_cap": self.eval_cap}

    @property
    def hash(self) -> str:
        return cell_hash(self)

    @property
    def sources(self) -> list[str]:
        """Source languages with at least one example, sorted."""
        return sorted(lang for lang, n in self.train_config.items() if n > 0)

    @property
    def total_examples(self) -> int:
        return int(sum(self.train_config.values()))


def _plain(value: Any) -> Any:
    """Mapping proxies and tuples back to the dicts and lists JSON was read from."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def cell_dict(cell: CellSpec | Mapping[str, Any]) -> dict[str, Any]:
    """The JSON form of a cell given typed or (a stored config, a test) as a plain mapping."""
    return cell.to_dict() if isinstance(cell, CellSpec) else dict(cell)


def cell_hash(cell: CellSpec | Mapping[str, Any]) -> str:
    """Content hash of a cell: the same config always maps to the same cell."""
    return hashlib.sha256(canonical_json(cell_dict(cell)).encode("utf-8")).hexdigest()


@dataclass
class TargetResult:
    """Scores of one target language (0-100; confusion rows = gold labels)."""

    dataset: str
    language: str
    split: str
    macro_f1: float
    accuracy: float
    n: int
    confusion: list[list[int]]
    eval_seconds: float | None = None


@dataclass
class CellRecord:
    """A finished (or failed) cell with everything the store needs."""

    config: CellSpec | Mapping[str, Any]
    results: list[TargetResult] = field(default_factory=list)
    status: str = "done"
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    train_seconds: float | None = None
    eval_seconds: float | None = None

    @property
    def hash(self) -> str:
        return cell_hash(self.config)
