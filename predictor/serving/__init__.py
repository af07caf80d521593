"""The predictor as a service: what query, batch, recommend, the app and an HTTP API call.

``load_predictor`` reads a fitted predictor directory; the ``Predictor`` it returns
validates requests and answers them with intervals, support reasons and the class policy.
"""

from predictor.serving.batch import answer_batch
from predictor.serving.explain import FeatureModel
from predictor.serving.predictor import (Predictor, default_predictor_dir, default_profiles_dir,
                                        load_predictor)
from predictor.serving.requests import PredictionInputError

__all__ = ["FeatureModel", "PredictionInputError", "Predictor",
           "answer_batch", "default_predictor_dir", "default_profiles_dir", "load_predictor"]
