"""Which unlabelled text and pairs a shipped target's profile reads, under each protocol.

Why protocols: a profile's label-free estimates read a classifier's behaviour on the
target's pairs. Built from the very pairs the target is scored on (``scored-pairs``, what
the shipped profiles have been), they are a self-estimate: legitimate for a user who
profiles their own evaluation set, not a prediction for an unseen language. The protocols
say where the pairs come from, and every profile records its protocol in its provenance:

* ``scored-pairs``: 600 test pairs drawn with seed 0 (overlapping the scored rows): the
  shipped profiles as built so far, reproduced byte for byte.
* ``disjoint-pairs``: pairs that are never scored. XNLI targets: test pairs outside the
  scored subset (``eval_indices(test, SCORED_EVAL_CAP)``, what every XNLI target of the
  grids is scored on) whose premise is not a scored premise either (XNLI test is 15-way
  parallel and the subset is the same rows in every language, so no such pair is a
  translation of a scored pair of any XNLI target). AmericasNLI targets: the pairs of one
  part of the test split (``--part A``: profile from part A, to be scored on part B, and
  vice versa; :func:`measure.methods.sampling.part_indices`, the cut the batch configs'
  ``parts = 2`` score). With ``pairs_source = "validation"`` the pairs come from the
  target's validation split instead ("shifted" pairs: XNLI validation is the probes'
  training pool, AmericasNLI validation translates XNLI validation items), recorded as
  ``shifted-pairs``: never scored, but not independent of what the probes learnt.
* ``text-only``: the same text, no pairs (no label-free estimates).

The text (tokenizer and centroid features) is the validation premises as before (XNLI: the
half the reference centroids do not use). Those are never scored, but a few validation
premises repeat a scored test sentence verbatim (1 line in French, 6 in Urdu); under every
protocol but ``scored-pairs`` such lines are left out and the number is recorded
(``text_lines_dropped_as_scored``).

A bootstrap (``bootstrap_seed``) resamples the chosen pairs with replacement: the profile's
sampling noise, for intervals that include it.

A *pairs condition* (``pairs_condition``, ``disjoint-pairs`` only) draws the pairs from the
same never-scored candidates but breaks one condition the label-free signal relies on, to
measure what that costs (``python -m predictor.studies.pair_conditions``):

* ``skew-entailment`` / ``skew-neutral`` / ``skew-contradiction``: 80% of the pairs carry
  that gold label, 10% each of the other two (labels are read to choose pairs, as the part
  cut reads them to stratify; the profile never sees them);
* ``unrelated``: each premise with the hypothesis of another pair (a derangement): the
  same sentences, no NLI relation -- what text pairs from another task or domain look like
  to the probes at the extreme;
* ``size-control``: balanced pairs as drawn, at the smaller count the skewed conditions
  can reach (the skew's effect is read against this, not against a larger profile).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from measure.cell import PART_LETTERS, part_split_name
from measure.data import load_parquet_split
from measure.methods.sampling import eval_indices, part_indices
from measure.outputs import atomic_write_text
from measure.profile_inputs import ProfileInputError

PROTOCOLS = ("scored-pairs", "disjoint-pairs", "text-only")
PAIRS_SOURCES = ("test", "validation")
#: what a pairs condition does to the drawn pairs (see the module docstring)
PAIRS_CONDITIONS = ("as-drawn", "skew-entailment", "skew-neutral", "skew-contradiction",
                    "unrelated", "size-control")
#: the share of the pairs that carry the skewed label; the rest split evenly
SKEW_SHARE = 0.8
#: gold label ids in the data files (measure.knowledge.nli.LABELS order)
LABEL_IDS = {"entailment": 0, "neutral": 1, "contradiction": 2}
#: the eval_cap every XNLI target of the grids is scored with (measure/configs/default.toml)
SCORED_EVAL_CAP = 2000
#: AmericasNLI test sets are cut in this many parts (the batch configs' ``parts = 2``)
N_PARTS = 2
XNLI_TARGETS = tuple("ar bg de el en es fr hi ru sw th tr ur vi zh".split())
AMERICAS = tuple("aym bzd cni hch nah oto tar".split())
SHIPPED_TEXT_LINES = 300
SHIPPED_PAIRS = 600
SHIPPED_SEED = 0


@dataclass(frozen=True)
class ProfileProtocol:
    """Where a shipped target's profile takes its pairs from (see the module docstring)."""

    name: str = "scored-pairs"
    part: str | None = None            # disjoint-pairs, AmericasNLI: the part profiled
    pairs_source: str = "test"         # disjoint-pairs: "validation" for shifted pairs
    bootstrap_seed: int | None = None  # resample the chosen pairs with replacement
    pairs_condition: str = "as-drawn"  # disjoint-pairs: break a condition (skew, unrelated)

    def check(self, languages: tuple[str, ...] = XNLI_TARGETS + AMERICAS) -> None:
        """Refuse a combination that means nothing, naming the fix (before any work)."""
        if self.name not in PROTOCOLS:
            raise ProfileInputError(f"--protocol {self.name!r}: use one of {', '.join(PROTOCOLS)}")
        if self.pairs_source not in PAIRS_SOURCES:
            raise ProfileInputError(f"--pairs-source {self.pairs_source!r}: use test or validation")
        if self.part is not None and self.part not in PART_LETTERS[:N_PARTS]:
            raise ProfileInputError(f"--part {self.part!r}: use A or B")
        if self.name != "disjoint-pairs" and (self.part or self.pairs_source != "test"):
            raise ProfileInputError(f"--part and --pairs-source apply to --protocol "
                                    f"disjoint-pairs only (got --protocol {self.name})")
        if self.pairs_source == "validation" and self.part:
            raise ProfileInputError("--part cuts the test split; --pairs-source validation "
                                    "reads no test pair: leave out --part")
        if self.pairs_condition not in PAIRS_CONDITIONS:
            raise ProfileInputError(f"--pairs-condition {self.pairs_condition!r}: use one of "
                                    f"{', '.join(PAIRS_CONDITIONS)}")
        if self.pairs_condition != "as-drawn" and (self.name != "disjoint-pairs"
                                                   or self.pairs_source != "test"):
            raise ProfileInputError("--pairs-condition applies to --protocol disjoint-pairs "
                                    "with test pairs only (pairs that are never scored)")
        if self.name == "text-only" and self.bootstrap_seed is not None:
            raise ProfileInputError("--bootstrap-seed resamples pairs; --protocol text-only "
                                    "has none: leave it out")
        if (self.name == "disjoint-pairs" and self.pairs_source == "test" and not self.part
                and set(languages) & set(AMERICAS)):
            raise ProfileInputError("--protocol disjoint-pairs needs --part A or --part B for "
                                    "the AmericasNLI targets (profile from one half of the test "
                                    "set, score on the other), or --languages without them")

    @property
    def label(self) -> str:
        """The protocol as recorded: ``shifted-pairs`` for validation pairs."""
        return "shifted-pairs" if self.pairs_source == "validation" else self.name

    @property
    def tag(self) -> str:
        """A directory suffix naming everything that sets the profiles apart:
        ``disjoint-A``, ``shifted-validation``, ``scored-boot3``, ``text-only``."""
        base = {"scored-pairs": "scored", "disjoint-pairs": "disjoint",
                "text-only": "text-only"}[self.name]
        if self.pairs_source == "validation":
            base = "shifted-validation"
        if self.pairs_condition != "as-drawn":
            base += f"-{self.pairs_condition}"
        if self.part:
            base += f"-{self.part}"
        return base + (f"-boot{self.bootstrap_seed}" if self.bootstrap_seed is not None else "")

    def provenance(self, dataset: str) -> dict[str, Any]:
        """What a profile records of its protocol (``part`` for AmericasNLI targets only;
        ``protocol_tag`` is the same for every profile of one build)."""
        part = self.part if dataset == "americas_nli" and self.pairs_source == "test" else None
        return {"protocol": self.label, "protocol_tag": self.tag, "part": part,
                "scored_against": scored_against(dataset, part),
                "pairs_source": None if self.name == "text-only" else self.pairs_source,
                "bootstrap_seed": self.bootstrap_seed,
                # only when set: the shipped profiles' provenance stays as it was built
                **({"pairs_condition": self.pairs_condition}
                   if self.pairs_condition != "as-drawn" else {})}


