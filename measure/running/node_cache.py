"""Every Ray node gets the batch's vectors in its own embedding cache, through Ray.

Why: the driver embeds every text a batch reads once, into its embedding cache; a cell
on another machine reads those vectors from *its* node's cache. A shared filesystem that
SQLite is safe on is rare (many NFS setups are not), and copying the cache by hand before
every batch is error-prone. So the driver puts the vectors its cells need into Ray's
object store once (one object per encoder, ~355 MB for the default grid), and the first
cell on a node writes the ones that node's cache lacks, under a file lock, then records
the pack's digest in the cache so later cells (and later batches with the same texts)
skip the check. A node that shares the driver's cache (one machine, or shared storage)
finds nothing missing and writes nothing. Vectors are copied as stored, never
re-encoded: dynamic int8 vectors differ in the last digits from batch to batch, and
every node must score with the driver's.
"""

from __future__ import annotations

import fcntl
import hashlib
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from measure.cell import CellSpec
from measure.encoders.embcache import EmbeddingCache
from measure.methods.probe import texts_for_batch


@dataclass(frozen=True)
class VectorPack:
    """The vectors of every text one encoder's cells read, and a digest naming them."""

    encoder_key: str
    texts: list[str]
    vectors: np.ndarray
    digest: str


def build_packs(cells: list[CellSpec], data_dir: str, cache_path: str | Path,
                keys: Mapping[str, str]) -> list[VectorPack]:
    """One pack per backend in ``keys`` ({backend: encoder key}) with the vectors of every
    text its cells read, from the driver's cache (which ``prepare_cells`` has filled)."""
    packs = []
    for backend, key in sorted(keys.items()):
        texts = texts_for_batch([c for c in cells if c.backend == backend], data_dir)
        if not texts:
            continue
        with EmbeddingCache(cache_path, key) as cache:
            vectors = cache.get(texts)
        h = hashlib.sha256(key.encode())
        for t in texts:
            h.update(hashlib.sha1(t.encode("utf-8")).digest())
        packs.append(VectorPack(key, texts, vectors, h.hexdigest()[:32]))
    return packs


_SEEDED: set[tuple[str, str]] = set()   # (cache path, digest) this process has checked


def _seeded(cache_path: Path, digest: str) -> bool:
    try:
        con = sqlite3.connect(cache_path, timeout=120)
        try:
            con.execute("CREATE TABLE IF NOT EXISTS xlt_seeded (digest TEXT PRIMARY KEY)")
            return con.execute("SELECT 1 FROM xlt_seeded WHERE digest=?",
                               (digest,)).fetchone() is not None
        finally:
            con.close()
    except sqlite3.Error:
        return False


def _mark_seeded(cache_path: Path, digest: str) -> None:
    con = sqlite3.connect(cache_path, timeout=120)
    try:
        with con:
            con.execute("CREATE TABLE IF NOT EXISTS xlt_seeded (digest TEXT PRIMARY KEY)")
            con.execute("INSERT OR IGNORE INTO xlt_seeded VALUES (?)", (digest,))
    finally:
        con.close()


def ensure_vectors(cache_path: str | Path, packs: Mapping[str, Any],
                   get: Any = None) -> int:
    """Make this node's cache at ``cache_path`` hold every pack's vectors; returns how
    many were written (0 when it had them all, or another process wrote them).

    ``packs``: {digest: the pack, or a Ray object reference to it}; ``get`` resolves a
    reference (``ray.get``), so a node fetches a pack only when its cache lacks texts."""
    path = Path(cache_path)
    written = 0
    for digest, ref in packs.items():
        if (str(path), digest) in _SEEDED:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.parent / (path.name + ".seed.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)        # one writer per node; others wait
            try:
                if not _seeded(path, digest):
                    pack: VectorPack = get(ref) if get is not None else ref
                    with EmbeddingCache(path, pack.encoder_key) as cache:
                        missing = cache.missing(pack.texts)
                        if missing:
                            row = {t: i for i, t in enumerate(pack.texts)}
                            cache.put(missing, pack.vectors[[row[t] for t in missing]])
                            written += len(missing)
                    _mark_seeded(path, digest)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        _SEEDED.add((str(path), digest))
    return written
