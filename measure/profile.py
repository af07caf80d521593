"""Language profiles measured in a model's own space, from unlabelled text.

Why: URIEL distances describe languages, not what a model does with them, and they add
almost nothing for unseen targets. A few hundred sentences of a language say
how the model's tokenizer cuts it (fertility, ``<unk>`` rate: does the vocabulary cover
the script?), where its sentences land relative to the source languages (centroid
distances), and -- given unlabelled NLI pairs -- how an English-trained classifier behaves
on it, which is a label-free estimate of transfer (Garg et al. 2022, ATC; Guillory et al.
2021, DoC). Nothing here reads a target label.

Files (shipped: ``models/profiles/<model>/``; a user's go to ``--profiles DIR``, else
``measure.knowledge.paths.user_profiles_dir()``; a shipped profile is never replaced):

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
  target's pairs; null without pairs); schema-1 files (without it) are still read. Optional
  within schema 2: ``pairs_check`` and ``provenance.text_sample``/``pairs_sample``
  (:mod:`measure.profile_inputs`: do the pairs look like NLI pairs; how much was read).

Why per source: on the 22 measured targets, the entropy of the per-source probe's
predicted-label distribution on the target's unlabelled pairs ranks single sources by their
measured F1 (k=1, XNLI-validation pool, zero-shot pairs, mean over seeds) with a mean
within-target Spearman of 0.71 on XNLI targets and 0.93 on AmericasNLI targets
(``check``), against about 0.23 / -0.30 for minus the URIEL geographic distance and
0.22 / 0.00 for the syntactic one. A probe that collapses onto one label on the target (low
entropy) has a low macro-F1 there. Per-source confidence, ATC and DoC rank *inversely*
(-0.48, -0.34, -0.23 on XNLI): an over-confident probe is a collapsed one.

Which pairs a shipped target's profile reads is its protocol
(:mod:`measure.profile_protocols`: the scored test pairs, pairs never scored, shifted
validation pairs, or none), recorded in its provenance. Reference centroids and the
shipped profiles' text use *disjoint* premises (XNLI is 15-way parallel: the first half of the unique validation premises, by pair_id, makes the
references; profiles read the second half), so a shipped XNLI target's distance to another
XNLI language measures language, not shared content.

Commands::

    xlt-measure profile --language quy --text quy.txt [--pairs quy.tsv] [--profiles DIR] [--force]
    python -m measure.profile build-shipped [--data-dir ../shared/data/nli] [--profiles DIR]
        [--protocol scored-pairs|disjoint-pairs|text-only] [--part A|B]
        [--pairs-source test|validation] [--bootstrap-seed S] [--reference FILE]
    python -m measure.profile check [--profiles DIR]   # label-free estimates vs measured F1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from threadpoolctl import threadpool_limits

from measure.data import DataError, load_parquet_split, resolve_data_dir
from measure.encoders.encoder import (BACKENDS, check_cache_root, make_encoder, model_fingerprint,
                                      resolve_model)
from measure.knowledge.languages import UnknownLanguageError, resolve_target
from measure.knowledge.paths import DefaultPathNotFound, shipped_profiles_dir, user_profiles_dir
from measure.methods.probe import DEFAULT_PROBE, make_classifier, pair_features
from measure.outputs import (OutputError, atomic_write_text, check_writable_dir,
                             refuse_input_as_output, same_file)
from measure.profile_check import check
from measure.profile_inputs import (BALANCED_ENTROPY_FLOOR, MAX_TEXT_LINES, MIN_LINES,
                                    MIN_PAIRS, ProfileInputError, describe_sample,
                                    looks_label_skewed, most_even_entropy, pairs_check,
                                    read_pairs_sample, read_text_sample)
from measure.profile_protocols import (AMERICAS, PAIRS_CONDITIONS, PAIRS_SOURCES, PROTOCOLS,
                                       SCORED_PAIRS, SHIPPED_SEED, XNLI_TARGETS, ProfileProtocol,
                                       check_directory, reference_premises, shipped_inputs)
from measure.profile_reference import (REFERENCE_FILE, Reference, find_reference, label_free,
                                       label_free_by_source)
from measure.stack import measure_stack_problem
from measure.store import code_version

#: the reference's 15 XNLI languages, which are also the shipped XNLI targets
REFERENCE_LANGUAGES = XNLI_TARGETS
SUPPORTED_MODELS = ("me5-small",)
DEFAULT_BACKEND = "ort-int8-s8"
PROFILE_SCHEMA = 2      # 2: label_free_by_source (schema-1 files are still read)


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
            "xlt_version": code_version(), "created_utc": _now()}
    srcs = list(REFERENCE_LANGUAGES)
    return Reference(srcs, np.stack(cents), coef, intercept, threshold, acc, conf_mean, meta,
                     src_languages=srcs,
                     src_coef=np.stack([probes[s][0] for s in srcs]).astype(np.float32),
                     src_intercept=np.stack([probes[s][1] for s in srcs]),
                     src_scalars=np.array([probes[s][2:] for s in srcs], dtype=np.float64))


# -- the profile ------------------------------------------------------------------------------
def compute_profile(language: str, lines: Sequence[str], enc: MemoEncoder, ref: Reference,
                    pairs: Sequence[tuple[str, str]] | None = None, *,
                    provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The profile dict of ``language`` (a code ``measure.knowledge.languages.resolve_target`` knows)."""
    lang = resolve_target(language)
    tok = tokenizer_stats(enc.tokenizer, lines)
    c = centroid(enc.encode(list(lines), desc=f"text {language}"))
    dists = {code: cosine_distance(c, ref.centroids[i]) for i, code in enumerate(ref.languages)}
    lf = by_src = check = None
    if pairs:
        u = enc.encode([p for p, _ in pairs], desc=f"pairs {language} (premises)")
        v = enc.encode([h for _, h in pairs], desc=f"pairs {language} (hypotheses)")
        lf = label_free(ref, ref.probabilities(u, v))
        by_src = label_free_by_source(ref, u, v)
        check = pairs_check(pairs, u, v)
    return {"schema": PROFILE_SCHEMA, "model": enc.model, "language": lang.code,
            "iso639_3": lang.iso639_3, "name": lang.name,
            "tokenizer": tok, "centroid_distance": dists, "label_free": lf,
            "label_free_by_source": by_src, "pairs_check": check,
            "provenance": {"backend": enc.backend, "model_fingerprint": enc.fingerprint,
                           "reference_fingerprint": ref.meta.get("model_fingerprint"),
                           "xlt_version": code_version(), "created_utc": _now(),
                           "n_lines": len(lines), **(provenance or {})}}


