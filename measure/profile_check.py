"""How the shipped profiles' label-free estimates relate to measured transfer
(``python -m measure.profile check``).

Why a module of its own: the check reads the measurement tables and the profiles, never a
model; it is the evidence for the profile family (see :mod:`measure.profile`'s docstring
for the figures), kept apart from the code that builds profiles.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from measure.profile_protocols import AMERICAS
from measure.profile_reference import SOURCE_STATS


def check(profiles: Path, measurements: Path, model: str = "me5-small") -> dict[str, float]:
    """Spearman between each label-free estimate and the measured English->target macro-F1
    (mean over seeds of the {"en": 2490} XNLI-validation probe rows)."""
    m = pd.read_parquet(measurements)
    m = m[(m["train_config"] == '{"en":2490}') & (m["train_dataset"] == "xnli")]
    f1 = m.groupby("target_language")["macro_f1"].mean()
    rows = []
    for code in f1.index:
        p = profiles / model / f"{code}.json"
        if p.is_file():
            prof = json.loads(p.read_text(encoding="utf-8"))
            lf = prof.get("label_free") or {}
            rows.append({"target": code, "f1": f1[code], **{k: lf.get(k) for k in
                         ("label_entropy", "mean_confidence", "atc", "doc")},
                         "fertility": prof["tokenizer"]["fertility"],
                         "unk_rate": prof["tokenizer"]["unk_rate"],
                         "dist_en": prof["centroid_distance"].get("en")})
    df = pd.DataFrame(rows).set_index("target")
    res = {c: float(spearmanr(df[c], df["f1"]).statistic) for c in df.columns if c != "f1"}
    res["n_targets"] = float(len(df))
    res.update(check_by_source(profiles, measurements, model))
    return res


def check_by_source(profiles: Path, measurements: Path | pd.DataFrame,
                    model: str = "me5-small") -> dict[str, float]:
    """Per-source label-free statistics vs measured single-source F1: for each target, the
    Spearman over its zero-shot sources (k=1 XNLI-validation rows, mean over seeds) between
    ``label_free_by_source[src][stat]`` and F1(src -> target), averaged over the XNLI and
    the AmericasNLI targets separately (keys ``src_<stat>_<xnli|americas>``)."""
    m = measurements if isinstance(measurements, pd.DataFrame) else pd.read_parquet(measurements)
    m = m[(m["k"] == 1) & (m["train_dataset"] == "xnli") & (m["train_split"] == "validation")]
    if "regime" in m:      # at k=1 both regimes are the same cells; count them once
        m = m[m["regime"] == m["regime"].min()]
    m = m.assign(src=m["train_config"].map(lambda c: next(iter(json.loads(c)))))
    f1 = m.groupby(["target_language", "src"])["macro_f1"].mean()
    per: dict[str, list[float]] = {}
    for code in f1.index.get_level_values(0).unique():
        p = profiles / model / f"{code}.json"
        if not p.is_file():
            continue
        by_src = json.loads(p.read_text(encoding="utf-8")).get("label_free_by_source") or {}
        y = f1[code]
        srcs = [s for s in y.index if s in by_src and s != code]
        if len(srcs) < 3:
            continue
        group = "americas" if code in AMERICAS else "xnli"
        for stat in SOURCE_STATS:
            r = spearmanr([by_src[s][stat] for s in srcs], y[srcs].to_numpy()).statistic
            if np.isfinite(r):
                per.setdefault(f"src_{stat}_{group}", []).append(float(r))
    return {k: float(np.mean(v)) for k, v in sorted(per.items())}
