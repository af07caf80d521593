"""A node's embedding cache gets the batch's vectors it lacks, once, exactly as the driver
stored them (measure.running.node_cache); no Ray needed to check the copy itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from measure.encoders.embcache import EmbeddingCache
from measure.running import node_cache
from measure.running.node_cache import VectorPack, ensure_vectors


def _pack(texts: list[str], key: str = "k") -> VectorPack:
    rng = np.random.default_rng(len(texts))
    vecs = rng.normal(size=(len(texts), 4)).astype(np.float32)
    return VectorPack(key, texts, vecs, f"digest-{key}-{len(texts)}")


def test_an_empty_node_cache_gets_every_vector_once(tmp_path: Path) -> None:
    pack = _pack([f"text {i}" for i in range(50)])
    path = tmp_path / "node" / "embeddings.sqlite"
    fetched: list[str] = []

    def get(ref: VectorPack) -> VectorPack:
        fetched.append(ref.digest)
        return ref
    assert ensure_vectors(path, {pack.digest: pack}, get) == 50
    with EmbeddingCache(path, "k") as cache:
        np.testing.assert_array_equal(cache.get(pack.texts), pack.vectors)   # bit for bit
    assert ensure_vectors(path, {pack.digest: pack}, get) == 0               # this process knows
    node_cache._SEEDED.clear()                                               # a new worker
    assert ensure_vectors(path, {pack.digest: pack}, get) == 0 and fetched == [pack.digest]


def test_a_node_that_has_the_vectors_copies_none_and_keeps_its_own(tmp_path: Path) -> None:
    pack = _pack(["a", "b", "c"])
    path = tmp_path / "embeddings.sqlite"
    own = np.full((2, 4), 7.0, np.float32)
    with EmbeddingCache(path, "k") as cache:
        cache.put(["a", "b"], own)                 # the driver's own cache on this machine
    assert ensure_vectors(path, {pack.digest: pack}) == 1     # only "c" was missing
    with EmbeddingCache(path, "k") as cache:
        np.testing.assert_array_equal(cache.get(["a", "b"]), own)
        np.testing.assert_array_equal(cache.get(["c"]), pack.vectors[2:])
