"""``xlt-measure bench --seq2seq``: mT5 rank classification (ONNX Runtime) vs ``generate()``.

Why a random model: the question is the cost of *evaluating* a seq2seq cell (an
encoder pass plus a decoder pass over the three label words, with log-softmax over
mT5's 250k vocabulary) and whether the ONNX path reproduces PyTorch — neither needs
trained weights, and nothing is downloaded. The model has mt5-small's shapes (d_model
512, 8+8 layers, 6 heads, gated-GELU d_ff 1024, vocabulary 250,112, untied head); the
tokenizer is a sentencepiece unigram model trained on the fly on NLI text (vocab 8,000),
so the label words are several pieces each, as with the real mT5 tokenizer.

Timed on the same XNLI test pairs (five languages), the same length-bucketed batches,
after a warm-up batch each, in interleaved rounds (each method's best round counts; the
per-round ratios are reported too): PyTorch ``model.generate()`` (greedy, fp32, eager,
KV cache; ``max_new_tokens`` = the longest label word's pieces + 1, for its ``</s>``)
against rank classification through ONNX Runtime — the path ``run_seq2seq_cell``
evaluates with — in int8 (``rank_examples_per_s``: the batch-config default backend)
and fp32, plus PyTorch rank classification as the reference for prediction agreement,
and ORT int8 without prefix sharing (what ``RankPlan``'s trie buys). The last line
printed is one JSON object with ``generate_examples_per_s``, ``rank_examples_per_s`` and
``speedup``.

A random model's logits spread widely (standard deviation ~20), so each label piece
costs ~100 nats and the shortest label word wins every pair: prediction agreement is
trivially 1 there, and the score differences and their correlation with PyTorch's are
the informative figures for int8.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from measure.benchmarks.encoder_bench import BENCH_LANGS
from measure.data import resolve_data_dir
from measure.encoders.encoder import load_tokenizer
from measure.methods.sampling import load_split
from measure.methods.seq2seq import LABEL_WORDS, OrtScorer, TorchScorer, export_onnx, format_input

SHAPES: dict[str, dict[str, Any]] = {
    "mt5-small": {"d_model": 512, "d_kv": 64, "d_ff": 1024, "num_layers": 8,
                  "num_decoder_layers": 8, "num_heads": 6, "vocab_size": 250112,
                  "relative_attention_num_buckets": 32, "feed_forward_proj": "gated-gelu"},
    "tiny": {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 2,
             "num_heads": 4, "vocab_size": 2000, "relative_attention_num_buckets": 8},
}


def bench_pairs(data_dir: str, n: int) -> list[str]:
    """``n`` formatted premise/hypothesis inputs, spread over five XNLI test languages."""
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


def _interleaved(methods: dict[str, Any], texts: list[str],
                 rounds: int) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Outputs (first round) and seconds per round of each method, the methods taking
    turns within every round: on a shared machine the load drifts over minutes, and
    timing one method after the other would put that drift into their ratio."""
    for fn in methods.values():
        fn(texts[:4])  # warm-up: graph init, allocator
    outputs: dict[str, Any] = {}
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            out = fn(texts)
            seconds[name].append(time.perf_counter() - t0)
            outputs.setdefault(name, out)
    return outputs, seconds


RANK_BACKEND = "ort-int8-s8"  # what ``rank_examples_per_s`` measures: the batch-config default