def write_profile(profile: dict[str, Any], profiles: Path) -> Path:
    """Write ``profiles/<model>/<code>.json`` atomically (a unique temporary file, then
    ``os.replace``): concurrent writers of one language never collide, the last one wins,
    and a killed or failed write leaves the previous file intact."""
    out = profiles / profile["model"] / f"{profile['language']}.json"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the profiles directory {out.parent} "
                          f"({exc.strerror or exc}); pass --profiles DIR") from None
    return atomic_write_text(out, json.dumps(profile, indent=1, sort_keys=True,
                                             ensure_ascii=False) + "\n")


def profile_target(profiles: Path, model: str, code: str, *, force: bool = False) -> Path:
    """The file a profile of ``code`` goes to, checked before any work: ``--profiles``
    must be a directory; a shipped profile is never replaced, and another existing
    profile only with ``force``."""
    if profiles.exists() and not profiles.is_dir():
        raise ProfileInputError(f"--profiles {profiles} is a file, not a directory; pass a "
                                f"directory (profiles go to DIR/{model}/<code>.json)")
    out = profiles / model / f"{code}.json"
    shipped = shipped_profiles_dir(required=False)
    if shipped is not None and out.exists() and same_file(out.parent, shipped / model):
        raise ProfileInputError(
            f"{out} is a shipped profile (the shipped predictor was fitted with it); "
            "xlt-measure profile never replaces one, even with --force: leave out --profiles "
            f"to write to your profiles directory ({user_profiles_dir()}, or $XLT_PROFILES_DIR)"
            ", or pass another --profiles DIR (rebuild shipped profiles with "
            "python -m measure.profile build-shipped)")
    if out.exists() and not force:
        raise ProfileInputError(f"{out} exists; pass --force to replace it, or --profiles DIR "
                                "to write elsewhere")
    return out


