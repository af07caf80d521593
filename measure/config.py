"""Batch configs (TOML) → validated list of cells.

Everything is checked before any work starts — unknown dataset or language, a language
with no data in the pool, an empty source set, a budget larger than the pool, malformed
TOML (with its line) — and every error says how to fix it. See README "Batch configs"
for every key with a full example.
"""

from __future__ import annotations

import itertools
import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from measure.data import DataError, available_splits, resolve_data_dir
from measure.encoder import BACKENDS, DEFAULT_BACKEND
from measure.languages import UnknownLanguageError, get_language

METHODS = ("probe", "finetune", "seq2seq")
REGIMES = ("per_language", "fixed_total")
TOP_KEYS = {"name", "model", "method", "backend", "data_dir", "seeds", "budget", "eval_cap",
            "probe", "train", "targets", "sources"}
SOURCE_KEYS = {"pool", "languages", "singles", "pairs_from", "sets", "sample", "seeds",
               "regimes", "budget"}


class ConfigError(ValueError):
    """A batch config problem; the message names the key and the fix."""


@dataclass
class Batch:
    name: str
    model: str
    method: str
    data_dir: Path
    cells: list[dict[str, Any]] = field(default_factory=list)


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:  # message carries "(at line L, column C)"
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None


def _split_ref(value: Any, key: str) -> tuple[str, str]:
    if not isinstance(value, str) or value.count("/") != 1:
        raise ConfigError(f"{key} = {value!r}: expected 'dataset/split', e.g. 'xnli/validation'")
    ds, split = value.split("/")
    return ds, split


def _int_list(value: Any, key: str) -> list[int]:
    if isinstance(value, int):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, int) for v in value):
        raise ConfigError(f"{key} must be a non-empty list of integers, got {value!r}")
    return value


