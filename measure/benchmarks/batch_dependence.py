"""Do a text's vectors depend on which texts share its batch?

Why: ONNX Runtime's dynamic int8 quantisation computes one activation scale per tensor, i.e.
per batch, so a text's int8 vector depends on the texts encoded with it. The embedding cache
then holds vectors that depend on the order texts were first encoded in, and a re-measure
from another cache state or text order moves every score a little (docs/results.md,
"Item-level intervals"). This encodes the same texts in order twice and shuffled once.

    python -m measure.benchmarks.batch_dependence [--texts 512]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from measure.benchmarks.encoder_bench import bench_texts
from measure.data import resolve_data_dir
from measure.encoders.encoder import make_encoder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m measure.benchmarks.batch_dependence",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=512)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--backends", default="ort-int8,ort-int8-s8,ort-fp32")
    args = ap.parse_args(argv)
    if args.texts < 2:
        ap.error("--texts must be at least 2")
    texts = bench_texts(str(resolve_data_dir(args.data_dir)), args.texts)
    perm = np.random.default_rng(0).permutation(len(texts))
    for backend in args.backends.split(","):
        report(backend, texts, perm)
    return 0


def report(backend: str, texts: list[str], perm: np.ndarray) -> None:
    """Print how far shuffled batches move the vectors of ``backend``."""
    enc = make_encoder("me5-small", backend)
    t = time.time()
    a = np.asarray(enc.encode(texts))
    b = np.asarray(enc.encode([texts[i] for i in perm]))[np.argsort(perm)]
    c = np.asarray(enc.encode(texts))
    same_order = float(np.abs(a - c).max())
    d = np.abs(a - b).max(axis=1)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"{backend}: same order max|diff| {same_order:.2e}; shuffled batches: "
          f"{np.mean(d > 0):.3f} of vectors differ, max|diff| {d.max():.2e}, min cosine {cos.min():.5f} "
          f"({time.time() - t:.0f} s)")


if __name__ == "__main__":
    raise SystemExit(main())
