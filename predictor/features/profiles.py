"""Language profiles (``measure.profile``): where they are, reading and checking them, and
finding the one a (model, target) uses.

Why here and checked: a profile is a JSON file a user can rebuild, copy or hand-edit
(``xlt-predict batch --profiles DIR``), and the profile features read it at prediction
time. A bad file must fail when it is read, naming the file and the field, not deep inside
a prediction; and a models directory reads its own profiles, or none (``NO_PROFILES``).

Checked as strictly as a model card: a value no measurement can produce (an entropy of 25
bits over three labels, a rate of -0.3, 1e300, ``"schema": 99``) would otherwise become a
confident prediction far outside anything the predictor was fitted on (100.0 [100.0,
100.0] before). Each range below is what ``measure.profile`` can write; fields it may add
later (``pairs_check``, ``provenance.*``) are allowed. A file is read only if it is a
regular file of at most :data:`MAX_PROFILE_BYTES` (a FIFO named ``quy.json`` hung ``query``;
a 100k-deep JSON array gave a ``RecursionError``).
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from measure.knowledge.languages import resolve_target
from measure.knowledge.nli import LABELS
from measure.knowledge.paths import MODELS, find_default
from measure.knowledge.train_config import shown

#: ``profiles_dir`` value meaning "this models directory has no profiles": no fallback search.
NO_PROFILES = "<none>"

# Models whose profiles may stand in for another model's (same tokenizer vocabulary; the
# centroid and label-free values are then a related model's view). Flagged by
# ``profile_is_proxy``.
PROFILE_PROXY: dict[str, str] = {"xlmr": "me5-small", "tulrv6": "me5-small"}

# A tokenizer "covers" a script when fewer than this share of a text's pieces are <unk>
# (XLM-R's sentencepiece has no byte fallback: an unseen character becomes <unk>).
SCRIPT_COVERED_UNK = 0.01

#: profile schemas this xlt reads (``measure.profile.PROFILE_SCHEMA`` writes the newest;
#: schema 1 has no ``label_free_by_source``)
PROFILE_SCHEMAS: tuple[int, ...] = (1, 2)
#: a profile is a few kB; a larger file is not one (and is not read)
MAX_PROFILE_BYTES = 1 << 20
#: fertility (pieces per whitespace word) and characters per word: a text written without
#: spaces, one paragraph a line, reaches a few hundred; beyond this it is not a measurement
MAX_PER_WORD = 10_000.0
#: counts (pieces, words, pairs, lines): a profile reads at most megabytes of text
MAX_COUNT = 10**12
#: DoC = 100 * (source accuracy - source confidence + target confidence), confidences of a
#: three-label argmax in [1/3, 1]: it can leave [0, 100] a little, never this range
DOC_RANGE = (100.0 * (0.0 - 1.0 + 1.0 / 3.0), 100.0 * (1.0 - 1.0 / 3.0 + 1.0))
_EPS = 1e-9        # float rounding at a range's ends (a cosine distance of -2e-16)

_PROFILE_CACHE: dict[tuple[str, str], tuple[tuple, dict[str, dict]]] = {}


class ProfileError(ValueError):
    """A language profile file that cannot be read as one (the message names file and field)."""


def profiles_root(profiles_dir: str | Path | None) -> Path | None:
    """The profiles folder a transformer reads: ``profiles_dir``, else ``<models>/profiles``
    (``measure.knowledge.paths.MODELS``), else None; None for ``NO_PROFILES``.

    A given path that is not a directory fails here (FileNotFoundError), saying whether
    it is missing or a file, and how to make one."""
    if profiles_dir == NO_PROFILES:
        return None
    if profiles_dir is not None:
        problem = profiles_dir_problem(profiles_dir)
        if problem:
            raise FileNotFoundError(problem)
        return Path(profiles_dir)
    models = find_default(MODELS)
    return None if models is None else models / "profiles"


def profiles_dir_problem(profiles_dir: str | Path) -> str | None:
    """Why ``profiles_dir`` cannot be a profiles directory (missing, a file, ...), or None."""
    path = Path(profiles_dir)
    fix = "pass a directory made by 'xlt-measure profile --profiles DIR'"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"profiles directory {path} does not exist: {fix}"
    except OSError as exc:
        return f"profiles directory {path} cannot be read ({exc.strerror or exc}): {fix}"
    if not stat.S_ISDIR(mode):
        kind = "a file" if stat.S_ISREG(mode) else "a FIFO, socket or device"
        return f"--profiles {path} is {kind}, not a directory: {fix}"
    return None


def profile_code(code: str) -> str:
    """The registry's dataset code of a language ('swh' -> 'sw'), as profiles key their
    per-source values; a code the registry cannot resolve stays as written."""
    try:
        return resolve_target(code).code
    except ValueError:
        return code


# -- checking a profile ------------------------------------------------------------------------
def _number(x: Any) -> bool:
    """A finite int or float (JSON's true/false are not numbers here)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class _Checker:
    """Range checks of one profile; every failure names the file and the field."""

    def __init__(self, where: Path | str) -> None:
        self.where = where

    def bad(self, field: str, why: str) -> ProfileError:
        return ProfileError(f"profile {self.where}: {field} {why}; rebuild it with "
                            "'xlt-measure profile'")

    def obj(self, x: Any, field: str, *, null: bool = False) -> dict | None:
        if x is None and null:
            return None
        if not isinstance(x, dict):
            raise self.bad(field, "must be an object" + (" or null" if null else "")
                           + f", got {shown(x)}")
        return x

    def num(self, x: Any, field: str, lo: float, hi: float, *, above: bool = False) -> None:
        """A finite number in [lo, hi] ((lo, hi] with ``above``)."""
        if not _number(x) or x > hi + _EPS or (x <= lo if above else x < lo - _EPS):
            span = f"{'(' if above else '['}{lo:g}, {hi:g}]"
            raise self.bad(field, f"must be a number in {span}, got {shown(x)}")

    def count(self, x: Any, field: str) -> None:
        if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x <= MAX_COUNT:
            raise self.bad(field, f"must be a whole number in [0, {MAX_COUNT:.0e}], "
                                  f"got {shown(x)}")

    def fields(self, parent: dict, prefix: str, rules: dict[str, Callable[[Any, str], None]],
               required: tuple[str, ...] = ()) -> None:
        """Apply ``rules`` to the fields of ``parent`` that are present (``required`` must be)."""
        for key in required:
            if key not in parent:
                raise self.bad(f"{prefix}{key}", "is missing")
        for key, rule in rules.items():
            if key in parent:
                rule(parent[key], f"{prefix}{key}")

    def text(self, x: Any, field: str) -> None:
        if not isinstance(x, str):
            raise self.bad(field, f"must be text, got {shown(x)}")

    def flag(self, x: Any, field: str, *, null: bool = False) -> None:
        if not (isinstance(x, bool) or (null and x is None)):
            raise self.bad(field, f"must be true or false, got {shown(x)}")


def _label_free_rules(c: _Checker) -> dict[str, Callable[[Any, str], None]]:
    """The four per-probe estimates (``label_free`` and each ``label_free_by_source`` entry)."""
    return {"mean_confidence": lambda x, f: c.num(x, f, 1.0 / 3.0, 1.0),
            "label_entropy": lambda x, f: c.num(x, f, 0.0, math.log2(len(LABELS))),
            "atc": lambda x, f: c.num(x, f, 0.0, 100.0),
            "doc": lambda x, f: c.num(x, f, *DOC_RANGE)}


def _check_distribution(c: _Checker, x: Any, field: str) -> None:
    """A predicted-label distribution: a share in [0, 1] for each of the three labels,
    summing to 1 (what ``label_free`` counts)."""
    dist = c.obj(x, field) or {}
    if set(dist) != set(LABELS):
        raise c.bad(field, f"must give the shares of exactly {', '.join(LABELS)}, got "
                           f"{shown(sorted(dist))}")
    for label, share in dist.items():
        c.num(share, f"{field}.{label}", 0.0, 1.0)
    if abs(sum(dist.values()) - 1.0) > 1e-6:
        raise c.bad(field, f"must sum to 1 (a distribution), got {sum(dist.values()):.6g}")


def _check_label_free(c: _Checker, prof: dict) -> None:
    """The estimates from unlabelled pairs (each null when the profile had no pairs): the
    reference probe's, each source probe's (the features read its entropy) and the pairs
    check (``measure.profile_inputs.pairs_check``: shares in [0, 1])."""
    lf = c.obj(prof.get("label_free"), "label_free", null=True)
    if lf is not None:
        c.fields(lf, "label_free.", {
            **_label_free_rules(c), "n_pairs": c.count,
            "label_distribution": lambda x, f: _check_distribution(c, x, f)},
            required=("mean_confidence", "label_entropy", "atc", "doc"))
    by_src = c.obj(prof.get("label_free_by_source"), "label_free_by_source", null=True)
    for src, stats in (by_src or {}).items():
        field = f"label_free_by_source.{shown(src)[1:-1]}"
        c.fields(c.obj(stats, field) or {}, f"{field}.", _label_free_rules(c),
                 required=("label_entropy",))
    pc = c.obj(prof.get("pairs_check"), "pairs_check", null=True)
    if pc is not None:
        share = {k: (lambda x, f: None if x is None else c.num(x, f, 0.0, 1.0))
                 for k in ("threshold", "pairing_embedding", "pairing_lexical", "pairing")}
        c.fields(pc, "pairs_check.", {**share, "n_pairs_checked": c.count,
                                      "looks_like_nli": lambda x, f: c.flag(x, f, null=True)})


def check_profile(prof: Any, where: Path | str, model: str | None = None) -> dict:
    """Every field a profile may hold, checked against what a measurement can produce: the
    schema, the tokenizer statistics, the centroid distances and the label-free estimates
    (module docstring). ``model``: the folder the file sits in, which its ``model`` field
    must name. Unknown extra fields are allowed. Returns ``prof``; raises ProfileError
    naming the file and the field."""
    c = _Checker(where)
    if not isinstance(prof, dict):
        raise c.bad("the file", "is not a JSON object")
    schema = prof.get("schema")
    if isinstance(schema, bool) or not isinstance(schema, int):
        raise c.bad("schema", f"must be a whole number, got {shown(schema)}")
    if schema not in PROFILE_SCHEMAS:
        newer = schema > max(PROFILE_SCHEMAS)
        raise ProfileError(f"profile {where}: schema {shown(schema)} is "
                           f"{'newer than' if newer else 'not one of'} the schemas this xlt "
                           f"reads ({', '.join(map(str, PROFILE_SCHEMAS))}): "
                           + ("update xlt, or " if newer else "") + "rebuild it with "
                           "'xlt-measure profile'")
    c.fields(prof, "", {"language": c.text, "iso639_3": c.text, "name": c.text,
                        "model": c.text})
    if model is not None and prof.get("model", model) != model:
        raise ProfileError(f"profile {where}: model is {shown(prof['model'])} but the file "
                           f"is in the folder of {shown(model)}: move it to the folder of "
                           "its model (<profiles>/<model>/)")
    c.fields(c.obj(prof.get("provenance", {}), "provenance") or {}, "provenance.",
             {"n_lines": c.count})
    per_word = (lambda x, f: c.num(x, f, 0.0, MAX_PER_WORD, above=True))
    share = (lambda x, f: c.num(x, f, 0.0, 1.0))
    c.fields(c.obj(prof.get("tokenizer", {}), "tokenizer") or {}, "tokenizer.", {
        "fertility": per_word, "chars_per_word": per_word, "unk_rate": share,
        "single_char_share": share, "pieces_per_char": lambda x, f: c.num(x, f, 0.0, 100.0),
        "n_pieces": c.count, "n_words": c.count, "whitespace_segmented": c.flag})
    dist = c.obj(prof.get("centroid_distance", {}), "centroid_distance") or {}
    for code, d in dist.items():
        c.num(d, f"centroid_distance.{shown(code)[1:-1]}", 0.0, 2.0)   # cosine distance
    _check_label_free(c, prof)
    return prof


def check_profiles(root: str | Path | None) -> int:
    """Read and check every profile under ``root`` (``root/<model>/*.json``) now, so that a
    bad ``--profiles DIR`` fails at load time; returns how many profiles were read."""
    if root in (None, NO_PROFILES) or not Path(root).is_dir():
        return 0
    return sum(len({id(v) for v in _profiles_for(Path(root), d.name).values()})
               for d in sorted(Path(root).iterdir()) if d.is_dir())


# -- reading profile files ---------------------------------------------------------------------
def _profile_files(folder: Path) -> list[tuple[Path, os.stat_result]]:
    """The profile files of ``folder`` with their stat, each a regular file of at most
    :data:`MAX_PROFILE_BYTES`: anything else named like a profile (a FIFO, a directory, a
    broken link, a huge file) is refused here, before it is opened."""
    out = []
    for f in sorted(folder.glob("*.json")):
        if f.name.startswith("_"):
            continue
        try:
            st = f.stat()
        except OSError as exc:
            raise ProfileError(f"profile {f} cannot be read ({exc.strerror or exc}): remove "
                               "it or rebuild it with 'xlt-measure profile'") from None
        if not stat.S_ISREG(st.st_mode):
            raise ProfileError(f"profile {f} is not a regular file (a directory, FIFO, socket "
                               "or device): remove it; profiles are JSON files written by "
                               "'xlt-measure profile'")
        if st.st_size > MAX_PROFILE_BYTES:
            raise ProfileError(f"profile {f} is {st.st_size:,} bytes, more than a profile can "
                               f"be ({MAX_PROFILE_BYTES:,}): remove it or rebuild it with "
                               "'xlt-measure profile'")
        out.append((f, st))
    return out


def read_profile_file(f: Path) -> Any:
    """The JSON of profile file ``f``, read without blocking (``O_NONBLOCK``: a FIFO put
    in its place after the check cannot hang the read) and at most
    :data:`MAX_PROFILE_BYTES`; any failure is a one-line ProfileError."""
    def bad(why: str) -> ProfileError:
        return ProfileError(f"profile {f} is not valid JSON ({why}); rebuild it with "
                            "'xlt-measure profile'")
    try:
        fd = os.open(f, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ProfileError(f"profile {f} is not a regular file: remove it")
            data = fh.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise ProfileError(f"profile {f} cannot be read ({exc.strerror or exc}): remove it "
                           "or rebuild it with 'xlt-measure profile'") from None
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileError(f"profile {f} is larger than a profile can be "
                           f"({MAX_PROFILE_BYTES:,} bytes): remove it")
    try:
        return json.loads(data.decode("utf-8"))   # NaN parses: the field check names it
    except RecursionError:
        raise bad("nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise bad(f"not UTF-8 text at byte {exc.start}") from None
    except ValueError as exc:
        raise bad(str(exc)[:200]) from None


def _profiles_for(root: Path, model: str) -> dict[str, dict]:
    """{code and ISO 639-3 code: profile} of ``root/model``, re-read when the folder changes."""
    folder = root / model
    if not folder.is_dir():
        return {}
    files = _profile_files(folder)
    stamp = (folder.stat().st_mtime_ns,
             *((f.name, st.st_mtime_ns, st.st_size, st.st_ino) for f, st in files))
    key = (str(folder.resolve()), model)
    hit = _PROFILE_CACHE.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    table: dict[str, dict] = {}
    for f, _ in files:
        prof = check_profile(read_profile_file(f), f, model)
        for code in (prof.get("language"), prof.get("iso639_3")):
            if code:
                table.setdefault(str(code), prof)
    _PROFILE_CACHE[key] = (stamp, table)
    return table


def profile_protocols(profiles_dir: str | Path | None) -> dict[str, Any]:
    """Which protocol built the profiles a fit reads (``provenance.protocol`` of each file;
    files written before protocols existed are ``scored-pairs``): {model: {protocol: count}}.

    Why: a figure measured with profiles of the scored pairs is a label-free self-estimate,
    one with disjoint pairs a prediction; the card says which its numbers are."""
    root = profiles_root(profiles_dir)
    out: dict[str, Any] = {}
    if root is None or not root.is_dir():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        counts: dict[str, int] = {}
        for prof in {id(v): v for v in _profiles_for(root, folder.name).values()}.values():
            tag = str((prof.get("provenance") or {}).get("protocol") or "scored-pairs")
            counts[tag] = counts.get(tag, 0) + 1
        if counts:
            out[folder.name] = dict(sorted(counts.items()))
    return out


def find_profile(root: Path, model: str, target: str,
                 tables: dict[str, dict[str, dict]] | None = None) -> tuple[dict | None, bool]:
    """(profile or None, measured with a proxy model?) for ``target`` under ``root``.

    Looks under ``root/model`` first, then ``root/PROFILE_PROXY[model]``; the target is
    matched by its code as given, its registry code and its ISO 639-3 code. ``tables``:
    a {model: profiles} memo for several look-ups in one request (each model's folder is
    then checked for changes once, not once per target).
    """
    try:
        lang = resolve_target(target)
        codes = [target, lang.code, lang.iso639_3]
    except ValueError:
        codes = [target]
    for m, proxy in ((model, False), (PROFILE_PROXY.get(model), True)):
        if not m:
            continue
        if tables is None:
            table = _profiles_for(root, m)
        else:
            table = tables[m] if m in tables else tables.setdefault(m, _profiles_for(root, m))
        for c in codes:
            if c in table:
                return table[c], proxy
    return None, False
