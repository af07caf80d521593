"""How numbers, intervals and target classes look wherever the predictor writes them (card
tables, the report, the app), so one figure reads the same on every page."""

from __future__ import annotations

import math
from typing import Any

#: what a missing or non-finite number prints as
MISSING = "–"

#: one colour per target class, in the report's figures and the app's charts
CLASS_COLOURS: dict[str, str] = {"absent": "#7570b3", "xnli-low": "#d95f02", "high": "#1b9e77"}


def number(x: Any, nd: int = 2, sign: bool = False) -> str:
    """``x`` with ``nd`` decimals (``sign``: always with + or -); :data:`MISSING` for None,
    NaN or infinity."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return MISSING
    return f"{x:+.{nd}f}" if sign else f"{x:.{nd}f}"


def signed(x: Any, nd: int = 2) -> str:
    """:func:`number` with a sign: an effect or a difference."""
    return number(x, nd, sign=True)


def interval(lo: Any, hi: Any, nd: int = 2) -> str:
    """'[-0.12, +0.34]': a confidence interval of an effect."""
    return f"[{signed(lo, nd)}, {signed(hi, nd)}]"