def profile_files(language: str, text: Path, pairs: Path | None = None, *,
                  model: str = "me5-small", profiles: Path | None = None,
                  backend: str = DEFAULT_BACKEND, min_lines: int = MIN_LINES,
                  min_pairs: int = MIN_PAIRS, encoder: MemoEncoder | None = None,
                  force: bool = False) -> Path:
    """Validate the inputs and the output, compute the profile and write it; returns the
    JSON path. ``profiles``: default :func:`measure.knowledge.paths.user_profiles_dir`.
    Every check that can fail runs before the model is loaded."""
    if model not in SUPPORTED_MODELS:
        raise ProfileInputError(f"--model {model!r}: profiles exist for {', '.join(SUPPORTED_MODELS)} "
                                "only (the reference centroids and probe are per model)")
    if backend not in BACKENDS:
        raise ProfileInputError(f"--backend {backend!r}: use one of {', '.join(BACKENDS)}")
    lang = resolve_target(language)       # UnknownLanguageError names close codes
    profiles = Path(profiles) if profiles is not None else user_profiles_dir()
    out = profile_target(profiles, model, lang.code, force=force)
    text_s = read_text_sample(text, min_lines=min_lines)
    pairs_s = read_pairs_sample(pairs, min_pairs=min_pairs) if pairs is not None else None
    refuse_input_as_output(out, {"the --text file": text, "the --pairs file": pairs},
                           "the profile")
    check_writable_dir(out.parent, "profiles directory",
                       "pass --profiles DIR (a writable directory) or set XLT_PROFILES_DIR")
    ref = Reference.load(find_reference(profiles, model))
    if encoder is None:
        check_cache_root()
    enc = encoder or MemoEncoder(model, backend)
    if ref.meta.get("model_fingerprint") != enc.fingerprint:
        raise ProfileInputError(f"the reference in {profiles / model} was built with another "
                                f"checkpoint ({ref.meta.get('model_fingerprint')} != "
                                f"{enc.fingerprint}): rebuild it with build-shipped")
    prov: dict[str, Any] = {"text_file": text.name, "text_sha256": text_s.sha256,
                            "text_sample": text_s.info}
    if pairs is not None and pairs_s is not None:
        prov.update({"pairs_file": pairs.name, "pairs_sha256": pairs_s.sha256,
                     "pairs_sample": pairs_s.info})
    return write_profile(compute_profile(language, text_s.items, enc, ref,
                                         pairs_s.items if pairs_s else None, provenance=prov),
                         profiles)


# -- helpers ----------------------------------------------------------------------------------
def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# -- shipped profiles ------------------------------------------------------------------------
def shipped_targets(only: Sequence[str] | None) -> list[tuple[str, str]]:
    """[(dataset, code)] of the shipped targets to build (``only``: a subset, checked)."""
    unknown = sorted(set(only or ()) - set(REFERENCE_LANGUAGES) - set(AMERICAS))
    if unknown:
        raise ProfileInputError(f"--languages: {unknown} are not shipped targets; choose from "
                                f"{' '.join(REFERENCE_LANGUAGES + AMERICAS)}")
    return [(ds, lang) for ds, langs in (("xnli", REFERENCE_LANGUAGES), ("americas_nli", AMERICAS))
            for lang in langs if not only or lang in only]


def shipped_reference(enc: MemoEncoder, data_dir: Path, ref_path: Path, *, rebuild: bool,
                      reference: Path | None = None) -> Reference:
    """The reference a build measures against: ``reference`` (an existing file, copied to
    ``ref_path``), else the one at ``ref_path`` unless ``rebuild``, else built afresh."""
    source = reference if reference is not None else None if rebuild else ref_path
    if source is None or not source.is_file():
        if reference is not None:
            raise ProfileInputError(f"--reference {reference}: no such file")
        ref = build_reference(enc, data_dir)
        ref.save(ref_path)
        return ref
    ref = Reference.load(source)
    if ref.meta.get("model_fingerprint") != enc.fingerprint:
        raise ProfileInputError(f"{source} was built with another checkpoint: rebuild "
                                "everything (build-shipped without --languages or --reference)")
    if not (ref_path.is_file() and same_file(source, ref_path)):
        ref.save(ref_path)
    return ref


