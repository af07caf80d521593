"""The input files of a language profile, read in bounded samples and checked.

Why a bounded sample: a profile needs a few hundred sentences; a 200 MB ``--text`` used to
be read whole (1.4 GB of memory after two minutes, then hours of embedding). Each input is
read up to :data:`MAX_READ_BYTES` and its first :data:`MAX_TEXT_LINES` lines (or
:data:`MAX_PAIRS` pairs); what was used is recorded in the profile (``provenance.text_sample``,
``provenance.pairs_sample``) and said in the command's output. The recorded sha256 is that of
the bytes read, i.e. of the whole file when the sample is complete.

Why header detection: a ``premise<TAB>hypothesis`` header row in a pairs file is not a pair;
profiled as one it would skew the label-free estimates of a small file.

Why a pairs check (:func:`pairs_check`, once the pairs are embedded): pairs of unrelated
lines still give label-free numbers, which read as a confident profile; the profile records
whether its pairs look like NLI pairs, and the command says so.
"""

from __future__ import annotations

import codecs
import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MIN_LINES = 10          # below this a centroid or a fertility is noise: refuse
WARN_LINES = 100        # below this: warn (a few hundred lines suffice)
MIN_PAIRS = 10
WARN_PAIRS = 100
MAX_TEXT_LINES = 2000   # a few hundred lines give stable values; more only costs time
MAX_PAIRS = 2000
MAX_READ_BYTES = 16 << 20
#: first-row field names that mark a header, not a pair (compared case-insensitively)
PREMISE_HEADERS = frozenset({"premise", "premises", "sentence1", "sentence_1", "sentence 1",
                             "text_a", "sentence_a", "sent1"})
HYPOTHESIS_HEADERS = frozenset({"hypothesis", "hypotheses", "sentence2", "sentence_2",
                                "sentence 2", "text_b", "sentence_b", "sent2"})


class ProfileInputError(ValueError):
    """An input file or argument the profile cannot use; the message names the fix."""


@dataclass
class Sample:
    """What was read of one input file: its items, the sha256 of the bytes read, and how
    much of the file that was (``info``, stored in the profile's provenance)."""

    items: list[Any]
    sha256: str
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self, unit: str) -> str:
        return describe_sample(len(self.items), self.info, unit)


def describe_sample(n: int, info: dict[str, Any] | None, unit: str) -> str:
    """'300 lines', or 'the first 2,000 lines (180 kB of a 200.0 MB file)' for a file that
    was only partly read (``info`` as recorded in a profile's provenance)."""
    what = f"{n:,} {unit}"
    if not info or info.get("complete", True):
        return what
    return (f"the first {what} ({_size(info['bytes_read'])} of a "
            f"{_size(info['file_bytes'])} file)")


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


_CHUNK = 1 << 20


def _read_bounded(path: Path, what: str, max_bytes: int, max_lines: int
                  ) -> tuple[str, bytes, int, bool]:
    """(text, bytes, file size, whole file?) of the start of ``path``: chunks are read
    until more than ``max_lines`` non-blank lines or ``max_bytes`` bytes are in hand, and a
    partial read is cut at its last line end."""
    if not path.exists():
        raise ProfileInputError(f"{what} file {path} does not exist")
    if not path.is_file():   # a directory, a FIFO or a device would hang or fail later
        raise ProfileInputError(f"{what} {path} is not a regular file")
    data = b""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            while len(data) <= max_bytes:
                chunk = fh.read(min(_CHUNK, max_bytes + 1 - len(data)))
                if not chunk:
                    break
                data += chunk
                if sum(1 for ln in data.split(b"\n")[:-1] if ln.strip()) > max_lines:
                    break
            whole = not fh.read(1)
    except OSError as exc:
        raise ProfileInputError(f"cannot read {what} file {path} ({exc.strerror or exc})") from None
    if not whole:
        data = data[:max_bytes]
        end = data.rfind(b"\n")
        if end >= 0:
            data = data[:end + 1]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if not whole and exc.reason == "unexpected end of data":    # a character cut in two
            data = data[:exc.start]
            text = data.decode("utf-8-sig")
        else:
            line = data[:exc.start].count(b"\n") + 1
            raise ProfileInputError(f"{what} file {path} is not UTF-8 (byte {exc.start}, line "
                                    f"{line}); re-save it as UTF-8") from None
    return text, data, size, whole


