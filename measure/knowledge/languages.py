"""The language registry: one place that says what a language code means.

Dataset codes (XNLI's ISO 639-1, AmericasNLI's own codes) map to ISO 639-3 codes for
URIEL/lang2vec, an English name and a script. Whether a model saw a language in
pretraining, and how much of it, is :mod:`measure.knowledge.coverage`'s one rule. The curated table
``resources/languages.csv`` is built by ``python -m measure.build_languages`` (the
editorial choices for macro-language and family codes are commented there).

Prediction targets go beyond the table: any of the ~4,000 languages lang2vec knows is a
valid target, addressed by its ISO 639-3 code (or ISO 639-1 code when one exists).
This module never imports torch, so the predictor and the app can use it.
"""

from __future__ import annotations

import difflib
import importlib
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import ModuleType

import pandas as pd

TABLE_FILE = "languages.csv"
#: longer "codes" are refused without searching for close matches (the longest dataset or
#: ISO code is a few characters)
MAX_CODE_LENGTH = 16

class UnknownLanguageError(ValueError):
    """A code that is neither in the registry nor known to lang2vec."""


@dataclass(frozen=True)
class Language:
    code: str                   # the code used in data and results (dataset code)
    iso639_3: str               # the code URIEL/lang2vec uses
    name: str
    script: str | None          # ISO 15924, None when unknown
    in_uriel: bool
    in_registry: bool           # False for lang2vec-only prediction targets


@lru_cache(maxsize=1)
def registry_table() -> pd.DataFrame:
    """The curated table, indexed by dataset code."""
    with resources.files("measure.resources").joinpath(TABLE_FILE).open("r", encoding="utf-8") as fh:
        df = pd.read_csv(fh, keep_default_na=False, na_values=[""])
    return df.set_index("code", drop=False)


def import_lang2vec() -> ModuleType:
    """Import ``lang2vec.lang2vec`` even when a console script's directory shadows it.

    lang2vec 1.1.2 installs a *script* called ``lang2vec.py`` into the environment's
    ``bin/``; console scripts (``xlt-predict``, ``pytest``) put ``bin/`` first on
    ``sys.path``, so a plain import finds the script instead of the package and fails.
    """
    mod = sys.modules.get("lang2vec.lang2vec")
    if mod is not None:
        return mod
    top = sys.modules.get("lang2vec")
    if top is not None and not hasattr(top, "__path__"):
        del sys.modules["lang2vec"]
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "lang2vec.py").is_file()]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pkg_resources deprecation noise
            return importlib.import_module("lang2vec.lang2vec")
    finally:
        sys.path[:] = saved


def lang2vec_data_dir() -> Path:
    """lang2vec's ``data`` folder, found without importing it (the import takes seconds)."""
    for entry in sys.path:
        cand = Path(entry or ".") / "lang2vec" / "data"
        if (cand / "family_features.npz").is_file():
            return cand
    raise FileNotFoundError("lang2vec's data files were not found on sys.path; "
                            "install lang2vec==1.1.2")


@lru_cache(maxsize=1)
def lang2vec_languages() -> frozenset[str]:
    """ISO 639-3 codes that have URIEL vectors in lang2vec's data files (~8,000 codes).

    Read from the data files rather than ``lang2vec.LANGUAGES``: that list is built with an
    indexing slip that drops codes such as ``ara`` and ``swa`` which do have vectors, and
    importing lang2vec costs seconds.
    """
    import numpy as np
    with np.load(lang2vec_data_dir() / "family_features.npz", allow_pickle=False) as db:
        return frozenset(str(c) for c in db["langs"])


@lru_cache(maxsize=1)
def _iso_records() -> tuple[dict[str, str], dict[str, str]]:
    """(639-1 -> 639-3, 639-3 -> name) from pycountry, for lang2vec-only targets."""
    import pycountry

    two_to_three: dict[str, str] = {}
    names: dict[str, str] = {}
    for rec in pycountry.languages:
        names[rec.alpha_3] = rec.name
        if hasattr(rec, "alpha_2"):
            two_to_three[rec.alpha_2] = rec.alpha_3
    return two_to_three, names


def _from_row(row: pd.Series) -> Language:
    return Language(
        code=row["code"], iso639_3=row["iso639_3"], name=row["name"],
        script=row["script"] if isinstance(row["script"], str) else None,
        in_uriel=bool(row["in_uriel"]), in_registry=True)


def known_codes() -> list[str]:
    """Dataset codes in the curated registry."""
    return registry_table().index.tolist()


def get_language(code: str) -> Language:
    """A registry language by its dataset code; unknown codes list the closest ones."""
    table = registry_table()
    if not isinstance(code, str) or code not in table.index:
        raise UnknownLanguageError(_unknown_message(code, table.index.tolist()))
    return _from_row(table.loc[code])


