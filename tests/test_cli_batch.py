"""``xlt-predict batch`` answers every input line, in order, and a bad line never stops the
batch (exit 0, output always written); only unusable files exit non-zero."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