def run_seq2seq_bench(data_dir: str | None = None, n_texts: int = 128,
                      shapes: str = "mt5-small", batch_size: int = 16,
                      rounds: int = 3) -> dict[str, Any]:
    """Time generation vs rank classification on the same inputs and batches; print a
    table and, as the last line, one JSON object (``speedup`` = rank / generate, from
    each method's best of ``rounds`` interleaved rounds; ``speedup_per_round`` too)."""
    from transformers import AutoModelForSeq2SeqLM


    root = str(resolve_data_dir(data_dir))
    texts = bench_pairs(root, n_texts)
    kw = {"batch_size": batch_size}
    with tempfile.TemporaryDirectory(prefix="xlt-bench-s2s-") as tmp:
        t0 = time.perf_counter()
        model_dir = build_random_mt5(Path(tmp), root, shapes)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        export_onnx(model_dir, Path(tmp) / "onnx", quantize="s8")
        export_s = time.perf_counter() - t0
        tok = load_tokenizer(model_dir)
        n_tokens = float(np.mean([len(x) for x in tok(texts).input_ids]))
        model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
        n_params = sum(p.numel() for p in model.parameters())
        torch_s = TorchScorer(model, tok, LABEL_WORDS, **kw)
        ort32 = OrtScorer(Path(tmp) / "onnx", tok, LABEL_WORDS, **kw)
        ort8 = OrtScorer(Path(tmp) / "onnx", tok, LABEL_WORDS, quantized=True, **kw)
        ort8_naive = OrtScorer(Path(tmp) / "onnx", tok, LABEL_WORDS, quantized=True,
                               share_prefixes=False, **kw)  # what the trie buys
        pieces = [len(p) for p in torch_s.label_pieces]
        max_new = max(pieces) + 1  # the longest label word, then </s>
        methods = {"generate": partial(torch_s.generate, max_new_tokens=max_new),
                   "torch-fp32": torch_s.rank_scores, "ort-fp32": ort32.rank_scores,
                   "ort-int8-s8": ort8.rank_scores, "ort-int8-s8-no-trie": ort8_naive.rank_scores}
        print(f"timing {', '.join(methods)} on {len(texts)} pairs, {rounds} interleaved "
              "rounds ...", file=sys.stderr)
        out, seconds = _interleaved(methods, texts, rounds)
        plan, naive = ort8.plan, ort8_naive.plan
        del model, torch_s, ort32, ort8, ort8_naive
    rate = {name: len(texts) / min(sec) for name, sec in seconds.items()}
    s_torch, s_32, s_8 = out["torch-fp32"], out["ort-fp32"], out["ort-int8-s8"]
    p_torch, p_32, p_8 = (s.argmax(axis=1) for s in (s_torch, s_32, s_8))
    agree = {"torch-fp32": 1.0, "ort-fp32": round(float(np.mean(p_32 == p_torch)), 4),
             "ort-int8-s8": round(float(np.mean(p_8 == p_torch)), 4)}
    result = {
        "shapes": shapes, "parameters": int(n_params), "n_pairs": len(texts),
        "batch_size": batch_size, "rounds": rounds, "mean_input_tokens": round(n_tokens, 1),
        "label_word_pieces": pieces, "max_new_tokens": max_new,
        "decoder_rows_per_pair": int(plan.dec_inputs.shape[0]),
        "scored_positions_per_pair": int(len(plan.positions)),
        "scored_positions_per_pair_naive": int(len(naive.positions)),
        "build_seconds": round(build_s, 1), "export_quantize_seconds": round(export_s, 1),
        "generate_label_word_rate": round(float(np.isin(out["generate"], LABEL_WORDS).mean()), 4),
        "torch_rank_examples_per_s": round(rate["torch-fp32"], 2),
        "ort_fp32_rank_examples_per_s": round(rate["ort-fp32"], 2),
        "ort_int8_rank_examples_per_s": round(rate["ort-int8-s8"], 2),
        "ort_int8_rank_no_trie_examples_per_s": round(rate["ort-int8-s8-no-trie"], 2),
        "max_abs_score_diff_fp32": float(np.abs(s_32 - s_torch).max()),
        "max_abs_score_diff_int8": float(np.abs(s_8 - s_torch).max()),
        "score_corr_int8": round(min(float(np.corrcoef(s_8[:, j], s_torch[:, j])[0, 1])
                                     for j in range(s_8.shape[1])), 4),
        "torch_rank_prediction_counts": np.bincount(p_torch, minlength=3).tolist(),
        "agree_fp32": agree["ort-fp32"], "agree_int8": agree["ort-int8-s8"],
        "generate_examples_per_s": round(rate["generate"], 2), "rank_backend": RANK_BACKEND,
        "rank_examples_per_s": round(rate[RANK_BACKEND], 2),
        "agreement_with_torch_rank": agree[RANK_BACKEND],
        "speedup_per_round": [round(g / r, 2) for g, r in zip(seconds["generate"],
                                                               seconds[RANK_BACKEND])],
        "speedup": round(rate[RANK_BACKEND] / rate["generate"], 2),
    }
    print(f"\n{'method (best of ' + str(rounds) + ' rounds)':<36}{'pairs/s':>9}"
          f"{'vs generate':>13}{'agree':>8}")
    labels = {"generate": f"torch-fp32 generate() ({max_new} tokens)",
              "torch-fp32": "torch-fp32 rank", "ort-fp32": "ort-fp32 rank",
              "ort-int8-s8": "ort-int8-s8 rank", "ort-int8-s8-no-trie": "ort-int8-s8 rank, no prefix sharing"}
    for name, r in rate.items():
        a = agree.get(name)
        print(f"{labels[name]:<36}{r:>9.2f}{r / rate['generate']:>12.2f}x"
              f"{'' if a is None else f'{a:.3f}':>8}")
    print("(agree: predictions equal to torch-fp32 rank classification; torch-fp32 rank "
          f"predicted {result['torch_rank_prediction_counts']} per label; int8 scores vs torch: "
          f"max |diff| {result['max_abs_score_diff_int8']:.2f}, "
          f"min correlation {result['score_corr_int8']})")
    print(json.dumps(result))
    return result
