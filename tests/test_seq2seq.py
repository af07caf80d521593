"""The seq2seq method on a tiny random mT5 built at test time (no downloads).

The tokenizer is a sentencepiece unigram model trained here on a few thousand sentences
of the shared NLI data (T5 conventions: pad 0, eos 1, unk 2), with the label words as
user-defined pieces so each is one token. The model is an ``MT5Config`` with d_model 32
and 2 layers: it learns little NLI, but every code path — training with selection,
optimum export, ONNX Runtime rank classification and generation — runs for real.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from measure.running.config import ConfigError, build_batch
from measure.methods.seq2seq import LABEL_WORDS, Seq2SeqParams, format_input


# tiny models: one torch thread (see conftest.one_torch_thread)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


TRAIN = {"max_steps": 40, "batch_size": 16, "learning_rate": 3e-3, "warmup_ratio": 0.1,
         "eval_every": 20, "val_size": 60, "eval_batch_size": 32}


def _base(model: str, **over: Any) -> dict[str, Any]:
    raw = {"name": "s2s", "model": model, "method": "seq2seq", "backend": "ort-fp32",
           "eval_cap": 90, "budget": {"per_language": 300}, "train": dict(TRAIN),
           "targets": [{"split": "xnli/test", "languages": ["en", "de"]}],
           "sources": [{"pool": "xnli/validation", "sets": [["en"]]}]}
    raw.update(over)
    return raw


# --- fast: params and config validation ---------------------------------------------

def test_params_defaults_and_validation() -> None:
    p = Seq2SeqParams.from_dict({"epochs": 2, "label_words": [" yes", "maybe", "no "]})
    assert p.epochs == 2.0 and p.label_words == ("yes", "maybe", "no")
    assert Seq2SeqParams.from_dict(None).label_words == LABEL_WORDS
    assert format_input("A b.", "C.") == "xnli premise: A b. hypothesis: C."
    for bad, msg in [({"lr": 1e-4}, "unknown seq2seq key"),
                     ({"label_words": ["a", "a", "b"]}, "3 distinct"),
                     ({"batch_size": 0}, "batch_size"),
                     ({"batch_size": 1.5}, "expected int"),
                     ({"rank_eos": 1}, "expected bool"),
                     ({"precision": "int4"}, "precision"),
                     ({"scoring": "beam"}, "scoring"),
                     ({"val_split": "xnli"}, "val_split"),
                     ({"max_steps": 0, "epochs": 0}, "max_steps")]:
        with pytest.raises(ValueError, match=msg):
            Seq2SeqParams.from_dict(bad)


def test_config_validates_seq2seq(nli_dir: Path) -> None:
    batch = build_batch(_base("some/mt5"), nli_dir)
    assert len(batch.cells) == 1 and batch.cells[0].params["max_steps"] == 40
    with pytest.raises(ConfigError, match=r"\[train\]: unknown seq2seq key"):
        build_batch(_base("some/mt5", train={"steps": 3}), nli_dir)
    with pytest.raises(ConfigError, match="not available for seq2seq"):
        build_batch(_base("some/mt5", backend="ort-int4"), nli_dir)


def test_rank_plan_scores_each_prefix_once() -> None:
    """The trie layout scores exactly what the naive per-label layout scores, with fewer
    decoder rows and positions (shared prefixes once, no padding positions)."""
    from measure.methods.seq2seq import RankPlan
    pieces = [[5, 6, 7], [5, 6, 8], [9], [5, 4]]
    trie = RankPlan.build(pieces, decoder_start=0, pad=0)
    naive = RankPlan.build(pieces, decoder_start=0, pad=0, share=False)
    # inputs (0 5 6), (0 5 6), (0), (0 5): one leaf; nodes (0) (0 5) (0 5 6)
    assert trie.dec_inputs.tolist() == [[0, 5, 6]] and trie.positions.tolist() == [0, 1, 2]
    assert trie.targets.tolist() == [[5, 9], [6, 4], [7, 8]]
    assert naive.dec_inputs.shape == (4, 3) and len(naive.positions) == 9

    def fake_logprob(prefix: tuple[int, ...], target: int) -> float:
        return -((sum(prefix) * 31 + len(prefix) * 7 + target) % 97) / 10

    expected = [sum(fake_logprob((0, *p[:k]), p[k]) for k in range(len(p))) for p in pieces]
    for plan in (trie, naive):
        rows, dec, pos, tgt = plan.tile(2)
        assert rows.tolist() == sorted(rows.tolist()) and len(pos) == 2 * len(plan.positions)
        width = dec.shape[1]
        lp = np.array([[fake_logprob(tuple(dec[q // width, :q % width + 1]), t) for t in row]
                       for q, row in zip(pos, tgt)])
        scores = plan.label_scores(lp.reshape(2, *plan.targets.shape))
        np.testing.assert_allclose(scores, [expected, expected])


# --- slow: a tiny real model --------------------------------------------------------

def _build_tiny_mt5(out: Path, nli_dir: Path) -> Path:
    import sentencepiece as spm
    import torch
    from transformers import MT5Config, MT5ForConditionalGeneration, T5Tokenizer

    from measure.data import load_parquet_split
    sents: list[str] = []
    for lang in ("en", "de"):
        df = load_parquet_split(nli_dir, "xnli", lang, "validation")
        sents += df["premise"].drop_duplicates().tolist()[:800] + df["hypothesis"].tolist()[:800]
    sents += ["xnli premise: hypothesis:"] * 50
    corpus = out / "corpus.txt"
    corpus.write_text("\n".join(sents), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(out / "sp"), vocab_size=2000, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2, num_threads=1,
        user_defined_symbols=[f"\u2581{w}" for w in LABEL_WORDS])  # "▁word": one piece each
    model_dir = out / "tiny-mt5"
    tok = T5Tokenizer(str(out / "sp.model"), extra_ids=0, legacy=False)
    tok.save_pretrained(model_dir)
    cfg = MT5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2,
                    num_decoder_layers=2, num_heads=4, relative_attention_num_buckets=8,
                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    MT5ForConditionalGeneration(cfg).save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def tiny_mt5(nli_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_tiny_mt5(tmp_path_factory.mktemp("mt5"), nli_dir)


@pytest.mark.slow
def test_label_words_are_single_pieces(tiny_mt5: Path) -> None:
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_mt5)
    assert [len(tok(w, add_special_tokens=False).input_ids) for w in LABEL_WORDS] == [1, 1, 1]
    assert tok("neutral").input_ids[-1] == tok.eos_token_id == 1 and tok.pad_token_id == 0


@pytest.mark.slow
def test_seq2seq_cell_end_to_end(tiny_mt5: Path, nli_dir: Path, tmp_path: Path) -> None:
    """Train 40 steps on 300 English pairs, select on held-out English rows, export,
    score en and de through ONNX Runtime, store the rows."""
    from measure.methods.base import RunContext
    from measure.methods.registry import run_cell
    from measure.store import ResultStore

    batch = build_batch(_base(str(tiny_mt5)), nli_dir)
    cell = batch.cells[0]
    rec = run_cell(cell, RunContext(str(nli_dir)))
    assert rec.status == "done", rec.error
    with ResultStore(tmp_path / "s.sqlite") as store:
        assert store.put_cell(rec) and not store.put_cell(rec)        # idempotent
        df = store.results_frame()
    assert sorted(df["target_language"]) == ["de", "en"] and set(df["n"]) == {90}
    for _, row in df.iterrows():
        conf = np.array(__import__("json").loads(row["confusion"]))
        assert conf.sum() == 90                                        # rank: always a label
        assert row["accuracy"] == pytest.approx(100 * np.trace(conf) / 90)
        assert 0 <= row["macro_f1"] <= 100
    assert df["zero_shot"].tolist() == [True, False]                   # de, en
    assert rec.train_seconds and rec.train_seconds > 0
    # the same cell evaluated by PyTorch instead of ONNX Runtime: the same predictions
    ref = run_cell(dataclasses.replace(cell, backend="torch-fp32"), RunContext(str(nli_dir)))
    assert [r.confusion for r in ref.results] == [r.confusion for r in rec.results]


def test_source_validation_is_held_out(nli_dir: Path) -> None:
    """Checkpoint selection reads only source-language rows the cell did not train on."""
    from measure.methods.sampling import sample_training
    from measure.methods.seq2seq import source_validation
    raw = _base("some/mt5", budget={"total": 600},
                sources=[{"pool": "xnli/validation", "sets": [["en", "de"]]}])
    cell = build_batch(raw, nli_dir).cells[0]
    drawn = sample_training(cell, str(nli_dir))
    params = Seq2SeqParams.from_dict(dict(cell.params))
    val = source_validation(cell, str(nli_dir), params, drawn)
    assert len(val) == 60
    from measure.data import load_parquet_split
    train_texts = set()
    for lang, idx in drawn:
        f = load_parquet_split(nli_dir, "xnli", lang, "validation").iloc[idx]
        train_texts |= {format_input(p, h) for p, h in zip(f.premise, f.hypothesis)}
    assert not train_texts & {t for t, _ in val}
    en = load_parquet_split(nli_dir, "xnli", "en", "validation")
    en_texts = {format_input(p, h) for p, h in zip(en.premise, en.hypothesis)}
    assert sum(t in en_texts for t, _ in val) == 30                   # 30 en + 30 de rows
    other = source_validation(cell, str(nli_dir),
                              Seq2SeqParams.from_dict({"val_split": "xnli/test", "val_size": 30}),
                              drawn)
    assert len(other) == 30 and not train_texts & {t for t, _ in other}


@pytest.fixture(scope="module")
def trained(tiny_mt5: Path, nli_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny model after 60 steps on English (enough to answer with label words)."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from measure.data import load_parquet_split
    from measure.methods.seq2seq import export_onnx, train_seq2seq

    tok = AutoTokenizer.from_pretrained(tiny_mt5)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_mt5)
    df = load_parquet_split(nli_dir, "xnli", "en", "validation").iloc[:480]
    train = [(format_input(p, h), int(y)) for p, h, y in zip(df.premise, df.hypothesis, df.label)]
    params = Seq2SeqParams.from_dict({**TRAIN, "max_steps": 60, "val_size": 0})
    report = train_seq2seq(model, tok, train, params, seed=0)
    assert report.steps == 60 and report.best_step == 60 and report.precision == "fp32"
    out = tmp_path_factory.mktemp("export")
    model.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    export_onnx(out / "model", out / "onnx")
    test = load_parquet_split(nli_dir, "xnli", "de", "test").iloc[::50]       # 101 German pairs
    texts = [format_input(p, h) for p, h in zip(test.premise, test.hypothesis)]
    return model, tok, out / "onnx", texts


@pytest.mark.slow
def test_rank_and_generation_agree_across_runtimes(trained: Any) -> None:
    from measure.methods.seq2seq import OrtScorer, TorchScorer
    model, tok, onnx_dir, texts = trained
    torch_s = TorchScorer(model, tok, LABEL_WORDS, batch_size=16)
    ort_s = OrtScorer(onnx_dir, tok, LABEL_WORDS, batch_size=16)

    # one decoder row, one scored position per input: the three words are single pieces
    assert ort_s.plan.dec_inputs.shape == (1, 1) and ort_s.plan.targets.shape == (1, 3)
    assert {o.name for o in ort_s.decoder.get_outputs()} == {"target_logprobs", "next_token"}
    assert not list(onnx_dir.glob("decoder_model*"))      # optimum's decoder was replaced
    rank_t, rank_o = torch_s.rank_scores(texts), ort_s.rank_scores(texts)
    assert rank_t.shape == (101, 3) and np.all(rank_t < 0)
    np.testing.assert_allclose(rank_o, rank_t, atol=1e-4)
    gen_t = torch_s.generate(texts, max_new_tokens=4)           # transformers' generate
    gen_o = ort_s.generate(texts, max_new_tokens=4)             # our ORT greedy loop
    assert gen_o == gen_t
    assert set(gen_o) <= set(LABEL_WORDS)                       # trained: only label words
    pred = rank_o.argmax(axis=1)
    assert np.array_equal(ort_s.labels_from_text(gen_o), pred)  # rank == greedy generation
    assert np.array_equal(torch_s.predict(texts, "rank"), pred)
    assert np.array_equal(ort_s.predict(texts, "generate", 4), pred)
    assert (np.bincount(pred, minlength=3) > 0).sum() >= 2        # measured: [41, 2, 58]
    # with </s> in the score: an extra log-prob <= 0 (about 0 here: </s> follows the word)
    eos_s = OrtScorer(onnx_dir, tok, LABEL_WORDS, rank_eos=True)
    assert np.all(eos_s.rank_scores(texts) <= rank_o + 1e-4)


@pytest.mark.slow
def test_trie_scoring_equals_naive_per_label_scoring(trained: Any) -> None:
    """Label words sharing a leading piece (and </s>): the trie-shared ORT decoder call
    gives the naive per-label scores, and PyTorch's, to 1e-4."""
    from measure.methods.seq2seq import OrtScorer, TorchScorer
    model, tok, onnx_dir, texts = trained
    words = ("not entailment", "not neutral", "contradiction")
    assert tok(words[0], add_special_tokens=False).input_ids[0] == \
        tok(words[1], add_special_tokens=False).input_ids[0]
    texts = texts[:40]
    for rank_eos in (False, True):
        kw: dict[str, Any] = {"batch_size": 16, "rank_eos": rank_eos}
        trie = OrtScorer(onnx_dir, tok, words, **kw)
        naive = OrtScorer(onnx_dir, tok, words, share_prefixes=False, **kw)
        assert len(trie.plan.positions) < len(naive.plan.positions)
        assert trie.plan.dec_inputs.size <= naive.plan.dec_inputs.size
        scores = trie.rank_scores(texts)
        assert scores.shape == (40, 3) and np.all(scores < 0)
        np.testing.assert_allclose(scores, naive.rank_scores(texts), atol=1e-4)
        np.testing.assert_allclose(scores, TorchScorer(model, tok, words, **kw).rank_scores(texts),
                                   atol=1e-4)


@pytest.mark.slow
def test_bench_seq2seq_cli_tiny(nli_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``xlt-measure bench --seq2seq --shapes tiny``: ORT fp32 reproduces PyTorch rank
    classification; the last line carries generate vs rank throughput."""
    import json

    from measure import cli
    assert cli.main(["bench", "--seq2seq", "--shapes", "tiny", "--texts", "24",
                     "--data-dir", str(nli_dir)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_pairs"] == 24 and result["shapes"] == "tiny"
    assert result["agree_fp32"] == 1.0 and result["max_abs_score_diff_fp32"] < 1e-3
    assert result["max_new_tokens"] == max(result["label_word_pieces"]) + 1
    assert result["rank_backend"] == "ort-int8-s8"
    assert result["agreement_with_torch_rank"] == result["agree_int8"]
    assert result["generate_examples_per_s"] > 0 and result["rank_examples_per_s"] > 0
    assert result["speedup"] == pytest.approx(
        result["rank_examples_per_s"] / result["generate_examples_per_s"], rel=0.02)
