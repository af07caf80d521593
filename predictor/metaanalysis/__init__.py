"""The meta-analysis: does adding supervised languages k help zero-shot transfer, and to whom?

A pipeline of its own beside the predictor, sharing only the data reader and the feature
transformer: ``prepare`` (measurement rows -> strata, target classes, scores, each
measurement once) -> ``estimates`` (mixed model, two-way bootstrap, saturation) and
``designs`` (member gaps, add-one, Shapley, greedy vs random) -> ``summary`` (every number,
the headline) -> ``answer`` (the words) and ``report`` (report.md, summary.json, figures).
``cli`` is its command: ``python -m predictor.metaanalysis`` or ``xlt-predict report``.

Nothing is imported here, so the command's ``--help`` stays fast.
"""
