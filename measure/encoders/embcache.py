"""On-disk sentence-embedding cache keyed by (encoder key, text).

Why: a probe grid of thousands of cells re-reads the same ~250k sentences; XNLI repeats
each premise three times and the same text appears across splits and runs. Encoding a
text once, ever, turns a cell into seconds of linear-model fitting.

The encoder key combines the model's content fingerprint, the backend/precision, the
prefix and the pooling, so fp32 and int8 vectors (or two checkpoints) never mix. Storage
is SQLite (WAL) with one row per (key, sha1(text)) and the float32 vector as a blob:
concurrent readers are safe, and a crash mid-write loses only the uncommitted batch.

Rows are checked on read, not trusted: a vector whose length is not the encoder's dimension
(recorded per encoder key at the first write) or that holds a NaN/inf is dropped from the
cache with a warning naming the file, and counts as missing, so the next preparation
embeds the text again; a bad row still there (the drop failed) is replaced on write.
"""

from __future__ import annotations

import hashlib
import sqlite3
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from measure.encoders.encoder import cache_root

_SCHEMA = """
CREATE TABLE IF NOT EXISTS emb (
    encoder TEXT NOT NULL,
    text_sha1 BLOB NOT NULL,
    dim INTEGER NOT NULL,
    vec BLOB NOT NULL,
    PRIMARY KEY (encoder, text_sha1)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS emb_dim (encoder TEXT PRIMARY KEY, dim INTEGER NOT NULL);
"""


def default_cache_path() -> Path:
    """The embedding cache every command shares, under :func:`cache_root`."""
    return cache_root() / "embeddings.sqlite"


def text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


class EmbeddingCacheError(ValueError):
    """Vectors that must not be stored (wrong shape, not finite); the message names the cache."""