def _sampled(items: list[Any], data: bytes, size: int, whole: bool, raw_lines: list[str],
             used: int, limit: str) -> Sample:
    """The :class:`Sample` of ``items`` taken from the first ``used`` of ``raw_lines``
    (decoded from ``data``, line ends kept): complete when nothing non-blank is left."""
    complete = whole and not any(r.strip() for r in raw_lines[used:])
    if not complete:         # the bytes the items came from, not the whole chunk read
        data = data[:3 if data.startswith(codecs.BOM_UTF8) else 0] + \
            "".join(raw_lines[:used]).encode("utf-8")
    info = {"complete": complete, "bytes_read": len(data), "file_bytes": size, "limit": limit}
    return Sample(items, hashlib.sha256(data).hexdigest(), info)


def check_count(have: str, n: int, minimum: int, why: str, recommended: int, noisy: str) -> None:
    """Fewer than ``minimum`` inputs is an error naming the file; fewer than
    ``recommended`` a warning (the estimates would be noisy), raised at the caller's caller."""
    if n < minimum:
        raise ProfileInputError(f"{have}; at least {minimum} are needed{why}")
    if n < recommended:
        warnings.warn(noisy, stacklevel=4)


def read_text_sample(path: Path, *, min_lines: int = MIN_LINES, max_lines: int = MAX_TEXT_LINES,
                     max_bytes: int = MAX_READ_BYTES) -> Sample:
    """The first ``max_lines`` non-blank lines (stripped) of a UTF-8 file, one sentence per
    line, read from at most ``max_bytes`` of it."""
    text, data, size, whole = _read_bounded(path, "--text", max_bytes, max_lines)
    lines: list[str] = []
    used = 0
    raw_lines = text.splitlines(keepends=True)
    for raw in raw_lines:
        if len(lines) == max_lines:
            break
        used += 1
        if raw.strip():
            lines.append(raw.strip())
    if not lines:
        raise ProfileInputError(f"--text file {path} has no non-blank line: give one sentence "
                                "per line (a few hundred lines suffice)")
    check_count(f"--text file {path} has {len(lines)} non-blank lines", len(lines), min_lines,
                " (a few hundred give stable values)", WARN_LINES,
                f"--text has only {len(lines)} lines: the profile will be noisy "
                "(a few hundred lines are recommended)")
    return _sampled(lines, data, size, whole, raw_lines, used,
                    f"first {max_lines} non-blank lines within the first {max_bytes} bytes")


def read_text_lines(path: Path, *, min_lines: int = MIN_LINES,
                    max_lines: int = MAX_TEXT_LINES) -> list[str]:
    """Non-blank lines of a UTF-8 file (one sentence per line), stripped; a bounded sample
    (:func:`read_text_sample`)."""
    return read_text_sample(path, min_lines=min_lines, max_lines=max_lines).items


def is_header(fields: list[str]) -> bool:
    """Is this first row a ``premise<TAB>hypothesis``-style header rather than a pair?"""
    return (len(fields) == 2 and fields[0].strip().lower() in PREMISE_HEADERS
            and fields[1].strip().lower() in HYPOTHESIS_HEADERS)