class _Pools:
    """Which languages each dataset/split has, and how many examples (read lazily)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.avail = available_splits(root)
        self._sizes: dict[tuple[str, str, str], int] = {}

    def languages(self, ds: str, split: str, key: str) -> list[str]:
        if ds not in self.avail:
            raise ConfigError(f"{key}: unknown dataset {ds!r}; available in {self.root}: "
                              f"{sorted(self.avail)}")
        langs = [lang for lang, s in self.avail[ds].items() if split in s]
        if not langs:
            raise ConfigError(f"{key}: dataset {ds!r} has no {split!r} split; splits: "
                              f"{sorted({s for v in self.avail[ds].values() for s in v})}")
        return langs

    def size(self, ds: str, lang: str, split: str) -> int:
        k = (ds, lang, split)
        if k not in self._sizes:
            import pyarrow.parquet as pq
            self._sizes[k] = pq.ParquetFile(self.root / ds / lang / f"{split}.parquet").metadata.num_rows
        return self._sizes[k]


def _check_langs(langs: Any, allowed: list[str], key: str) -> list[str]:
    if langs == "*":
        return list(allowed)
    if not isinstance(langs, list) or not all(isinstance(x, str) for x in langs):
        raise ConfigError(f"{key} must be '*' or a list of language codes, got {langs!r}")
    if not langs:
        raise ConfigError(f"{key} is empty: list at least one language or use '*'")
    for lang in langs:
        if lang not in allowed:
            try:
                get_language(lang)
            except UnknownLanguageError as exc:
                raise ConfigError(f"{key}: {exc}") from None
            raise ConfigError(f"{key}: language {lang!r} has no data in this pool; "
                              f"languages with data: {', '.join(allowed)}")
    if len(set(langs)) != len(langs):
        raise ConfigError(f"{key}: duplicate languages in {langs}")
    return list(langs)


def _source_sets(group: dict[str, Any], langs: list[str], key: str) -> list[tuple[str, ...]]:
    sets: list[tuple[str, ...]] = []
    if group.get("singles"):
        sets += [(lang,) for lang in langs]
    if "pairs_from" in group:
        pf = _check_langs(group["pairs_from"], langs, f"{key}.pairs_from")
        sets += list(itertools.combinations(sorted(pf), 2))
    for i, s in enumerate(group.get("sets", [])):
        if not isinstance(s, list) or not s:
            raise ConfigError(f"{key}.sets[{i}] is an empty source set: list at least one language")
        sets.append(tuple(sorted(_check_langs(s, langs, f"{key}.sets[{i}]"))))
    if "sample" in group:
        sets += _sample_sets(group["sample"], langs, f"{key}.sample")
    if not sets:
        raise ConfigError(f"{key}: no source sets; set singles = true, pairs_from, sets or sample")
    return list(dict.fromkeys(sets))


def _sample_sets(spec: Any, langs: list[str], key: str) -> list[tuple[str, ...]]:
    """Reproducible sampler: for each k, ``sets_per_k`` distinct sets (all of them if fewer exist)."""
    if not isinstance(spec, dict) or "k" not in spec or "sets_per_k" not in spec:
        raise ConfigError(f"{key} needs k = [lo, hi] (inclusive) and sets_per_k = N")
    k = spec["k"]
    if isinstance(k, int):
        k = [k, k]
    if (not isinstance(k, list) or len(k) != 2 or not all(isinstance(x, int) for x in k)
            or not 1 <= k[0] <= k[1]):
        raise ConfigError(f"{key}.k = {spec['k']!r}: expected [lo, hi] with 1 <= lo <= hi")
    pool = _check_langs(spec.get("languages", "*"), langs, f"{key}.languages")
    if k[1] > len(pool):
        raise ConfigError(f"{key}.k: k = {k[1]} exceeds the {len(pool)} languages in the pool")
    rng = random.Random(int(spec.get("seed", 0)))
    out: list[tuple[str, ...]] = []
    for size in range(k[0], k[1] + 1):
        all_sets = list(itertools.combinations(sorted(pool), size))
        n = min(int(spec["sets_per_k"]), len(all_sets))
        out += sorted(rng.sample(all_sets, n))
    return out


def _budgets(budget: Any, key: str) -> dict[str, int]:
    if not isinstance(budget, dict) or not budget:
        raise ConfigError(f"{key}: set per_language = n and/or total = N")
    out = {}
    for name, regime in (("per_language", "per_language"), ("total", "fixed_total")):
        if name in budget:
            v = budget[name]
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{key}.{name} must be a positive integer, got {v!r}")
            out[regime] = v
    unknown = set(budget) - {"per_language", "total"}
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {sorted(unknown)}; use per_language and/or total")
    return out


def train_config_for(langs: tuple[str, ...], regime: str, n: int) -> dict[str, int]:
    """{lang: examples}: n each (per-language) or N split as evenly as possible (fixed-total)."""
    if regime == "per_language":
        return {lang: n for lang in langs}
    base, extra = divmod(n, len(langs))
    return {lang: base + (1 if i < extra else 0) for i, lang in enumerate(langs)}


def _check_train(method: str, params: Any) -> None:
    """``method = "seq2seq"`` or ``"finetune"``: the ``[train]`` table.

    Shared ``[train]`` keys (all optional; see measure/trainloop.py): learning_rate
    (seq2seq 3e-4, finetune 2e-5), weight_decay (0.01), batch_size (16 / 32), grad_accum
    (1), epochs (3.0 / 2.0) or max_steps (> 0 wins), warmup_ratio (0.06 / 0.1),
    max_grad_norm (1.0), max_source_length (256 / 128), precision (auto: bf16, or fp16
    without bf16, on a GPU; fp32 on CPU), eval_every (steps between source-validation
    checks, 0 = each epoch), val_size (500 source rows; 0 = keep the last weights),
    val_split ('dataset/split'; default: pool rows the cell did not sample),
    eval_batch_size (32). seq2seq adds label_words (3 words, default entailment /
    neutral / contradiction), scoring ('rank' | 'generate'), rank_eos (false) and
    max_new_tokens (8); finetune adds freeze_embeddings (false). ``model``: seq2seq takes a
    local checkpoint directory, mt5-small/-base/-large or a hub id; finetune takes
    me5-small or an encoder directory.
    """
    if method == "seq2seq":
        from measure.seq2seq import Seq2SeqParams as Params
    else:
        from measure.finetune import FinetuneParams as Params  # type: ignore[assignment]
    if not isinstance(params, dict):
        raise ConfigError(f"[train] must be a table, got {params!r}")
    try:
        Params.from_dict(params)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def build_batch(raw: dict[str, Any], data_dir: str | Path | None = None) -> Batch:
    """Validate a parsed config and expand it into cell configs (nothing is run)."""
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    for req in ("model", "method", "targets", "sources"):
        if req not in raw:
            raise ConfigError(f"missing required key {req!r} (see README 'Batch configs')")
    method = raw["method"]
    if method not in METHODS:
        raise ConfigError(f"method = {method!r}: use one of {METHODS}")
    try:
        root = resolve_data_dir(data_dir or raw.get("data_dir"))
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    pools = _Pools(root)

    targets = []
    if not isinstance(raw["targets"], list) or not raw["targets"]:
        raise ConfigError("targets must be a non-empty array of tables: [[targets]] split = 'xnli/test'")
    for i, t in enumerate(raw["targets"]):
        ds, split = _split_ref(t.get("split"), f"targets[{i}].split")
        allowed = pools.languages(ds, split, f"targets[{i}]")
        langs = _check_langs(t.get("languages", "*"), allowed, f"targets[{i}].languages")
        targets.append({"dataset": ds, "split": split, "languages": sorted(langs)})

    eval_cap = raw.get("eval_cap", 0)
    if not isinstance(eval_cap, int) or eval_cap < 0:
        raise ConfigError(f"eval_cap must be a non-negative integer (0 = all), got {eval_cap!r}")
    seeds_default = _int_list(raw.get("seeds", [0]), "seeds")
    budget_default = raw.get("budget")
    params = {"probe": raw.get("probe", {}), "train": raw.get("train", {})}.get(
        "probe" if method == "probe" else "train", {})
    # one set of backends for every method (measure.encoder): how the model is run
    backend = raw.get("backend", DEFAULT_BACKEND)
    if backend not in BACKENDS:
        raise ConfigError(f"backend = {backend!r} is not available for {method}: use one of "
                          f"{BACKENDS} ({DEFAULT_BACKEND} is the fast default)")
    if method in ("seq2seq", "finetune"):
        _check_train(method, params)

    cells: list[dict[str, Any]] = []
    if not isinstance(raw["sources"], list) or not raw["sources"]:
        raise ConfigError("sources must be a non-empty array of tables: [[sources]] pool = ...")
    for gi, group in enumerate(raw["sources"]):
        key = f"sources[{gi}]"
        bad = set(group) - SOURCE_KEYS
        if bad:
            raise ConfigError(f"{key}: unknown key(s) {sorted(bad)}; allowed: {sorted(SOURCE_KEYS)}")
        ds, split = _split_ref(group.get("pool"), f"{key}.pool")
        pool_langs = _check_langs(group.get("languages", "*"),
                                  pools.languages(ds, split, key), f"{key}.languages")
        sets = _source_sets(group, pool_langs, key)
        budgets = _budgets(group.get("budget", budget_default), f"{key}.budget")
        regimes = group.get("regimes", list(budgets))
        for regime in regimes:
            if regime not in budgets:
                raise ConfigError(f"{key}.regimes: {regime!r} needs a budget "
                                  f"({'per_language' if regime == 'per_language' else 'total'} = n)")
        seeds = _int_list(group.get("seeds", seeds_default), f"{key}.seeds")
        for regime in regimes:
            for s in sets:
                tc = train_config_for(s, regime, budgets[regime])
                for lang, n in tc.items():
                    have = pools.size(ds, lang, split)
                    if n > have:
                        raise ConfigError(
                            f"{key}: budget of {n} examples for {lang!r} exceeds the {have} in "
                            f"{ds}/{lang}/{split}; lower budget.{'per_language' if regime == 'per_language' else 'total'}")
                    if n == 0:
                        raise ConfigError(f"{key}: fixed total {budgets[regime]} is too small to "
                                          f"give every one of {len(s)} languages an example")
                for seed in seeds:
                    cells.append({
                        "model": raw["model"], "method": method,
                        "backend": backend,
                        "train_dataset": ds, "train_split": split, "regime": regime,
                        "train_config": tc, "seed": seed, "params": params,
                        "targets": targets, "eval_cap": eval_cap,
                    })
    # the same cell may be listed by two groups; run it once
    from measure.store import cell_hash
    unique = {cell_hash(c): c for c in cells}
    return Batch(name=str(raw.get("name", "batch")), model=raw["model"], method=method,
                 data_dir=root, cells=list(unique.values()))


def load_batch(path: str | Path, data_dir: str | Path | None = None) -> Batch:
    return build_batch(load_toml(path), data_dir)