def build_shipped(data_dir: Path, profiles: Path, *, backend: str = DEFAULT_BACKEND,
                  inputs_dir: Path | None = None, model: str = "me5-small",
                  only: Sequence[str] | None = None,
                  protocol: ProfileProtocol = SCORED_PAIRS, reference: Path | None = None,
                  log: Callable[[str], None] = print) -> list[Path]:
    """Reference + profiles of the 22 measured targets under ``protocol``
    (:mod:`measure.profile_protocols`), from unlabelled text only.

    ``only``: rebuild just these targets' profiles against the existing reference (it is
    built when missing); ``reference``: measure against this reference file (copied into
    ``profiles``) instead of building one. Every check runs before the model loads."""
    targets = shipped_targets(only)
    protocol.check(tuple(lang for _, lang in targets))
    check_directory(profiles / model, protocol, [lang for _, lang in targets])
    t0 = time.time()
    enc = MemoEncoder(model, backend)
    ref_path = profiles / model / REFERENCE_FILE
    ref = shipped_reference(enc, data_dir, ref_path, rebuild=not only, reference=reference)
    log(f"reference: {ref_path} (English probe out-of-fold accuracy "
        f"{100 * ref.source_accuracy:.1f}, ATC threshold {ref.atc_threshold:.3f}; "
        f"{time.time() - t0:.0f} s)")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        base = inputs_dir or Path(tmp)
        for dataset, lang in targets:
            t1, info = time.time(), {}
            text, pairs = shipped_inputs(data_dir, dataset, lang, base / dataset,
                                         protocol=protocol, info=info)
            text_s = read_text_sample(text)
            pairs_s = read_pairs_sample(pairs) if pairs is not None else None
            prov = {"text_file": f"{dataset}/{lang}/validation premises",
                    "text_sha256": text_s.sha256, "text_sample": text_s.info,
                    **protocol.provenance(dataset), **info}
            if pairs_s is not None:
                prov.update({"pairs_sha256": pairs_s.sha256, "pairs_sample": pairs_s.info})
            path = write_profile(compute_profile(lang, text_s.items, enc, ref,
                                                 pairs_s.items if pairs_s else None,
                                                 provenance=prov), profiles)
            out.append(path)
            log(f"{lang}: {path} ({time.time() - t1:.0f} s)")
    log(f"built {len(out)} profiles ({protocol.label}) in {time.time() - t0:.0f} s")
    return out


# -- command line -------------------------------------------------------------------------------
def add_profile_arguments(p: argparse.ArgumentParser) -> None:
    """``xlt-measure profile`` (registered by measure.cli; the logic lives here)."""
    p.add_argument("--language", required=True, help="language code (ISO 639-1/3 or dataset code)")
    p.add_argument("--text", type=Path, required=True,
                   help="UTF-8 text, one sentence per line (a few hundred lines suffice; a "
                        f"larger file is sampled: its first {MAX_TEXT_LINES:,} lines)")
    p.add_argument("--pairs", type=Path, default=None,
                   help="optional unlabelled NLI pairs, 'premise<TAB>hypothesis' per line "
                        "(the label-free estimates need them)")
    p.add_argument("--model", default="me5-small", help="model id (default me5-small)")
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS, metavar="BACKEND",
                   help=f"encoder backend: {', '.join(BACKENDS)} (default {DEFAULT_BACKEND})")
    p.add_argument("--profiles", type=Path, default=None, metavar="DIR",
                   help="write DIR/<model>/<code>.json (default $XLT_PROFILES_DIR, else "
                        f"your user data directory, {user_profiles_dir()}); a shipped "
                        "profile is never replaced")
    p.add_argument("--force", action="store_true",
                   help="replace an existing profile of this language in that directory")
    p.set_defaults(func=cmd_profile)


