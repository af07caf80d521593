"""``xlt-predict batch`` answers every input line, in order, and a bad line never stops the
batch (exit 0, output always written); only unusable files exit non-zero. The output never
destroys anything: not the input (refused when it is the same file), not the previous
answers (written to a temporary file, then moved over them)."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parent.parent
GOOD = b'{"id": "ok", "model": "xlmr", "train_config": {"en": 10000}, "target": "sw"}'

BAD_LINES = {
    "huge_int": (b'{"id": 1, "model": "xlmr", "train_config": {"en": ' + b"1" * 400 + b'}, "target": "sw"}',
                 "beyond any training set"),
    "too_many_digits": (b'{"id": 1, "model": "xlmr", "train_config": {"en": ' + b"9" * 5000 + b'}, "target": "sw"}',
                        "malformed JSON"),
    "absurd_size": (b'{"id": 1, "model": "xlmr", "train_config": {"en": 1e12}, "target": "sw"}',
                    "beyond any training set"),
    "non_utf8": (b'{"id": 1, "model": "xlmr\xff\xfe", "train_config": {"en": 5}, "target": "sw"}',
                 "not UTF-8"),
    "latin1": ('{"id": 1, "target": "é"}'.encode("latin-1"), "not UTF-8"),
    "list": (b"[1, 2]", "must be a JSON object"),
    "string": (b'"hello"', "must be a JSON object"),
    "number": (b"42", "must be a JSON object"),
    "null": (b"null", "must be a JSON object"),
    "same_language_twice": (b'{"id": 1, "model": "xlmr", "train_config": {"en": 100, "eng": 100}, "target": "sw"}',
                            "same language"),
    "nan": (b'{"id": 1, "model": "xlmr", "train_config": {"en": NaN}, "target": "sw"}', "malformed JSON"),
    "infinity": (b'{"id": 1, "model": "xlmr", "train_config": {"en": Infinity}, "target": "sw"}',
                 "malformed JSON"),
    "deep": (b"[" * 100000, "malformed JSON"),
    "float_overflow": (b'{"id": 1e400, "model": "xlmr", "train_config": {"en": 1e999}, "target": "sw"}',
                       "too large"),
    "truncated": (b'{"id": 1, "model": ', "malformed JSON"),
    "dict_model": (b'{"id": 1, "model": {"a": 1}, "train_config": {"en": 5}, "target": "sw"}', ""),
    "list_target": (b'{"id": 1, "model": "xlmr", "train_config": {"en": 5}, "target": ["sw"]}', "target"),
    "bool_n": (b'{"id": 1, "model": "xlmr", "train_config": {"en": true}, "target": "sw"}', "whole number"),
    "tc_list": (b'{"id": 1, "model": "xlmr", "train_config": [["en", 5]], "target": "sw"}', "mapping"),
}


def _batch(tmp_path: Path, data: bytes, *extra: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_bytes(data)
    proc = subprocess.run([sys.executable, "-m", "predictor.cli", "batch", "--input", str(inp),
                           "--output", str(out), *extra], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] \
        if out.exists() else []
    return proc, rows


def test_every_line_answered_in_order(tmp_path: Path) -> None:
    names = sorted(BAD_LINES)
    data = b"\n".join([GOOD] + [BAD_LINES[n][0] for n in names] + [b"", b"   ", GOOD]) + b"\n"
    proc, rows = _batch(tmp_path, data)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(rows) == len(names) + 4                         # one output line per input line
    assert "prediction" in rows[0] and "prediction" in rows[-1]
    for i, name in enumerate(names, start=1):
        row = rows[i]
        assert "error" in row and "prediction" not in row, (name, row)
        assert row["error"].startswith(f"line {i + 1}:"), (name, row)
        assert BAD_LINES[name][1] in row["error"], (name, row)
    blank = rows[len(names) + 1: len(names) + 3]
    assert all("blank line" in r["error"] and r["id"] is None for r in blank)


def test_large_but_plausible_size_gets_a_warning(tmp_path: Path) -> None:
    proc, rows = _batch(tmp_path, b'{"id": 1, "model": "xlmr", "train_config": {"en": 2000000}, '
                                  b'"target": "sw"}\n')
    assert proc.returncode == 0 and "prediction" in rows[0] and "extrapolation" in rows[0]["warning"]


def test_empty_and_no_trailing_newline(tmp_path: Path) -> None:
    proc, rows = _batch(tmp_path, b"")
    assert proc.returncode == 0 and rows == [] and (tmp_path / "out.jsonl").exists()
    proc, rows = _batch(tmp_path, GOOD + b"\r\n" + GOOD)     # CRLF and no final newline
    assert proc.returncode == 0 and len(rows) == 2 and all("prediction" in r for r in rows)


@pytest.mark.parametrize("case", ["missing_input", "input_dir", "output_dir_missing", "output_is_dir"])
def test_unusable_files_exit_2(tmp_path: Path, case: str) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(GOOD + b"\n")
    out = tmp_path / "out.jsonl"
    if case == "missing_input":
        inp = tmp_path / "nope.jsonl"
    elif case == "input_dir":
        inp = tmp_path
    elif case == "output_dir_missing":
        out = tmp_path / "no" / "out.jsonl"
    else:
        out = tmp_path
    proc = subprocess.run([sys.executable, "-m", "predictor.cli", "batch", "--input", str(inp),
                           "--output", str(out)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--input" in proc.stderr or "--output" in proc.stderr


# -- #23.4: the output never destroys the input or the previous answers -----------------------
OLD = '{"id": "old answer"}\n'


@pytest.mark.parametrize("how", ["same_path", "symlink", "relative", "hard_link"])
def test_output_that_is_the_input_is_refused_before_any_work(tmp_path: Path, how: str,
                                                             monkeypatch, capsys) -> None:
    from predictor import cli
    import predictor.serving as serving
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(GOOD + b"\n")
    out = {"same_path": inp, "symlink": tmp_path / "link.jsonl",
           "relative": tmp_path / "sub" / ".." / "in.jsonl", "hard_link": tmp_path / "hard.jsonl"}[how]
    if how == "symlink":
        out.symlink_to(inp)
    elif how == "relative":
        (tmp_path / "sub").mkdir()
    elif how == "hard_link":
        os.link(inp, out)
    monkeypatch.setattr(serving, "load_predictor", _no_load)
    rc = cli.main(["batch", "--input", str(inp), "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "is the --input file" in err and len(err.strip().splitlines()) == 1
    assert inp.read_bytes() == GOOD + b"\n"


def _no_load(*a, **k):
    raise AssertionError("the predictor was loaded before the files were checked")


def test_a_write_that_fails_keeps_the_previous_output(tmp_path: Path, monkeypatch,
                                                      capsys) -> None:
    """A full disk at the end (ENOSPC on the final move): exit 1, one line, the previous
    answers intact and no temporary file left."""
    from predictor import cli
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_bytes(GOOD + b"\n")
    out.write_text(OLD, encoding="utf-8")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("measure.outputs.os.replace", full)
    rc = cli.main(["batch", "--input", str(inp), "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "No space left" in err and "previous file is intact" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out.read_text(encoding="utf-8") == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_a_full_output_directory_is_refused_before_the_predictor_loads(
        tmp_path: Path, monkeypatch, capsys) -> None:
    from predictor import cli
    import predictor.serving as serving
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(GOOD + b"\n")
    monkeypatch.setattr(serving, "load_predictor", _no_load)
    monkeypatch.setattr("measure.outputs.shutil.disk_usage",
                        lambda p: SimpleNamespace(total=10**9, used=10**9, free=100))
    rc = cli.main(["batch", "--input", str(inp), "--output", str(tmp_path / "out.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "is full" in err and not (tmp_path / "out.jsonl").exists()


_DIE_MID_WRITE = """
import os, pathlib, signal, sys
real = pathlib.Path.write_text
def dying(self, data, *a, **k):
    real(self, data[: len(data) // 2], *a, **k)    # half the answers, then kill -9
    os.kill(os.getpid(), signal.SIGKILL)
pathlib.Path.write_text = dying
from predictor.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_while_writing_keeps_the_previous_output(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_bytes((GOOD + b"\n") * 50)
    out.write_text(OLD, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", _DIE_MID_WRITE, "batch", "--input", str(inp),
                           "--output", str(out)], capture_output=True, cwd=REPO, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert out.read_text(encoding="utf-8") == OLD


def test_output_through_a_symlink_writes_its_target(tmp_path: Path) -> None:
    inp, real = tmp_path / "in.jsonl", tmp_path / "real.jsonl"
    inp.write_bytes(GOOD + b"\n")
    real.write_text(OLD, encoding="utf-8")
    (tmp_path / "link.jsonl").symlink_to(real)
    proc = subprocess.run([sys.executable, "-m", "predictor.cli", "batch", "--input", str(inp),
                           "--output", str(tmp_path / "link.jsonl")], capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "link.jsonl").is_symlink() and "prediction" in real.read_text("utf-8")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_stdout_to_a_full_device_is_one_line_exit_1(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(GOOD + b"\n")
    for argv in (["batch", "--input", str(inp), "--output", "-"],
                 ["query", "--model", "xlmr", "--train-config", "en:100", "--target", "sw"]):
        with open("/dev/full", "wb") as full:
            proc = subprocess.run([sys.executable, "-m", "predictor.cli", *argv], stdout=full,
                                  stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=300)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr
        assert "cannot write to standard output" in lines[0] and "No space left" in lines[0]


def test_stdout_to_a_closed_pipe_still_exits_0(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_bytes((GOOD + b"\n") * 2000)
    proc = subprocess.Popen([sys.executable, "-m", "predictor.cli", "batch", "--input",
                             str(inp), "--output", "-"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=REPO)
    proc.stdout.close()                                   # the reader left (`| head`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0 and "Traceback" not in err


def test_output_to_a_device_is_written_not_replaced(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(GOOD + b"\n")
    proc = subprocess.run([sys.executable, "-m", "predictor.cli", "batch", "--input", str(inp),
                           "--output", os.devnull], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)       # /dev/null is still a device
