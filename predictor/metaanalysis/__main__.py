"""``python -m predictor.metaanalysis``: see :mod:`predictor.metaanalysis.cli`."""

from predictor.metaanalysis.cli import main

raise SystemExit(main())