def resolve_target(code: str) -> Language:
    """Any prediction target: a registry code, an ISO 639-1 code or a lang2vec ISO 639-3 code.

    Languages outside the registry get the script CLDR says they are usually written in
    (:func:`likely_script`, else None), never a made-up value. Memoised: every prediction
    row and every source language of a request resolves its codes here (the one memo).
    """
    if not isinstance(code, str) or not code.strip():
        raise UnknownLanguageError("empty language code: pass a code such as 'sw' or 'swh'")
    code = code.strip()
    if len(code) > MAX_CODE_LENGTH:
        # no search for close matches: nothing that long is a language code
        raise UnknownLanguageError(f"unknown language code {_shown(code)}: language codes are "
                                   "ISO 639-1 or 639-3 codes such as 'sw' or 'swh'")
    return _resolve(code)


@lru_cache(maxsize=16384)
def _resolve(code: str) -> Language:
    table = registry_table()
    if code in table.index:
        return _from_row(table.loc[code])
    by_iso3 = table[table["iso639_3"] == code]
    if len(by_iso3):
        return _from_row(by_iso3.iloc[0])
    two_to_three, names = _iso_records()
    if len(code) == 3:
        # an ISO 639-3 (macro)language code whose ISO 639-1 twin is in the registry, e.g.
        # 'ara' or 'swa': use the registry's entry (its name, script and dataset code)
        import pycountry
        rec = pycountry.languages.get(alpha_3=code)
        if rec is not None and getattr(rec, "alpha_2", None) in table.index:
            return _from_row(table.loc[rec.alpha_2])
    known = lang2vec_languages()
    iso3 = two_to_three.get(code, code) if len(code) == 2 else code
    if iso3 in known:
        return Language(code=code, iso639_3=iso3, name=names.get(iso3, iso3),
                        script=likely_script(iso3), in_uriel=True, in_registry=False)
    raise UnknownLanguageError(_unknown_message(code, list(table.index) + sorted(known)))


@lru_cache(maxsize=4096)
def likely_script(code: str) -> str | None:
    """ISO 15924 script a language is usually written in (CLDR likely subtags), else None.

    Why: the curated registry knows the script of its ~110 languages; any other target
    used to have script *unknown*, so Zulu, Guarani or Maltese (Latin script, absent from
    XLM-R's corpus) were flagged "whether the corpus covers its script is unknown" and got
    no script features. CLDR's likely-subtags table (via ``langcodes``, offline) covers
    ~1,900 languages; an individual language missing from it borrows its macrolanguage's
    entry (Ayacucho Quechua ``quy`` -> ``qu`` -> Latn). A code CLDR does not list stays
    None: its "und" default (Latin) would be a guess, not knowledge.
    """
    import langcodes
    from langcodes.data_dicts import LIKELY_SUBTAGS, MACROLANGUAGES
    try:
        lang = langcodes.standardize_tag(code, macro=True).split("-")[0]
    except (ValueError, langcodes.tag_parser.LanguageTagError):
        return None
    for key in (lang, MACROLANGUAGES.get(lang)):
        tag = LIKELY_SUBTAGS.get(key) if key else None
        if tag:
            parts = tag.split("-")
            return parts[1] if len(parts) > 1 and len(parts[1]) == 4 else None
    return None


def _shown(code: object) -> str:
    text = repr(code)
    return text if len(text) <= 40 else text[:35] + "...'"


def _unknown_message(code: object, candidates: list[str]) -> str:
    close = difflib.get_close_matches(str(code), candidates, n=5, cutoff=0.5)
    # A macrolanguage code (e.g. 'swa') whose ISO 639-1 twin is in the registry: point
    # at the individual language the registry chose (e.g. 'swh').
    import pycountry
    rec = pycountry.languages.get(alpha_3=str(code)) if len(str(code)) == 3 else None
    table = registry_table()
    if rec is not None and getattr(rec, "alpha_2", None) in table.index:
        close = [table.loc[rec.alpha_2, "iso639_3"], rec.alpha_2] + close
    close = list(dict.fromkeys(close))[:5]
    hint = f"closest known codes: {', '.join(close)}" if close else \
        "use an ISO 639-1 code (e.g. 'sw') or an ISO 639-3 code that lang2vec knows (e.g. 'swh')"
    return f"unknown language code {_shown(code)}; {hint}"


def search_languages(query: str, limit: int = 20) -> list[Language]:
    """Registry and lang2vec languages whose code or name matches ``query`` (for the app)."""
    q = query.strip().lower()
    if not q:
        return []
    out: list[Language] = []
    seen: set[str] = set()
    for code in known_codes():
        lang = get_language(code)
        if q == code or q in lang.name.lower() or q == lang.iso639_3:
            out.append(lang)
            seen.add(lang.iso639_3)
    _, names = _iso_records()
    for iso3 in sorted(lang2vec_languages()):
        if iso3 in seen or len(out) >= limit:
            continue
        name = names.get(iso3, "")
        if q == iso3 or q in name.lower():
            out.append(resolve_target(iso3))
    return out[:limit]
