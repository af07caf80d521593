"""Language profiles (``measure.profile``): where they are, reading and checking them, and
finding the one a (model, target) uses.

Why here and checked: a profile is a JSON file a user can rebuild, copy or hand-edit
(``xlt-predict batch --profiles DIR``), and the profile features read it at prediction
time. A bad file must fail when it is read, naming the file and the field, not deep inside
a prediction; and a models directory reads its own profiles, or none (``NO_PROFILES``).
"""

from __future__ import annotations

import json
import math

from pathlib import Path
from typing import Any

from measure.knowledge.languages import resolve_target
from measure.knowledge.paths import MODELS, find_default

#: ``profiles_dir`` value meaning "this models directory has no profiles": no fallback search.
NO_PROFILES = "<none>"

# Models whose profiles may stand in for another model's (same tokenizer vocabulary; the
# centroid and label-free values are then a related model's view). Flagged by
# ``profile_is_proxy``.
PROFILE_PROXY: dict[str, str] = {"xlmr": "me5-small", "tulrv6": "me5-small"}

# A tokenizer "covers" a script when fewer than this share of a text's pieces are <unk>
# (XLM-R's sentencepiece has no byte fallback: an unseen character becomes <unk>).
SCRIPT_COVERED_UNK = 0.01

_PROFILE_CACHE: dict[tuple[str, str], tuple[float, dict[str, dict]]] = {}


class ProfileError(ValueError):
    """A language profile file that cannot be read as one (the message names file and field)."""


def profiles_root(profiles_dir: str | Path | None) -> Path | None:
    """The profiles folder a transformer reads: ``profiles_dir``, else ``<models>/profiles``
    (``measure.knowledge.paths.MODELS``), else None; None for ``NO_PROFILES``.

    A given directory that does not exist fails here, with how to make one."""
    if profiles_dir == NO_PROFILES:
        return None
    if profiles_dir is not None:
        path = Path(profiles_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"profiles directory {path} does not exist: pass a "
                                    "directory made by 'xlt-measure profile --profiles DIR'")
        return path
    models = find_default(MODELS)
    return None if models is None else models / "profiles"


def profile_code(code: str) -> str:
    """The registry's dataset code of a language ('swh' -> 'sw'), as profiles key their
    per-source values; a code the registry cannot resolve stays as written."""
    try:
        return resolve_target(code).code
    except ValueError:
        return code


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_profile(prof: Any, where: Path | str) -> dict:
    """The fields the features read, checked: a hand-edited or truncated profile fails here,
    naming the file and the field, instead of deep inside a prediction."""
    def bad(field: str, why: str) -> ProfileError:
        return ProfileError(f"profile {where}: {field} {why}; rebuild it with "
                            "'xlt-measure profile'")
    if not isinstance(prof, dict):
        raise bad("the file", "is not a JSON object")
    for code in ("language", "iso639_3"):
        if prof.get(code) is not None and not isinstance(prof[code], str):
            raise bad(code, "must be a language code (text)")
    tok = prof.get("tokenizer", {})
    if not isinstance(tok, dict):
        raise bad("tokenizer", "must be an object")
    for k in ("fertility", "unk_rate", "single_char_share"):
        if k in tok and not _number(tok[k]):
            raise bad(f"tokenizer.{k}", f"must be a finite number, got {tok[k]!r}")
    dist = prof.get("centroid_distance", {})
    if not isinstance(dist, dict) or not all(_number(v) for v in dist.values()):
        raise bad("centroid_distance", "must map language codes to finite numbers")
    lf = prof.get("label_free")
    if lf is not None:
        if not isinstance(lf, dict):
            raise bad("label_free", "must be an object or null")
        for k in ("mean_confidence", "label_entropy", "atc", "doc"):
            if not _number(lf.get(k)):
                raise bad(f"label_free.{k}", f"must be a finite number, got {lf.get(k)!r}")
    by_src = prof.get("label_free_by_source")
    if by_src is not None:
        if not isinstance(by_src, dict):
            raise bad("label_free_by_source", "must be an object or null")
        for src, st in by_src.items():
            if not isinstance(st, dict) or not _number(st.get("label_entropy")):
                raise bad(f"label_free_by_source.{src}.label_entropy", "must be a finite number")
    return prof


def check_profiles(root: str | Path | None) -> int:
    """Read and check every profile under ``root`` (``root/<model>/*.json``) now, so that a
    bad ``--profiles DIR`` fails at load time; returns how many profiles were read."""
    if root in (None, NO_PROFILES) or not Path(root).is_dir():
        return 0
    return sum(len({id(v) for v in _profiles_for(Path(root), d.name).values()})
               for d in sorted(Path(root).iterdir()) if d.is_dir())


def _profiles_for(root: Path, model: str) -> dict[str, dict]:
    """{code and ISO 639-3 code: profile} of ``root/model``, re-read when the folder changes."""
    folder = root / model
    if not folder.is_dir():
        return {}
    stamp = max([folder.stat().st_mtime] + [f.stat().st_mtime for f in folder.glob("*.json")])
    key = (str(folder.resolve()), model)
    hit = _PROFILE_CACHE.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    table: dict[str, dict] = {}
    for f in sorted(folder.glob("*.json")):
        if f.name.startswith("_"):
            continue
        try:
            prof = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ProfileError(f"profile {f} is not valid JSON ({exc}); rebuild it with "
                               "'xlt-measure profile'") from None
        check_profile(prof, f)
        for code in (prof.get("language"), prof.get("iso639_3")):
            if code:
                table.setdefault(str(code), prof)
    _PROFILE_CACHE[key] = (stamp, table)
    return table


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
