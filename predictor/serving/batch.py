"""Answer a JSONL batch: one output line per input line, in order, whatever the line holds.

Why the per-line rules live here, not in the CLI: ``xlt-predict batch`` and the coming HTTP
API must reject the same lines with the same words. A bad line (not UTF-8, blank, malformed
JSON, or a request the one validator refuses) gets ``{"id", "error"}`` and never stops the
batch; a size far beyond the training data gets a ``warning`` beside its answer.

The batch's files are checked here too, before the predictor loads: an ``--output`` that
resolves to the ``--input`` is refused (it would replace the requests by the answers), and
the answers are written to a temporary file beside the output and then moved over it
(:mod:`measure.outputs`), so ``kill -9`` or a full disk leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure.knowledge.train_config import MAX_EXAMPLES, shown
from measure.outputs import (OutputError, atomic_write_text, check_writable_dir,
                             refuse_input_as_output)
from predictor.serving.predictor import Predictor

#: a line whose train_config has more examples than this in a language gets a "warning" field
#: (MultiNLI, the largest NLI training set, has ~393k pairs); TrainConfig refuses sizes beyond
#: MAX_EXAMPLES
BATCH_WARN_EXAMPLES = 1_000_000


class BatchFileError(ValueError):
    """An ``--input``/``--output`` the batch cannot use (found before any work)."""


@dataclass(frozen=True)
class BatchLine:
    """One input line: its number, the parsed record (None when unreadable), the error that
    answers it instead of a prediction, and a warning to add to its answer."""

    lineno: int
    record: Any
    error: str | None
    warning: str | None


@dataclass(frozen=True)
class BatchAnswer:
    """The output lines (JSON text, one per input line) and how many of them are errors."""

    lines: list[str]
    n_errors: int


def answer_batch(p: Predictor, data: bytes) -> BatchAnswer:
    """Every line of the JSONL ``data`` answered by ``p``: ``{"id", ...prediction}`` or
    ``{"id", "error"}``, errors prefixed with their line number."""
    lines = read_lines(data)
    results: dict[int, dict[str, Any]] = {}
    todo = [i for i, line in enumerate(lines) if line.error is None]
    try:
        for i, res in zip(todo, p.predict_records([lines[i].record for i in todo])):
            results[i] = res
    except Exception:  # noqa: BLE001 - isolate the line the vectorised path cannot take
        for i in todo:
            try:
                results[i] = p.predict_records([lines[i].record])[0]
            except Exception as exc:  # noqa: BLE001 - that line's error, the rest go on
                results[i] = {"error": f"{type(exc).__name__}: {exc}"}
    out = []
    for i, line in enumerate(lines):
        res = {"error": line.error} if line.error is not None else dict(results[i])
        if "error" in res and not str(res["error"]).startswith("line "):
            res["error"] = f"line {line.lineno}: {res['error']}"
        if line.warning and "error" not in res:
            res["warning"] = line.warning
        out.append(json.dumps({"id": line_id(line.record), **res}, ensure_ascii=False,
                              default=str))
    n_err = sum(1 for line in lines if line.error) \
        + sum(1 for r in results.values() if "error" in r)
    return BatchAnswer(out, n_err)


def line_id(rec: Any) -> Any:
    """The request's own ``id`` (None when the line is not an object)."""
    return rec.get("id") if isinstance(rec, dict) else None


def read_lines(data: bytes) -> list[BatchLine]:
    """Every input line, blank lines included, parsed and prechecked."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final newline ends the last line, it does not start a new one
    out = []
    for lineno, raw in enumerate(lines, 1):
        raw = raw.rstrip(b"\r")
        if raw.startswith(b"\xef\xbb\xbf") and lineno == 1:
            raw = raw[3:]  # a UTF-8 byte-order mark
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            out.append(BatchLine(lineno, None, f"line {lineno}: not UTF-8 text (byte "
                                 f"{exc.start}); save the file as UTF-8", None))
            continue
        if not text.strip():
            out.append(BatchLine(lineno, None, f"line {lineno}: blank line (no request); the "
                                 "line is kept so output line N answers input line N", None))
            continue
        try:
            rec = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        except (ValueError, RecursionError) as exc:
            msg = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            out.append(BatchLine(lineno, None, f"line {lineno}: malformed JSON ({msg})", None))
            continue
        try:
            warning = precheck(rec)
        except (ValueError, OverflowError, TypeError) as exc:
            out.append(BatchLine(lineno, rec, f"line {lineno}: {exc}", None))
            continue
        out.append(BatchLine(lineno, rec, None, warning))
    return out


def precheck(rec: Any) -> str | None:
    """A line that is not a JSON object raises ValueError; a size far beyond the training
    data gives a warning text. Everything else about the request is the predictor's one
    validator's job (:func:`predictor.serving.requests.validate_record`)."""
    if not isinstance(rec, dict):
        raise ValueError(f"a line must be a JSON object, got {type(rec).__name__}")
    tc = rec.get("train_config")
    if not isinstance(tc, dict):
        return None
    for lang, n in tc.items():
        if isinstance(n, (int, float)) and not isinstance(n, bool) \
                and BATCH_WARN_EXAMPLES < n <= MAX_EXAMPLES:
            return (f"train_config: {n:,.0f} examples for {shown(lang)} is far beyond the "
                    "training data's sizes; the prediction is an extrapolation")
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:20]} is too large")
    return value


# -- the batch's files -------------------------------------------------------------------------
def read_input(name: str) -> bytes:
    """The bytes of ``--input`` (``-``: stdin; a pipe such as ``<(cmd)`` is read as it comes)."""
    if name == "-":
        return sys.stdin.buffer.read()
    path = Path(name)
    try:
        if path.is_dir():
            raise BatchFileError(f"--input {path} is a directory, not a JSONL file")
        return path.read_bytes()
    except FileNotFoundError:
        raise BatchFileError(f"--input {name}: no such file") from None
    except OSError as exc:
        raise BatchFileError(f"--input {name}: cannot read ({exc.strerror or exc})") from None


def _stream(path: Path) -> bool:
    """A FIFO or a device (``/dev/null``, ``>(gzip > x)``): written as a stream, never
    replaced."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def output_target(output: str, input_name: str) -> Path | None:
    """The file ``--output`` names (links resolved; None for ``-``, stdout), checked before
    any work: not a directory, in an existing writable directory, and not the ``--input``."""
    if output == "-":
        return None
    path = Path(output)
    if path.is_dir():
        raise BatchFileError(f"--output {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise BatchFileError(f"--output {path}: directory {path.parent} does not exist")
    try:
        if input_name != "-":
            refuse_input_as_output(path, {"the --input file": input_name}, "--output")
        if _stream(path):
            return path
        target = Path(os.path.realpath(path))      # a link is written through, not replaced
        check_writable_dir(target.parent, "--output directory",
                           "write the answers to another directory")
    except OutputError as exc:
        raise BatchFileError(str(exc)) from None
    return target


def write_output(target: Path, text: str) -> None:
    """``text`` to ``target``: atomically to a file (on failure the previous file is intact),
    as it comes to a FIFO or device. A failure raises OutputError naming the file."""
    if not _stream(target):
        atomic_write_text(target, text)
        return
    try:
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(text)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write --output {target} ({exc.strerror or exc})") from None
