"""Issue #23 and #24's first-use dead ends, for language profiles: they go to a user
directory and never replace a shipped profile; bad paths, backends and caches fail in a
line before the model loads; inputs are read in bounded samples with header rows skipped;
concurrent writers never collide; profiles say what they carry and flag pairs that do not
look like NLI pairs. A fake encoder and a toy reference stand in for the model."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from _profile_fakes import SHIPPED, ExplodingEncoder, FakeEncoder, inputs, sha, toy_reference, write

from measure.cli import main
from measure.knowledge.paths import shipped_profiles_dir, user_profiles_dir
from measure.profile import compute_profile, profile_files, summary, write_profile
from measure.profile_inputs import (MAX_TEXT_LINES, ProfileInputError, pairs_check,
                                    read_pairs_sample, read_text_sample)
from measure.profile_reference import REFERENCE_FILE, Reference


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "user-profiles"
    monkeypatch.setenv("XLT_PROFILES_DIR", str(d))
    monkeypatch.setattr("measure.profile.MemoEncoder", FakeEncoder)
    toy_reference(d)
    return d


# -- user profiles: a directory of their own, never a shipped file ----------------------
def test_user_profiles_dir_is_the_env_variable_else_the_user_data_dir(monkeypatch) -> None:
    import platformdirs
    monkeypatch.setenv("XLT_PROFILES_DIR", "/somewhere/p")
    assert user_profiles_dir() == Path("/somewhere/p")
    monkeypatch.delenv("XLT_PROFILES_DIR")
    assert user_profiles_dir() == Path(platformdirs.user_data_dir("xlt")) / "profiles"


def test_profile_writes_to_the_user_directory_by_default(tmp_path: Path, user_dir: Path,
                                                         capsys) -> None:
    text, pairs = inputs(tmp_path)
    shipped_before = sorted(p.name for p in (SHIPPED / "me5-small").iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["profile", "--language", "quy", "--text", str(text), "--pairs", str(pairs)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    written = user_dir / "me5-small" / "quy.json"
    assert f"wrote {written}" in out.out and "measured: 30 lines" in out.out
    prof = json.loads(written.read_text("utf-8"))
    assert prof["language"] == "quy" and prof["pairs_check"]["looks_like_nli"] is True
    assert prof["provenance"]["text_sample"]["complete"] is True
    assert sorted(p.name for p in (SHIPPED / "me5-small").iterdir()) == shipped_before
    assert not [p for p in written.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("force", [False, True])
def test_a_shipped_profile_is_never_replaced(tmp_path: Path, monkeypatch, capsys,
                                             force: bool) -> None:
    monkeypatch.setattr("measure.profile.MemoEncoder", ExplodingEncoder)
    before = sha(SHIPPED / "me5-small" / "sw.json")
    text, _ = inputs(tmp_path)
    rc = main(["profile", "--language", "sw", "--text", str(text),
               "--profiles", str(shipped_profiles_dir()), *(["--force"] if force else [])])
    err = capsys.readouterr().err
    assert rc == 2 and "is a shipped profile" in err and "never replaces" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert sha(SHIPPED / "me5-small" / "sw.json") == before
    with pytest.raises(ProfileInputError, match="shipped profile"):    # the ISO 639-3 code too
        profile_files("swh", text, profiles=SHIPPED, force=True, encoder=FakeEncoder())


def test_an_existing_profile_is_replaced_only_with_force(tmp_path: Path, user_dir: Path,
                                                         capsys) -> None:
    text, _ = inputs(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["profile", "--language", "quy", "--text", str(text)]) == 0
        path = user_dir / "me5-small" / "quy.json"
        before = sha(path)
        capsys.readouterr()
        other = write(tmp_path / "other.txt", "another line of text here\n" * 20)
        assert main(["profile", "--language", "quy", "--text", str(other)]) == 2
        err = capsys.readouterr().err
        assert "exists; pass --force" in err and sha(path) == before
        assert main(["profile", "--language", "quy", "--text", str(other), "--force"]) == 0
    assert sha(path) != before
    assert json.loads(path.read_text("utf-8"))["provenance"]["text_file"] == "other.txt"


def test_a_profile_is_never_written_over_its_own_input(tmp_path: Path, user_dir: Path,
                                                       capsys) -> None:
    text = user_dir / "me5-small" / "quy.json"     # the text file is where the profile goes
    write(text, "a line of text that is not json\n" * 20)
    before = sha(text)
    assert main(["profile", "--language", "quy", "--text", str(text), "--force"]) == 2
    assert "is the --text file" in capsys.readouterr().err and sha(text) == before


# -- bad paths, backends and caches: one line, before any work ---------------------------
def test_profiles_naming_a_file_is_a_usage_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("measure.profile.MemoEncoder", ExplodingEncoder)
    text, _ = inputs(tmp_path)
    rc = main(["profile", "--language", "quy", "--text", str(text), "--profiles", str(text)])
    err = capsys.readouterr().err
    assert rc == 2 and "is a file, not a directory" in err and "Traceback" not in err


@pytest.mark.parametrize("fault, words", [
    ("full", "is full"), ("readonly", "not writable"), ("enospc", "is full")])
def test_an_unwritable_or_full_profiles_directory_fails_before_the_model_loads(
        tmp_path: Path, user_dir: Path, monkeypatch, capsys, fault: str, words: str) -> None:
    import shutil
    monkeypatch.setattr("measure.profile.MemoEncoder", ExplodingEncoder)
    if fault == "full":
        usage = shutil.disk_usage(tmp_path)
        monkeypatch.setattr("measure.outputs.shutil.disk_usage",
                            lambda p: usage._replace(free=512))
    else:
        code = errno.EROFS if fault == "readonly" else errno.ENOSPC

        def refuse(*a, **k):
            raise OSError(code, os.strerror(code))
        monkeypatch.setattr("measure.outputs.tempfile.mkstemp", refuse)
    text, _ = inputs(tmp_path)
    rc = main(["profile", "--language", "quy", "--text", str(text)])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and "XLT_PROFILES_DIR" in err and "Traceback" not in err


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
def test_a_really_unwritable_profiles_directory(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("measure.profile.MemoEncoder", ExplodingEncoder)
    text, _ = inputs(tmp_path)
    rc = main(["profile", "--language", "quy", "--text", str(text), "--profiles", "/sys/kernel"])
    err = capsys.readouterr().err
    assert rc == 2 and "profiles directory" in err and "Traceback" not in err


def test_a_write_that_fails_at_the_end_is_one_line_and_keeps_the_old_profile(
        tmp_path: Path, user_dir: Path, monkeypatch, capsys) -> None:
    text, _ = inputs(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["profile", "--language", "quy", "--text", str(text)]) == 0
    path = user_dir / "me5-small" / "quy.json"
    before = sha(path)

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("measure.outputs.os.replace", full)
    capsys.readouterr()
    assert main(["profile", "--language", "quy", "--text", str(text), "--force"]) == 2
    err = capsys.readouterr().err
    assert "No space left" in err and "previous file is intact" in err and "Traceback" not in err
    assert sha(path) == before
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_bogus_backend_is_refused_when_the_arguments_are_parsed(tmp_path: Path,
                                                                  capsys) -> None:
    text, _ = inputs(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["profile", "--language", "quy", "--text", str(text), "--backend", "bogus"])
    assert exit_.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err
    with pytest.raises(ProfileInputError, match="--backend 'bogus'"):
        profile_files("quy", text, backend="bogus", profiles=tmp_path, encoder=ExplodingEncoder)


def test_profile_with_a_cache_directory_that_is_a_file(tmp_path: Path, user_dir: Path,
                                                       monkeypatch, capsys) -> None:
    monkeypatch.setattr("measure.profile.MemoEncoder", ExplodingEncoder)
    monkeypatch.setenv("XLT_CACHE_DIR", str(write(tmp_path / "cache", "a file\n")))
    text, _ = inputs(tmp_path)
    assert main(["profile", "--language", "quy", "--text", str(text)]) == 2
    err = capsys.readouterr().err
    assert "cache directory" in err and "is a file" in err and "Traceback" not in err
    assert not (user_dir / "me5-small" / "quy.json").exists()


# -- a huge --text is sampled, never read whole ------------------------------------------
def test_a_huge_text_file_is_read_in_a_bounded_sample(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    head = "".join(f"sentence number {i} of a long corpus\n" for i in range(5000))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(head)
        fh.truncate(200_000_000)          # 200 MB (sparse): the rest is never read
    t0 = time.time()
    sample = read_text_sample(path)
    assert time.time() - t0 < 10
    assert len(sample.items) == MAX_TEXT_LINES and sample.items[-1].startswith("sentence number 1999")
    info = sample.info
    assert not info["complete"] and info["file_bytes"] == 200_000_000
    used = "".join(head.splitlines(keepends=True)[:MAX_TEXT_LINES]).encode()
    assert info["bytes_read"] == len(used) and sample.sha256 == hashlib.sha256(used).hexdigest()
    assert sample.describe("lines").startswith("the first 2,000 lines (")
    assert "of a 200.0 MB file" in sample.describe("lines")


@pytest.mark.filterwarnings("ignore:--text has only")
def test_a_sample_cut_by_bytes_ends_at_a_line_and_a_whole_character(tmp_path: Path) -> None:
    path = write(tmp_path / "t.txt", "".join(f"línea número {i} ééé\n" for i in range(50)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")               # few lines: noisy, but not the point
        sample = read_text_sample(path, max_bytes=201, min_lines=1)
    assert not sample.info["complete"] and sample.info["bytes_read"] <= 201
    assert len(sample.items) == 8
    assert all(line.endswith("ééé") for line in sample.items)
    whole = read_text_sample(path)
    assert whole.info["complete"] and whole.sha256 == sha(path)   # the file's own hash


def test_pairs_are_sampled_too(tmp_path: Path) -> None:
    path = write(tmp_path / "p.tsv", "".join(f"premise {i}\thypothesis {i}\n" for i in range(300)))
    sample = read_pairs_sample(path, max_pairs=120)
    assert len(sample.items) == 120 and not sample.info["complete"]
    assert sample.items[-1] == ("premise 119", "hypothesis 119")


def test_the_profile_and_the_output_say_the_text_was_sampled(tmp_path: Path, user_dir: Path,
                                                             capsys) -> None:
    path = tmp_path / "huge.txt"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("".join(f"a sentence {i}\n" for i in range(3000)))
        fh.truncate(50_000_000)
    assert main(["profile", "--language", "quy", "--text", str(path)]) == 0
    out = capsys.readouterr().out
    assert "measured: the first 2,000 lines (" in out and "of a 50.0 MB file)" in out
    prof = json.loads((user_dir / "me5-small" / "quy.json").read_text("utf-8"))
    assert prof["provenance"]["n_lines"] == 2000
    assert prof["provenance"]["text_sample"]["complete"] is False


# -- concurrent writers of one language ----------------------------------------------------
def test_concurrent_profile_writes_of_one_language_all_succeed(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    written: set[int] = set()

    def writer(w: int) -> None:
        for i in range(25):
            try:
                write_profile({"model": "me5-small", "language": "quy", "n": w * 100 + i},
                              tmp_path)
                written.add(w * 100 + i)
            except BaseException as exc:  # noqa: BLE001 - every failure is the finding
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(written) == 150
    final = json.loads((tmp_path / "me5-small" / "quy.json").read_text("utf-8"))
    assert final["n"] in written
    assert [p.name for p in (tmp_path / "me5-small").iterdir()] == ["quy.json"]


# -- header rows in a pairs file -------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:--pairs has only")
@pytest.mark.parametrize("header", ["premise\thypothesis", "Premise\tHypothesis",
                                    "\ufeffsentence1\tsentence2", "text_a\ttext_b"])
def test_a_header_row_is_not_profiled_as_a_pair(tmp_path: Path, header: str) -> None:
    body = "".join(f"premise {i}\thypothesis {i}\n" for i in range(12))
    path = write(tmp_path / "p.tsv", f"{header}\n{body}")
    with pytest.warns(UserWarning, match="line 1: .* is a header row, not a pair: skipped"):
        sample = read_pairs_sample(path, min_pairs=1)
    assert len(sample.items) == 12 and sample.items[0] == ("premise 0", "hypothesis 0")
    assert sample.info["header_line_skipped"] == 1
    real = write(tmp_path / "r.tsv", "the premise of it\ta hypothesis\n" + body)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(read_pairs_sample(real).items) == 13


def test_the_command_says_it_skipped_a_header(tmp_path: Path, user_dir: Path, capsys) -> None:
    text, pairs = inputs(tmp_path)
    write(pairs, "premise\thypothesis\n" + pairs.read_text("utf-8"))
    assert main(["profile", "--language", "quy", "--text", str(text), "--pairs", str(pairs)]) == 0
    out = capsys.readouterr()
    assert "line 1 of the pairs file is a header row: skipped" in out.out
    assert "xlt-measure profile: warning: --pairs file" in out.err and "Traceback" not in out.err


# -- profiles say what they carry; unrelated pairs are flagged ------------------------
def test_pairs_check_tells_nli_pairs_from_unrelated_lines() -> None:
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(400)]
    prem = [" ".join(rng.choice(vocab, 8)) for _ in range(40)]
    hyp = [" ".join(p.split()[:3]) + " " + rng.choice(vocab) for p in prem]
    u = rng.normal(size=(40, 16))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = u + 0.3 * rng.normal(size=u.shape)
    good = pairs_check(list(zip(prem, hyp)), u, v)
    assert good["looks_like_nli"] is True and good["pairing"] > 0.9
    perm = np.roll(np.arange(40), 5)
    bad = pairs_check([(p, hyp[j]) for p, j in zip(prem, perm)], u, v[perm])
    assert bad["looks_like_nli"] is False and bad["pairing"] < 0.65
    assert "look unrelated" in bad["why"] and "fewer than 50" in bad["why"]
    # each premise with three hypotheses (a typical NLI file): siblings are not competitors
    three = [(p, h) for p, h in zip(prem, hyp) for _ in range(3)]
    assert pairs_check(three, np.repeat(u, 3, 0), np.repeat(v, 3, 0))["looks_like_nli"] is True
    same = pairs_check([("one premise", h) for h in hyp], u, v)
    assert same["looks_like_nli"] is None and "same premise" in same["why"]


def test_the_profile_says_what_it_measured_and_what_the_predictor_can_use(
        tmp_path: Path) -> None:
    toy_reference(tmp_path)
    ref = Reference.load(tmp_path / "me5-small" / REFERENCE_FILE)
    enc = FakeEncoder()
    lines = [f"una frase corta numero {i}" for i in range(12)]
    text_only = compute_profile("quy", lines, enc, ref)
    assert text_only["pairs_check"] is None
    s = summary(text_only)
    assert "measured: 12 lines" in s and "tokenizer and centroid features only" in s
    assert "--pairs" in s
    _, unrelated = inputs(tmp_path, n=60, related=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")               # 60 pairs: "noisy", not the point
        pairs = read_pairs_sample(unrelated).items
    prof = compute_profile("quy", lines, enc, ref, pairs)
    assert prof["pairs_check"]["looks_like_nli"] is False
    assert "WARNING: the pairs do not look like NLI pairs" in summary(prof)
    json.dumps(prof, allow_nan=False)                       # the field is plain JSON


@pytest.mark.slow
def test_real_pairs_look_like_nli_and_shuffled_ones_do_not(tmp_path: Path,
                                                           nli_dir: Path) -> None:
    from measure.profile import MemoEncoder, shipped_inputs
    enc = MemoEncoder()
    for dataset, lang in (("xnli", "sw"), ("americas_nli", "aym")):
        _, path = shipped_inputs(nli_dir, dataset, lang, tmp_path, n_pairs=150)
        pairs = read_pairs_sample(path).items
        u, v = enc.encode([p for p, _ in pairs]), enc.encode([h for _, h in pairs])
        assert pairs_check(pairs, u, v)["looks_like_nli"] is True
        perm = np.random.default_rng(0).permutation(len(pairs))
        shuffled = [(p, pairs[j][1]) for (p, _), j in zip(pairs, perm)]
        assert pairs_check(shuffled, u, v[perm])["looks_like_nli"] is False


@pytest.mark.parametrize("lang,skewed_dir", [("de", "profiles-disjoint-skew-entailment-A"),
                                             ("es", "profiles-disjoint-skew-entailment-A")])
def test_skewed_pairs_get_a_note_and_balanced_ones_do_not(lang: str, skewed_dir: str) -> None:
    """The balance note reads the most even per-source probe: balanced pairs of every
    shipped XNLI language stay above the floor; 80%-entailment pairs (built by
    ``--pairs-condition skew-entailment``, when present) fall below it."""
    from measure.profile import balance_hint
    from measure.profile_inputs import BALANCED_ENTROPY_FLOOR
    models = Path(__file__).resolve().parent.parent / "models"
    shipped = json.loads((models / "profiles" / "me5-small" / f"{lang}.json").read_text())
    assert balance_hint(shipped["label_free_by_source"]) == []
    skewed = models / skewed_dir / "me5-small" / f"{lang}.json"
    by_src = (json.loads(skewed.read_text())["label_free_by_source"] if skewed.is_file() else
              {s: {**v, "label_entropy": v["label_entropy"] - 0.15}
               for s, v in shipped["label_free_by_source"].items()})
    note = balance_hint(by_src)
    assert len(note) == 1 and "roughly equal shares" in note[0]
    assert f"{BALANCED_ENTROPY_FLOOR}" in note[0]
    assert balance_hint({}) == [] and balance_hint(None) == []
