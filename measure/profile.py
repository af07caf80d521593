"""Language profiles measured in a model's own space, from unlabelled text.

Why: URIEL distances describe languages, not what a model does with them, and they add
almost nothing for unseen targets (issue #11). A few hundred sentences of a language say
how the model's tokenizer cuts it (fertility, ``<unk>`` rate: does the vocabulary cover
the script?), where its sentences land relative to the source languages (centroid
distances), and -- given unlabelled NLI pairs -- how an English-trained classifier behaves
on it, which is a label-free estimate of transfer (Garg et al. 2022, ATC; Guillory et al.
2021, DoC). Nothing here reads a target label.

Files (``models/profiles/<model>/`` by default, or ``--profiles DIR``):

* ``_reference.npz`` -- per model: the reference centroids of the 15 XNLI languages
  (mean embedding of XNLI *validation premises*), the reference probe (logistic regression
  on English XNLI validation pairs, ``measure.methods.probe`` defaults) and its ATC threshold and
  source statistics from 5-fold out-of-fold predictions on the same English data; and the
  same probe trained on *each* of the 15 XNLI languages' validation pairs (``src_*`` arrays,
  coefficients stored as float32), so a profile says how a probe trained on source S behaves
  on the target -- information about *which* sources transfer, not only how well English
  does. Built by ``python -m measure.profile build-shipped``.
* ``<code>.json`` -- one profile per (model, language) with its provenance (lines, file
  sha256, model fingerprint, backend, xlt version). Schema 2 adds ``label_free_by_source``
  ({source: atc, doc, mean_confidence, label_entropy} of each per-source probe on the
  target's pairs; null without pairs); schema-1 files (without it) are still read.

Why per source: on the 22 measured targets, the entropy of the per-source probe's
predicted-label distribution on the target's unlabelled pairs ranks single sources by their
measured F1 (k=1, XNLI-validation pool, zero-shot pairs, mean over seeds) with a mean
within-target Spearman of 0.71 on XNLI targets and 0.93 on AmericasNLI targets
(``check``), against about 0.23 / -0.30 for minus the URIEL geographic distance and
0.22 / 0.00 for the syntactic one. A probe that collapses onto one label on the target (low
entropy) has a low macro-F1 there. Per-source confidence, ATC and DoC rank *inversely*
(-0.48, -0.34, -0.23 on XNLI): an over-confident probe is a collapsed one.

Reference centroids and the shipped profiles' text use *disjoint* premises (XNLI is
15-way parallel: the first half of the unique validation premises, by pair_id, makes the
references; profiles read the second half), so a shipped XNLI target's distance to another
XNLI language measures language, not shared content.

Commands::

    xlt-measure profile --language quy --text quy.txt [--pairs quy.tsv] [--profiles DIR]
    python -m measure.profile build-shipped [--data-dir ../shared/data/nli] [--profiles DIR]
    python -m measure.profile check [--profiles DIR]   # label-free estimates vs measured F1
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from threadpoolctl import threadpool_limits

from measure.data import DataError, load_parquet_split, resolve_data_dir
from measure.encoders.encoder import make_encoder, model_fingerprint, resolve_model
from measure.knowledge.languages import UnknownLanguageError, resolve_target
from measure.knowledge.nli import LABELS
from measure.knowledge.paths import MODELS, DefaultPathNotFound, find_default, resolve_default
from measure.methods.probe import DEFAULT_PROBE, make_classifier, pair_features
from measure.store import code_version

REFERENCE_FILE = "_reference.npz"
REFERENCE_LANGUAGES = tuple("ar bg de el en es fr hi ru sw th tr ur vi zh".split())
AMERICAS = tuple("aym bzd cni hch nah oto tar".split())
SUPPORTED_MODELS = ("me5-small",)
DEFAULT_BACKEND = "ort-int8-s8"
MIN_LINES = 10          # below this a centroid or a fertility is noise: refuse
WARN_LINES = 100        # below this: warn (a few hundred lines suffice)
MIN_PAIRS = 10
WARN_PAIRS = 100
SHIPPED_TEXT_LINES = 300
SHIPPED_PAIRS = 600
SHIPPED_SEED = 0
PROFILE_SCHEMA = 2      # 2: label_free_by_source (schema-1 files are still read)


class ProfileInputError(ValueError):
    """An input file or argument the profile cannot use; the message names the fix."""


# -- input files ---------------------------------------------------------------------------
def _read_utf8(path: Path, what: str) -> str:
    if not path.exists():
        raise ProfileInputError(f"{what} file {path} does not exist")
    if not path.is_file():
        raise ProfileInputError(f"{what} {path} is not a file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ProfileInputError(f"{what} file {path} is not UTF-8 (byte {exc.start}, line "
                                f"{line}); re-save it as UTF-8") from None


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_text_lines(path: Path, *, min_lines: int = MIN_LINES) -> list[str]:
    """Non-blank lines of a UTF-8 file (one sentence per line), stripped."""
    lines = [ln.strip() for ln in _read_utf8(path, "--text").splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise ProfileInputError(f"--text file {path} has no non-blank line: give one sentence "
                                "per line (a few hundred lines suffice)")
    _check_count(f"--text file {path} has {len(lines)} non-blank lines", len(lines), min_lines,
                 " (a few hundred give stable values)", WARN_LINES,
                 f"--text has only {len(lines)} lines: the profile will be noisy "
                 "(a few hundred lines are recommended)")
    return lines


def _check_count(have: str, n: int, minimum: int, why: str, recommended: int, noisy: str) -> None:
    """Fewer than ``minimum`` inputs is an error naming the file; fewer than
    ``recommended`` a warning (the estimates would be noisy), raised at the caller's caller."""
    if n < minimum:
        raise ProfileInputError(f"{have}; at least {minimum} are needed{why}")
    if n < recommended:
        warnings.warn(noisy, stacklevel=3)


