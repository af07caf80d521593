"""The seq2seq method: mT5/T5 fine-tuned text-to-text, evaluated by rank classification.

Input ``xnli premise: {premise} hypothesis: {hypothesis}``, target the label word
(``label_words``, default entailment / neutral / contradiction). Training: AdamW with
linear warm-up and decay, a fixed number of steps or epochs, gradient accumulation,
bf16 (fp16 where the GPU has no bf16) autocast on a GPU only — CPU runs stay fp32.
The checkpoint is selected on *source-language* validation rows only (rows of the
training pool the cell did not sample, or ``val_split``); a target is never looked at
before the final evaluation.

Why rank classification: free generation can emit strings that are no label at all,
which would make macro-F1 measure the output format rather than transfer. Scoring the
three label words by their sequence log-probability always yields a label, needs one
encoder pass per input and one batched decoder pass over the three candidates. With
single-piece label words (and ``rank_eos = false``) it is exactly greedy generation
restricted to the label set. The ``generate`` path is kept (``scoring = "generate"``):
an output that is not a label word counts as wrong (and is absent from the confusion
matrix).

Evaluation runs through ONNX Runtime: the fine-tuned model is exported with optimum
(``text2text-generation``: encoder + decoder without past, which is all rank
classification needs) per cell, in a temporary directory, and the decoder is rewritten
(``build_rank_decoder``) so the 250k-wide output projection and its log-softmax run only
at the distinct label-word prefixes (``RankPlan``: a trie over the label words) and never
leave ONNX Runtime. ``backend`` picks ort-int8-s8 (dynamic int8 with signed weights,
measure.encoders.onnxtools; the batch-config default), ort-int8 (unsigned weights, for CPUs
without VNNI), ort-fp32, or torch-fp32 (no export). ``xlt-measure bench --seq2seq`` times this against
PyTorch ``generate()`` on a random model with mt5-small's shapes. torch and
transformers are imported lazily: the core package has no torch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from measure.cell import CellRecord, CellSpec
from measure.encoders.encoder import INT8_SCHEMES, ort_session, padded_batches
from measure.encoders.onnxtools import optimum_export, quantise_dynamic
from measure.knowledge.nli import LABELS
from measure.methods.base import RunContext, score
from measure.methods.sampling import training_frames
from measure.methods.trainloop import (Example, TrainParams, TrainReport, evaluate_trained, fit,
                                       source_rows, start_cell)

LABEL_WORDS = LABELS
TEMPLATE = "xnli premise: {premise} hypothesis: {hypothesis}"
MODEL_ALIASES = {"mt5-small": "google/mt5-small", "mt5-base": "google/mt5-base",
                 "mt5-large": "google/mt5-large"}
_LOGITS_BUDGET = 1 << 25  # floats per decoder call (128 MiB fp32): mT5's vocabulary is 250k


@dataclass(frozen=True)
class Seq2SeqParams(TrainParams):
    """The ``[train]`` table of a seq2seq batch config: TrainParams plus the keys below."""

    label_words: tuple[str, ...] = LABEL_WORDS  # targets for labels 0, 1, 2
    scoring: str = "rank"             # rank | generate
    rank_eos: bool = False            # add log p(</s> | word) to each label's score
    max_new_tokens: int = 8           # generate path only

    @classmethod
    def method_name(cls) -> str:
        return "seq2seq"

    @classmethod
    def _coerce(cls, raw: dict[str, Any]) -> dict[str, Any]:
        if "label_words" in raw:
            lw = raw["label_words"]
            if (not isinstance(lw, (list, tuple)) or len(lw) != 3
                    or not all(isinstance(w, str) and w.strip() for w in lw)
                    or len({w.strip() for w in lw}) != 3):
                raise ValueError(f"[train].label_words = {lw!r}: give 3 distinct non-empty "
                                 "words for entailment, neutral, contradiction")
            raw["label_words"] = tuple(w.strip() for w in lw)
        return raw

    def _checks(self) -> list[tuple[bool, str]]:
        return super()._checks() + [
            (self.scoring in ("rank", "generate"), "scoring must be 'rank' or 'generate'"),
            (self.max_new_tokens >= 1, "max_new_tokens must be >= 1"),
        ]


def format_input(premise: str, hypothesis: str) -> str:
    return TEMPLATE.format(premise=premise, hypothesis=hypothesis)


def resolve_seq2seq_model(name: str) -> str:
    """A local directory, an alias (``mt5-small`` → ``google/mt5-small``) or a hub id."""
    if Path(name).is_dir():
        return str(name)
    return MODEL_ALIASES.get(name, name)


# ----------------------------------------------------------------- scoring backends

@dataclass(frozen=True)
class RankPlan:
    """Which decoder rows and positions rank classification runs, for one input.

    Why: the output projection and its normaliser over mT5's 250k vocabulary cost far more
    than the decoder layers, and the label words' decoder inputs overlap — every one starts
    with the decoder-start token, and words may share leading pieces. Causal attention
    makes the distribution after a shared prefix the same for every label through it, so
    the labels form a trie: the decoder runs one row per *leaf* (a label's input that is no
    prefix of another's), and the projection + log-softmax run once per trie *node*
    (distinct prefix), never on padding. Each node scores the next pieces of the labels
    through it, so the sums are exactly the per-label sequence log-probabilities.
    ``share=False`` is the naive layout (a row per label, a node per label piece), kept as
    the reference the trie is tested against.
    """

    dec_inputs: np.ndarray              # (rows, width) decoder input ids, padded
    positions: np.ndarray               # (nodes,) flat index into rows*width of each prefix
    targets: np.ndarray                 # (nodes, k) pieces scored after each prefix, padded
    label_items: tuple[np.ndarray, ...]  # per label: flat indices into (nodes*k) to sum

    @classmethod
    def build(cls, pieces: Sequence[Sequence[int]], decoder_start: int, pad: int,
              share: bool = True) -> RankPlan:
        inputs = [(decoder_start, *p[:-1]) for p in pieces]  # position k predicts p[k]
        leaves = (sorted({s for s in inputs
                          if not any(len(o) > len(s) and o[:len(s)] == s for o in inputs)})
                  if share else inputs)
        width = max(len(s) for s in leaves)
        node_of: dict[tuple[int, ...], int] = {}
        positions: list[int] = []
        targets: list[list[int]] = []
        items: list[list[tuple[int, int]]] = []
        for j, (seq, p) in enumerate(zip(inputs, pieces)):
            row = (next(r for r, leaf in enumerate(leaves) if leaf[:len(seq)] == seq)
                   if share else j)
            items.append([])
            for k, piece in enumerate(p):
                key = seq[:k + 1] if share else (j, k)
                if key not in node_of:
                    node_of[key] = len(positions)
                    positions.append(row * width + k)
                    targets.append([])
                node = node_of[key]
                if piece not in targets[node]:
                    targets[node].append(piece)
                items[j].append((node, targets[node].index(piece)))
        k_max = max(len(t) for t in targets)
        dec = np.full((len(leaves), width), pad, dtype=np.int64)
        for r, leaf in enumerate(leaves):
            dec[r, :len(leaf)] = leaf
        tgt = np.full((len(targets), k_max), pad, dtype=np.int64)
        for n, t in enumerate(targets):
            tgt[n, :len(t)] = t
        return cls(dec, np.asarray(positions, dtype=np.int64), tgt,
                   tuple(np.array([n * k_max + s for n, s in it], dtype=np.int64)
                         for it in items))

    def tile(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Decoder feeds for ``n`` inputs: row → input index, decoder ids, positions, targets."""
        n_rows, width = self.dec_inputs.shape
        rows = np.repeat(np.arange(n, dtype=np.int64), n_rows)
        pos = (np.arange(n, dtype=np.int64)[:, None] * (n_rows * width) + self.positions).ravel()
        return rows, np.tile(self.dec_inputs, (n, 1)), pos, np.tile(self.targets, (n, 1))

    def label_scores(self, logprobs: np.ndarray) -> np.ndarray:
        """(n, nodes, k) target log-probabilities → (n, labels) sequence log-probabilities."""
        flat = logprobs.reshape(len(logprobs), -1).astype(np.float64)
        return np.stack([flat[:, idx].sum(axis=1) for idx in self.label_items], axis=1)


class _Scorer:
    """Rank classification and greedy generation over an encoder-decoder.

    Subclasses run the network (PyTorch or ONNX Runtime); this class owns tokenisation,
    length bucketing and the label-word bookkeeping (``RankPlan``), so both paths score
    identically.
    """

    _full_logits = True  # the backend materialises logits for every decoder position

    def __init__(self, tokenizer: Any, label_words: Sequence[str], *, decoder_start: int,
                 vocab_size: int, rank_eos: bool = False, max_source_length: int = 256,
                 batch_size: int = 32, share_prefixes: bool = True) -> None:
        self.tokenizer = tokenizer
        self.label_words = tuple(label_words)
        self.max_source_length = max_source_length
        self.batch_size = batch_size
        self.vocab_size = vocab_size
        eos = tokenizer.eos_token_id
        pieces = [tokenizer(w, add_special_tokens=False).input_ids + ([eos] if rank_eos else [])
                  for w in self.label_words]
        if any(not p for p in pieces):
            raise ValueError(f"a label word tokenises to nothing: {self.label_words}")
        self.label_pieces = pieces
        self.plan = RankPlan.build(pieces, decoder_start, tokenizer.pad_token_id or 0,
                                   share=share_prefixes)
        self.decoder_start = decoder_start

    # -- backend hooks
    def _encode(self, ids: np.ndarray, mask: np.ndarray) -> Any:
        raise NotImplementedError

    def _node_logprobs(self, hidden: Any, mask: np.ndarray, rows: np.ndarray,
                       dec_ids: np.ndarray, positions: np.ndarray,
                       targets: np.ndarray) -> np.ndarray:
        """log p(targets[i, :] | the prefix ending at flat position ``positions[i]`` of
        ``dec_ids``), shape of ``targets``; decoder row r reads input ``rows[r]``."""
        raise NotImplementedError

    def _next_tokens(self, hidden: Any, mask: np.ndarray, dec_ids: np.ndarray) -> np.ndarray:
        """The greedy next token after each row of ``dec_ids`` (row i reads input i)."""
        raise NotImplementedError

    # -- shared logic
    def _batches(self, texts: Sequence[str]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_source_length)
        yield from padded_batches(enc["input_ids"], self.batch_size,
                                  self.tokenizer.pad_token_id or 0)

    def rank_scores(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 3) sequence log-probabilities of the label words: one encoder pass per text,
        one decoder call per batch over the plan's rows (split only to bound logits memory)."""
        plan = self.plan
        out = np.zeros((len(texts), len(plan.label_items)), dtype=np.float64)
        per_input = plan.dec_inputs.size if self._full_logits else len(plan.positions)
        per_call = max(1, _LOGITS_BUDGET // (per_input * self.vocab_size))
        for batch, ids, mask in self._batches(texts):
            for start in range(0, len(batch), per_call):
                sub = slice(start, start + per_call)
                n = len(batch[sub])
                hidden = self._encode(ids[sub], mask[sub])
                rows, dec, pos, tgt = plan.tile(n)
                lp = self._node_logprobs(hidden, mask[sub], rows, dec, pos, tgt)
                out[batch[sub]] = plan.label_scores(lp.reshape(n, *plan.targets.shape))
        return out

    def predict_rank(self, texts: Sequence[str]) -> np.ndarray:
        return self.rank_scores(texts).argmax(axis=1)

    def generate(self, texts: Sequence[str], max_new_tokens: int = 8) -> list[str]:
        """Greedy decoding (no KV cache: label words are a few tokens), decoded strings."""
        out: list[str] = [""] * len(texts)
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id or 0
        for batch, ids, mask in self._batches(texts):
            hidden = self._encode(ids, mask)
            seq = np.full((len(batch), 1), self.decoder_start, dtype=np.int64)
            finished = np.zeros(len(batch), dtype=bool)
            for _ in range(max_new_tokens):
                nxt = np.asarray(self._next_tokens(hidden, mask, seq), dtype=np.int64)
                nxt[finished] = pad
                seq = np.concatenate([seq, nxt[:, None]], axis=1)
                finished |= nxt == eos
                if finished.all():
                    break
            for row, i in enumerate(batch):
                out[i] = self.tokenizer.decode(seq[row, 1:], skip_special_tokens=True).strip()
        return out

    def labels_from_text(self, outputs: Sequence[str]) -> np.ndarray:
        """Generated strings → label ids; -1 for anything that is not a label word."""
        lookup = {w: i for i, w in enumerate(self.label_words)}
        return np.array([lookup.get(o.strip(), -1) for o in outputs], dtype=np.int64)

    def predict(self, texts: Sequence[str], scoring: str = "rank",
                max_new_tokens: int = 8) -> np.ndarray:
        if scoring == "rank":
            return self.predict_rank(texts)
        return self.labels_from_text(self.generate(texts, max_new_tokens))


class TorchScorer(_Scorer):
    """The PyTorch model itself (used for checkpoint selection, and as the reference).

    It computes full logits for every decoder position and picks the plan's positions
    afterwards: simple and independent of the ONNX graph surgery it is compared with.
    """

    def __init__(self, model: Any, tokenizer: Any, label_words: Sequence[str], **kw: Any) -> None:
        import torch
        self._torch = torch
        self.model = model
        self.device = next(model.parameters()).device
        super().__init__(tokenizer, label_words, decoder_start=_decoder_start(model.config),
                         vocab_size=int(model.config.vocab_size), **kw)

    def _t(self, a: np.ndarray) -> Any:
        return self._torch.from_numpy(a).to(self.device)

    def _encode(self, ids: np.ndarray, mask: np.ndarray) -> Any:
        with self._torch.inference_mode():
            return self.model.get_encoder()(input_ids=self._t(ids),
                                            attention_mask=self._t(mask)).last_hidden_state

    def _logits(self, hidden: Any, mask: np.ndarray, rows: np.ndarray, dec: np.ndarray) -> Any:
        from transformers.modeling_outputs import BaseModelOutput
        r = self._t(rows)
        with self._torch.inference_mode():
            out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden[r]),
                             attention_mask=self._t(mask)[r], decoder_input_ids=self._t(dec),
                             use_cache=False)
        return out.logits.float()

    def _node_logprobs(self, hidden: Any, mask: np.ndarray, rows: np.ndarray,
                       dec_ids: np.ndarray, positions: np.ndarray,
                       targets: np.ndarray) -> np.ndarray:
        logits = self._logits(hidden, mask, rows, dec_ids)
        with self._torch.inference_mode():
            logp = logits.reshape(-1, logits.shape[-1])[self._t(positions)].log_softmax(-1)
            return logp.gather(-1, self._t(targets)).cpu().numpy()

    def _next_tokens(self, hidden: Any, mask: np.ndarray, dec_ids: np.ndarray) -> np.ndarray:
        rows = np.arange(len(dec_ids))
        return self._logits(hidden, mask, rows, dec_ids)[:, -1].argmax(-1).cpu().numpy()

    def generate(self, texts: Sequence[str], max_new_tokens: int = 8) -> list[str]:
        """transformers' own greedy ``generate`` — an independent reference for the ORT loop."""
        out: list[str] = [""] * len(texts)
        for batch, ids, mask in self._batches(texts):
            with self._torch.inference_mode():
                seq = self.model.generate(input_ids=self._t(ids), attention_mask=self._t(mask),
                                          max_new_tokens=max_new_tokens, num_beams=1,
                                          do_sample=False)
            for row, i in enumerate(batch):
                out[i] = self.tokenizer.decode(seq[row], skip_special_tokens=True).strip()
        return out


