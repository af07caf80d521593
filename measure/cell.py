"""What a measurement cell is (``CellSpec``), what it yields (``CellRecord``) and its hash.

Why a module of its own: the config builds cells, the methods run them, the engines
schedule them and the store files them; all four read this one definition, which
depends on nothing else in xlt, so none of them has to import another to know what a
cell is.

A cell's identity is the SHA-256 of its canonical JSON (sorted keys, no spaces). The
JSON of a ``CellSpec`` (``to_dict``) is exactly the plain dict the batch config built
before the type existed, so every stored cell hash and every shipped table stays valid
(``tests/test_cell.py`` recomputes the hashes of the committed tables). Fields added since
(a target's ``parts``, a cell's ``target_shots``) enter the JSON only when set, so a cell
that does not use them keeps the hash it always had.
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


#: how a part of a split is named in the results (``target_split``): ``test/A-of-2``. A
#: split file is ``{split}.parquet`` in one directory, so a name with a ``/`` can never be
#: a real split (and ``dataset/split`` in a config rejects it).
PART_NAME = "{split}/{part}-of-{n_parts}"
PART_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def part_split_name(split: str, part: str, n_parts: int) -> str:
    """The ``target_split`` of part ``part`` (a letter) of ``split`` cut in ``n_parts``."""
    return PART_NAME.format(split=split, part=part, n_parts=n_parts)


def is_part_split(target_split: str) -> bool:
    """Whether a stored ``target_split`` names a part of a split (a real split file's name
    never holds a '/')."""
    return "/" in str(target_split)


#: the method name of a probe centred on each language's mean (``[probe] centre``): another
#: method, never pooled with the plain probe
CENTRED_SUFFIX = "-centred"


def stored_options(config_json: Any) -> tuple[str, dict[str, int]]:
    """(the probe's centring, the cell's target shots) from an exported row's ``config_json``.

    Why here: a centred probe and a cell trained on target pairs share their model, method
    and train_config with plain zero-shot cells; every reader (the app, the predictor, the
    meta-analysis) must tell them apart the same way."""
    if not isinstance(config_json, str) or not config_json:
        return "none", {}
    try:
        raw = json.loads(config_json)
    except json.JSONDecodeError:
        return "none", {}
    if not isinstance(raw, dict):
        return "none", {}
    centre = str((raw.get("params") or {}).get("centre", "none"))
    return centre, {str(k): int(v) for k, v in (raw.get("target_shots") or {}).items()}


def method_label(method: str, centre: str) -> str:
    """'probe' or 'probe-centred': the method a row is estimated and shown under."""
    return str(method) if centre in ("none", "", None) else f"{method}{CENTRED_SUFFIX}"


def own_shots(shots: Mapping[str, int], target_language: str) -> int:
    """The labelled pairs of ``target_language`` itself among a cell's target shots
    (keys ``dataset/split:language``)."""
    return sum(n for key, n in shots.items() if key.rpartition(":")[2] == target_language)


@dataclass(frozen=True)
class Target:
    """One evaluated split: every listed language of ``dataset/split``.

    ``parts`` > 1 scores each language on each of ``parts`` disjoint, label-stratified
    parts of the split separately (``measure.methods.sampling.part_indices``), reported as
    the splits ``part_split_name(split, letter, parts)``; 0 scores the split whole.
    """

    dataset: str
    split: str
    languages: tuple[str, ...]
    parts: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dataset": self.dataset, "split": self.split,
                               "languages": list(self.languages)}
        if self.parts:
            out["parts"] = self.parts
        return out

    @property
    def part_letters(self) -> tuple[str, ...]:
        """The parts' letters (A, B, ...); empty when the split is scored whole."""
        return tuple(PART_LETTERS[:self.parts]) if self.parts else ()


def shot_key(dataset: str, split: str, language: str) -> str:
    """How a cell names the labelled target pairs it trains on: ``dataset/split:language``."""
    return f"{dataset}/{split}:{language}"


def parse_shot_key(key: str) -> tuple[str, str, str]:
    """(dataset, split, language) of a :func:`shot_key`; ValueError names the form."""
    ref, sep, language = key.partition(":")
    if not sep or ref.count("/") != 1 or not language or not all(ref.split("/")):
        raise ValueError(f"target shots {key!r}: expected 'dataset/split:language', "
                         "e.g. 'americas_nli/validation:aym'")
    dataset, split = ref.split("/")
    return dataset, split, language


@dataclass(frozen=True)
class CellSpec:
    """Everything that determines a cell's result (the rows come from ``seed``).

    ``train_config`` maps each source language to its number of training examples;
    ``params`` is the method's settings table (``[probe]`` or ``[train]``) as written in
    the config (validated by the method's params class); ``eval_cap`` > 0 caps each
    target at a fixed, label-stratified subset of that many rows (of each part, for a
    target cut in parts). ``target_shots`` maps :func:`shot_key` -> n: n labelled pairs of
    that language drawn from that split, trained on together with the sources (few-shot
    target data; a split that is never scored).
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
    target_shots: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:  # read-only views: a frozen cell is never edited
        object.__setattr__(self, "train_config", MappingProxyType(dict(self.train_config)))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "target_shots", MappingProxyType(dict(self.target_shots)))

    def __reduce__(self) -> tuple[Any, ...]:  # worker processes and Ray get the JSON form
        return (CellSpec.from_dict, (self.to_dict(),))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CellSpec:
        """A cell from its JSON form (a stored ``config_json`` or a config's expansion)."""
        return cls(model=raw["model"], method=raw["method"], backend=raw["backend"],
                   train_dataset=raw["train_dataset"], train_split=raw["train_split"],
                   regime=raw["regime"], train_config=raw["train_config"], seed=raw["seed"],
                   params=raw["params"],
                   targets=tuple(Target(t["dataset"], t["split"], tuple(t["languages"]),
                                        t.get("parts", 0))
                                 for t in raw["targets"]),
                   eval_cap=raw["eval_cap"], target_shots=raw.get("target_shots", {}))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: exactly the keys and values the hash has always been taken over
        (``target_shots`` only when the cell has any)."""
        out = {"model": self.model, "method": self.method, "backend": self.backend,
               "train_dataset": self.train_dataset, "train_split": self.train_split,
               "regime": self.regime, "train_config": dict(self.train_config),
               "seed": self.seed, "params": _plain(self.params),
               "targets": [t.to_dict() for t in self.targets], "eval_cap": self.eval_cap}
        if self.target_shots:
            out["target_shots"] = dict(self.target_shots)
        return out

    @property
    def hash(self) -> str:
        return cell_hash(self)

    @property
    def sources(self) -> list[str]:
        """Source languages with at least one example, sorted."""
        return sorted(lang for lang, n in self.train_config.items() if n > 0)

    @property
    def total_examples(self) -> int:
        """Source examples (what the store's ``total_examples`` holds; shots not counted)."""
        return int(sum(self.train_config.values()))

    @property
    def n_shots(self) -> int:
        """Labelled target pairs trained on besides the sources."""
        return int(sum(self.target_shots.values()))


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
    # the per-item predictions behind the scores (measure.items.ItemPredictions), when the
    # method scored item by item (every method does; records built by hand may not)
    items: Any = None


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
