"""Features of a (model, method, training configuration, target) row.

``transformer.TransferFeatures`` is the scikit-learn transformer the predictor fits;
``columns`` documents its columns and names their groups and families; ``profiles`` reads
and checks the language profiles; ``distances`` caches URIEL distances; ``rows`` turns
prediction rows into the batch index the feature families are computed on.
"""

from predictor.features.columns import (DISTANCE_KINDS, FAMILY_GROUPS, FEATURE_FAMILIES,
                                        FEATURES, GROUPS, describe)
from predictor.features.distances import pair_distances
from predictor.features.profiles import NO_PROFILES, ProfileError, check_profiles
from predictor.features.rows import as_rows
from predictor.features.transformer import TransferFeatures

__all__ = ["DISTANCE_KINDS", "FAMILY_GROUPS", "FEATURE_FAMILIES", "FEATURES", "GROUPS",
           "NO_PROFILES", "ProfileError", "TransferFeatures", "as_rows", "check_profiles",
           "describe", "pair_distances"]