class OrtScorer(_Scorer):
    """ONNX Runtime sessions over ``export_onnx``'s encoder and rank decoder.

    The rank decoder (``build_rank_decoder``) takes the encoder states once per input and
    returns only the requested log-probabilities or greedy tokens, so the 250k-wide
    logits never leave ONNX Runtime.
    """

    _full_logits = False  # only the plan's nodes reach the output projection

    def __init__(self, onnx_dir: str | Path, tokenizer: Any, label_words: Sequence[str], *,
                 quantized: bool = False, threads: int | None = None, **kw: Any) -> None:
        onnx_dir = Path(onnx_dir)
        suffix = "_quantized" if quantized else ""
        decoder = onnx_dir / f"{RANK_DECODER.removesuffix('.onnx')}{suffix}.onnx"
        if not decoder.exists():
            raise FileNotFoundError(f"{decoder} is missing: export with measure.methods.seq2seq."
                                    "export_onnx (quantize='s8' or 'u8' for int8)")
        # no spinning: idle threads would steal the cores of other workers (ort_session)
        kw_ort = {"threads": threads, "flush_denormals": True, "spin": False, "gpu": True}
        self.encoder = ort_session(onnx_dir / f"encoder_model{suffix}.onnx", **kw_ort)
        self.decoder = ort_session(decoder, **kw_ort)
        cfg = json.loads((onnx_dir / "config.json").read_text())
        super().__init__(tokenizer, label_words, decoder_start=int(cfg["decoder_start_token_id"]),
                         vocab_size=int(cfg["vocab_size"]), **kw)

    def _encode(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.encoder.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})[0]

    def _decode(self, output: str, hidden: np.ndarray, mask: np.ndarray, rows: np.ndarray,
                dec: np.ndarray, positions: np.ndarray, targets: np.ndarray,
                greedy_rows: int) -> np.ndarray:
        return self.decoder.run([output], {
            "input_ids": dec, "encoder_hidden_states": hidden, "encoder_attention_mask": mask,
            "rows": rows, "positions": positions, "targets": targets,
            "greedy_rows": np.array([greedy_rows], dtype=np.int64)})[0]

    def _node_logprobs(self, hidden: np.ndarray, mask: np.ndarray, rows: np.ndarray,
                       dec_ids: np.ndarray, positions: np.ndarray,
                       targets: np.ndarray) -> np.ndarray:
        return self._decode("target_logprobs", hidden, mask, rows, dec_ids, positions,
                            targets, 0)

    def _next_tokens(self, hidden: np.ndarray, mask: np.ndarray, dec_ids: np.ndarray) -> np.ndarray:
        n, width = dec_ids.shape
        rows = np.arange(n, dtype=np.int64)
        return self._decode("next_token", hidden, mask, rows, dec_ids, rows * width + width - 1,
                            np.zeros((n, 1), dtype=np.int64), n)


