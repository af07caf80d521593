"""Sentence encoders: PyTorch reference and ONNX Runtime (fp32 / dynamic int8).

Why ONNX Runtime: a probe grid needs every premise and hypothesis of 22 targets and
23 training pools embedded once; on 2 CPU cores an int8 ORT session (signed weights on
the VNNI kernels, see :mod:`measure.encoders.onnxtools`) with length-bucketed batches (sort by
length, pad per batch, one batch per core) is about 3.5x as fast as eager PyTorch (``xlt-measure bench``
measures it). The PyTorch path stays as the reference the ONNX path is tested against.

Backends: ``torch-fp32``, ``ort-fp32``, ``ort-int8-s8`` (signed weights, the default for
new batches) and ``ort-int8`` (optimum's avx2 config, unsigned weights: the scheme the
shipped probe grid was measured with, kept under its original name so that grid's cell
hashes and cached vectors stay valid).

Both encoders return L2-normalised mean-pooled embeddings (the multilingual-e5 recipe),
and take the e5 ``query: `` prefix as an argument so other encoders can pass ``""``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from measure.encoders import me5
from measure.encoders.onnxtools import optimum_export, quantise_dynamic
from measure.outputs import OutputError

PRECISIONS = ("fp32", "int8", "int8-s8")
# every method (probe encoder, fine-tuned classifier, seq2seq scorer) runs through these
BACKENDS = ("torch-fp32", "ort-fp32", "ort-int8-s8", "ort-int8")
DEFAULT_BACKEND = "ort-int8-s8"
INT8_SCHEMES = {"ort-int8-s8": "s8", "ort-int8": "u8"}  # backend -> measure.encoders.onnxtools scheme
E5_PREFIX = "query: "
# The s8 session, one batch per core, ran 733 texts/s at 32 texts per batch against 666
# at 64 (and 747 at 16, 568 at 128): a batch's activations then stay in the core's L2
# cache. PyTorch was fastest at 64 (219 vs 209 at 32), as was the u8 grid, which keeps
# 64: dynamic int8 vectors depend slightly on the batch, and its cache was built so.
S8_BATCH_SIZE = 32


def cache_root() -> Path:
    """``$XLT_CACHE_DIR``, else the user cache directory (models, ONNX exports, embeddings)."""
    return me5.default_cache_dir()


def check_cache_root() -> None:
    """Refuse (:class:`measure.outputs.OutputError`) a cache directory that is a file or
    cannot be created: the model build would fail deep inside with a traceback. A
    read-only one is not refused: it serves a model that is built and exported already."""
    root = cache_root()
    fix = "set XLT_CACHE_DIR to a directory (it holds the model and its ONNX export)"
    if root.exists() and not root.is_dir():
        raise OutputError(f"the cache directory {root} is a file, not a directory; {fix}")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the cache directory {root} "
                          f"({exc.strerror or exc}); {fix}") from None


def resolve_model(name_or_path: str) -> str:
    """``me5-small`` -> the locally built checkpoint; anything else passes through."""
    return me5.resolve_model(name_or_path)


def model_fingerprint(model_dir: str) -> str:
    """Content hash of a local checkpoint (config, tokenizer, weights); a hub id hashes its name.

    Caches (ONNX exports, embeddings) are keyed by this, so swapping weights under the
    same directory name never serves stale vectors.
    """
    path = Path(model_dir)
    h = hashlib.sha256()
    if not path.is_dir():
        h.update(f"hub:{model_dir}".encode())
        return h.hexdigest()[:16]
    for name in sorted(os.listdir(path)):
        f = path / name
        if f.is_file() and (name.endswith((".json", ".safetensors", ".bin", ".model", ".txt"))):
            h.update(name.encode())
            with open(f, "rb") as fh:
                hashlib.file_digest(fh, lambda: h)  # feeds the file into the running hash
    return h.hexdigest()[:16]


def encoder_key_for(model: str, backend: str) -> str:
    """The embedding-cache key of ``model`` run on ``backend``: content fingerprint,
    backend, prefix, pooling and maximum length, so vectors of two setups never mix."""
    return f"{model_fingerprint(resolve_model(model))}|{backend}|{E5_PREFIX}|mean-l2|256"


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's or taskset's
    share), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


_MISTRAL_TYPES = {"mistral", "mistral3", "voxtral", "ministral", "pixtral"}


def load_tokenizer(name_or_dir: str) -> Any:
    """``AutoTokenizer.from_pretrained``, minus a false alarm of transformers 4.57.3-4.57.x.

    Those versions warn "incorrect regex pattern ... This will lead to incorrect
    tokenization" for every *local* checkpoint saved by them, Mistral or not
    (huggingface/transformers#44031). For a local non-Mistral checkpoint (me5-small's XLM-R
    pieces, mT5) we pass ``fix_mistral_regex=False``, which is what those versions do anyway
    minus the warning; a Mistral checkpoint or a hub id loads untouched."""
    import transformers
    from packaging.version import Version
    from transformers import AutoTokenizer
    kw: dict[str, Any] = {}
    config = Path(name_or_dir) / "config.json"
    if Version("4.57.3") <= Version(transformers.__version__) < Version("5") and config.is_file():
        try:
            model_type = json.loads(config.read_text()).get("model_type")
        except (OSError, ValueError):
            model_type = None
        if model_type and model_type not in _MISTRAL_TYPES:
            kw["fix_mistral_regex"] = False
    return AutoTokenizer.from_pretrained(name_or_dir, **kw)


def length_buckets(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """Indices of texts grouped into batches of similar length (longest first).

    Padding is per batch, so sorting by length means a batch of short sentences never pays
    for one long one; yielding longest first surfaces memory problems immediately.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def padded_batches(ids: Sequence[Sequence[int]], batch_size: int,
                   pad: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(indices, input_ids, attention_mask) per length bucket, padded to the bucket's width.

    Shared by the encoder, the fine-tuned classifier and the seq2seq scorer so that every
    backend sees exactly the same batches (their outputs are compared to each other)."""
    for batch in length_buckets([len(x) for x in ids], batch_size):
        width = max(len(ids[i]) for i in batch)
        input_ids = np.full((len(batch), width), pad, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, i in enumerate(batch):
            input_ids[row, :len(ids[i])] = ids[i]
            mask[row, :len(ids[i])] = 1
        yield batch, input_ids, mask


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    mask = mask.astype(hidden.dtype)[..., None]
    summed = (hidden * mask).sum(axis=1)
    pooled = summed / np.clip(mask.sum(axis=1), 1e-9, None)
    return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


class _BaseEncoder:
    """Tokenise, bucket by length, run batches, pool. Subclasses provide ``_forward``."""

    name: str = "base"

    def __init__(self, model_dir: str, *, prefix: str = E5_PREFIX, max_length: int = 256,
                 batch_size: int = 64, parallel_batches: int = 1) -> None:
        if parallel_batches < 1:
            raise ValueError(f"parallel_batches must be >= 1, got {parallel_batches}")
        self.model_dir = model_dir
        self.prefix = prefix
        self.max_length = max_length
        self.batch_size = batch_size
        self.parallel_batches = parallel_batches
        self.tokenizer = load_tokenizer(model_dir)

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def encode(self, texts: Sequence[str], *, progress: bool = False,
               desc: str | None = None) -> np.ndarray:
        """L2-normalised mean-pooled embeddings, in the order of ``texts``."""
        texts = [self.prefix + t for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        ids = enc["input_ids"]
        out: np.ndarray | None = None
        bar = tqdm(total=len(texts), desc=desc or f"encode ({self.name})", unit="text",
                   disable=not progress, smoothing=0.05)
        batches = padded_batches(ids, self.batch_size, self.tokenizer.pad_token_id or 0)

        def pooled(item: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            batch, input_ids, mask = item
            return batch, _mean_pool(self._forward(input_ids, mask), mask)

        with self._batch_runner() as run:
            for batch, vecs in run(pooled, batches):
                if out is None:
                    out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
                out[batch] = vecs
                bar.update(len(batch))
        bar.close()
        assert out is not None
        return out

    @contextlib.contextmanager
    def _batch_runner(self) -> Iterator[Callable[..., Iterator[Any]]]:
        """``map`` over batches: in order, ``parallel_batches`` of them in flight at once.

        Why: a BERT-small batch is a chain of short ops, and splitting each op over the
        cores (intra-op threads) leaves them waiting on each other; giving each core a
        batch of its own (one-thread sessions, several ``run`` calls at once: ONNX Runtime
        and PyTorch release the GIL) ran the s8 encoder 17% and PyTorch 18% faster on 2
        cores. The batches are the same either way, and ONNX Runtime's outputs are
        unchanged to the last bit (its kernels give the same result on any thread count;
        PyTorch's fp32 GEMMs move by about 1e-7)."""
        if self.parallel_batches == 1:
            yield map
            return
        with ThreadPoolExecutor(self.parallel_batches, thread_name_prefix="encode",
                                initializer=self._worker_init) as pool:
            yield pool.map

    def _worker_init(self) -> None:
        """Runs once in each worker thread of ``_batch_runner``."""


class TorchEncoder(_BaseEncoder):
    """Eager PyTorch fp32: the reference implementation."""

    name = "torch-fp32"

    def __init__(self, model_dir: str, **kw: object) -> None:
        super().__init__(model_dir, **kw)  # type: ignore[arg-type]
        import torch
        from transformers import AutoModel
        self._torch = torch
        self.model = AutoModel.from_pretrained(model_dir).eval()
        self.dim = int(self.model.config.hidden_size)

    @contextlib.contextmanager
    def _batch_runner(self) -> Iterator[Callable[..., Iterator[Any]]]:
        """As the base class; the caller's PyTorch thread count is restored after."""
        before = self._torch.get_num_threads()
        try:
            with super()._batch_runner() as run:
                yield run
        finally:
            self._torch.set_num_threads(before)

    def _worker_init(self) -> None:
        """One intra-op thread per batch, set in each worker, where OpenMP keeps it."""
        self._torch.set_num_threads(1)

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self.model(input_ids=torch.from_numpy(input_ids),
                             attention_mask=torch.from_numpy(attention_mask))
        return out.last_hidden_state.float().numpy()


def ort_session(path: str | Path, *, threads: int | None = None, flush_denormals: bool = False,
                spin: bool = True, gpu: bool = False) -> object:
    """An ONNX Runtime session with the project's options, built in one place.

    ``flush_denormals``: GELU/softmax tails and log-softmax over large vocabularies leave
    denormal floats, which x86 handles ~100x slower; flushing them ran the s8 encoder 6%
    faster with the same embeddings to the last bit. ``spin = False``: idle threads then
    stop stealing the cores of other workers (int8 rank classification ran 42 vs 25
    pairs/s on a busy 2-core machine). ``gpu``: CUDA first when onnxruntime-gpu has it.
    """
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if flush_denormals:
        opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    wanted = ("CUDAExecutionProvider", "CPUExecutionProvider") if gpu else ("CPUExecutionProvider",)
    avail = ort.get_available_providers()
    return ort.InferenceSession(str(path), opts, providers=[p for p in wanted if p in avail])


def ort_feeds(inputs: set[str], input_ids: np.ndarray,
              attention_mask: np.ndarray) -> dict[str, np.ndarray]:
    """The feeds of an exported encoder: BERT-style exports also take ``token_type_ids``
    (all zeros: one segment, or the pair's second segment unmarked, as in XLM-R)."""
    feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "token_type_ids" in inputs:
        feeds["token_type_ids"] = np.zeros_like(input_ids)
    return feeds


class OrtEncoder(_BaseEncoder):
    """ONNX Runtime session over an exported (and optionally int8-quantised) encoder."""

    def __init__(self, model_dir: str, *, precision: str = "int8", threads: int | None = None,
                 parallel_batches: int | None = None, **kw: object) -> None:
        """``threads``: intra-op threads of one batch; ``parallel_batches``: batches in
        flight. By default one batch per usable core on a one-thread session (see
        ``_batch_runner``); an explicit ``threads`` alone means one batch at a time."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if parallel_batches is None:
            parallel_batches = 1 if threads else usable_cpus()
        if threads is None and parallel_batches > 1:
            threads = 1
        kw.setdefault("batch_size", S8_BATCH_SIZE if precision == "int8-s8" else 64)
        super().__init__(model_dir, parallel_batches=parallel_batches, **kw)  # type: ignore[arg-type]
        self.name = f"ort-{precision}"
        self.precision = precision
        onnx_file = onnx_model_path(model_dir, precision)
        # denormals are flushed for s8 only: the u8 grid's vectors were computed without it
        self.session = ort_session(onnx_file, threads=threads,
                                   flush_denormals=precision == "int8-s8")
        self._inputs = {i.name for i in self.session.get_inputs()}
        cfg = json.loads((onnx_file.parent / "config.json").read_text())
        self.dim = int(cfg["hidden_size"])

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(["last_hidden_state"],
                                ort_feeds(self._inputs, input_ids, attention_mask))[0]


def onnx_dir_for(model_dir: str, precision: str) -> Path:
    """Cache directory of one export (``-fp32``, ``-int8`` = u8 scheme, ``-int8-s8``)."""
    return cache_root() / "onnx" / f"{model_fingerprint(model_dir)}-{precision}"


def onnx_model_path(model_dir: str, precision: str = "int8") -> Path:
    """Export (and quantise) on first use; later calls return the cached file."""
    target = onnx_dir_for(model_dir, precision)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    name = "model.onnx" if precision == "fp32" else "model_quantized.onnx"
    if (target / name).is_file():
        return target / name
    if precision == "fp32":
        _export_fp32(model_dir, target)
    else:
        _quantise_int8(onnx_model_path(model_dir, "fp32").parent, target,
                       INT8_SCHEMES[f"ort-{precision}"])
    return target / name


#: marks the working directory of an export or quantisation (``<target>.tmp-XXXX``)
EXPORT_TMP_MARK = ".tmp-"
#: a working directory untouched for this long belongs to a killed process: removed
STALE_EXPORT_SECONDS = 3600.0


def _newest_mtime(path: Path) -> float:
    """The latest modification time of ``path`` and everything below it (an exporter that
    is still writing one large file keeps its directory "young")."""
    newest = path.lstat().st_mtime
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def remove_stale_dirs(parent: Path, match: Callable[[str], bool],
                      max_age_s: float = STALE_EXPORT_SECONDS) -> list[Path]:
    """Delete the directories in ``parent`` whose name ``match``es and whose newest file is
    older than ``max_age_s``: working directories of killed processes (a live export writes
    continuously, so it is never that old). Returns what was removed."""
    removed = []
    now = time.time()
    try:
        candidates = [d for d in parent.iterdir()
                      if match(d.name) and d.is_dir() and not d.is_symlink()]
    except OSError:
        return removed
    for d in candidates:
        try:
            if now - _newest_mtime(d) > max_age_s:
                shutil.rmtree(d)
                removed.append(d)
        except OSError:      # removed by another process meanwhile, or not ours to remove
            continue
    return removed


def remove_stale_exports(onnx_root: Path, max_age_s: float = STALE_EXPORT_SECONDS) -> list[Path]:
    """Export working directories (``<target>.tmp-*``) left in the ONNX cache by a killed
    process (a killed me5-small export once left 455 MB)."""
    return remove_stale_dirs(onnx_root, lambda name: EXPORT_TMP_MARK in name, max_age_s)


def _atomic_dir(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_exports(target.parent)
    return Path(tempfile.mkdtemp(prefix=target.name + EXPORT_TMP_MARK, dir=target.parent))


def _publish(tmp: Path, target: Path) -> None:
    try:
        os.rename(tmp, target)
    except OSError:  # another process published first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def export_working_dir(target: Path) -> Iterator[Path]:
    """A fresh working directory beside ``target``, published as ``target`` when the block
    succeeds and removed when it fails (a killed process leaves it to
    :func:`remove_stale_exports`)."""
    tmp = _atomic_dir(target)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish(tmp, target)


#: Messages the one-time export and quantisation print that need no action: the exporter
#: loads the checkpoint's tokenizer without fix_mistral_regex (huggingface/transformers#44031),
#: opset 17 is deliberate (the ORT kernels the bench measured), the JIT tracer's notes about
#: constants, transformers' torch_dtype rename, optimum's optional accelerate dedup check and
#: ONNX Runtime's generic "run pre-processing" hint (the s8 scheme fuses the graph itself).
_EXPORT_NOISE = ("incorrect regex pattern", "is lower than the recommended minimum opset",
                 "torch_dtype", "Weight deduplication check", "consider to run pre-processing",
                 "TracerWarning", "Converting a tensor to a Python", "results are registered as "
                 "constants", "might cause the trace to be incorrect")


class _DropNoise:
    """A logging filter for :data:`_EXPORT_NOISE` (attached only around export/quantisation)."""

    def filter(self, record: Any) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: let logging handle it
            return True
        return not any(n in msg for n in _EXPORT_NOISE)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the known noise of one export/quantisation step, nothing else and only here:
    warnings from the tracer/exporter modules and the listed log messages of transformers,
    optimum and ONNX Runtime; real errors still raise and other warnings still show."""
    import importlib
    import logging
    import warnings
    for lib in ("transformers.utils.logging", "optimum.utils.logging"):
        try:  # get_logger installs the library's own handler, which the filter must see
            importlib.import_module(lib).get_logger(lib)
        except Exception:  # noqa: BLE001 - library absent: nothing of it to silence
            pass
    names = ("", "transformers", "optimum", "onnxruntime", "onnxruntime.quantization",
             "onnxruntime.transformers", "onnxruntime.transformers.optimizer",
             "onnxruntime.transformers.onnx_model", "onnxruntime.transformers.fusion_utils")
    loggers = [logging.getLogger(n) for n in names]
    flt = _DropNoise()
    handlers = [h for lg in loggers for h in lg.handlers]
    for obj in (*loggers, *handlers):
        obj.addFilter(flt)
    root_had_handlers = bool(logging.getLogger().handlers)
    try:
        with warnings.catch_warnings():
            for n in _EXPORT_NOISE:
                warnings.filterwarnings("ignore", message=f".*{n}")
            try:
                from torch.jit import TracerWarning
                warnings.filterwarnings("ignore", category=TracerWarning)
            except ImportError:  # pragma: no cover - torch is part of xlt[measure]
                pass
            for mod in (r"torch\.onnx", r"transformers\.modeling_attn_mask_utils",
                        r"transformers\.models\..*", r"optimum\..*"):
                warnings.filterwarnings("ignore", category=UserWarning, module=mod)
                warnings.filterwarnings("ignore", category=FutureWarning, module=mod)
                warnings.filterwarnings("ignore", category=DeprecationWarning, module=mod)
            yield
    finally:
        for obj in (*loggers, *handlers):
            obj.removeFilter(flt)
        if not root_had_handlers:  # ORT's logging.warning() installs a root handler as a side effect
            root = logging.getLogger()
            for h in list(root.handlers):
                if h not in handlers:
                    root.removeHandler(h)


@contextlib.contextmanager
def export_progress(desc: str) -> Iterator[None]:
    """A status line with the elapsed time for a long one-time step (export, quantisation):
    updated every second on a terminal, a start and an end line otherwise."""
    import sys
    import threading
    import time
    t0 = time.monotonic()
    tty = sys.stderr.isatty()
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(1.0):
            print(f"\r{desc} ... {time.monotonic() - t0:.0f} s", end="", file=sys.stderr,
                  flush=True)

    print(f"{desc} (once per model; cached) ...", end="" if tty else "\n", file=sys.stderr,
          flush=True)
    ticker = threading.Thread(target=tick, daemon=True, name="xlt-progress")
    if tty:
        ticker.start()
    ok = False
    try:
        with _quiet_export():
            yield
        ok = True
    finally:
        stop.set()
        if tty:
            ticker.join()
        state = "done" if ok else "failed"
        print(f"{chr(13) if tty else ''}{desc}: {state} in {time.monotonic() - t0:.0f} s"
              + (" " * 10 if tty else ""), file=sys.stderr, flush=True)


def _export_fp32(model_dir: str, target: Path) -> None:
    """optimum's exporter, feature-extraction task (last_hidden_state output)."""
    with export_working_dir(target) as tmp, \
            export_progress(f"exporting {Path(model_dir).name} to ONNX (fp32)"):
        optimum_export(model_dir, tmp, task="feature-extraction", opset=17)


def _quantise_int8(fp32_dir: Path, target: Path, scheme: str) -> None:
    """Dynamic int8 quantisation (weights int8, activations quantised at run time)."""
    with export_working_dir(target) as tmp, \
            export_progress(f"quantising the ONNX model to int8 ({scheme} weights)"):
        quantise_dynamic(fp32_dir, tmp, scheme)


def _build_stage(model: str, stage: str) -> None:
    """One stage of the one-time model preparation (run in a child process)."""
    model_dir = resolve_model(model)
    if stage != "checkpoint":
        onnx_model_path(model_dir, stage)


def _missing_stages(model: str, backend: str) -> list[str]:
    """The preparation stages ``backend`` still needs: checkpoint, fp32 export, int8."""
    precision = backend.removeprefix("ort-")
    exports = [] if backend == "torch-fp32" else ["fp32"] + ([precision] if precision != "fp32"
                                                             else [])
    if model == me5.ME5_MODEL_ID:
        model_dir = me5.built_checkpoint_dir()
        if model_dir is None:
            return ["checkpoint", *exports]
    elif Path(model).is_dir():
        model_dir = Path(model)
    else:
        return []                         # a hub model: downloaded and exported in-process
    names = {"fp32": "model.onnx"}
    return [stage for stage in exports
            if not (onnx_dir_for(str(model_dir), stage)
                    / names.get(stage, "model_quantized.onnx")).is_file()]


def prepare_model_files(model: str, backend: str = DEFAULT_BACKEND, *,
                        checkpoint_only: bool = False) -> None:
    """Build the checkpoint, the ONNX export and its int8 quantisation, each in a child
    process of its own, when they are not cached yet.

    Why children: the three one-time steps peak at 1.3, 3.3 and 4.2 GB (me5-small, measured
    with /usr/bin/time); in the driver they added up to a 5.9 GB process that then stayed
    resident for the whole batch. In children each step's memory goes back when it ends,
    and the driver that encodes and writes the store stays near 1 GB. ``checkpoint_only``:
    just the checkpoint (what an encoder key needs), not the exports."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    stages = _missing_stages(model, backend)
    if checkpoint_only:
        stages = [stage for stage in stages if stage == "checkpoint"]
    for stage in stages:
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            pool.submit(_build_stage, model, stage).result()


def make_encoder(model: str, backend: str = DEFAULT_BACKEND, **kw: object) -> _BaseEncoder:
    """``backend``: one of ``BACKENDS`` (``ort-int8-s8`` is the fast int8 scheme)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    model_dir = resolve_model(model)
    if backend == "torch-fp32":
        return TorchEncoder(model_dir, **kw)
    return OrtEncoder(model_dir, precision=backend.removeprefix("ort-"), **kw)  # type: ignore[arg-type]