def profile_tag(profile: dict[str, Any]) -> str:
    """The protocol tag a profile was built under (profiles from before protocols: scored)."""
    return (profile.get("provenance") or {}).get("protocol_tag", "scored")


def check_directory(model_dir: Path, protocol: ProfileProtocol, rebuilt: list[str]) -> None:
    """One directory holds profiles of one protocol: refuse a build that would leave a
    profile of another protocol beside the ones it writes (a partial rebuild into a
    directory of another protocol), before any work."""
    if not model_dir.is_dir():
        return
    for path in sorted(model_dir.glob("*.json")):
        if path.stem in rebuilt:
            continue
        try:
            tag = profile_tag(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
        if tag != protocol.tag:
            raise ProfileInputError(
                f"{path} was built under protocol {tag!r}, this build is {protocol.tag!r}: a "
                "profiles directory holds one protocol; pass another --profiles DIR (or "
                "rebuild every target there)")


#: the protocol of the profiles shipped so far (the default)
SCORED_PAIRS = ProfileProtocol()


def scored_against(dataset: str, part: str | None) -> str:
    """The rows the profile is meant to be evaluated against, in words."""
    if dataset == "americas_nli" and part:
        other = PART_LETTERS[(PART_LETTERS.index(part) + 1) % N_PARTS]
        return f"americas_nli {part_split_name('test', other, N_PARTS)}"
    if dataset == "xnli":
        return f"xnli test, eval_cap {SCORED_EVAL_CAP}"
    return f"{dataset} test"


def reference_premises(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(reference half, profile half) of a validation split's unique premises, by pair_id.

    XNLI validation is 15-way parallel, so the same split of pair_ids separates content
    in every language.
    """
    order = frame.sort_values("pair_id")["premise"].astype(str).str.strip()
    uniq = list(dict.fromkeys(p for p in order if p))
    half = len(uniq) // 2
    return uniq[:half], uniq[half:]


def _norm(text: Any) -> str:
    return " ".join(str(text).split())


def scored_rows(data_dir: Path, dataset: str, language: str) -> pd.DataFrame:
    """Every test row a target of this dataset may be scored on under the grids: XNLI the
    capped subset, AmericasNLI the whole test split (either part)."""
    test = load_parquet_split(data_dir, dataset, language, "test")
    return test.iloc[eval_indices(test, SCORED_EVAL_CAP)] if dataset == "xnli" else test


def profile_text(data_dir: Path, dataset: str, language: str, protocol: ProfileProtocol,
                 n_lines: int = SHIPPED_TEXT_LINES) -> tuple[list[str], int]:
    """(text lines, lines dropped because a scored row holds them verbatim): the
    validation premises (XNLI: the half the reference does not use), de-duplicated."""
    val = load_parquet_split(data_dir, dataset, language, "validation")
    if dataset == "xnli":
        _, lines = reference_premises(val)
    else:
        order = val.sort_values("pair_id")["premise"].astype(str).str.strip()
        lines = list(dict.fromkeys(p for p in order if p))
    dropped = 0
    if protocol.name != "scored-pairs":
        scored = scored_rows(data_dir, dataset, language)
        seen = {_norm(t) for t in scored["premise"]} | {_norm(t) for t in scored["hypothesis"]}
        kept = [ln for ln in lines if _norm(ln) not in seen]
        dropped = len(lines) - len(kept)
        lines = kept
    return lines[:n_lines], dropped


def _nonempty(frame: pd.DataFrame) -> np.ndarray:
    """Positions of rows with a premise and a hypothesis (a few AmericasNLI rows lack one)."""
    keep = (frame["premise"].astype(str).str.strip() != "") & \
        (frame["hypothesis"].astype(str).str.strip() != "")
    return np.flatnonzero(keep.to_numpy())


def candidate_pairs(data_dir: Path, dataset: str, language: str,
                    protocol: ProfileProtocol) -> tuple[pd.DataFrame, str]:
    """(the rows a profile may draw its pairs from, where they come from in words)."""
    if protocol.pairs_source == "validation":
        frame = load_parquet_split(data_dir, dataset, language, "validation")
        return frame.iloc[_nonempty(frame)], f"{dataset}/{language}/validation (shifted)"
    test = load_parquet_split(data_dir, dataset, language, "test")
    if protocol.name == "scored-pairs":
        return test.iloc[_nonempty(test)].reset_index(drop=True), f"{dataset}/{language}/test"
    if dataset == "americas_nli":
        rows = np.intersect1d(part_indices(test, protocol.part, N_PARTS), _nonempty(test))
        where = part_split_name("test", protocol.part, N_PARTS)
        return test.iloc[rows], f"{dataset}/{language}/{where}"
    scored = eval_indices(test, SCORED_EVAL_CAP)
    premises = {_norm(p) for p in test["premise"].iloc[scored]}
    free = np.setdiff1d(_nonempty(test), scored)
    free = free[[_norm(test["premise"].iloc[i]) not in premises for i in free]]
    return (test.iloc[free],
            f"{dataset}/{language}/test outside the scored {SCORED_EVAL_CAP} (and their premises)")


def profile_pairs(data_dir: Path, dataset: str, language: str, protocol: ProfileProtocol,
                  n_pairs: int = SHIPPED_PAIRS, seed: int = SHIPPED_SEED
                  ) -> tuple[pd.DataFrame, str]:
    """(the profile's pairs, their description): ``n_pairs`` drawn with ``seed`` from
    :func:`candidate_pairs` (all of them when fewer), then, with a bootstrap seed, as many
    drawn from those with replacement."""
    rows, where = candidate_pairs(data_dir, dataset, language, protocol)
    rng = np.random.default_rng(seed)
    if protocol.pairs_condition == "as-drawn":
        idx = np.sort(rng.choice(len(rows), min(n_pairs, len(rows)), replace=False))
        rows = rows.iloc[idx]
    else:
        rows = condition_rows(rows, protocol.pairs_condition, n_pairs, rng)
        where += f", condition {protocol.pairs_condition}"
    what = f"{where} (labels dropped, {len(rows)} pairs, seed {seed}"
    if protocol.bootstrap_seed is not None:
        rows = bootstrap_rows(rows, protocol.bootstrap_seed)
        what += f", bootstrap resample seed {protocol.bootstrap_seed}"
    return rows, what + ")"


def condition_count(labels: np.ndarray, n_pairs: int) -> int:
    """How many pairs every condition of one target draws: the most that an 80% skew
    towards its *rarest* label allows (so all conditions, the size control included, have
    the same count), at most ``n_pairs``."""
    rarest = min(int(np.sum(labels == v)) for v in LABEL_IDS.values())
    return int(min(n_pairs, np.floor(rarest / SKEW_SHARE)))


def condition_rows(rows: pd.DataFrame, condition: str, n_pairs: int,
                   rng: np.random.Generator) -> pd.DataFrame:
    """The candidate ``rows`` drawn under a pairs condition (module docstring), in
    candidate order; ``unrelated`` rows carry another drawn row's hypothesis."""
    labels = rows["label"].to_numpy()
    n = condition_count(labels, n_pairs)
    if condition.startswith("skew-"):
        skewed = LABEL_IDS[condition.removeprefix("skew-")]
        other = int(np.ceil((1 - SKEW_SHARE) * n / 2))   # so the skewed count fits (<= 0.8 n)
        want = {v: (n - 2 * other if v == skewed else other) for v in LABEL_IDS.values()}
        idx = np.concatenate([rng.choice(np.flatnonzero(labels == v), c, replace=False)
                              for v, c in want.items()])
    else:
        idx = rng.choice(len(rows), n, replace=False)
    out = rows.iloc[np.sort(idx)].copy()
    if condition == "unrelated":
        # a derangement: no pair keeps its own hypothesis, and no premise gets a hypothesis
        # written about the same premise (XNLI has three hypotheses per premise)
        prem = out["premise"].map(_norm).to_numpy()
        hyp = out["hypothesis"].to_numpy()
        for _ in range(100):
            perm = rng.permutation(len(out))
            if not np.any(prem[perm] == prem):
                break
        else:
            raise ProfileInputError("cannot pair the premises with unrelated hypotheses: "
                                    "too few distinct premises")
        out["hypothesis"] = hyp[perm]
    return out


def bootstrap_rows(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """As many rows as ``rows``, drawn with replacement with ``seed`` (order kept sorted)."""
    rng = np.random.default_rng([int(seed), 7919])
    return rows.iloc[np.sort(rng.integers(0, len(rows), len(rows)))]


def _one_line(s: Any) -> str:
    return " ".join(str(s).split())


def shipped_inputs(data_dir: Path, dataset: str, language: str, out_dir: Path, *,
                   protocol: ProfileProtocol = SCORED_PAIRS,
                   n_lines: int = SHIPPED_TEXT_LINES, n_pairs: int = SHIPPED_PAIRS,
                   seed: int = SHIPPED_SEED, info: dict[str, Any] | None = None
                   ) -> tuple[Path, Path | None]:
    """Write the unlabelled inputs of one shipped target under ``protocol``: the text file
    (:func:`profile_text`) and the pairs file (:func:`profile_pairs`; None for
    ``text-only``). ``info`` (a dict) receives the descriptions for the provenance."""
    lines, dropped = profile_text(data_dir, dataset, language, protocol, n_lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = out_dir / f"{language}.txt"
    clean = [ln.replace("\t", " ").replace("\n", " ") for ln in lines]
    atomic_write_text(text, "\n".join(clean) + "\n")
    if info is not None:
        info["text_lines_dropped_as_scored"] = dropped
    if protocol.name == "text-only":
        return text, None
    rows, what = profile_pairs(data_dir, dataset, language, protocol, n_pairs, seed)
    if info is not None:
        info["pairs_file"] = what
        info["pair_ids"] = [int(i) for i in rows["pair_id"]]
    pairs = out_dir / f"{language}.tsv"
    atomic_write_text(pairs, "".join(f"{_one_line(p)}\t{_one_line(h)}\n" for p, h in
                                     zip(rows["premise"], rows["hypothesis"])))
    return text, pairs