def _decoder_start(config: Any) -> int:
    start = config.decoder_start_token_id
    return int(start if start is not None else config.pad_token_id)


# ------------------------------------------------------------------------ export

RANK_DECODER = "decoder_rank_model.onnx"


def build_rank_decoder(src: str | Path, dst: str | Path) -> Path:
    """Rewrite optimum's decoder (``decoder_model.onnx``, no past) for rank classification.

    Why: optimum's decoder returns logits for every position, ``(rows, length, 250112)``
    fp32, which rank classification only reduces to a handful of numbers; and it projects
    the encoder states to cross-attention keys and values once per decoder *row*, i.e.
    once per label word. The rewritten graph:

    * takes ``encoder_hidden_states`` / ``encoder_attention_mask`` once per input plus
      ``rows`` (the input each decoder row reads): the cross-attention K/V projections run
      per input and are gathered to rows afterwards;
    * applies the output projection only at ``positions`` (flat indices into rows ×
      length) — the trie nodes of ``RankPlan`` — and returns ``target_logprobs``
      = LogSoftmax over the full vocabulary, gathered at ``targets`` (positions × k);
    * returns ``next_token``, the argmax at the first ``greedy_rows`` positions (0 for
      rank classification: ONNX Runtime runs every node whatever outputs are fetched, and
      an argmax over 250k logits per node is not free), for greedy generation.
    """
    import onnx
    from onnx import TensorProto, helper
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src), load_external_data=False)
    external = any(uses_external_data(t) for t in model.graph.initializer)
    if external:
        load_external_data_for_model(model, str(src.parent))
    g = model.graph
    ins = {i.name: i for i in g.input}
    if not {"input_ids", "encoder_hidden_states", "encoder_attention_mask"} <= set(ins) \
            or [o.name for o in g.output] != ["logits"]:
        raise ValueError(f"{src}: not optimum's decoder without past (inputs {sorted(ins)})")
    head = next(n for n in g.node if "logits" in n.output)
    if head.op_type != "MatMul":
        raise ValueError(f"{src}: logits come from {head.op_type}, expected the lm_head MatMul")

    enc, emask = "encoder_hidden_states", "encoder_attention_mask"
    nodes: list[Any] = [helper.make_node("Gather", [emask, "rows"], [f"{emask}/rows"], axis=0)]
    gathered_states = False
    for node in g.node:
        if node is head:
            h = node.input[0]
            nodes += [
                helper.make_node("Flatten", [h], ["rank/hidden"], axis=2),
                helper.make_node("Gather", ["rank/hidden", "positions"], ["rank/hidden_at"],
                                 axis=0),
                helper.make_node("MatMul", ["rank/hidden_at", node.input[1]], ["rank/logits"],
                                 name=node.name),
                helper.make_node("LogSoftmax", ["rank/logits"], ["rank/logprobs"], axis=-1),
                helper.make_node("GatherElements", ["rank/logprobs", "targets"],
                                 ["target_logprobs"], axis=1),
                helper.make_node("Slice", ["rank/logits", "rank/zero", "greedy_rows",
                                           "rank/zero"], ["rank/greedy_logits"]),
                helper.make_node("ArgMax", ["rank/greedy_logits"], ["next_token"], axis=1,
                                 keepdims=0),
            ]
            continue
        if node.op_type == "MatMul" and node.input[0] == enc:      # cross-attention k / v
            per_input = f"{node.output[0]}/per_input"
            out = node.output[0]
            node.output[0] = per_input
            nodes += [node, helper.make_node("Gather", [per_input, "rows"], [out], axis=0)]
            continue
        for i, name in enumerate(node.input):
            if name == emask:
                node.input[i] = f"{emask}/rows"
            elif name == enc:
                node.input[i] = f"{enc}/rows"
                gathered_states = True
        nodes.append(node)
    if gathered_states:  # any other consumer of the states reads them per row
        nodes.insert(0, helper.make_node("Gather", [enc, "rows"], [f"{enc}/rows"], axis=0))
    g.ClearField("node")
    g.node.extend(nodes)
    g.initializer.append(helper.make_tensor("rank/zero", TensorProto.INT64, [1], [0]))
    for name in (enc, emask):   # per input now: a batch dimension of its own
        ins[name].type.tensor_type.shape.dim[0].dim_param = "inputs"
    g.input.extend([helper.make_tensor_value_info("rows", TensorProto.INT64, ["decoder_rows"]),
                    helper.make_tensor_value_info("positions", TensorProto.INT64, ["nodes"]),
                    helper.make_tensor_value_info("targets", TensorProto.INT64,
                                                  ["nodes", "targets_per_node"]),
                    helper.make_tensor_value_info("greedy_rows", TensorProto.INT64, [1])])
    g.ClearField("output")
    g.output.extend([helper.make_tensor_value_info("target_logprobs", TensorProto.FLOAT,
                                                   ["nodes", "targets_per_node"]),
                     helper.make_tensor_value_info("next_token", TensorProto.INT64,
                                                   ["greedy"])])
    g.ClearField("value_info")  # the exporter's shapes name the old batch dim; ORT re-infers
    onnx.save_model(model, str(dst), save_as_external_data=external,
                    all_tensors_to_one_file=True, location=f"{dst.name}_data")
    return dst


