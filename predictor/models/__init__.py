"""The predictor's models, each fitted per system (a (model, method) pair: one score scale).

Every model here follows one small protocol, so the nested CV, the final fit and the
serving layer treat a baseline and a learner alike::

    model.fit(X, y, meta) -> model        # X: feature matrix, meta: predictor.models.row_meta
    model.predict(X, meta) -> ndarray     # one score per row of meta

``meta`` carries the keys models group by (system, pretraining class, target, config);
baselines ignore ``X``. Modules: :mod:`.meta` (the keys), :mod:`.baselines` (group means),
:mod:`.learners` (the unseen-target learner ``ZModel`` and its grid), :mod:`.seen_target`
(the measured-target memory), :mod:`.class_transfer` (a pretraining class borrowed from
systems that measured it).
"""

from predictor.models.baselines import BASELINES, GroupMean
from predictor.models.learners import GRID, LEARNED, WITHIN_HGB, ZModel
from predictor.models.meta import key_codes, row_meta
from predictor.models.seen_target import SeenTargetModel

__all__ = ["BASELINES", "GRID", "LEARNED", "WITHIN_HGB", "GroupMean", "SeenTargetModel", "ZModel",
           "key_codes", "row_meta"]
