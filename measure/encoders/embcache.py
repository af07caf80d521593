"""On-disk sentence-embedding cache keyed by (encoder key, text).

Why: a probe grid of thousands of cells re-reads the same ~250k sentences; XNLI repeats
each premise three times and the same text appears across splits and runs. Encoding a
text once, ever, turns a cell into seconds of linear-model fitting.

The encoder key combines the model's content fingerprint, the backend/precision, the
prefix and the pooling, so fp32 and int8 vectors (or two checkpoints) never mix. Storage
is SQLite (WAL) with one row per (key, sha1(text)) and the float32 vector as a blob:
concurrent readers are safe, and a crash mid-write loses only the uncommitted batch.
"""

from __future__ import annotations

import hashlib
import sqlite3
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
"""


def default_cache_path() -> Path:
    """The embedding cache every command shares, under :func:`cache_root`."""
    return cache_root() / "embeddings.sqlite"


def text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Get-or-compute embeddings; ``compute`` is only called for texts never seen before."""

    def __init__(self, path: str | Path, encoder_key: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.encoder_key = encoder_key
        self._con = sqlite3.connect(self.path, timeout=120, isolation_level=None)
        self._con.execute("PRAGMA journal_mode = WAL")
        self._con.execute("PRAGMA synchronous = NORMAL")
        self._con.executescript(_SCHEMA)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "EmbeddingCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lookup(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), 900):  # SQLite's variable limit
            chunk = keys[start:start + 900]
            marks = ",".join("?" * len(chunk))
            rows = self._con.execute(
                f"SELECT text_sha1, vec FROM emb WHERE encoder=? AND text_sha1 IN ({marks})",
                [self.encoder_key, *chunk])
            for k, blob in rows:
                found[k] = np.frombuffer(blob, dtype=np.float32)
        return found

    def missing(self, texts: Sequence[str]) -> list[str]:
        """Distinct texts not yet cached (in first-seen order)."""
        uniq = list(dict.fromkeys(texts))
        have = self._lookup([text_key(t) for t in uniq])
        return [t for t in uniq if text_key(t) not in have]

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        self._con.execute("BEGIN IMMEDIATE")
        try:
            self._con.executemany(
                "INSERT OR IGNORE INTO emb VALUES (?,?,?,?)",
                [(self.encoder_key, text_key(t), v.shape[0], v.tobytes()) for t, v in zip(texts, vectors)])
            self._con.execute("COMMIT")
        except BaseException:
            self._con.execute("ROLLBACK")
            raise

    def get(self, texts: Sequence[str], compute: Callable[[list[str]], np.ndarray] | None = None,
            *, chunk: int = 4096) -> np.ndarray:
        """Vectors for ``texts`` in order, computing (and storing) only the missing ones."""
        keys = [text_key(t) for t in texts]
        found = self._lookup(list(dict.fromkeys(keys)))
        todo = [t for t in dict.fromkeys(texts) if text_key(t) not in found]
        if todo:
            if compute is None:
                raise KeyError(f"{len(todo)} texts are not in the embedding cache {self.path} "
                               "and no encoder was given")
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
