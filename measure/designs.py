"""Measurement designs that isolate the effect of the number of source languages k.

The shipped grid (``measure/configs/default.toml``) compares *random* k-sets with random
singles, so its k slope mostly measures the chance that a k-set contains the best single
source. The designs here separate "more languages" from "a better language":

* **add-one at matched budget** (``design-add-one.toml``): reproducibly sampled base sets
  S (|S| = 1…7) and, for each, S ∪ {l} for a few sampled l ∉ S, plus every single source.
  Under the fixed-total budget a base and its add-one sets see the same number of
  training examples, so their difference is the effect of one extra language alone.
* **selection vs synergy** (``design-shapley.toml``): all 31 non-empty subsets of three
  five-language sets, enough for exact Shapley values of each language (its average
  marginal contribution over all orders) and for the interaction terms.
* **best vs random** (``xlt-measure greedy``): greedy forward selection of the source set
  that maximises an objective computed *on the test targets themselves*, i.e. an oracle
  upper bound of what choosing the sources well is worth, not a deployable selector.

The configs are generated, not hand-written, so they can be regenerated and checked::

    python -m measure.designs write-configs            # writes measure/configs/design-*.toml
    python -m measure.designs write-configs --check    # exit 1 if the committed files differ

and the greedy search runs rounds of explicit-set cells through the local engine and the
results store, so rerunning the same command after a crash replays the finished rounds
from the store and continues::

    xlt-measure greedy measure/configs/design-greedy.toml --store results/design-greedy.sqlite \\
        --workers 2 --path-out models/measurements/me5-small-probe-greedy-path.parquet
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from math import factorial
from pathlib import Path
from typing import Any

from measure.cell import cell_hash
from measure.knowledge.nli import XNLI_15
from measure.outputs import atomic_path, atomic_write_text
from measure.running.config import ConfigError, build_batch, load_toml
from measure.running.engine import run_local
from measure.store import ResultStore

# The training pool: the 15 XNLI languages with a human-translated validation split. A
# constant rather than read from the data so that generating a config never depends on
# which data directory happens to be mounted; ``build_batch`` still validates every set.
XNLI_LANGS: tuple[str, ...] = XNLI_15
DESIGN_SEED = 2026            # the seed of every sampled choice in the designs
FIXED_TOTAL_SEEDS = [0, 1, 2]  # fixed-total: the seed changes which pair_ids each language gets
# Per-language 2,490 = the whole 2,490-row XNLI validation split of every language, so
# ``cells.sample_training`` takes ``np.arange(size)`` whatever the seed, and the lbfgs
# logistic regression ignores ``random_state``: one seed is the whole information there.
PER_LANGUAGE_SEEDS = [0]
CONFIG_DIR = Path(__file__).resolve().parent / "configs"

_HEADER = {
    "model": "me5-small",
    "method": "probe",
    "backend": "ort-int8-s8",
    "eval_cap": 2000,
}
_PROBE = {"classifier": "logreg", "C": 1.0, "scale": False, "max_iter": 2000}
_BUDGET = {"per_language": 2490, "total": 2490}
_TARGETS = [("xnli/test", "*"), ("americas_nli/test", "*")]

# Shapley sets, chosen before any of these cells was run (documented in
# models/measurements/README.md):
#   english  — English plus the four other high-resource European languages of XNLI
#              (Germanic, Romance, Slavic): close relatives, the usual "add more big
#              languages" choice.
#   diverse  — one language from each of five families and four scripts, no English:
#              Arabic (Afro-Asiatic, Arabic script), Hindi (Indo-Aryan, Devanagari),
#              Swahili (Niger-Congo/Bantu, Latin), Turkish (Turkic, Latin), Chinese
#              (Sino-Tibetan, Han).
#   random   — five languages drawn with random.Random(DESIGN_SEED) from the 15.
SHAPLEY_FIXED: dict[str, tuple[str, ...]] = {
    "english": ("de", "en", "es", "fr", "ru"),
    "diverse": ("ar", "hi", "sw", "tr", "zh"),
}


# --------------------------------------------------------------------------------------
# designs as data
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AddOne:
    """One base set and the languages added to it, one at a time."""

    base: tuple[str, ...]
    added: tuple[str, ...]

    def extended(self) -> list[tuple[str, ...]]:
        return [tuple(sorted(self.base + (lang,))) for lang in self.added]


def add_one_design(bases_per_size: int = 5, sizes: Sequence[int] = range(1, 8),
                   adds_per_base: int = 3, seed: int = DESIGN_SEED,
                   langs: Sequence[str] = XNLI_LANGS) -> list[AddOne]:
    """Sampled bases per size and, for each, ``adds_per_base`` sampled extra languages.

    One ``random.Random(seed)`` drives every draw in a fixed order (sizes ascending, then
    the bases' extra languages), so the design is a pure function of its arguments.
    """
    rng = random.Random(seed)
    pool = sorted(langs)
    design = []
    for size in sizes:
        combos = list(itertools.combinations(pool, size))
        for base in sorted(rng.sample(combos, min(bases_per_size, len(combos)))):
            rest = [lang for lang in pool if lang not in base]
            design.append(AddOne(base, tuple(sorted(rng.sample(rest, min(adds_per_base, len(rest)))))))
    return design


def shapley_sets(seed: int = DESIGN_SEED, langs: Sequence[str] = XNLI_LANGS
                 ) -> dict[str, tuple[str, ...]]:
    """The three five-language sets: the two fixed ones and one drawn at random."""
    out = dict(SHAPLEY_FIXED)
    out["random"] = tuple(sorted(random.Random(seed).sample(sorted(langs), 5)))
    return out


def all_subsets(langs: Sequence[str]) -> list[tuple[str, ...]]:
    """All 2^n − 1 non-empty subsets, sorted by (size, names): what exact Shapley needs."""
    langs = sorted(langs)
    return [c for r in range(1, len(langs) + 1) for c in itertools.combinations(langs, r)]


def shapley_values(value: Callable[[tuple[str, ...]], float], players: Sequence[str],
                   empty: float = 0.0) -> dict[str, float]:
    """Exact Shapley value of each player for the set function ``value`` (v(∅) = ``empty``).

    φ_i = Σ_{S ⊆ N∖{i}} |S|!(n−|S|−1)!/n! · (v(S ∪ {i}) − v(S)); the values sum to
    v(N) − v(∅). With no training language there is no classifier, so the caller picks
    v(∅) (e.g. chance, 100/3 macro-F1, or 0); it shifts every φ_i by the same share.
    """
    players = sorted(players)
    n = len(players)

    def v(s: tuple[str, ...]) -> float:
        return empty if not s else value(tuple(sorted(s)))

    phi = {}
    for p in players:
        others = [q for q in players if q != p]
        total = 0.0
        for r in range(n):
            w = factorial(r) * factorial(n - r - 1) / factorial(n)
            for s in itertools.combinations(others, r):
                total += w * (v(s + (p,)) - v(s))
        phi[p] = total
    return phi


# --------------------------------------------------------------------------------------
# TOML writing (the configs are generated; tomllib reads them back)
# --------------------------------------------------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def _sets_block(blocks: Sequence[tuple[str, Sequence[tuple[str, ...]]]]) -> list[str]:
    """``sets = [...]`` with a comment line before each block of sets."""
    lines = ["sets = ["]
    for comment, sets in blocks:
        lines.append(f"  # {comment}")
        for i in range(0, len(sets), 3):
            lines.append("  " + ", ".join(_toml_value(list(s)) for s in sets[i:i + 3]) + ",")
    lines.append("]")
    return lines


def _config_text(name: str, header_comment: list[str],
                 blocks: Sequence[tuple[str, Sequence[tuple[str, ...]]]]) -> str:
    lines = [f"# {c}" if c else "#" for c in header_comment]
    lines += ["# GENERATED by `python -m measure.designs write-configs`; edit measure/designs.py, "
              "not this file.", ""]
    lines.append(f"name = {_toml_value(name)}")
    for k, v in _HEADER.items():
        lines.append(f"{k} = {_toml_value(v)}")
    lines.append(f"seeds = {_toml_value(PER_LANGUAGE_SEEDS)}")
    lines += ["", "[probe]"] + [f"{k} = {_toml_value(v)}" for k, v in _PROBE.items()]
    lines += ["", "[budget]"] + [f"{k} = {_toml_value(v)}" for k, v in _BUDGET.items()]
    for split, langs in _TARGETS:
        lines += ["", "[[targets]]", f"split = {_toml_value(split)}",
                  f"languages = {_toml_value(langs)}"]
    if blocks:
        for regime, seeds, note in (
                ("fixed_total", FIXED_TOTAL_SEEDS,
                 "fixed total 2,490 split evenly over the k languages; 3 seeds (disjoint pair_ids per seed)"),
                ("per_language", PER_LANGUAGE_SEEDS,
                 "2,490 per language = the whole validation split: the seed changes nothing, one seed")):
            lines += ["", f"[[sources]]                   # {note}", 'pool = "xnli/validation"',
                      f"regimes = {_toml_value([regime])}", f"seeds = {_toml_value(seeds)}"]
            lines += _sets_block(blocks)
    else:
        lines += ["", "[[sources]]                   # round 1 of the greedy search: every single source",
                  'pool = "xnli/validation"', "singles = true",
                  'regimes = ["fixed_total"]', "seeds = [0]"]
    return "\n".join(lines) + "\n"


def add_one_config(bases_per_size: int = 5) -> str:
    design = add_one_design(bases_per_size)
    blocks: list[tuple[str, list[tuple[str, ...]]]] = [
        ("every single source", [(lang,) for lang in XNLI_LANGS])]
    for a in design:
        blocks.append((f"k={len(a.base)} base {'+'.join(a.base)}, then + {', + '.join(a.added)}",
                       [a.base] + a.extended()))
    return _config_text("design-add-one", [
        "Meta-analysis design 1: add one language at a matched budget.",
        f"{bases_per_size} bases per size k = 1..7 sampled with random.Random({DESIGN_SEED}), each followed",
        "by the base plus one sampled language it lacks (3 per base), plus all 15 singles.",
        "  xlt-measure run measure/configs/design-add-one.toml --store results/design-add-one.sqlite --workers 2",
        "  xlt-measure export --store results/design-add-one.sqlite "
        "--out models/measurements/me5-small-probe-add-one.parquet",
    ], blocks)


def shapley_config() -> str:
    blocks = [(f"{name}: all 31 non-empty subsets of {'+'.join(langs)}", all_subsets(langs))
              for name, langs in shapley_sets().items()]
    return _config_text("design-shapley", [
        "Meta-analysis design 2: selection vs synergy, exact Shapley values over three five-language sets",
        "(english: en + 4 high-resource European; diverse: 5 families / 4 scripts; random: seed "
        f"{DESIGN_SEED}).",
        "Sets shared between blocks are run once (build_batch deduplicates cells).",
        "  xlt-measure run measure/configs/design-shapley.toml --store results/design-shapley.sqlite --workers 2",
        "  xlt-measure export --store results/design-shapley.sqlite "
        "--out models/measurements/me5-small-probe-shapley.parquet",
    ], blocks)


def greedy_config() -> str:
    return _config_text("design-greedy", [
        "Meta-analysis design 3: greedy forward selection (oracle: the objective is measured on the test",
        "targets). This file fixes the cell settings and round 1 (all singles, fixed total, seed 0);",
        "`xlt-measure greedy` adds the later rounds' explicit sets itself:",
        "  xlt-measure greedy measure/configs/design-greedy.toml --store results/design-greedy.sqlite --workers 2 \\",
        "      --path-out models/measurements/me5-small-probe-greedy-path.parquet",
        "  xlt-measure export --store results/design-greedy.sqlite "
        "--out models/measurements/me5-small-probe-greedy.parquet",
    ], [])


CONFIGS: dict[str, Callable[[], str]] = {
    "design-add-one.toml": add_one_config,
    "design-shapley.toml": shapley_config,
    "design-greedy.toml": greedy_config,
}


def write_configs(out_dir: Path = CONFIG_DIR, check: bool = False) -> list[Path]:
    """Write (or with ``check``, compare) every design config; returns the differing paths."""
    differ = []
    for name, make in CONFIGS.items():
        path = out_dir / name
        text = make()
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                differ.append(path)
        else:
            atomic_write_text(path, text)
    return differ


# --------------------------------------------------------------------------------------
# greedy forward selection
# --------------------------------------------------------------------------------------
@dataclass
class Candidate:
    """One evaluated candidate of a greedy round (every candidate is kept, not only the best)."""

    objective: str
    k: int
    languages: tuple[str, ...]
    added: str
    value: float
    chosen: bool


def greedy_forward(score_round: Callable[[list[tuple[str, ...]]], dict[tuple[str, ...], float]],
                   langs: Sequence[str], k_max: int, objective: str = "objective"
                   ) -> list[Candidate]:
    """Greedy forward selection: the best single, then add the language that raises the
    objective most, up to ``k_max`` languages.

    ``score_round`` gets all candidate sets of one round at once (so an engine can run them
    in parallel) and returns {set: objective}. Ties go to the alphabetically first set, so
    the path is deterministic.
    """
    pool = sorted(langs)
    chosen: tuple[str, ...] = ()
    out: list[Candidate] = []
    for k in range(1, min(k_max, len(pool)) + 1):
        cands = [tuple(sorted(chosen + (lang,))) for lang in pool if lang not in chosen]
        scores = score_round(cands)
        top = max(scores[s] for s in cands)
        best = min(s for s in cands if scores[s] == top)
        for s in cands:
            (added,) = set(s) - set(chosen)
            out.append(Candidate(objective, k, s, added, float(scores[s]), s == best))
        chosen = best
    return out


@dataclass(frozen=True)
class Objective:
    """What a greedy search maximises: the mean macro-F1 of some target rows of a cell.

    Why data and not only a function: the search scores one cell's rows with it, and the
    meta-analysis (``predictor.metaanalysis``) scores the random grid's sets with the same
    rows and prints the same description, so both read this one definition."""

    description: str
    rows: Callable[[Any], Any]   # a results frame -> the boolean mask of the rows averaged

    def __call__(self, df: Any) -> float:
        return float(df.loc[self.rows(df), "macro_f1"].mean())


OBJECTIVES: dict[str, Objective] = {
    # AmericasNLI targets are never a source: always zero-shot
    "americas": Objective("mean macro-F1 over the AmericasNLI targets",
                          lambda df: df["target_dataset"] == "americas_nli"),
    "xnli-zs": Objective("mean macro-F1 over the zero-shot XNLI targets",
                         lambda df: (df["target_dataset"] == "xnli") & df["zero_shot"]),
}


def run_greedy(config: Path, store_path: Path, objectives: Sequence[str], k_max: int = 7,
               workers: int | None = 2, data_dir: Path | None = None,
               progress: bool = True) -> list[Candidate]:
    """Run the greedy searches round by round through the local engine and the store.

    Each round is a ``Batch`` of explicit-set cells built from ``config`` (its settings;
    its own sources are ignored) with ``sources = [{sets = round's candidates}]``;
    ``run_local`` skips the cells the store already has, so a rerun after a crash replays
    finished rounds from the store and only runs what is missing. The cells of every
    objective share the store (round 1 is identical), so nothing is measured twice.
    """
    raw = load_toml(config)
    group = {"pool": "xnli/validation", "regimes": ["fixed_total"], "seeds": [0]}
    for g in raw.get("sources", []):  # keep the config's pool/regime/seed, replace the sets
        group.update({k: g[k] for k in ("pool", "regimes", "seeds", "languages") if k in g})
    out: list[Candidate] = []
    with ResultStore(store_path) as store:
        for name in objectives:
            fn = OBJECTIVES[name]

            def score_round(cands: list[tuple[str, ...]], fn=fn, name=name) -> dict[tuple[str, ...], float]:
                batch = build_batch({**raw, "name": f"greedy {name} k={len(cands[0])}",
                                     "sources": [{**group, "sets": [list(c) for c in cands]}]},
                                    data_dir)
                summary = run_local(batch, store, workers=workers, progress=progress)
                if summary.failed:
                    raise RuntimeError(f"{summary.failed} cells failed in {batch.name}; rerun to retry")
                frame = store.results_frame()
                scores = {}
                for cell in batch.cells:
                    rows = frame[frame["cell_hash"] == cell_hash(cell)]
                    langs = tuple(cell.sources)
                    scores[langs] = fn(rows)
                if progress:
                    best = max(scores, key=scores.__getitem__)
                    print(f"greedy {name} k={len(cands[0])}: best {'+'.join(best)} "
                          f"{scores[best]:.2f}", file=sys.stderr)
                return scores

            pool = group.get("languages", "*")
            langs = XNLI_LANGS if pool == "*" else tuple(pool)
            out += greedy_forward(score_round, langs, k_max, name)
    return out


def candidates_frame(cands: Sequence[Candidate]) -> Any:
    import pandas as pd
    df = pd.DataFrame([asdict(c) for c in cands])
    df["languages"] = df["languages"].map(lambda s: "+".join(s))
    return df


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------
def add_greedy_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="cell settings (measure/configs/design-greedy.toml)")
    p.add_argument("--store", type=Path, default=Path("results/design-greedy.sqlite"))
    p.add_argument("--objective", action="append", choices=sorted(OBJECTIVES),
                   help="objective(s) to maximise (repeatable; default: all)")
    p.add_argument("--k-max", type=int, default=7)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--path-out", type=Path, default=None,
                   help="write every round's candidates (.parquet or .csv)")
    p.set_defaults(func=cmd_greedy)


def cmd_greedy(args: argparse.Namespace) -> int:
    try:
        cands = run_greedy(args.config, args.store, args.objective or sorted(OBJECTIVES),
                           args.k_max, args.workers, args.data_dir)
    except (ConfigError, RuntimeError) as exc:
        print(f"greedy: error: {exc}", file=sys.stderr)
        return 2
    df = candidates_frame(cands)
    for c in cands:
        if c.chosen:
            print(f"{c.objective:<9} k={c.k}  {'+'.join(c.languages):<22} {c.value:6.2f}")
    if args.path_out:
        args.path_out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.path_out) as tmp:
            if args.path_out.suffix == ".csv":
                df.to_csv(tmp, index=False)
            else:
                df.to_parquet(tmp, index=False)
        print(args.path_out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m measure.designs", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("write-configs", help="write measure/configs/design-*.toml")
    p.add_argument("--out-dir", type=Path, default=CONFIG_DIR)
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if a file differs")
    p = sub.add_parser("greedy", help="greedy forward selection of source sets (oracle)")
    add_greedy_arguments(p)
    args = parser.parse_args(argv)
    if args.command == "write-configs":
        differ = write_configs(args.out_dir, args.check)
        for path in differ:
            print(f"{path} differs from the generator", file=sys.stderr)
        return 1 if differ else 0
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
