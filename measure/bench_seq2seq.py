"""``xlt-measure bench --seq2seq``: mT5 rank classification, PyTorch vs ONNX Runtime.

Why a random model: the question is the cost of *evaluating* a seq2seq cell (an
encoder pass plus a decoder pass over the three label words, with log-softmax over
mT5's 250k vocabulary) and whether the ONNX path reproduces PyTorch — neither needs
trained weights, and nothing is downloaded. The model has mt5-small's shapes (d_model
512, 8+8 layers, 6 heads, gated-GELU d_ff 1024, vocabulary 250,112, untied head); the
tokenizer is a sentencepiece unigram model trained on the fly on NLI text (vocab 8,000),
so the label words are several pieces each, as with the real mT5 tokenizer.

Timed on the same XNLI test pairs (five languages) after a warm-up batch: rank
classification with PyTorch fp32, ORT fp32 and ORT int8 (dynamic), plus greedy
generation with ORT fp32. The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from measure.bench import BENCH_LANGS
from measure.seq2seq import LABEL_WORDS, format_input

SHAPES: dict[str, dict[str, Any]] = {
    "mt5-small": {"d_model": 512, "d_kv": 64, "d_ff": 1024, "num_layers": 8,
                  "num_decoder_layers": 8, "num_heads": 6, "vocab_size": 250112,
                  "relative_attention_num_buckets": 32, "feed_forward_proj": "gated-gelu"},
    "tiny": {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 2,
             "num_heads": 4, "vocab_size": 2000, "relative_attention_num_buckets": 8},
}


def bench_pairs(data_dir: str, n: int) -> list[str]:
    """``n`` formatted premise/hypothesis inputs, spread over five XNLI test languages."""
    from measure.cells import load_split
    per = -(-n // len(BENCH_LANGS))
    texts: list[str] = []
    for lang in BENCH_LANGS:
        f = load_split(data_dir, "xnli", lang, "test").iloc[:per]
        texts += [format_input(p, h) for p, h in zip(f["premise"], f["hypothesis"])]
    return texts[:n]


def build_random_mt5(out_dir: Path, data_dir: str, shapes: str = "mt5-small",
                     seed: int = 0) -> Path:
    """A randomly initialised MT5 with a sentencepiece tokenizer trained on NLI text."""
    import sentencepiece as spm
    import torch
    from transformers import MT5Config, MT5ForConditionalGeneration, T5Tokenizer

    from measure.cells import load_split
    if shapes not in SHAPES:
        raise ValueError(f"unknown shapes {shapes!r}: use one of {sorted(SHAPES)}")
    sents: list[str] = []
    for lang in BENCH_LANGS:
        f = load_split(data_dir, "xnli", lang, "validation")
        sents += f["premise"].drop_duplicates().tolist()[:600] + f["hypothesis"].tolist()[:600]
    corpus = out_dir / "corpus.txt"
    corpus.write_text("\n".join(sents + list(LABEL_WORDS)), encoding="utf-8")
    vocab = min(8000, SHAPES[shapes]["vocab_size"])
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(out_dir / "sp"), vocab_size=vocab,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
        character_coverage=0.9995, num_threads=1)
    model_dir = out_dir / f"random-{shapes}"
    T5Tokenizer(str(out_dir / "sp.model"), extra_ids=0, legacy=False).save_pretrained(model_dir)
    torch.manual_seed(seed)
    cfg = MT5Config(**SHAPES[shapes], decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                    tie_word_embeddings=False)
    MT5ForConditionalGeneration(cfg).eval().save_pretrained(model_dir)
    return model_dir


def _timed(fn: Any, texts: list[str]) -> tuple[Any, float]:
    fn(texts[:4])  # warm-up: graph init, allocator
    t0 = time.perf_counter()
    out = fn(texts)
    return out, len(texts) / (time.perf_counter() - t0)


def run_seq2seq_bench(data_dir: str | None = None, n_texts: int = 128,
                      shapes: str = "mt5-small", batch_size: int = 16) -> dict[str, Any]:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from measure.data import resolve_data_dir
    from measure.seq2seq import OrtScorer, TorchScorer, export_onnx

    root = str(resolve_data_dir(data_dir))
    texts = bench_pairs(root, n_texts)
    with tempfile.TemporaryDirectory(prefix="xlt-bench-s2s-") as tmp:
        t0 = time.perf_counter()
        model_dir = build_random_mt5(Path(tmp), root, shapes)
        build_s = time.perf_counter() - t0
        tok = AutoTokenizer.from_pretrained(model_dir)
        pieces = [len(tok(w, add_special_tokens=False).input_ids) for w in LABEL_WORDS]
        n_tokens = float(np.mean([len(x) for x in tok(texts).input_ids]))
        model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
        n_params = sum(p.numel() for p in model.parameters())
        kw = {"batch_size": batch_size}
        print(f"timing PyTorch fp32 rank classification on {len(texts)} pairs ...", file=sys.stderr)
        s_torch, r_torch = _timed(TorchScorer(model, tok, LABEL_WORDS, **kw).rank_scores, texts)
        del model
        t0 = time.perf_counter()
        export_onnx(model_dir, Path(tmp) / "onnx", quantize=True)
        export_s = time.perf_counter() - t0
        print("timing ONNX Runtime fp32 / int8 ...", file=sys.stderr)
        ort32 = OrtScorer(Path(tmp) / "onnx", tok, LABEL_WORDS, **kw)
        s_32, r_32 = _timed(ort32.rank_scores, texts)
        _, r_gen = _timed(lambda t: ort32.generate(t, max_new_tokens=4), texts)
        del ort32
        s_8, r_8 = _timed(OrtScorer(Path(tmp) / "onnx", tok, LABEL_WORDS, quantized=True,
                                    **kw).rank_scores, texts)
    p_torch, p_32, p_8 = (s.argmax(axis=1) for s in (s_torch, s_32, s_8))
    result = {
        "shapes": shapes, "parameters": int(n_params), "n_pairs": len(texts),
        "mean_input_tokens": round(n_tokens, 1), "label_word_pieces": pieces,
        "build_seconds": round(build_s, 1), "export_quantize_seconds": round(export_s, 1),
        "torch_fp32_pairs_per_s": round(r_torch, 2), "ort_fp32_pairs_per_s": round(r_32, 2),
        "ort_int8_pairs_per_s": round(r_8, 2), "ort_fp32_generate_pairs_per_s": round(r_gen, 2),
        "speedup_fp32": round(r_32 / r_torch, 2), "speedup_int8": round(r_8 / r_torch, 2),
        "max_abs_score_diff_fp32": float(np.abs(s_32 - s_torch).max()),
        "agree_fp32": round(float(np.mean(p_32 == p_torch)), 4),
        "agree_int8": round(float(np.mean(p_8 == p_torch)), 4),
    }
    print(f"\n{'rank classification':<22}{'pairs/s':>10}{'vs torch':>10}{'agree':>8}")
    for name, r, agree in (("torch-fp32", r_torch, 1.0), ("ort-fp32", r_32, result["agree_fp32"]),
                           ("ort-int8", r_8, result["agree_int8"])):
        print(f"{name:<22}{r:>10.2f}{r / r_torch:>9.2f}x{agree:>8.3f}")
    print(f"{'ort-fp32 generate':<22}{r_gen:>10.2f}{r_gen / r_torch:>9.2f}x")
    print(json.dumps(result))
    return result