def export_onnx(model_dir: str | Path, out_dir: str | Path, *,
                quantize: str | None = None) -> Path:
    """optimum export (encoder + decoder, no past), the decoder rewritten by
    ``build_rank_decoder`` (optimum's own decoder is then deleted: it is the size of the
    model and nothing here reads it); ``quantize`` (``"s8"`` or ``"u8"``, see
    measure.encoders.onnxtools) adds dynamic-int8 copies (``*_quantized.onnx``)."""
    out_dir = optimum_export(model_dir, out_dir, task="text2text-generation", opset=18)
    build_rank_decoder(out_dir / "decoder_model.onnx", out_dir / RANK_DECODER)
    for path in out_dir.glob("decoder_model.onnx*"):
        path.unlink()
    if quantize:
        for name in ("encoder_model.onnx", RANK_DECODER):
            quantise_dynamic(out_dir, out_dir, quantize, file_name=name)
    return out_dir


# ---------------------------------------------------------------------- training

def _collate(tokenizer: Any, examples: Sequence[Example], label_words: Sequence[str],
             max_len: int, device: Any) -> dict[str, Any]:
    enc = tokenizer([t for t, _ in examples], truncation=True, max_length=max_len,
                    padding=True, return_tensors="pt")
    tgt = tokenizer(text_target=[label_words[y] for _, y in examples], padding=True,
                    return_tensors="pt").input_ids
    tgt[tgt == (tokenizer.pad_token_id or 0)] = -100
    return {"input_ids": enc.input_ids.to(device), "attention_mask": enc.attention_mask.to(device),
            "labels": tgt.to(device)}