def cmd_profile(args: argparse.Namespace) -> int:
    prog = "xlt-measure profile"
    problem = measure_stack_problem()
    if problem:
        print(f"{prog}: error: {problem}", file=sys.stderr)
        return 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            path = profile_files(args.language, args.text, args.pairs, model=args.model,
                                 profiles=args.profiles, backend=args.backend, force=args.force)
        except (ProfileInputError, UnknownLanguageError, DefaultPathNotFound,
                OutputError) as exc:
            error: str | None = str(exc)
        else:
            error = None
    for w in caught:      # one line each, not the warnings module's file:line format
        print(f"{prog}: warning: {w.message}", file=sys.stderr)
    if error is not None:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    prof = json.loads(path.read_text(encoding="utf-8"))
    print(summary(prof))
    print(f"wrote {path}")
    return 0


def what_it_measured(prof: dict[str, Any]) -> list[str]:
    """What a profile was measured from and what the predictor can use it for (the
    command's output; the same words for every profile, shipped or user)."""
    prov = prof.get("provenance") or {}
    lf, by_src = prof.get("label_free"), prof.get("label_free_by_source")
    check = prof.get("pairs_check")
    text = describe_sample(int(prov.get("n_lines", 0)), prov.get("text_sample"), "lines")
    out = [f"measured: {text} of text -> tokenizer statistics and centroid distances"]
    if not lf:
        out.append("no --pairs: the predictor can use this profile's tokenizer and centroid "
                   "features only; the label-free estimates (label entropy, ATC, DoC, "
                   "per-source probes), which carry most of a profile's weight, need "
                   "unlabelled NLI pairs: rerun with --pairs FILE (premise<TAB>hypothesis)")
        return out
    pairs = describe_sample(int(lf["n_pairs"]), prov.get("pairs_sample"), "pairs")
    probes = "the English probe" + (f" and {len(by_src)} per-source probes" if by_src else "")
    out.append(f"          {pairs} -> label-free estimates of {probes}")
    if (prov.get("pairs_sample") or {}).get("header_line_skipped"):
        out.append(f"          (line {prov['pairs_sample']['header_line_skipped']} of the "
                   "pairs file is a header row: skipped)")
    if check and check.get("looks_like_nli") is False:
        out.append(f"WARNING: the pairs do not look like NLI pairs: {check['why']}. The "
                   "predictor can use the tokenizer and centroid features; give real "
                   "premise/hypothesis pairs (e.g. translated NLI pairs) or leave out --pairs")
    else:
        out.append("the predictor can use every profile feature (tokenizer, centroids, "
                   "label-free estimates)")
        out += balance_hint(by_src)
    return out


def balance_hint(by_src: dict[str, Any] | None) -> list[str]:
    """A note when even the most even per-source probe predicts skewed labels
    (:func:`measure.profile_inputs.looks_label_skewed`): the pairs may be label-skewed, or
    the language far from every source, so it is a note, not a refusal."""
    if not looks_label_skewed(by_src):
        return []
    ent = most_even_entropy(by_src)
    return [f"NOTE: even the most even source probe predicts skewed labels (entropy "
            f"{ent:.2f} bits; balanced NLI pairs in a language the model knows give "
            f">= {BALANCED_ENTROPY_FLOOR}). Either the language is far from every source, "
            "or the pairs are not balanced across entailment / neutral / contradiction: "
            "then the prediction comes out too low (80% entailment pairs: -4.2 macro-F1 on "
            "XNLI languages). Give pairs with roughly equal shares of the three labels."]


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
    return s + "".join(f"\n{line}" for line in what_it_measured(prof))


