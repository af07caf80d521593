"""Why a prediction row lies outside the training support of its system.

Why: a number without a warning is read as trustworthy. The fit records per system what it
saw (the card's ``support`` section: k range, examples per language, pretraining classes,
profile share, the URIEL featural spread of its targets); a row beyond that gets a reason,
a wider interval and ``out_of_support``. Nothing here needs a fitted model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from measure.knowledge.coverage import coverage, script_in_pretraining
from predictor.arrays import first_seen
from predictor.features import pair_distances
from predictor.models import key_codes

NO_PROFILE = ("no model-space profile for the target (every training target has one): "
              "`xlt-measure profile`")

#: a system counts as "every training target had a profile" from this share on
FULL_PROFILE_SHARE = 0.99


def add_reason(reason: list[str], rows: np.ndarray, text: str) -> None:
    """Append ``text`` to the reason of each row where ``rows`` is true (in place).

    Why shared: support, profile imputation and the class policy all explain a row in the
    same ``'; '``-joined text, in the order the pipeline meets them."""
    for i in np.flatnonzero(rows):
        reason[i] = f"{reason[i]}; {text}" if reason[i] else text


def config_reasons(tc: Mapping[str, Any], s: Mapping[str, Any]) -> list[str]:
    """Why a configuration is outside a system's training support ``s`` (k, examples per
    language); [] when it is inside."""
    why = []
    ns = [v for v in tc.values() if v > 0]
    k = len(ns)
    if not s["k"][0] <= k <= s["k"][1]:
        why.append(f"k = {k} outside the training range {s['k'][0]}-{s['k'][1]}")
    lo, hi = s["n_per_language"]
    if ns and (min(ns) < lo or max(ns) > hi):
        why.append(f"examples per language outside the training range {lo:,}-{hi:,}")
    return why


def target_reasons(s: Mapping[str, Any], model: str, tgt: str, iso: str,
                   pcl: str) -> list[str]:
    """Why an unmeasured target is outside a system's training support ``s``: a pretraining
    class no training target had, unknown coverage, an absent target whose script no corpus
    language is written in, or a URIEL featural distance to the nearest training target
    larger than any training target's to its nearest neighbour."""
    why = []
    cov = coverage(model, tgt)
    if pcl not in s.get("pclasses", [pcl]):
        why.append(f"no training target of this model is {pcl} from pretraining "
                   f"(trained on: {', '.join(s.get('pclasses', []))})")
    if pcl == "unknown":
        why.append(f"pretraining coverage unknown ({cov.reason})")
    sip = script_in_pretraining(model, cov.script)
    if pcl == "absent" and sip is None:
        why.append("absent from pretraining, and whether the corpus covers its "
                   "script is unknown (script or corpus table unknown)")
    elif pcl == "absent" and sip == 0.0:
        why.append(f"absent from pretraining, and no language of the corpus is "
                   f"written in its script ({cov.script})")
    thr = s.get("featural_nn_max")
    if thr is not None and math.isfinite(thr) and s.get("targets"):
        dist = pair_distances([iso], list(s["targets"]), "featural")[0]
        if np.isfinite(dist).any() and float(np.nanmin(dist)) > thr:
            why.append(f"far from every training target (URIEL featural distance "
                       f"{float(np.nanmin(dist)):.2f} > {thr:.2f})")
    return why


class SupportChecker:
    """The reasons of many rows against the card's ``support`` section (one entry per
    system), each part worked out once per distinct key: recommend asks about thousands of
    source sets sharing a handful of configurations and targets."""

    def __init__(self, support: Mapping[str, Any]) -> None:
        self.support = support

    def profile_expected(self, mm: str) -> bool:
        """Whether every training target of system ``mm`` had a model-space profile."""
        return self.support.get(mm, {}).get("profile_share", 0) >= FULL_PROFILE_SHARE

    def reasons(self, rows: pd.DataFrame, meta: pd.DataFrame, seen: np.ndarray,
                has_profile: np.ndarray | None) -> list[str]:
        """'' or why each row is outside the support: its configuration's reasons, the
        missing profile, then its target's (targets without measurements only), joined
        by '; '."""
        n = len(rows)
        if n == 0:
            return []
        tcs = rows["train_config"].tolist()
        mm_code, mm_uniq = pd.factorize(meta["mm"].astype(str).to_numpy(dtype=object))
        sups = [self.support.get(m) for m in mm_uniq.tolist()]
        has_s = np.array([bool(x) for x in sups], dtype=bool)[mm_code]
        share = np.array([(x or {}).get("profile_share", 0) >= FULL_PROFILE_SHARE
                          for x in sups], dtype=bool)[mm_code]
        seen = np.asarray(seen, bool)
        # the configuration's part, per (configuration, system)
        cfg_id = meta["cfg_id"].to_numpy(dtype=np.int64)
        cfg_code, first = first_seen(cfg_id * len(mm_uniq) + mm_code)
        cfg_parts = [config_reasons(tcs[i], sups[mm_code[i]]) if sups[mm_code[i]] else []
                     for i in first.tolist()]
        cfg_code = np.where(has_s, cfg_code, -1)
        tgt_code, tgt_parts = self._target_parts(rows, meta, np.flatnonzero(has_s & ~seen),
                                                 sups, mm_code)
        prof = (has_s & ~seen & share & ~np.asarray(has_profile, bool)
                if has_profile is not None else np.zeros(n, bool))
        # the joined text once per distinct combination of the three parts
        which, first = first_seen(((cfg_code + 1) * 2 + prof) * len(tgt_parts) + tgt_code)
        texts = ["; ".join((cfg_parts[cfg_code[i]] if cfg_code[i] >= 0 else [])
                           + ([NO_PROFILE] if prof[i] else []) + tgt_parts[tgt_code[i]])
                 for i in first.tolist()]
        return [texts[j] for j in which.tolist()]

    @staticmethod
    def _target_parts(rows: pd.DataFrame, meta: pd.DataFrame, need: np.ndarray,
                      sups: list[Any], mm_code: np.ndarray
                      ) -> tuple[np.ndarray, list[list[str]]]:
        """(each row's code into the parts, the parts): the target's reasons per (system,
        ISO 639-3, class) for the rows ``need``; code 0 (no reasons) for the others."""
        tgt_code = np.zeros(len(rows), dtype=np.int64)
        tgt_parts: list[list[str]] = [[]]
        if len(need):
            sub = meta.iloc[need]
            kinv, kfirst = first_seen(key_codes(sub, ("mm", "target", "pclass"))[0])
            tgt_l, model_l = rows["target"].tolist(), rows["model"].tolist()
            iso_l, pcl_l = meta["target"].tolist(), meta["pclass"].tolist()
            for j in kfirst.tolist():
                i = int(need[j])
                tgt_parts.append(target_reasons(sups[mm_code[i]], str(model_l[i]),
                                                str(tgt_l[i]), iso_l[i], pcl_l[i]))
            tgt_code[need] = kinv + 1
        return tgt_code, tgt_parts