def train_seq2seq(model: Any, tokenizer: Any, train: Sequence[Example],
                  params: Seq2SeqParams, seed: int, val: Sequence[Example] = ()) -> TrainReport:
    """Fine-tune in place; with ``val``, keep the weights with the best validation macro-F1
    (rank classification with the PyTorch model)."""
    device = next(model.parameters()).device
    val_texts = [t for t, _ in val]
    val_y = np.array([y for _, y in val], dtype=np.int64)

    def validate() -> float:
        scorer = TorchScorer(model, tokenizer, params.label_words, rank_eos=params.rank_eos,
                             max_source_length=params.max_source_length,
                             batch_size=params.eval_batch_size)
        return score(val_y, scorer.predict_rank(val_texts))["macro_f1"]

    return fit(model, train, params, seed,
               lambda ex: _collate(tokenizer, ex, params.label_words, params.max_source_length,
                                   device),
               validate if val else None)


# ------------------------------------------------------------------------- a cell

def _examples(frame: Any) -> list[Example]:
    return [(format_input(p, h), int(y))
            for p, h, y in zip(frame["premise"], frame["hypothesis"], frame["label"])]


def source_validation(cell: CellSpec, data_dir: str, params: TrainParams,
                      drawn: list[tuple[str, np.ndarray]]) -> list[Example]:
    """Checkpoint-selection examples from the source languages only (see ``source_rows``)."""
    return [ex for _, frame in source_rows(cell, data_dir, params, drawn)
            for ex in _examples(frame)]