def read_pairs(path: Path, *, min_pairs: int = MIN_PAIRS) -> list[tuple[str, str]]:
    """``premise<TAB>hypothesis`` lines (blank lines skipped); a bad line is named."""
    pairs: list[tuple[str, str]] = []
    for no, raw in enumerate(_read_utf8(path, "--pairs").splitlines(), start=1):
        if not raw.strip():
            continue
        parts = raw.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ProfileInputError(
                f"--pairs file {path}, line {no}: expected 'premise<TAB>hypothesis' (two "
                f"non-empty fields separated by one tab), got {len(parts)} field(s): "
                f"{raw[:60]!r}")
        pairs.append((parts[0].strip(), parts[1].strip()))
    _check_count(f"--pairs file {path} has {len(pairs)} pairs", len(pairs), min_pairs,
                 " for label-free estimates", WARN_PAIRS,
                 f"--pairs has only {len(pairs)} pairs: label-free estimates will be noisy")
    return pairs


# -- tokenizer statistics -------------------------------------------------------------------
def tokenizer_stats(tokenizer: Any, lines: Sequence[str]) -> dict[str, Any]:
    """Fertility, ``<unk>`` rate and single-character-piece share of ``lines``.

    Fertility is pieces per whitespace word; for languages written without spaces (Thai,
    Chinese, Japanese) a "word" is a whole phrase, so fertility is inflated and
    ``whitespace_segmented`` is False (more than 12 characters per whitespace token on
    average); ``pieces_per_char`` is comparable across writing systems.
    """
    n_pieces = n_unk = n_single = n_words = n_chars = 0
    unk_id = tokenizer.unk_token_id
    for line in lines:
        pieces = tokenizer.tokenize(line)
        ids = tokenizer.convert_tokens_to_ids(pieces)
        n_pieces += len(pieces)
        n_unk += sum(1 for i in ids if i == unk_id)
        n_single += sum(1 for p in pieces if len(p.replace("\u2581", "")) == 1)
        n_words += len(line.split())
        n_chars += sum(1 for ch in line if not ch.isspace())
    chars_per_word = n_chars / max(n_words, 1)
    return {"fertility": n_pieces / max(n_words, 1), "unk_rate": n_unk / max(n_pieces, 1),
            "single_char_share": n_single / max(n_pieces, 1),
            "pieces_per_char": n_pieces / max(n_chars, 1),
            "whitespace_segmented": bool(chars_per_word <= 12.0),
            "chars_per_word": chars_per_word, "n_pieces": n_pieces, "n_words": n_words}


