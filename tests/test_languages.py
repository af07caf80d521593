"""The language registry: every shipped code maps explicitly; unknown codes get help."""

from __future__ import annotations

import pytest

from measure.knowledge.languages import (UnknownLanguageError, get_language, known_codes,
                               lang2vec_languages, resolve_target, search_languages)

EXPECTED = {  # dataset code -> (ISO 639-3 for URIEL, script)
    "ar": ("arb", "Arab"), "bg": ("bul", "Cyrl"), "de": ("deu", "Latn"), "el": ("ell", "Grek"),
    "en": ("eng", "Latn"), "es": ("spa", "Latn"), "fr": ("fra", "Latn"), "hi": ("hin", "Deva"),
    "ru": ("rus", "Cyrl"), "sw": ("swh", "Latn"), "th": ("tha", "Thai"), "tr": ("tur", "Latn"),
    "ur": ("urd", "Arab"), "vi": ("vie", "Latn"), "zh": ("cmn", "Hans"),
    "aym": ("ayr", "Latn"), "bzd": ("bzd", "Latn"), "cni": ("cni", "Latn"),
    "hch": ("hch", "Latn"), "nah": ("nhi", "Latn"), "oto": ("ote", "Latn"),
    "tar": ("tar", "Latn"),
}


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_shipped_languages_map(code: str) -> None:
    lang = get_language(code)
    assert (lang.iso639_3, lang.script) == EXPECTED[code]
    assert lang.in_uriel and lang.iso639_3 in lang2vec_languages()
    assert lang.name


def test_the_registry_holds_no_pretraining_knowledge() -> None:
    # presence and sizes are measure.knowledge.coverage's one rule (tests/test_coverage.py)
    fields = set(get_language("en").__dataclass_fields__)
    assert not {f for f in fields if "cc100" in f or "pretrain" in f}
    assert resolve_target("hr").iso639_3 == "hrv"


def test_unknown_code_lists_closest() -> None:
    with pytest.raises(UnknownLanguageError, match=r"unknown language code 'qqx'; closest known codes"):
        resolve_target("qqx")
    assert resolve_target("swa").code == "sw"          # macrolanguage -> the registry's choice
    assert resolve_target("ara").iso639_3 == "arb"
    with pytest.raises(UnknownLanguageError, match="closest known codes"):
        get_language("enn")


def test_any_lang2vec_language_is_a_target() -> None:
    known = lang2vec_languages()
    assert len(known) > 4000
    for iso3 in ["quy", "gug", "yor", "kat", "ckb"]:
        t = resolve_target(iso3)
        assert t.iso639_3 == iso3 and t.in_uriel and t.name != iso3
    assert resolve_target("as").iso639_3 == "asm"     # ISO 639-1 codes of registry languages
    assert resolve_target("swh").code == "sw"          # URIEL code of a registry language


def test_registry_covers_published_and_datasets() -> None:
    codes = set(known_codes())
    assert set(EXPECTED) <= codes and len(codes) > 100


def test_search_by_name() -> None:
    names = [lang.name for lang in search_languages("Swahili")]
    assert "Swahili" in names


@pytest.mark.parametrize("code,script", [("zu", "Latn"), ("quy", "Latn"), ("mt", "Latn"),
                                         ("ti", "Ethi"), ("ckb", "Arab")])
def test_languages_outside_the_registry_get_their_cldr_script(code: str, script: str) -> None:
    from measure.knowledge.languages import likely_script, resolve_target
    assert likely_script(code) == script
    lang = resolve_target(code)
    assert not lang.in_registry and lang.script == script


@pytest.mark.parametrize("code", ["nhi", "tlh", "zzz", ""])
def test_a_script_cldr_does_not_list_stays_unknown(code: str) -> None:
    from measure.knowledge.languages import likely_script
    assert likely_script(code) is None
