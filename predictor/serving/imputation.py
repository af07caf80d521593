"""Profile columns for targets without a model-space profile, from their peers' profiles.

Why: every training target of a system had a profile (``xlt-measure profile``), so the
learner never saw the all-zero "no profile" columns an unprofiled target gets; read
literally they would move the prediction by whatever the learner makes of them. Instead an
unprofiled target takes the mean profile columns of the system's training targets of its
pretraining class (all of them when none is of that class), for the same configuration;
a profile made without ``--pairs`` keeps its own tokenizer columns and takes only the
label-free ones, and so does a profile whose pairs did not look like NLI pairs
(``pairs_check.looks_like_nli`` false, :func:`profile_pair_flags`): unrelated lines gave a
narrow, unflagged 58.7 [54.6, 62.9] when their label-free estimates were read literally.
The peers always read the profiles the predictor was trained with, never a user's
``--profiles`` directory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from measure.knowledge.coverage import pretraining_class
from measure.profile_inputs import looks_label_skewed
from predictor.features import GROUPS
from predictor.features.profiles import find_profile, profiles_root
from predictor.models import key_codes

#: the profile columns that only unlabelled pairs (``xlt-measure profile --pairs``) give
LABEL_FREE_COLUMNS = ("has_label_free", "prof_confidence", "prof_label_entropy", "prof_atc",
                      "prof_doc", "prof_src_entropy_max", "prof_src_entropy_mean",
                      "prof_src_entropy_wmean")


def _read_profiles(rows: pd.DataFrame, need: np.ndarray, dirs: Iterable[Any]
                   ) -> tuple[np.ndarray, np.ndarray, dict[int, dict]]:
    """(rows ``need`` by position, each one's (model, target) code, {code: the profile that
    was read}): for each distinct (model, target), the first of ``dirs`` (in the order the
    transformer looks: a user's directory, then the shipped one) that has a profile holds
    the one that was read. Each is looked up once: recommend asks about thousands of rows
    of a few targets."""
    idx = np.flatnonzero(need)
    roots = [r for r in (profiles_root(d) for d in dirs) if r is not None and r.is_dir()]
    if not len(idx) or not roots:
        return idx, np.zeros(0, np.int64), {}
    codes, _ = key_codes(rows.iloc[idx], ("model", "target"))
    _, first = np.unique(codes, return_index=True)
    models, targets = rows["model"].tolist(), rows["target"].tolist()
    read: dict[int, dict] = {}
    for j in first.tolist():
        i = int(idx[j])
        for root in roots:
            prof, _ = find_profile(root, str(models[i]), str(targets[i]))
            if prof is not None:
                read[int(codes[j])] = prof
                break
    return idx, np.asarray(codes), read


def profile_pair_flags(rows: pd.DataFrame, need: np.ndarray, dirs: Iterable[Any]
                       ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """For the rows ``need`` (a profiled target the profile features read), from one look-up
    of each (model, target)'s profile (``dirs`` as :func:`_read_profiles`): (rows whose pairs
    do not look like NLI pairs, each such row's ``pairs_check.why``, rows whose per-source
    probes all predict skewed labels: :func:`measure.profile_inputs.looks_label_skewed`, only
    meaningful where the probes do not collapse anyway, a language in pretraining)."""
    not_nli = np.zeros(len(rows), bool)
    skewed = np.zeros(len(rows), bool)
    why = [""] * len(rows)
    idx, codes, read = _read_profiles(rows, need, dirs)
    bad: dict[int, str] = {}
    skew: set[int] = set()
    for c, prof in read.items():
        check = prof.get("pairs_check")
        if isinstance(check, dict) and check.get("looks_like_nli") is False:
            bad[c] = str(check.get("why") or "")
        elif looks_label_skewed(prof.get("label_free_by_source")):
            skew.add(c)
    for j, c in enumerate(codes.tolist()):
        if c in bad:
            not_nli[idx[j]] = True
            why[idx[j]] = bad[c]
        skewed[idx[j]] = c in skew
    return not_nli, why, skewed


class ProfileImputer:
    """Imputes profile columns from peers. ``systems``: the card's ``models`` entries
    (each with its training ``targets``); ``imputed``: the systems whose every training
    target had a profile and that have an unseen-target model (only their rows are
    imputed); ``features``: the fitted transformer reading the shipped profiles."""

    def __init__(self, systems: Iterable[Mapping[str, Any]], imputed: Iterable[str],
                 features: Any) -> None:
        self.systems = list(systems)
        self.imputed = set(imputed)
        self.features = features
        self._peers: dict[tuple[str, str], list[str]] | None = None

    def peers(self) -> dict[tuple[str, str], list[str]]:
        """Training targets by (system, pretraining class), and by (system, '*') all of
        them; worked out on first use (a query of a profiled target never needs them)."""
        if self._peers is None:
            peers: dict[tuple[str, str], list[str]] = {}
            for entry in self.systems:
                mm = f"{entry['model']}|{entry['method']}"
                for t in entry.get("targets", []):
                    pcl = pretraining_class(str(t), str(entry["model"]))
                    peers.setdefault((mm, pcl), []).append(str(t))
                    peers.setdefault((mm, "*"), []).append(str(t))
            self._peers = peers
        return self._peers

    def impute(self, rows: pd.DataFrame, X: np.ndarray, names: list[str], meta: pd.DataFrame,
               hp: np.ndarray | None, skip: np.ndarray | None = None,
               distrust: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(``X`` with imputed profile columns, rows whose label-free columns were imputed
        although they have a profile). ``hp``: each row has a profile (None: the features
        have no profile columns); ``skip``: rows whose point the class policy replaces;
        ``distrust``: profiled rows whose label-free estimates are not to be read (pairs
        that do not look like NLI pairs: :func:`profile_pair_flags`)."""
        hlf = (X[:, names.index("has_label_free")] > 0 if "has_label_free" in names
               else np.ones(len(X), bool))
        if distrust is not None:
            hlf = hlf & ~np.asarray(distrust, bool)
        no_lf = np.zeros(len(X), bool) if hp is None else (hp & ~hlf)
        if hp is None or (hp.all() and not no_lf.any()):
            return X, np.zeros(len(X), bool)
        todo = (~hp | no_lf) & ~(np.zeros(len(X), bool) if skip is None
                                 else np.asarray(skip, bool))
        row_key, subs, starts = self._peer_rows(rows, meta, todo)
        imputed_lf = np.zeros(len(X), bool)
        if not subs["target"]:
            return X, imputed_lf
        cols = [names.index(c) for c in GROUPS["profile"] if c in names]
        # only the profile columns of the peers' rows (no URIEL distances), in ``cols`` order
        Xs = self.features.transform_columns(pd.DataFrame(subs), [names[c] for c in cols])
        st = np.asarray(starts, dtype=np.int64)
        counts = np.diff(np.append(st, len(subs["target"])))
        means = np.add.reduceat(Xs, st, axis=0) / counts[:, None]
        at = {c: j for j, c in enumerate(cols)}
        all_lf = (np.minimum.reduceat(
            (Xs[:, at[names.index("has_label_free")]] > 0).astype(int), st) > 0) \
            if "has_label_free" in names and names.index("has_label_free") in at \
            else np.ones(len(st), bool)
        X = X.copy()
        full = np.flatnonzero((row_key >= 0) & ~hp)
        if len(full):
            X[np.ix_(full, cols)] = means[row_key[full]]
        part = np.flatnonzero((row_key >= 0) & hp)
        lf_cols = [names.index(c) for c in LABEL_FREE_COLUMNS if c in names]
        if lf_cols and len(part):
            part = part[all_lf[row_key[part]]]
            X[np.ix_(part, lf_cols)] = means[np.ix_(row_key[part], [at[c] for c in lf_cols])]
            imputed_lf[part] = True
        return X, imputed_lf

    def _peer_rows(self, rows: pd.DataFrame, meta: pd.DataFrame, todo: np.ndarray
                   ) -> tuple[np.ndarray, dict[str, list[Any]], list[int]]:
        """The peers' rows to featurise, column by column: (each row's key, -1 for none;
        the columns; where each key's block of peer rows starts). The imputed columns
        depend on (configuration, system, class) only, so each distinct key gets one block
        (recommend asks for thousands of source sets per target)."""
        mm_all = meta["mm"].astype(str).to_numpy()
        pcl_all = meta["pclass"].tolist()
        cfg_id = meta["cfg_id"].to_numpy(dtype=np.int64)
        other = [c for c in rows.columns if c not in ("target", "target_iso3")]
        values = {c: rows[c].tolist() for c in other}
        peers_of = self.peers()
        key_of: dict[tuple[int, str, str], int] = {}
        row_key = np.full(len(rows), -1, dtype=np.int64)
        subs: dict[str, list[Any]] = {c: [] for c in other + ["target"]}
        starts: list[int] = []
        for i in np.flatnonzero(todo).tolist():
            mm = mm_all[i]
            if mm not in self.imputed:
                continue
            key = (int(cfg_id[i]), mm, str(pcl_all[i]))
            kid = key_of.get(key)
            if kid is None:
                peers = peers_of.get((mm, key[2])) or peers_of.get((mm, "*"), [])
                if not peers:
                    continue
                kid = key_of[key] = len(key_of)
                starts.append(len(subs["target"]))
                for c in other:
                    subs[c].extend([values[c][i]] * len(peers))
                subs["target"].extend(peers)
            row_key[i] = kid
        return row_key, subs, starts