# -- embeddings ------------------------------------------------------------------------------
class MemoEncoder:
    """An encoder with a per-process memo: every distinct text is embedded once.

    Why: the shipped build embeds overlapping sets (premises repeat in pairs; the English
    reference and the English profile share data); re-embedding would double the CPU time.
    """

    def __init__(self, model: str = "me5-small", backend: str = DEFAULT_BACKEND) -> None:
        self.model, self.backend = model, backend
        self.encoder = make_encoder(model, backend)
        self.fingerprint = model_fingerprint(resolve_model(model))
        self.tokenizer = self.encoder.tokenizer
        self._memo: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str], desc: str = "embed") -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if todo:
            vecs = self.encoder.encode(todo, progress=True, desc=desc)
            self._memo.update(zip(todo, vecs))
        return np.stack([self._memo[t] for t in texts]) if texts else np.zeros((0, 1))


def centroid(vectors: np.ndarray) -> np.ndarray:
    """Mean of the (L2-normalised) sentence embeddings."""
    return vectors.mean(axis=0)


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- reference -------------------------------------------------------------------------------
@dataclass
class Reference:
    """Reference centroids and the English-trained probe of one model."""

    languages: list[str]
    centroids: np.ndarray          # len(languages) x dim
    coef: np.ndarray               # 3 x 4*dim
    intercept: np.ndarray          # 3
    atc_threshold: float           # confidence threshold (Garg et al. 2022)
    source_accuracy: float         # out-of-fold accuracy on English, 0-1
    source_confidence: float       # out-of-fold mean max-softmax on English, 0-1
    meta: dict[str, Any]
    # the same probe trained on each source language (empty for a reference built before)
    src_languages: list[str] = dataclasses.field(default_factory=list)
    src_coef: np.ndarray | None = None        # len(src_languages) x 3 x 4*dim (float32)
    src_intercept: np.ndarray | None = None   # len(src_languages) x 3
    src_scalars: np.ndarray | None = None     # len(src_languages) x 3: threshold, acc, conf

    def probabilities(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self.probabilities_of(pair_features(u, v).astype(np.float64))

    def probabilities_of(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities of pair features ``X`` (computed once for many probes)."""
        return _softmax(X @ self.coef.T + self.intercept)

    def source_probe(self, i: int) -> "Reference":
        """The probe trained on ``src_languages[i]`` as a centroid-less Reference (so
        ``label_free`` and ``probabilities`` apply to it unchanged)."""
        assert self.src_coef is not None and self.src_intercept is not None \
            and self.src_scalars is not None
        t, a, c = (float(x) for x in self.src_scalars[i])
        return Reference([], np.zeros((0, self.centroids.shape[1])),
                         self.src_coef[i].astype(np.float64),
                         self.src_intercept[i].astype(np.float64), t, a, c,
                         {"train": f"xnli/{self.src_languages[i]}/validation"})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, languages=np.array(self.languages), centroids=self.centroids,
                            coef=self.coef, intercept=self.intercept,
                            scalars=np.array([self.atc_threshold, self.source_accuracy,
                                              self.source_confidence]),
                            meta=np.array(json.dumps(self.meta, sort_keys=True)),
                            **({} if not self.src_languages else {
                                "src_languages": np.array(self.src_languages),
                                "src_coef": np.asarray(self.src_coef, dtype=np.float32),
                                "src_intercept": np.asarray(self.src_intercept, np.float64),
                                "src_scalars": np.asarray(self.src_scalars, np.float64)}))

    @classmethod
    def load(cls, path: Path) -> "Reference":
        with np.load(path, allow_pickle=False) as z:
            s = z["scalars"]
            per_src: dict[str, Any] = {}
            if "src_languages" in z.files:      # references built before have none
                per_src = {"src_languages": [str(x) for x in z["src_languages"]],
                           "src_coef": z["src_coef"], "src_intercept": z["src_intercept"],
                           "src_scalars": z["src_scalars"]}
            return cls([str(x) for x in z["languages"]], z["centroids"], z["coef"],
                       z["intercept"], float(s[0]), float(s[1]), float(s[2]),
                       json.loads(str(z["meta"])), **per_src)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def reference_premises(frame: Any) -> tuple[list[str], list[str]]:
    """(reference half, profile half) of a validation split's unique premises, by pair_id.

    XNLI validation is 15-way parallel, so the same split of pair_ids separates content
    in every language.
    """
    order = frame.sort_values("pair_id")["premise"].astype(str).str.strip()
    uniq = list(dict.fromkeys(p for p in order if p))
    half = len(uniq) // 2
    return uniq[:half], uniq[half:]


def train_probe(X: np.ndarray, y: np.ndarray, seed: int = SHIPPED_SEED
                ) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """(coef, intercept, ATC threshold, out-of-fold accuracy, out-of-fold mean confidence)
    of the default probe on pair features ``X`` with labels ``y`` (5-fold out-of-fold
    predictions calibrate ATC/DoC; the returned probe is fitted on everything)."""
    clf = make_classifier({}, seed)
    with threadpool_limits(1):
        oof = cross_val_predict(clf, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                                method="predict_proba")
        clf.fit(X, y)
    conf = oof.max(axis=1)
    acc = float((oof.argmax(axis=1) == y).mean())
    # ATC: the threshold t with P_source(conf > t) = source accuracy
    threshold = float(np.quantile(conf, 1.0 - acc))
    lr = clf[-1]
    return (lr.coef_.astype(np.float64), lr.intercept_.astype(np.float64), threshold, acc,
            float(conf.mean()))


def build_reference(enc: MemoEncoder, data_dir: Path, *, seed: int = SHIPPED_SEED) -> Reference:
    """Reference centroids (first half of each XNLI language's validation premises), the
    English probe with out-of-fold ATC/DoC calibration (English validation only), and the
    same probe trained on each XNLI language's validation pairs (per-source probes)."""
    cents, probes, n_train = [], {}, {}
    for lang in REFERENCE_LANGUAGES:
        val = load_parquet_split(data_dir, "xnli", lang, "validation")
        ref, _ = reference_premises(val)
        cents.append(centroid(enc.encode(ref, desc=f"reference {lang}")))
        u = enc.encode(val["premise"].astype(str).tolist(), desc=f"probe {lang} premises")
        v = enc.encode(val["hypothesis"].astype(str).tolist(), desc=f"probe {lang} hypotheses")
        probes[lang] = train_probe(pair_features(u, v), val["label"].to_numpy(), seed)
        n_train[lang] = int(len(val))
    coef, intercept, threshold, acc, conf_mean = probes["en"]
    meta = {"model": enc.model, "backend": enc.backend, "model_fingerprint": enc.fingerprint,
            "probe": {**DEFAULT_PROBE, "seed": seed, "train": "xnli/en/validation",
                      "n_train": n_train["en"]},
            "source_probes": {"train": "xnli/<src>/validation", "n_train": n_train,
                              "coef_dtype": "float32"},
            "centroids_from": "xnli/<lang>/validation: first half of the unique premises by "
                              "pair_id", "n_centroid_premises": len(ref),
            "xlt_version": _xlt_version(), "created_utc": _now()}
    srcs = list(REFERENCE_LANGUAGES)
    return Reference(srcs, np.stack(cents), coef, intercept, threshold, acc, conf_mean, meta,
                     src_languages=srcs,
                     src_coef=np.stack([probes[s][0] for s in srcs]).astype(np.float32),
                     src_intercept=np.stack([probes[s][1] for s in srcs]),
                     src_scalars=np.array([probes[s][2:] for s in srcs], dtype=np.float64))


def find_reference(profiles: Path, model: str) -> Path:
    """``profiles/model/_reference.npz``, else the shipped one (``models/profiles``)."""
    cand = profiles / model / REFERENCE_FILE
    if cand.is_file():
        return cand
    shipped = default_profiles_dir(required=False)
    if shipped is not None and (shipped / model / REFERENCE_FILE).is_file():
        return shipped / model / REFERENCE_FILE
    raise ProfileInputError(f"no reference for {model!r} in {profiles / model} or the shipped "
                            "models/profiles: build it with 'python -m measure.profile "
                            "build-shipped --data-dir DIR'")


# -- label-free estimates -------------------------------------------------------------------
def label_free(ref: Reference, probs: np.ndarray) -> dict[str, Any]:
    """Confidence, predicted-label distribution, its entropy, ATC and DoC of target pairs."""
    conf = probs.max(axis=1)
    pred = probs.argmax(axis=1)
    dist = np.bincount(pred, minlength=3) / len(pred)
    nz = dist[dist > 0]
    entropy = float(-(nz * np.log2(nz)).sum()) + 0.0   # no "-0.000" for one label
    doc = ref.source_accuracy - (ref.source_confidence - float(conf.mean()))
    return {"n_pairs": int(len(pred)), "mean_confidence": float(conf.mean()),
            "label_distribution": {k: float(p) for k, p in zip(LABELS, dist)},
            "label_entropy": entropy, "atc": 100.0 * float((conf > ref.atc_threshold).mean()),
            "doc": 100.0 * doc}


SOURCE_STATS = ("atc", "doc", "mean_confidence", "label_entropy")


def label_free_by_source(ref: Reference, u: np.ndarray, v: np.ndarray
                         ) -> dict[str, dict[str, float]] | None:
    """{source: atc, doc, mean_confidence, label_entropy} of each per-source probe on the
    target pairs (embeddings ``u``, ``v``); None for a reference without per-source probes."""
    if not ref.src_languages:
        return None
    X = pair_features(u, v).astype(np.float64)
    out = {}
    for i, src in enumerate(ref.src_languages):
        probe = ref.source_probe(i)
        lf = label_free(probe, probe.probabilities_of(X))
        out[src] = {k: lf[k] for k in SOURCE_STATS}
    return out


# -- the profile ------------------------------------------------------------------------------
def compute_profile(language: str, lines: Sequence[str], enc: MemoEncoder, ref: Reference,
                    pairs: Sequence[tuple[str, str]] | None = None, *,
                    provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The profile dict of ``language`` (a code ``measure.knowledge.languages.resolve_target`` knows)."""
    lang = resolve_target(language)
    tok = tokenizer_stats(enc.tokenizer, lines)
    c = centroid(enc.encode(list(lines), desc=f"text {language}"))
    dists = {code: cosine_distance(c, ref.centroids[i]) for i, code in enumerate(ref.languages)}
    lf = by_src = None
    if pairs:
        u = enc.encode([p for p, _ in pairs], desc=f"pairs {language} (premises)")
        v = enc.encode([h for _, h in pairs], desc=f"pairs {language} (hypotheses)")
        lf = label_free(ref, ref.probabilities(u, v))
        by_src = label_free_by_source(ref, u, v)
    return {"schema": PROFILE_SCHEMA, "model": enc.model, "language": lang.code,
            "iso639_3": lang.iso639_3, "name": lang.name,
            "tokenizer": tok, "centroid_distance": dists, "label_free": lf,
            "label_free_by_source": by_src,
            "provenance": {"backend": enc.backend, "model_fingerprint": enc.fingerprint,
                           "reference_fingerprint": ref.meta.get("model_fingerprint"),
                           "xlt_version": _xlt_version(), "created_utc": _now(),
                           "n_lines": len(lines), **(provenance or {})}}


def write_profile(profile: dict[str, Any], profiles: Path) -> Path:
    out = profiles / profile["model"] / f"{profile['language']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(profile, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    tmp.replace(out)
    return out


def profile_files(language: str, text: Path, pairs: Path | None = None, *,
                  model: str = "me5-small", profiles: Path | None = None,
                  backend: str = DEFAULT_BACKEND, min_lines: int = MIN_LINES,
                  min_pairs: int = MIN_PAIRS, encoder: MemoEncoder | None = None) -> Path:
    """Validate the inputs, compute the profile and write it; returns the JSON path."""
    if model not in SUPPORTED_MODELS:
        raise ProfileInputError(f"--model {model!r}: profiles exist for {', '.join(SUPPORTED_MODELS)} "
                                "only (the reference centroids and probe are per model)")
    resolve_target(language)              # UnknownLanguageError names close codes
    lines = read_text_lines(text, min_lines=min_lines)
    pair_list = read_pairs(pairs, min_pairs=min_pairs) if pairs is not None else None
    profiles = profiles if profiles is not None else default_profiles_dir(required=True)
    ref = Reference.load(find_reference(profiles, model))
    enc = encoder or MemoEncoder(model, backend)
    if ref.meta.get("model_fingerprint") != enc.fingerprint:
        raise ProfileInputError(f"the reference in {profiles / model} was built with another "
                                f"checkpoint ({ref.meta.get('model_fingerprint')} != "
                                f"{enc.fingerprint}): rebuild it with build-shipped")
    prov: dict[str, Any] = {"text_file": text.name, "text_sha256": sha256_file(text)}
    if pairs is not None:
        prov.update({"pairs_file": pairs.name, "pairs_sha256": sha256_file(pairs)})
    return write_profile(compute_profile(language, lines, enc, ref, pair_list, provenance=prov),
                         profiles)


# -- helpers ----------------------------------------------------------------------------------
def _xlt_version() -> str:
    return code_version()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def default_profiles_dir(required: bool = True) -> Path | None:
    """``<models>/profiles`` where ``<models>`` is found like every default (measure.knowledge.paths)."""
    if required:
        return resolve_default(MODELS) / "profiles"
    found = find_default(MODELS)
    return None if found is None else found / "profiles"


# -- shipped profiles ------------------------------------------------------------------------
def shipped_inputs(data_dir: Path, dataset: str, language: str, out_dir: Path, *,
                   n_lines: int = SHIPPED_TEXT_LINES, n_pairs: int = SHIPPED_PAIRS,
                   seed: int = SHIPPED_SEED) -> tuple[Path, Path]:
    """Write the unlabelled inputs of one shipped target: text = premises of the validation
    split (the half not used by the reference centroids for XNLI; de-duplicated, first
    ``n_lines``), pairs = ``n_pairs`` test pairs drawn with ``seed``, labels dropped."""
    val = load_parquet_split(data_dir, dataset, language, "validation")
    if dataset == "xnli":
        _, lines = reference_premises(val)
    else:
        order = val.sort_values("pair_id")["premise"].astype(str).str.strip()
        lines = list(dict.fromkeys(p for p in order if p))
    test = load_parquet_split(data_dir, dataset, language, "test")
    # a few AmericasNLI rows have an empty premise or hypothesis: not a pair, left out
    keep = (test["premise"].astype(str).str.strip() != "") & \
        (test["hypothesis"].astype(str).str.strip() != "")
    test = test[keep.to_numpy()].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(test), min(n_pairs, len(test)), replace=False))
    out_dir.mkdir(parents=True, exist_ok=True)
    text, pairs = out_dir / f"{language}.txt", out_dir / f"{language}.tsv"
    clean = [ln.replace("\t", " ").replace("\n", " ") for ln in lines[:n_lines]]
    text.write_text("\n".join(clean) + "\n", encoding="utf-8")
    rows = test.iloc[idx]
    pairs.write_text("".join(f"{_one_line(p)}\t{_one_line(h)}\n" for p, h in
                             zip(rows["premise"], rows["hypothesis"])), encoding="utf-8")
    return text, pairs


def _one_line(s: Any) -> str:
    return " ".join(str(s).split())


def build_shipped(data_dir: Path, profiles: Path, *, backend: str = DEFAULT_BACKEND,
                  inputs_dir: Path | None = None, model: str = "me5-small",
                  only: Sequence[str] | None = None,
                  log: Callable[[str], None] = print) -> list[Path]:
    """Reference + profiles of the 22 measured targets, from unlabelled text only.

    ``only``: rebuild just these targets' profiles against the existing reference (it is
    built when missing)."""
    unknown = sorted(set(only or ()) - set(REFERENCE_LANGUAGES) - set(AMERICAS))
    if unknown:
        raise ProfileInputError(f"--languages: {unknown} are not shipped targets; choose from "
                                f"{' '.join(REFERENCE_LANGUAGES + AMERICAS)}")
    enc = MemoEncoder(model, backend)
    ref_path = profiles / model / REFERENCE_FILE
    if only and ref_path.is_file():
        ref = Reference.load(ref_path)
        if ref.meta.get("model_fingerprint") != enc.fingerprint:
            raise ProfileInputError(f"{ref_path} was built with another checkpoint: rebuild "
                                    "everything (build-shipped without --languages)")
    else:
        ref = build_reference(enc, data_dir)
        ref.save(ref_path)
    log(f"reference: {ref_path} (English probe out-of-fold accuracy "
        f"{100 * ref.source_accuracy:.1f}, ATC threshold {ref.atc_threshold:.3f})")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        base = inputs_dir or Path(tmp)
        for dataset, langs in (("xnli", REFERENCE_LANGUAGES), ("americas_nli", AMERICAS)):
            for lang in langs:
                if only and lang not in only:
                    continue
                text, pairs = shipped_inputs(data_dir, dataset, lang, base / dataset)
                lines, plist = read_text_lines(text), read_pairs(pairs)
                prov = {"text_file": f"{dataset}/{lang}/validation premises",
                        "text_sha256": sha256_file(text),
                        "pairs_file": f"{dataset}/{lang}/test (labels dropped, {len(plist)} "
                                      f"pairs, seed {SHIPPED_SEED})",
                        "pairs_sha256": sha256_file(pairs)}
                path = write_profile(compute_profile(lang, lines, enc, ref, plist,
                                                     provenance=prov), profiles)
                out.append(path)
                log(f"{lang}: {path}")
    return out


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


# -- command line -------------------------------------------------------------------------------
def add_profile_arguments(p: argparse.ArgumentParser) -> None:
    """``xlt-measure profile`` (registered by measure.cli; the logic lives here)."""
    p.add_argument("--language", required=True, help="language code (ISO 639-1/3 or dataset code)")
    p.add_argument("--text", type=Path, required=True,
                   help="UTF-8 text, one sentence per line (a few hundred lines suffice)")
    p.add_argument("--pairs", type=Path, default=None,
                   help="optional unlabelled NLI pairs, 'premise<TAB>hypothesis' per line")
    p.add_argument("--model", default="me5-small", help="model id (default me5-small)")
    p.add_argument("--backend", default=DEFAULT_BACKEND, help=f"encoder backend (default {DEFAULT_BACKEND})")
    p.add_argument("--profiles", type=Path, default=None,
                   help="profiles directory (default: profiles/ in the models directory)")
    p.set_defaults(func=cmd_profile)


def cmd_profile(args: argparse.Namespace) -> int:
    try:
        path = profile_files(args.language, args.text, args.pairs, model=args.model,
                             profiles=args.profiles, backend=args.backend)
    except (ProfileInputError, UnknownLanguageError, DefaultPathNotFound) as exc:
        print(f"xlt-measure profile: error: {exc}", file=sys.stderr)
        return 2
    prof = json.loads(path.read_text(encoding="utf-8"))
    print(summary(prof))
    print(f"wrote {path}")
    return 0


def summary(prof: dict[str, Any]) -> str:
    tok = prof["tokenizer"]
    d = prof["centroid_distance"]
    near = sorted(d, key=d.get)[:3]
    s = (f"{prof['language']} ({prof['name']}, {prof['model']}): fertility {tok['fertility']:.2f}"
         f"{'' if tok['whitespace_segmented'] else ' (no spaces: per-char ' + format(tok['pieces_per_char'], '.2f') + ')'}"
         f", unk {100 * tok['unk_rate']:.2f}%, single-char pieces "
         f"{100 * tok['single_char_share']:.1f}%; nearest centroids "
         + ", ".join(f"{c} {d[c]:.3f}" for c in near))
    lf = prof.get("label_free")
    if lf:
        s += (f"\n  label-free ({lf['n_pairs']} pairs): confidence {lf['mean_confidence']:.3f}, "
              f"label entropy {lf['label_entropy']:.3f} bits, ATC {lf['atc']:.1f}, "
              f"DoC {lf['doc']:.1f}")
    by_src = prof.get("label_free_by_source")
    if by_src:
        top = sorted(by_src, key=lambda c: -by_src[c]["label_entropy"])[:3]
        s += ("\n  per-source probes, highest predicted-label entropy (likely best sources): "
              + ", ".join(f"{c} {by_src[c]['label_entropy']:.2f}" for c in top))
    return s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m measure.profile",
                                     description="language profiles in a model's own space")
    sub = parser.add_subparsers(dest="command", required=True)
    add_profile_arguments(sub.add_parser("profile", help="profile one language (= xlt-measure profile)"))
    b = sub.add_parser("build-shipped", help="rebuild the reference and the 22 shipped profiles")
    b.add_argument("--data-dir", type=Path, default=None, help="NLI data root (default as xlt-measure)")
    b.add_argument("--profiles", type=Path, default=None)
    b.add_argument("--backend", default=DEFAULT_BACKEND)
    b.add_argument("--inputs-dir", type=Path, default=None,
                   help="keep the generated unlabelled text/pairs files here")
    b.add_argument("--languages", default=None,
                   help="comma-separated shipped targets to rebuild against the existing "
                        "reference (default: the reference and all 22)")
    c = sub.add_parser("check", help="label-free estimates vs measured English->target F1, "
                       "and per-source estimates vs measured single-source F1 within targets")
    c.add_argument("--profiles", type=Path, default=None)
    c.add_argument("--measurements", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "profile":
        return cmd_profile(args)
    try:
        profiles = args.profiles or default_profiles_dir(required=True)
        if args.command == "build-shipped":
            build_shipped(resolve_data_dir(args.data_dir), profiles, backend=args.backend,
                          inputs_dir=args.inputs_dir,
                          only=args.languages.split(",") if args.languages else None)
            return 0
        meas = args.measurements or (profiles.parent / "measurements" / "me5-small-probe.parquet")
        for k, v in check(profiles, meas).items():
            print(f"{k:<28} {v:.3f}")
        return 0
    except (DataError, DefaultPathNotFound, ProfileInputError, FileNotFoundError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
