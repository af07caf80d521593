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
classification needs) per cell, in a temporary directory. ``backend`` picks ort-int8
(dynamic int8; the batch-config default), ort-fp32, or torch-fp32 (no export). On a
random model with mt5-small's shapes int8 and fp32 agreed on every prediction
(``xlt-measure bench --seq2seq``). torch and transformers are imported lazily: the core
package has no torch.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from measure.trainloop import Example, TrainParams, TrainReport, fit, source_rows

LABEL_WORDS = ("entailment", "neutral", "contradiction")
TEMPLATE = "xnli premise: {premise} hypothesis: {hypothesis}"
MODEL_ALIASES = {"mt5-small": "google/mt5-small", "mt5-base": "google/mt5-base",
                 "mt5-large": "google/mt5-large"}
BACKENDS = ("ort-fp32", "ort-int8", "torch-fp32")
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

class _Scorer:
    """Rank classification and greedy generation over an encoder-decoder.

    Subclasses run the network (PyTorch or ONNX Runtime); this class owns tokenisation,
    length bucketing and the label-word bookkeeping, so both paths score identically.
    """

    def __init__(self, tokenizer: Any, label_words: Sequence[str], *, decoder_start: int,
                 vocab_size: int, rank_eos: bool = False, max_source_length: int = 256,
                 batch_size: int = 32) -> None:
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
        width = max(len(p) for p in pieces)
        pad = tokenizer.pad_token_id or 0
        self.label_targets = np.full((len(pieces), width), pad, dtype=np.int64)
        self.label_mask = np.zeros((len(pieces), width), dtype=np.float32)
        self.label_inputs = np.full((len(pieces), width), pad, dtype=np.int64)
        for j, p in enumerate(pieces):
            self.label_targets[j, :len(p)] = p
            self.label_mask[j, :len(p)] = 1
            self.label_inputs[j, 0] = decoder_start
            self.label_inputs[j, 1:len(p)] = p[:-1]
        self.decoder_start = decoder_start

    # -- backend hooks
    def _encode(self, ids: np.ndarray, mask: np.ndarray) -> Any:
        raise NotImplementedError

    def _target_logprobs(self, hidden: Any, mask: np.ndarray, rows: np.ndarray,
                         dec_ids: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """log p(targets | dec_ids, input rows) per position, shape (len(rows), L)."""
        raise NotImplementedError

    def _last_logits(self, hidden: Any, mask: np.ndarray, dec_ids: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # -- shared logic
    def _batches(self, texts: Sequence[str]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        from measure.encoder import length_buckets
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_source_length)
        ids = enc["input_ids"]
        pad = self.tokenizer.pad_token_id or 0
        for batch in length_buckets([len(x) for x in ids], self.batch_size):
            width = max(len(ids[i]) for i in batch)
            input_ids = np.full((len(batch), width), pad, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                input_ids[row, :len(ids[i])] = ids[i]
                mask[row, :len(ids[i])] = 1
            yield batch, input_ids, mask

    def rank_scores(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 3) sequence log-probabilities of the label words; encoder runs once per text."""
        n_lab, width = self.label_targets.shape
        out = np.zeros((len(texts), n_lab), dtype=np.float64)
        per_call = max(1, _LOGITS_BUDGET // (n_lab * width * self.vocab_size))
        for batch, ids, mask in self._batches(texts):
            hidden = self._encode(ids, mask)
            for start in range(0, len(batch), per_call):
                sub = np.arange(start, min(start + per_call, len(batch)))
                rows = np.repeat(sub, n_lab)
                dec = np.tile(self.label_inputs, (len(sub), 1))
                tgt = np.tile(self.label_targets, (len(sub), 1))
                lp = self._target_logprobs(hidden, mask, rows, dec, tgt)
                lp = (lp * np.tile(self.label_mask, (len(sub), 1))).sum(axis=1)
                out[batch[sub]] = lp.reshape(len(sub), n_lab)
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
                nxt = self._last_logits(hidden, mask, seq).argmax(axis=-1).astype(np.int64)
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
    """The PyTorch model itself (used for checkpoint selection, and as the reference)."""

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

    def _target_logprobs(self, hidden: Any, mask: np.ndarray, rows: np.ndarray,
                         dec_ids: np.ndarray, targets: np.ndarray) -> np.ndarray:
        logp = self._logits(hidden, mask, rows, dec_ids).log_softmax(-1)
        return logp.gather(-1, self._t(targets)[..., None])[..., 0].cpu().numpy()

    def _last_logits(self, hidden: Any, mask: np.ndarray, dec_ids: np.ndarray) -> np.ndarray:
        rows = np.arange(len(dec_ids))
        return self._logits(hidden, mask, rows, dec_ids)[:, -1].cpu().numpy()

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
    """ONNX Runtime sessions over an optimum ``text2text-generation`` export."""

    def __init__(self, onnx_dir: str | Path, tokenizer: Any, label_words: Sequence[str], *,
                 quantized: bool = False, threads: int | None = None, **kw: Any) -> None:
        import json

        import onnxruntime as ort
        onnx_dir = Path(onnx_dir)
        suffix = "_quantized" if quantized else ""
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        avail = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]
        self.encoder = ort.InferenceSession(str(onnx_dir / f"encoder_model{suffix}.onnx"), opts,
                                            providers=providers)
        self.decoder = ort.InferenceSession(str(onnx_dir / f"decoder_model{suffix}.onnx"), opts,
                                            providers=providers)
        cfg = json.loads((onnx_dir / "config.json").read_text())
        super().__init__(tokenizer, label_words, decoder_start=int(cfg["decoder_start_token_id"]),
                         vocab_size=int(cfg["vocab_size"]), **kw)

    def _encode(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.encoder.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})[0]

    def _logits(self, hidden: np.ndarray, mask: np.ndarray, rows: np.ndarray,
                dec: np.ndarray) -> np.ndarray:
        return self.decoder.run(["logits"], {"input_ids": dec, "encoder_hidden_states": hidden[rows],
                                             "encoder_attention_mask": mask[rows]})[0]

    def _target_logprobs(self, hidden: np.ndarray, mask: np.ndarray, rows: np.ndarray,
                         dec_ids: np.ndarray, targets: np.ndarray) -> np.ndarray:
        logits = self._logits(hidden, mask, rows, dec_ids).astype(np.float32, copy=False)
        top = logits.max(axis=-1, keepdims=True)
        lse = np.log(np.exp(logits - top).sum(axis=-1)) + top[..., 0]
        return np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0] - lse

    def _last_logits(self, hidden: np.ndarray, mask: np.ndarray, dec_ids: np.ndarray) -> np.ndarray:
        return self._logits(hidden, mask, np.arange(len(dec_ids)), dec_ids)[:, -1]


def _decoder_start(config: Any) -> int:
    start = config.decoder_start_token_id
    return int(start if start is not None else config.pad_token_id)


# ------------------------------------------------------------------------ export

def export_onnx(model_dir: str | Path, out_dir: str | Path, *, quantize: bool = False) -> Path:
    """optimum export (encoder + decoder, no past); ``quantize`` adds dynamic-int8 copies."""
    from optimum.exporters.onnx import main_export
    out_dir = Path(out_dir)
    main_export(str(model_dir), output=out_dir, task="text2text-generation", opset=18,
                do_validation=False, library_name="transformers", device="cpu")
    if quantize:
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig
        qconfig = AutoQuantizationConfig.avx2(is_static=False, per_channel=True)
        for name in ("encoder_model.onnx", "decoder_model.onnx"):
            ORTQuantizer.from_pretrained(out_dir, file_name=name).quantize(
                save_dir=out_dir, quantization_config=qconfig)
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
    from measure.probe import score
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


def source_validation(cell: dict[str, Any], data_dir: str, params: TrainParams,
                      drawn: list[tuple[str, np.ndarray]]) -> list[Example]:
    """Checkpoint-selection examples from the source languages only (see ``source_rows``)."""
    return [ex for _, frame in source_rows(cell, data_dir, params, drawn)
            for ex in _examples(frame)]


def run_seq2seq_cell(cell: dict[str, Any], data_dir: str, *, device: str | None = None,
                     workdir: str | Path | None = None) -> Any:
    """Fine-tune on the cell's sources, select on source validation, score every target."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from measure.cells import evaluate_targets, load_split, sample_training
    from measure.store import CellRecord

    params = Seq2SeqParams.from_dict(cell.get("params"))
    backend = cell.get("backend", "ort-fp32")
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not available for seq2seq: use one of {BACKENDS}")
    started = time.time()
    model_dir = resolve_seq2seq_model(cell["model"])
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(int(cell["seed"]))
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).to(dev)

    drawn = sample_training(cell, data_dir)
    train = [ex for lang, idx in drawn
             for ex in _examples(load_split(data_dir, cell["train_dataset"], lang,
                                            cell["train_split"]).iloc[idx])]
    val = source_validation(cell, data_dir, params, drawn)
    train_seq2seq(model, tokenizer, train, params, int(cell["seed"]), val)
    train_seconds = time.time() - started

    t_eval = time.time()
    kw = {"rank_eos": params.rank_eos, "max_source_length": params.max_source_length,
          "batch_size": params.eval_batch_size}
    tmp = Path(tempfile.mkdtemp(prefix="xlt-seq2seq-", dir=workdir))
    try:
        if backend == "torch-fp32":
            scorer: _Scorer = TorchScorer(model.float(), tokenizer, params.label_words, **kw)
        else:
            model.float().to("cpu").save_pretrained(tmp / "model")
            tokenizer.save_pretrained(tmp / "model")
            export_onnx(tmp / "model", tmp / "onnx", quantize=backend == "ort-int8")
            del model
            scorer = OrtScorer(tmp / "onnx", tokenizer, params.label_words,
                               quantized=backend == "ort-int8", **kw)
        results = evaluate_targets(cell, data_dir, lambda f: scorer.predict(
            [format_input(p, h) for p, h in zip(f["premise"], f["hypothesis"])],
            params.scoring, params.max_new_tokens))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return CellRecord(config=cell, results=results, started_at=started, finished_at=time.time(),
                      train_seconds=train_seconds, eval_seconds=time.time() - t_eval)
