"""Defaults the report's command line and its modules share (no imports: ``--help`` stays
fast, and no module has to import the command to read them)."""

#: item replicates of ``xlt-predict report --items`` (predictor.metaanalysis.items)
ITEM_REPS = 40