def read_pairs_sample(path: Path, *, min_pairs: int = MIN_PAIRS, max_pairs: int = MAX_PAIRS,
                      max_bytes: int = MAX_READ_BYTES) -> Sample:
    """``premise<TAB>hypothesis`` lines (blank lines skipped; a bad line is named; a header
    row is skipped with a warning), the first ``max_pairs`` of at most ``max_bytes``."""
    text, data, size, whole = _read_bounded(path, "--pairs", max_bytes, max_pairs + 1)
    pairs: list[tuple[str, str]] = []
    header = None
    raw_lines = text.splitlines(keepends=True)
    used = 0
    for no, raw in enumerate(raw_lines, start=1):
        if len(pairs) == max_pairs:
            break
        used = no
        body = raw.splitlines()[0] if raw.strip() else ""
        if not body.strip():
            continue
        parts = body.split("\t")
        if not pairs and header is None and is_header(parts):
            header = no
            warnings.warn(f"--pairs file {path}, line {no}: {body.strip()[:60]!r} is a header "
                          "row, not a pair: skipped", stacklevel=2)
            continue
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ProfileInputError(
                f"--pairs file {path}, line {no}: expected 'premise<TAB>hypothesis' (two "
                f"non-empty fields separated by one tab), got {len(parts)} field(s): "
                f"{body[:60]!r}")
        pairs.append((parts[0].strip(), parts[1].strip()))
    check_count(f"--pairs file {path} has {len(pairs)} pairs", len(pairs), min_pairs,
                " for label-free estimates", WARN_PAIRS,
                f"--pairs has only {len(pairs)} pairs: label-free estimates will be noisy")
    sample = _sampled(pairs, data, size, whole, raw_lines, used,
                      f"first {max_pairs} pairs within the first {max_bytes} bytes")
    sample.info["header_line_skipped"] = header
    return sample


def read_pairs(path: Path, *, min_pairs: int = MIN_PAIRS,
               max_pairs: int = MAX_PAIRS) -> list[tuple[str, str]]:
    """The pairs of :func:`read_pairs_sample`."""
    return read_pairs_sample(path, min_pairs=min_pairs, max_pairs=max_pairs).items


# -- do the pairs look like NLI pairs? ------------------------------------------------------
#: mean pairing (below) at or above which pairs look like NLI pairs. On the 600 shipped
#: test pairs of each of the 22 measured targets it is 0.88-0.99 on XNLI and 0.81-0.84 on
#: AmericasNLI (the embeddings pair those less well, the character 3-grams as well as
#: elsewhere); the same pairs with shuffled hypotheses score 0.48-0.51. With 12 pairs the
#: two overlap (real down to 0.68, shuffled up to 0.76 in 20 draws per target), so below
#: :data:`FEW_PAIRS` the verdict is a hint and says so.
PAIRING_THRESHOLD = 0.65
FEW_PAIRS = 50
PAIRS_CHECK_MAX = 500      # the check is quadratic in the pairs: a seeded sample beyond this


def _char_ngrams(text: str, n: int = 3) -> set[str]:
    s = " ".join(text.lower().split())
    return {s[i:i + n] for i in range(max(1, len(s) - n + 1))}


def pairing_score(sim: np.ndarray, premises: Sequence[str]) -> float | None:
    """How often a premise is more similar to its own hypothesis (``sim[i, i]``) than to
    another pair's (``sim[i, j]``, other premises only; ties count half): 1 for perfectly
    matched pairs, 0.5 for unrelated ones. None when no pair has another premise."""
    own = np.diag(sim)[:, None]
    prem = np.asarray(premises, dtype=object)
    other = prem[None, :] != prem[:, None]
    n_other = other.sum(axis=1)
    score = ((sim < own) & other).sum(axis=1) + 0.5 * ((sim == own) & other).sum(axis=1)
    keep = n_other > 0
    return float(np.mean(score[keep] / n_other[keep])) if keep.any() else None


