"""One-off studies of the data and the predictor, each a command
(``python -m predictor.studies.<name>``); nothing in the predictor imports them.

``noise_floor`` -- how much within-target variation any configuration feature can explain;
``no_profile_check`` -- where languages without profile or rows land; ``bench_recommend``
-- two fitted predictors' recommend times, alternated in one process.
"""
