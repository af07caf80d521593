"""Where a measurement run's time goes, phase by phase, printed at the end of every run.

Why: every change to the measurement path is judged as a ratio against the run before it
(docs/benchmarks.md), so a run must say, without a profiler, how long it spent converting
and exporting the model, encoding (and at what rate), training, scoring and writing the
store. Wall seconds are per phase of the driver; the cell phase also sums the CPU-seconds
the workers report per cell (``train_seconds``, ``eval_seconds``), which exceed its wall
time when several workers run at once.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

#: the driver's phases, in the order a run goes through them
PHASES = ("plan", "model", "encode", "cells", "store")
LABELS = {"plan": "plan (read config, skip stored cells)",
          "model": "model build, ONNX export, quantisation",
          "encode": "encoding", "cells": "cells (train + score, all workers)",
          "store": "store writes (inside cells)"}


@dataclass
class PhaseTimer:
    """Seconds per phase, texts encoded, and the workers' per-cell seconds."""

    wall: dict[str, float] = field(default_factory=dict)
    texts_encoded: int = 0
    train_cpu: float = 0.0
    score_cpu: float = 0.0
    cells: int = 0
    started: float = field(default_factory=time.perf_counter)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the block's wall time to phase ``name`` (phases may be entered repeatedly)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - t0

    def add_cell(self, train_seconds: float | None, eval_seconds: float | None) -> None:
        self.cells += 1
        self.train_cpu += train_seconds or 0.0
        self.score_cpu += eval_seconds or 0.0

    @property
    def total(self) -> float:
        return time.perf_counter() - self.started

    @property
    def texts_per_s(self) -> float | None:
        secs = self.wall.get("encode", 0.0)
        return self.texts_encoded / secs if self.texts_encoded and secs > 0 else None

    def as_dict(self) -> dict[str, float | int | None]:
        """Flat figures for logs and benchmarks (seconds rounded to 0.1)."""
        out: dict[str, float | int | None] = {f"{k}_s": round(v, 1) for k, v in self.wall.items()}
        rate = self.texts_per_s
        out.update(total_s=round(self.total, 1), texts_encoded=self.texts_encoded,
                   texts_per_s=None if rate is None else round(rate, 1), cells=self.cells,
                   train_cpu_s=round(self.train_cpu, 1), score_cpu_s=round(self.score_cpu, 1),
                   peak_rss_gb=round(peak_rss_gb(), 2))
        return out

    def report(self) -> str:
        """The phase table ``xlt-measure run`` prints at the end."""
        total = self.total
        lines = ["phase                                      wall s   share"]
        for name in PHASES:
            if name not in self.wall:
                continue
            secs = self.wall[name]
            extra = ""
            if name == "encode" and self.texts_encoded:
                rate = self.texts_per_s
                extra = f"  {self.texts_encoded:,} texts" + (f", {rate:,.0f} texts/s" if rate else "")
            if name == "cells" and self.cells:
                extra = (f"  {self.cells:,} cells; worker CPU-s: train {self.train_cpu:,.0f}, "
                         f"score {self.score_cpu:,.0f}")
            lines.append(f"{LABELS[name]:<42} {secs:7.1f}  {100 * secs / max(total, 1e-9):5.1f}%"
                         + extra)
        lines.append(f"{'total':<42} {total:7.1f}  peak RSS {peak_rss_gb():.2f} GB "
                     "(largest process)")
        return "\n".join(lines)


def peak_rss_gb() -> float:
    """The largest resident set of this process or any finished child (GB; Linux kB units)."""
    kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
             resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return kb / (1024 ** 3 if sys.platform == "darwin" else 1024 ** 2)
