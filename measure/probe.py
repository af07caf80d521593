"""``python -m measure.probe``: how the probe's defaults were chosen (docs/measuring.md).

The code is :mod:`measure.benchmarks.probe_select`; the probe itself is
:mod:`measure.methods.probe`. This file only keeps the documented command working.
"""

from measure.benchmarks.probe_select import select_hyperparameters

if __name__ == "__main__":
    select_hyperparameters()
