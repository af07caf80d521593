"""TrainConfig: one validated, immutable training configuration for every entry point."""

from __future__ import annotations

import json
import time

import pytest

from measure.knowledge.train_config import (MAX_EXAMPLES, MAX_LANGUAGES, TrainConfig,
                                            TrainConfigError)


def test_parse_drops_zeros_sorts_and_keeps_derived_forms() -> None:
    tc = TrainConfig.parse({"en": 2490, "de": 1000, "fr": 0})
    assert list(tc.items()) == [("de", 1000), ("en", 2490)]
    assert tc.k == 2 and tc.total == 3490
    assert tc.key == (("de", 1000.0), ("en", 2490.0))
    assert tc.iso == {"deu": 1000.0, "eng": 2490.0}
    assert json.loads(tc.json) == {"de": 1000, "en": 2490} and tc.json == '{"de":1000,"en":2490}'
    # equal by value: to another TrainConfig (same hash) and to a plain dict
    assert tc == TrainConfig.parse({"de": 1000, "en": 2490}) == {"en": 2490, "de": 1000}
    assert hash(tc) == hash(TrainConfig.parse({"de": 1000.0, "en": 2490}))
    assert TrainConfig.parse(tc) is tc


@pytest.mark.parametrize("value, message", [
    ([("en", 5)], "expected a mapping"),
    ({"en": 0}, "no language with n > 0"),
    ({"en": -1}, "must be a whole number >= 0"),
    ({"en": 2.5}, "whole number"),
    ({"en": True}, "whole number"),
    ({"en": float("nan")}, "whole number"),
    ({"en": 10 ** 29}, "beyond any training set"),
    ({"en": 10 ** 400}, "too large to show"),
    ({"en": 5, "eng": 5}, "same language (eng)"),
    ({"xx-nope": 5}, "unknown language code"),
    ({5: 5}, "must be strings"),
])
def test_parse_refuses_what_is_not_a_configuration(value, message) -> None:
    with pytest.raises(TrainConfigError, match=__import__("re").escape(message)):
        TrainConfig.parse(value, where="line 3")


def test_a_huge_request_fails_fast_and_short() -> None:
    t0 = time.perf_counter()
    with pytest.raises(TrainConfigError, match=f"at most {MAX_LANGUAGES}"):
        TrainConfig.parse({f"q{i:05d}": 1 for i in range(5000)})
    # the first unknown code stops the check (each costs a fuzzy search)
    with pytest.raises(TrainConfigError) as exc:
        TrainConfig.parse({"qqx" * 3_000_000: 1, **{f"q{i:03d}": 1 for i in range(150)}})
    assert len(str(exc.value)) < 300
    assert time.perf_counter() - t0 < 10


@pytest.mark.parametrize("text, message", [
    ("en", "use LANG:N"), ("en:x", "whole number"), ("en:-5", "whole number"),
    ("en:10^29", "whole number"), ("en:" + "9" * 400, "beyond any training set"),
    ("en:5,en:6", "twice"), ("en:2490,eng:2490", "same language"), (":5", "use LANG:N"),
    ("en:0", "no language with n > 0"),
])
def test_from_text(text, message) -> None:
    assert TrainConfig.from_text("en:2490, de:2490") == {"en": 2490, "de": 2490}
    with pytest.raises(TrainConfigError, match=message):
        TrainConfig.from_text(text)


def test_read_is_tolerant_for_tables() -> None:
    assert TrainConfig.read('{"en": 5, "de": 0}') == {"en": 5}
    assert TrainConfig.read({"en": 0}) == {}
    for bad in ("{not json", 5, {"en": -1}, {"en": "x"}, {3: 1}):
        assert TrainConfig.read(bad) is None
    assert MAX_EXAMPLES >= 393_000
