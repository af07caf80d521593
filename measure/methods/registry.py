"""Every method xlt can measure with, by the name a batch config uses.

Adding a method is one module (a params class with ``from_dict`` that raises ValueError
naming the key, and ``run(cell, ctx) -> CellRecord``) and one entry here. The batch
config validates the method's table through ``params``, both engines run cells through
:func:`run_cell`, and the GPU rule (local: one worker; Ray: one GPU per task) and the
embedding step read ``needs_gpu`` / ``prepare``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure.cell import CellRecord, CellSpec
from measure.methods import finetune, probe, seq2seq
from measure.methods.base import RunContext
from measure.timing import PhaseTimer

#: prepare(model, cells, data_dir, cache_path, progress=..., timer=...) -> {backend: encoder key}
Prepare = Callable[..., dict[str, str]]


@dataclass(frozen=True)
class Method:
    """One method: its config table, its params class, how to run a cell, what it needs."""

    name: str
    table: str                                       # the config table: "probe" or "train"
    params: Callable[[Any], Any]                     # validates the table (ValueError)
    run: Callable[[CellSpec, RunContext], CellRecord]
    needs_gpu: bool                                  # trains a network: a GPU when there is one
    prepare: Prepare | None = None                   # embeds texts for the batch before any cell

    def embed(self, model: str, cells: list[CellSpec], data_dir: str, cache_path: Path, *,
              progress: bool = True, timer: PhaseTimer | None = None) -> dict[str, str]:
        """Run ``prepare`` for this method's cells ({backend: encoder key}; {} without it);
        ``timer`` receives its phases (model export, encoding)."""
        mine = [c for c in cells if c.method == self.name]
        if self.prepare is None or not mine:
            return {}
        return self.prepare(model, mine, data_dir, cache_path, progress=progress, timer=timer)


METHODS: dict[str, Method] = {
    "probe": Method("probe", "probe", probe.ProbeParams.from_dict, probe.run, needs_gpu=False,
                    prepare=probe.prepare),
    "finetune": Method("finetune", "train", finetune.FinetuneParams.from_dict, finetune.run,
                       needs_gpu=True),
    "seq2seq": Method("seq2seq", "train", seq2seq.Seq2SeqParams.from_dict, seq2seq.run,
                      needs_gpu=True),
}


def get_method(name: str) -> Method:
    """The method called ``name``; ValueError lists the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}: use one of {tuple(METHODS)}") from None


def run_cell(cell: CellSpec, ctx: RunContext) -> CellRecord:
    """Run one cell with its method; an exception becomes a failed cell (retried next run)."""
    try:
        return get_method(cell.method).run(cell, ctx)
    except Exception as exc:  # stored as a failed cell, retried on the next run
        return CellRecord(config=cell, status="failed", error=f"{type(exc).__name__}: {exc}")