def pairs_check(pairs: Sequence[tuple[str, str]], u: np.ndarray, v: np.ndarray,
                seed: int = 0) -> dict[str, Any]:
    """Do the pairs look like NLI pairs (a hypothesis written about its premise)?

    Why: pairs of unrelated lines still give label-free numbers (the probes' predicted
    labels on them), which then read as a confident profile. A hypothesis is about its
    premise, so a premise is closer to its own hypothesis than to the others, in the
    model's embedding space (``u``, ``v``: premise and hypothesis embeddings) and in shared
    character 3-grams (script-independent, and robust where the embeddings are weak). The
    mean of the two :func:`pairing_score` values is compared with
    :data:`PAIRING_THRESHOLD`. The probes' predicted-label collapse is *not* used: real
    AmericasNLI pairs collapse more than shuffled ones (it measures transfer, not pairing).
    """
    idx = np.arange(len(pairs))
    if len(idx) > PAIRS_CHECK_MAX:
        idx = np.sort(np.random.default_rng(seed).choice(len(idx), PAIRS_CHECK_MAX, replace=False))
    prem = [pairs[i][0] for i in idx]
    grams_p = [_char_ngrams(pairs[i][0]) for i in idx]
    grams_h = [_char_ngrams(pairs[i][1]) for i in idx]
    lexical = np.array([[len(a & b) / max(1, len(b)) for b in grams_h] for a in grams_p])
    emb = pairing_score(u[idx] @ v[idx].T, prem)
    lex = pairing_score(lexical, prem)
    out: dict[str, Any] = {"n_pairs_checked": int(len(idx)), "threshold": PAIRING_THRESHOLD,
                           "pairing_embedding": emb, "pairing_lexical": lex}
    if emb is None or lex is None:
        return {**out, "looks_like_nli": None, "pairing": None,
                "why": "cannot tell: every pair has the same premise"}
    pairing = (emb + lex) / 2
    looks = bool(pairing >= PAIRING_THRESHOLD)
    few = (f" (only {len(idx)} pairs: with fewer than {FEW_PAIRS} this check is a hint)"
           if len(idx) < FEW_PAIRS else "")
    if looks:
        why = (f"on average a premise is closer to its own hypothesis than to {100 * emb:.0f}% "
               f"of the other pairs' hypotheses in the model's space and shares more character "
               f"3-grams with it than with {100 * lex:.0f}% of them (pairing {pairing:.2f}; "
               f"unrelated lines score about 0.50){few}")
    else:
        why = (f"a premise is hardly closer to its own hypothesis than to the other pairs' "
               f"(pairing {pairing:.2f}: {emb:.2f} in the model's space, {lex:.2f} in shared "
               f"character 3-grams; unrelated lines score about 0.50, real NLI pairs 0.8 or "
               "more): premise and hypothesis look unrelated, so the label-free estimates "
               f"describe probes on unrelated sentences, not transfer{few}")
    return {**out, "looks_like_nli": looks, "pairing": pairing, "why": why}


#: the lowest "most even source probe" entropy (bits) of balanced NLI pairs over the 15
#: measured XNLI languages (disjoint-pairs profiles: 1.576-1.585; log2 3 = 1.585 is even)
BALANCED_ENTROPY_FLOOR = 1.57


def most_even_entropy(by_src: Any) -> float | None:
    """The highest predicted-label entropy (bits) among a profile's per-source probes
    (``label_free_by_source``), or None without them."""
    ent = [float(v["label_entropy"]) for v in (by_src or {}).values()
           if isinstance(v, dict) and isinstance(v.get("label_entropy"), (int, float))]
    return max(ent) if ent else None


def looks_label_skewed(by_src: Any) -> bool:
    """Even the most even per-source probe predicts skewed labels.

    Why: the label-free estimates read a probe's predicted-label entropy as transfer (a
    collapsed probe transfers badly), assuming roughly balanced pairs. Pairs that are 80%
    entailment lower every probe's entropy and the prediction with it (-4.2 macro-F1 on
    average over the XNLI languages, ``python -m predictor.studies.pair_conditions``). On
    a language far from every source the probes collapse and the entropy is low too, so
    for absent languages this cannot tell skew from collapse."""
    ent = most_even_entropy(by_src)
    return ent is not None and ent < BALANCED_ENTROPY_FLOOR
