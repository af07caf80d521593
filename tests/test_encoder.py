"""ONNX Runtime encoders against the PyTorch reference, and the embedding cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from measure.encoders.embcache import EmbeddingCache
from measure.encoders.encoder import length_buckets

LANGS = "sw ur hi ar ru zh el bg th vi tr es de fr en".split()


def test_length_buckets_cover_every_text_once() -> None:
    lengths = [5, 1, 9, 3, 3, 7, 2]
    batches = list(length_buckets(lengths, 3))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert [len(b) for b in batches] == [3, 3, 1]
    widths = [[lengths[i] for i in b] for b in batches]
    assert widths[0] == [9, 7, 5] and max(widths[1]) <= min(widths[0])


def test_cache_encodes_each_text_once(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def compute(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)

    texts = ["a cat", "a dog", "a cat", "another cat", "a dog"]   # premises repeat in XNLI
    with EmbeddingCache(tmp_path / "e.sqlite", "model-A|int8") as cache:
        first = cache.get(texts, compute)
        assert calls == [["a cat", "a dog", "another cat"]]     # duplicates encoded once
        second = cache.get(list(reversed(texts)), compute)
        assert len(calls) == 1                                   # all hits
        np.testing.assert_array_equal(second, first[::-1])
        assert cache.count() == 3
    with EmbeddingCache(tmp_path / "e.sqlite", "model-A|int8") as cache:   # persists on disk
        assert cache.missing(texts + ["new text"]) == ["new text"]
    with EmbeddingCache(tmp_path / "e.sqlite", "model-B|int8") as cache:   # keyed by encoder
        cache.get(["a cat"], compute)
        assert calls[-1] == ["a cat"]
        with pytest.raises(KeyError, match="not in the embedding cache"):
            cache.get(["never seen"])


@pytest.fixture(scope="module")
def sample_texts(nli_dir: Path) -> list[str]:
    from measure.data import load_parquet_split
    texts = []
    for lang in LANGS:
        f = load_parquet_split(nli_dir, "xnli", lang, "test")
        texts += f["premise"].iloc[:8].tolist() + f["hypothesis"].iloc[:4].tolist()
    f = load_parquet_split(nli_dir, "americas_nli", "aym", "test")
    return texts + f["premise"].iloc[:8].tolist()


@pytest.mark.slow
def test_ort_matches_torch(sample_texts: list[str]) -> None:
    from measure.encoders.encoder import make_encoder
    ref = make_encoder("me5-small", "torch-fp32").encode(sample_texts)
    fp32 = make_encoder("me5-small", "ort-fp32").encode(sample_texts)
    int8 = make_encoder("me5-small", "ort-int8").encode(sample_texts)        # u8 weights
    s8 = make_encoder("me5-small", "ort-int8-s8").encode(sample_texts)       # s8 + fusions
    cos32 = np.sum(ref * fp32, axis=1)
    cos8 = np.sum(ref * int8, axis=1)
    cos_s8 = np.sum(ref * s8, axis=1)
    print(f"ORT fp32 vs torch cosine min {cos32.min():.6f}; int8 u8 min {cos8.min():.4f} "
          f"mean {cos8.mean():.4f}; s8 min {cos_s8.min():.4f} mean {cos_s8.mean():.4f}")
    assert ref.shape == (len(sample_texts), 384)
    assert cos32.min() >= 0.9999
    assert cos8.mean() >= 0.98           # int8 is an approximation; F1 drift is benchmarked
    assert cos_s8.mean() >= 0.99 and cos_s8.min() >= 0.97
    # bucketing must not depend on batch composition: encoding one text alone is the same
    alone = make_encoder("me5-small", "ort-fp32").encode(sample_texts[5:6])
    assert float(alone[0] @ fp32[5]) >= 0.99999


@pytest.mark.slow
def test_parallel_batches_change_nothing(sample_texts: list[str]) -> None:
    """Several batches in flight (the ORT default) give the one-at-a-time vectors, in order."""
    import torch

    from measure.encoders.encoder import make_encoder, usable_cpus
    assert make_encoder("me5-small", "ort-int8-s8").parallel_batches == usable_cpus()
    one = make_encoder("me5-small", "ort-int8-s8", threads=2, batch_size=8)
    many = make_encoder("me5-small", "ort-int8-s8", parallel_batches=3, batch_size=8)
    assert one.parallel_batches == 1 and many.parallel_batches == 3
    np.testing.assert_array_equal(one.encode(sample_texts), many.encode(sample_texts))

    threads = torch.get_num_threads()
    ref = make_encoder("me5-small", "torch-fp32", batch_size=8)
    par = make_encoder("me5-small", "torch-fp32", batch_size=8, parallel_batches=3)
    np.testing.assert_allclose(ref.encode(sample_texts), par.encode(sample_texts), atol=1e-5)
    assert torch.get_num_threads() == threads       # the caller's setting is restored
    with pytest.raises(ValueError, match="parallel_batches"):
        make_encoder("me5-small", "torch-fp32", parallel_batches=0)


@pytest.mark.slow
def test_s8_graph_is_fused_and_signed() -> None:
    """The fast scheme's file really has the fused ops and signed int8 weights."""
    import onnx

    from measure.encoders.encoder import onnx_model_path, resolve_model
    path = onnx_model_path(resolve_model("me5-small"), "int8-s8")
    graph = onnx.load(str(path), load_external_data=False).graph
    ops = {n.op_type for n in graph.node}
    assert {"BiasGelu", "LayerNormalization", "MatMulInteger"} <= ops
    assert not ops & {"SkipLayerNormalization", "Attention", "QAttention"}  # slower here
    dtype = {t.name: t.data_type for t in graph.initializer}
    matmul_weights = [n.input[1] for n in graph.node if n.op_type == "MatMulInteger"
                      and n.input[1] in dtype]
    assert len(matmul_weights) == 72    # 12 layers x (q, k, v, attention out, ffn in, ffn out)
    assert all(dtype[w] == onnx.TensorProto.INT8 for w in matmul_weights)


def test_load_tokenizer_has_no_false_mistral_warning(caplog: pytest.LogCaptureFixture) -> None:
    """transformers 4.57.3+ warns "incorrect regex pattern" for any local checkpoint it
    saved; our loader silences exactly that false alarm and tokenises the same."""
    import transformers
    from transformers import AutoTokenizer

    from measure.encoders.encoder import load_tokenizer, resolve_model
    model_dir = resolve_model("me5-small")
    transformers.logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            ours = load_tokenizer(model_dir)
        assert not [r for r in caplog.records if "regex pattern" in r.getMessage()]
        plain = AutoTokenizer.from_pretrained(model_dir)
    finally:
        transformers.logging.disable_propagation()
    text = "query: Der Hund läuft schnell über die Straße. 狗跑得很快"
    assert ours(text)["input_ids"] == plain(text)["input_ids"]
