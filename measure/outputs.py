"""Writing the measure side's outputs without destroying anything.

Why: an output written in place is lost when the process dies half-way (``kill -9`` during
an export left the previous 200,001-line table at 0 bytes), when the disk fills up, or when
the output path names one of the command's own inputs. Every file the measure side writes
(exported tables, profiles, references, generated inputs) goes through :func:`atomic_write`:
a uniquely named temporary file in the same directory (so concurrent writers never share
one), flushed to disk, then ``os.replace``d over the target, so a reader sees the old file
or the new one, never a partial one, and the last writer wins. Checks that can fail before
long work (:func:`check_writable_dir`, :func:`refuse_input_as_output`) live here too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

#: temporary files of a write left behind by a killed process are removed after this long
STALE_TEMP_SECONDS = 3600.0
#: a directory with less free space than this is "full" for the up-front check
MIN_FREE_BYTES = 1 << 20
#: the process umask, read once (a new output gets the mode a plain open() would give it)
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class OutputError(ValueError):
    """An output that cannot or must not be written; the message names the path and the fix."""


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _temp_prefix(target: Path) -> str:
    # hidden and not ending in the target's suffix: readers that glob "*.json" skip it
    return f".{target.name}."


def remove_stale_temps(target: Path, max_age_s: float = STALE_TEMP_SECONDS) -> None:
    """Delete temporary files of ``target`` older than ``max_age_s`` (left by a killed
    writer; a live one is younger)."""
    now = time.time()
    try:
        stale = list(target.parent.glob(f"{_temp_prefix(target)}*.tmp"))
    except OSError:
        return
    for f in stale:
        with contextlib.suppress(OSError):
            if now - f.stat().st_mtime > max_age_s:
                f.unlink()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):   # not every file system lets a directory be fsync'ed
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary path beside ``target``; once the block exits without an exception the
    file written there is fsync'ed and replaces ``target`` atomically. On any failure the
    temporary file is removed and ``target`` is untouched; an ``OSError`` (disk full,
    read-only) becomes an :class:`OutputError` naming ``target``."""
    target = Path(target)
    remove_stale_temps(target)
    try:
        fd, name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp",
                                    dir=target.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {target} ({_why(exc)}); nothing was changed: "
                          "fix the directory or write elsewhere") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~_UMASK
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        kept = "the previous file is intact" if target.exists() else "nothing was written"
        raise OutputError(f"cannot write {target} ({_why(exc)}); {kept}: free space or fix "
                          "the permissions and rerun") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def atomic_write(target: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp_path)`` then :func:`atomic_path`'s replace; returns ``target``."""
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)


def atomic_write_text(target: str | Path, text: str) -> Path:
    """UTF-8 ``text`` to ``target``, atomically."""
    return atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def same_file(a: str | Path, b: str | Path) -> bool:
    """Do ``a`` and ``b`` name the same file (links and relative paths resolved)?"""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def refuse_input_as_output(out: str | Path, inputs: Mapping[str, str | Path | None],
                           out_flag: str) -> None:
    """Raise :class:`OutputError` when ``out`` is one of ``inputs`` ({description: path},
    e.g. {"the --text file": path}): writing it would replace what the command reads."""
    for what, path in inputs.items():
        if path is not None and same_file(out, path):
            raise OutputError(f"{out_flag} {out} is {what}; writing there would destroy it: "
                              "write to another file")


def check_writable_dir(directory: str | Path, what: str, fix: str, *,
                       min_free: int = MIN_FREE_BYTES) -> Path:
    """Create ``directory`` if needed and prove it writable (a probe file is written and
    removed) with at least ``min_free`` bytes free; else :class:`OutputError` saying
    ``what`` it is and ``fix``. Call it before long work, not after."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{what} {directory} is a file, not a directory; {fix}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the {what} {directory} ({_why(exc)}); {fix}") from None
    try:
        fd, name = tempfile.mkstemp(prefix=".xlt-write-check-", suffix=".tmp", dir=directory)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        raise OutputError(f"the {what} {directory} is {'full' if full else 'not writable'} "
                          f"({_why(exc)}); {fix}") from None
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return directory
    if free < min_free:
        raise OutputError(f"the {what} {directory} is full ({free:,} bytes free); {fix}")
    return directory