def run(cell: CellSpec, ctx: RunContext, *, device: str | None = None,
        workdir: str | Path | None = None) -> CellRecord:
    """Fine-tune on the cell's sources, select on source validation, score every target."""
    from transformers import AutoModelForSeq2SeqLM

    data_dir = ctx.data_dir
    model_dir = resolve_seq2seq_model(cell.model)
    start = start_cell(cell, data_dir, Seq2SeqParams, model_dir, device)
    params, tokenizer = start.params, start.tokenizer
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).to(start.device)
    train = [ex for frame in training_frames(cell, data_dir, start.drawn) for ex in _examples(frame)]
    val = source_validation(cell, data_dir, params, start.drawn)
    train_seq2seq(model, tokenizer, train, params, int(cell.seed), val)

    kw = {"rank_eos": params.rank_eos, "max_source_length": params.max_source_length,
          "batch_size": params.eval_batch_size}

    def predictor(scorer: _Scorer) -> Any:
        return lambda f: scorer.predict(
            [format_input(p, h) for p, h in zip(f["premise"], f["hypothesis"])],
            params.scoring, params.max_new_tokens)

    return evaluate_trained(
        cell, ctx, start, time.time() - start.started, model, workdir=workdir,
        torch_predictor=lambda m: predictor(TorchScorer(m, tokenizer, params.label_words, **kw)),
        onnx_predictor=lambda d: predictor(OrtScorer(d, tokenizer, params.label_words,
                                                     quantized=start.backend in INT8_SCHEMES,
                                                     **kw)),
        export=lambda src, dst, scheme: export_onnx(src, dst, quantize=scheme))