class EmbeddingCache:
    """Get-or-compute embeddings; ``compute`` is only called for texts never seen before.

    ``dim``: the encoder's dimension when the caller knows it; otherwise the dimension
    recorded at this key's first write is the reference (for a cache written before that
    was recorded, the most common length among the rows read)."""

    def __init__(self, path: str | Path, encoder_key: str, *, dim: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.encoder_key = encoder_key
        self._con = sqlite3.connect(self.path, timeout=120, isolation_level=None)
        self._con.execute("PRAGMA journal_mode = WAL")
        self._con.execute("PRAGMA synchronous = NORMAL")
        self._con.executescript(_SCHEMA)
        self.dim = dim if dim is not None else self._recorded_dim()
        self.dropped = 0          # bad rows dropped by this object (for the caller and tests)

    def _recorded_dim(self) -> int | None:
        row = self._con.execute("SELECT dim FROM emb_dim WHERE encoder=?",
                                (self.encoder_key,)).fetchone()
        return int(row[0]) if row else None

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "EmbeddingCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, keys: list[bytes]) -> list[tuple[bytes, int, bytes]]:
        rows: list[tuple[bytes, int, bytes]] = []
        for start in range(0, len(keys), 900):  # SQLite's variable limit
            chunk = keys[start:start + 900]
            marks = ",".join("?" * len(chunk))
            rows += self._con.execute(
                f"SELECT text_sha1, dim, vec FROM emb WHERE encoder=? AND text_sha1 IN ({marks})",
                [self.encoder_key, *chunk]).fetchall()
        return rows

    def _check(self, rows: list[tuple[bytes, int, bytes]], want: int | None = None
               ) -> tuple[dict[bytes, np.ndarray], list[bytes], int | None]:
        """(good vectors by key, bad keys, the dimension they were checked against)."""
        want = want or self.dim
        if want is None and rows:   # a cache written before dimensions were recorded
            want = Counter(len(blob) // 4 for _, _, blob in rows).most_common(1)[0][0]
        good: dict[bytes, np.ndarray] = {}
        bad: list[bytes] = []
        for k, dim, blob in rows:
            vec = np.frombuffer(blob, dtype=np.float32) if len(blob) % 4 == 0 else None
            if vec is None or len(vec) != want or dim != want or not np.isfinite(vec).all():
                bad.append(k)
            else:
                good[k] = vec
        return good, bad, want

    def _lookup(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        """{key: vector} of the good cached rows among ``keys``; bad rows are dropped."""
        found, bad, want = self._check(self._rows(keys))
        if bad:
            self._drop(bad, want)
        return found

    def _drop(self, keys: list[bytes], dim: int | None) -> None:
        self.dropped += len(keys)
        try:
            self._con.executemany("DELETE FROM emb WHERE encoder=? AND text_sha1=?",
                                  [(self.encoder_key, k) for k in keys])
            done = "dropped"
        except sqlite3.Error:     # read-only or busy: they are skipped, not served
            done = "skipped"
        warnings.warn(f"embedding cache {self.path}: {done} {len(keys)} bad vector(s) of "
                      f"encoder {self.encoder_key!r} (not {dim} finite float32 values); those "
                      "texts are embedded again", RuntimeWarning, stacklevel=3)

    def missing(self, texts: Sequence[str]) -> list[str]:
        """Distinct texts not yet cached, or cached as a bad row (in first-seen order)."""
        uniq = list(dict.fromkeys(texts))
        have = self._lookup([text_key(t) for t in uniq])
        return [t for t in uniq if text_key(t) not in have]

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors``; refuses vectors of the wrong length or that are not finite. A
        bad row already there is replaced, a good one kept (the first writer's vector
        stays: dynamic int8 vectors differ in the last digits from batch to batch)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        if not len(texts):
            return
        dim = vectors.shape[1] if vectors.ndim == 2 else None
        if dim is None or (self.dim is not None and dim != self.dim) \
                or not np.isfinite(vectors).all():
            raise EmbeddingCacheError(
                f"embedding cache {self.path}: refusing {len(texts)} vectors of shape "
                f"{vectors.shape} for encoder {self.encoder_key!r} (expected {self.dim or 'n'} "
                "finite values each); the encoder's output is broken, nothing was stored")
        keys = [text_key(t) for t in texts]
        self._con.execute("BEGIN IMMEDIATE")
        try:
            self._con.execute("INSERT OR IGNORE INTO emb_dim VALUES (?, ?)",
                              (self.encoder_key, dim))
            _, bad, _ = self._check(self._rows(keys), dim)
            self._con.executemany("DELETE FROM emb WHERE encoder=? AND text_sha1=?",
                                  [(self.encoder_key, k) for k in bad])
            self._con.executemany(
                "INSERT OR IGNORE INTO emb VALUES (?,?,?,?)",
                [(self.encoder_key, k, v.shape[0], v.tobytes()) for k, v in zip(keys, vectors)])
            self._con.execute("COMMIT")
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        if self.dim is None:
            self.dim = self._recorded_dim()

    def get(self, texts: Sequence[str], compute: Callable[[list[str]], np.ndarray] | None = None,
            *, chunk: int = 4096) -> np.ndarray:
        """Vectors for ``texts`` in order, computing (and storing) only the missing ones."""
        keys = [text_key(t) for t in texts]
        found = self._lookup(list(dict.fromkeys(keys)))
        todo = [t for t in dict.fromkeys(texts) if text_key(t) not in found]
        if todo:
            if compute is None:
                raise KeyError(f"{len(todo)} texts are not in the embedding cache {self.path} "
                               "(or were bad rows, now dropped) and no encoder was given: "
                               "rerun the same command, which embeds them first")
            for start in range(0, len(todo), chunk):
                part = todo[start:start + chunk]
                vecs = compute(part)
                self.put(part, vecs)
                for t, v in zip(part, vecs):
                    found[text_key(t)] = np.asarray(v, dtype=np.float32)
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)

    def count(self) -> int:
        return self._con.execute("SELECT COUNT(*) FROM emb WHERE encoder=?",
                                 (self.encoder_key,)).fetchone()[0]