def add_build_arguments(b: argparse.ArgumentParser) -> None:
    """``python -m measure.profile build-shipped``: the reference and the shipped targets'
    profiles under a protocol (:mod:`measure.profile_protocols`)."""
    b.add_argument("--data-dir", type=Path, default=None, help="NLI data root (default as xlt-measure)")
    b.add_argument("--profiles", type=Path, default=None,
                   help="default: the shipped profiles/ in the models directory for "
                        "scored-pairs, else models/profiles-<tag> beside it (e.g. "
                        "profiles-disjoint-A)")
    b.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS, metavar="BACKEND",
                   help=f"one of {', '.join(BACKENDS)} (default {DEFAULT_BACKEND})")
    b.add_argument("--inputs-dir", type=Path, default=None,
                   help="keep the generated unlabelled text/pairs files here")
    b.add_argument("--languages", default=None,
                   help="comma-separated shipped targets to rebuild against the existing "
                        "reference (default: the reference and all 22)")
    b.add_argument("--protocol", default="scored-pairs", choices=PROTOCOLS,
                   help="where the pairs come from: scored-pairs (the test pairs scored, as "
                        "shipped so far), disjoint-pairs (pairs never scored), text-only "
                        "(no pairs); default scored-pairs")
    b.add_argument("--part", default=None, choices=("A", "B"),
                   help="disjoint-pairs: build the AmericasNLI profiles from this half of the "
                        "test set (to be scored on the other; required with AmericasNLI targets)")
    b.add_argument("--pairs-source", default="test", choices=PAIRS_SOURCES,
                   help="disjoint-pairs: 'validation' reads the target's validation pairs "
                        "instead (shifted: translations of the probes' training items)")
    b.add_argument("--pairs-condition", default="as-drawn", choices=PAIRS_CONDITIONS,
                   help="disjoint-pairs: break a condition the label-free estimates rely on, "
                        "to measure its cost: skew-entailment|skew-neutral|skew-contradiction "
                        "(80%% of the pairs carry that label), unrelated (each premise with "
                        "another pair's hypothesis), size-control (balanced, the same smaller "
                        "count); default as-drawn")
    b.add_argument("--bootstrap-seed", type=int, default=None, metavar="S",
                   help="resample the chosen pairs with replacement with seed S (profile noise)")
    b.add_argument("--reference", type=Path, default=None, metavar="FILE",
                   help="measure against this _reference.npz (copied into --profiles) instead "
                        "of building one (saves its embedding time)")


def cmd_build_shipped(args: argparse.Namespace) -> None:
    """Validate the protocol and the directories, then :func:`build_shipped`."""
    protocol = ProfileProtocol(args.protocol, args.part, args.pairs_source, args.bootstrap_seed,
                               args.pairs_condition)
    only = args.languages.split(",") if args.languages else None
    protocol.check(tuple(lang for _, lang in shipped_targets(only)))
    profiles = args.profiles
    if profiles is None:
        shipped = shipped_profiles_dir(required=True)
        profiles = (shipped if protocol.tag == "scored"
                    else shipped.parent / f"profiles-{protocol.tag}")
    problem = measure_stack_problem()
    if problem:
        raise ProfileInputError(problem)
    build_shipped(resolve_data_dir(args.data_dir), profiles, backend=args.backend,
                  inputs_dir=args.inputs_dir, only=only, protocol=protocol,
                  reference=args.reference)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m measure.profile",
                                     description="language profiles in a model's own space")
    sub = parser.add_subparsers(dest="command", required=True)
    add_profile_arguments(sub.add_parser("profile", help="profile one language (= xlt-measure profile)"))
    add_build_arguments(sub.add_parser("build-shipped", help="rebuild the reference and the 22 "
                                       "shipped profiles (under a protocol)"))
    c = sub.add_parser("check", help="label-free estimates vs measured English->target F1, "
                       "and per-source estimates vs measured single-source F1 within targets")
    c.add_argument("--profiles", type=Path, default=None)
    c.add_argument("--measurements", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "profile":
        return cmd_profile(args)
    try:
        if args.command == "build-shipped":
            cmd_build_shipped(args)
            return 0
        profiles = args.profiles or shipped_profiles_dir(required=True)
        meas = args.measurements or (profiles.parent / "measurements" / "me5-small-probe.parquet")
        for k, v in check(profiles, meas).items():
            print(f"{k:<28} {v:.3f}")
        return 0
    except (DataError, DefaultPathNotFound, ProfileInputError, FileNotFoundError,
            OutputError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
