"""Pretraining coverage of a target language, per model: present, absent or unknown.

Why this module: the predictor's strongest signal is whether (and how much of) the target
language a model saw in pretraining. A language missing from a *complete* corpus table is
**absent** (size 0, its own flag), not "unknown"; "unknown" is reserved for corpora whose
language list is not documented, and then the feature row says so, so that a prediction
can widen. No size is ever imputed from other languages (no median, no mean).

Knowledge used (all of it in ``measure/resources/coverage.csv``, built by
``python -m measure.build_languages`` from ``shared/data/published/pretraining_sizes``, plus
the documented constants below):

* ``cc100`` -- XLM-R's pretraining corpus (Conneau et al., 2020, Table 6: 100 languages,
  counting 7 romanised/traditional-script variants). The published size table
  (``xlmr_cc100_bytes.csv``, via microsoft/Litmus) lists 87 of them; the other six
  *languages* of XLM-R's list -- eo, hr, la, mn, sa, sr -- are present with an unlisted
  size (``measure.build_languages.CC100_UNLISTED``). The table plus these six are XLM-R's complete language list:
  every other language is absent. (The public statmt.org CC-100 release also has qu, yo,
  ig, ... which XLM-R was *not* trained on; this table is about the model's pretraining.)
  multilingual-e5-small descends from Multilingual-MiniLM, distilled from XLM-R on the
  same corpus (shared/data/README.md), so ``me5-small`` uses it too.
* ``wikipedia`` -- mBERT's Wikipedia dump sizes (``mbert_wikipedia_bytes.csv``): 88 of
  mBERT's 104 languages, so the table is *incomplete*: a language missing from it is
  unknown, not absent.
* ``tulrv6`` (T-ULRv6 large, SumEval 2022's second model): Microsoft has not published its
  pretraining corpus or language list; the published data holds only its XNLI scores. We
  make an explicit assumption -- its XNLI-era predecessors (T-ULRv2/InfoXLM, XLM-E) were
  pretrained on CC-100 -- and use the CC-100 coverage, with
  ``pretrain_corpus_undocumented = 1`` on every T-ULRv6 row so the assumption is visible.
* any other model id: unknown coverage (``pretrain_coverage_unknown = 1``), size 0.

Present languages whose size is unlisted (e.g. hr for XLM-R, or an Arabic variety inside
the ``ar`` macrolanguage) get the corpus's *smallest listed size* as a floor -- a
documented lower bound-like constant of that corpus, flagged by ``target_size_unknown``,
never a statistic of the training rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import pandas as pd

from measure.knowledge.languages import Language, resolve_target

COVERAGE_FILE = "coverage.csv"

STATUSES = ("present", "present_size_unlisted", "absent", "unknown")


@dataclass(frozen=True)
class Corpus:
    """A pretraining corpus whose per-language table lives in coverage.csv."""

    name: str
    complete: bool   # True: a language missing from the table is absent from the corpus
    doc: str


CORPORA: dict[str, Corpus] = {
    "cc100": Corpus("cc100", True,
                    "XLM-R's CC-100 pretraining data, Conneau et al. 2020 Table 6 (100 languages)"),
    "wikipedia": Corpus("wikipedia", False,
                        "mBERT's Wikipedia dumps; the size table lists 88 of 104 languages"),
}

# Scripts XLM-R saw beyond those of its languages' main written forms: zh-Hant (traditional
# Chinese) and the romanised bn/hi/ta/te/ur variants (Latin, already covered).
CC100_EXTRA_SCRIPTS = frozenset({"Hant"})

# Individual languages inside a macrolanguage that a corpus lists under the macrolanguage's
# code, beyond the one variety the registry chose (ar -> arb, zh -> cmn, ...). Their share
# of the macrolanguage's text is undocumented: present, size unlisted.
MACRO_MEMBERS: dict[str, str] = {
    # Arabic varieties (ISO 639-3 members of 'ara')
    "arz": "ar", "apc": "ar", "ajp": "ar", "acm": "ar", "ary": "ar", "aeb": "ar",
    "arq": "ar", "ars": "ar", "afb": "ar", "ayl": "ar", "apd": "ar", "acq": "ar",
    # Chinese (members of 'zho'); CC-100's zh also has a traditional-script part
    "yue": "zh", "wuu": "zh", "hak": "zh", "nan": "zh", "cjy": "zh", "hsn": "zh", "gan": "zh",
    # Persian (fas), Malay (msa), Swahili (swa), Uzbek (uzb), Estonian (est), Latvian (lav),
    # Nepali (nep), Oromo (orm), Pashto (pus), Albanian (sqi), Azerbaijani (aze),
    # Mongolian (mon), Norwegian (nor), Kurdish (kur), Malagasy (mlg), Yiddish (yid)
    "prs": "fa", "swc": "sw", "uzs": "uz", "ltg": "lv", "npi": "ne",
    "hae": "om", "orc": "om", "pst": "ps", "pbt": "ps", "aln": "sq", "azb": "az",
    "nno": "no", "ckb": "ku", "sdh": "ku", "yih": "yi", "mvf": "mn",
}

# model id -> (corpus, documented?, why)
MODEL_CORPUS: dict[str, tuple[str, bool, str]] = {
    "me5-small": ("cc100", True, "multilingual-e5-small: Multilingual-MiniLM distilled from "
                                 "XLM-R on CC-100"),
    "xlmr": ("cc100", True, "XLM-R large: CC-100 (Conneau et al., 2020)"),
    "tulrv6": ("cc100", False, "T-ULRv6 large: corpus unpublished; assumed CC-100 like its "
                               "predecessors (InfoXLM, XLM-E)"),
    "mbert": ("wikipedia", True, "mBERT: Wikipedia dumps of 104 languages"),
}


@dataclass(frozen=True)
class Coverage:
    """What is known about one target language in one model's pretraining corpus."""

    model: str
    target: str
    corpus: str | None          # None when the model is not in MODEL_CORPUS
    corpus_documented: bool     # False: the corpus is an explicit assumption or unknown
    status: str                 # one of STATUSES
    log_bytes: float            # log10 bytes; 0 when absent or unknown; floor when unlisted
    table_code: str | None      # the corpus table's code the target matched, if any
    reason: str
    script: str | None = None   # ISO 15924: the registry's, else the corpus table's

    @property
    def features(self) -> dict[str, float]:
        """The coverage feature values (``predictor.features`` columns)."""
        return {
            "target_in_pretraining": float(self.status in ("present", "present_size_unlisted")),
            "target_log_pretrain": self.log_bytes,
            "target_absent_from_pretraining": float(self.status == "absent"),
            "target_size_unknown": float(self.status in ("present_size_unlisted", "unknown")),
            "pretrain_coverage_unknown": float(self.status == "unknown"),
            "pretrain_corpus_undocumented": float(not self.corpus_documented),
        }


@lru_cache(maxsize=1)
def coverage_table() -> pd.DataFrame:
    """coverage.csv: one row per (corpus, language code) present in that corpus."""
    with resources.files("measure.resources").joinpath(COVERAGE_FILE).open(
            "r", encoding="utf-8") as fh:
        df = pd.read_csv(fh, keep_default_na=False, na_values=[""])
    bad = sorted(set(df["status"]) - {"present", "present_size_unlisted"})
    if bad:
        raise ValueError(f"{COVERAGE_FILE}: unexpected status values {bad}; rebuild it with "
                         "python -m measure.build_languages")
    return df


@lru_cache(maxsize=None)
def _corpus_rows(corpus: str) -> tuple[dict[str, pd.Series], dict[str, pd.Series], float]:
    """(rows by code, rows by ISO 639-3 code, log10 of the smallest listed size)."""
    df = coverage_table()
    sub = df[df["corpus"] == corpus]
    by_code = {str(r["code"]): r for _, r in sub.iterrows()}
    by_iso3: dict[str, pd.Series] = {}
    for _, r in sub.iterrows():
        by_iso3.setdefault(str(r["iso639_3"]), r)
    sizes = sub["bytes"].dropna().astype(float)
    floor = math.log10(float(sizes.min())) if len(sizes) else 0.0
    return by_code, by_iso3, floor


def _candidate_codes(lang: Language) -> list[str]:
    import pycountry
    codes = [lang.code]
    rec = pycountry.languages.get(alpha_3=lang.iso639_3)
    if rec is not None and getattr(rec, "alpha_2", None):
        codes.append(rec.alpha_2)
    if len(lang.code) == 3:
        rec = pycountry.languages.get(alpha_3=lang.code)
        if rec is not None and getattr(rec, "alpha_2", None):
            codes.append(rec.alpha_2)
    return list(dict.fromkeys(codes))


@lru_cache(maxsize=4096)
def coverage(model: str, target: str) -> Coverage:
    """Pretraining coverage of ``target`` (any code ``resolve_target`` accepts) for ``model``.

    Raises ``measure.knowledge.languages.UnknownLanguageError`` for a code no table knows.
    """
    lang = resolve_target(target)
    spec = MODEL_CORPUS.get(model)
    if spec is None:
        return Coverage(model, target, None, False, "unknown", 0.0, None,
                        f"model {model!r} has no documented pretraining corpus (known: "
                        f"{', '.join(sorted(MODEL_CORPUS))})", lang.script)
    corpus_name, documented, why = spec
    corpus = CORPORA[corpus_name]
    by_code, by_iso3, floor = _corpus_rows(corpus_name)
    row = next((by_code[c] for c in _candidate_codes(lang) if c in by_code), None)
    if row is None:
        row = by_iso3.get(lang.iso639_3)
    if row is not None:
        script = lang.script or (row["script"] if isinstance(row["script"], str) else None)
        if row["status"] == "present" and not pd.isna(row["bytes"]):
            return Coverage(model, target, corpus_name, documented, "present",
                            math.log10(float(row["bytes"])), str(row["code"]),
                            f"{row['code']} listed in {corpus_name} ({why})", script)
        return Coverage(model, target, corpus_name, documented, "present_size_unlisted", floor,
                        str(row["code"]), f"{row['code']} is in {corpus_name} but its size is "
                        f"unlisted: the corpus's smallest listed size is used as a floor", script)
    macro = MACRO_MEMBERS.get(lang.iso639_3)
    if macro is not None and macro in by_code:
        return Coverage(model, target, corpus_name, documented, "present_size_unlisted", floor,
                        macro, f"{lang.iso639_3} is a member of macrolanguage {macro!r}, listed "
                        f"in {corpus_name}; its share is undocumented (floor size)", lang.script)
    if corpus.complete:
        return Coverage(model, target, corpus_name, documented, "absent", 0.0, None,
                        f"not among the languages of {corpus.doc}", lang.script)
    return Coverage(model, target, corpus_name, documented, "unknown", 0.0, None,
                    f"not in the {corpus_name} table, which is incomplete ({corpus.doc})",
                    lang.script)


@lru_cache(maxsize=None)
def corpus_scripts(corpus: str) -> frozenset[str]:
    """ISO 15924 scripts of the languages present in ``corpus`` (from the registry's scripts)."""
    df = coverage_table()
    scripts = set(df.loc[df["corpus"] == corpus, "script"].dropna().astype(str))
    if corpus == "cc100":
        scripts |= CC100_EXTRA_SCRIPTS
    return frozenset(scripts)


def script_in_pretraining(model: str, script: str | None) -> float | None:
    """1.0 when some language of the model's corpus is written in ``script``, 0.0 when none
    is (complete corpora only), None when unknown (unknown script, model or incomplete table).

    Why a script-level table: a target absent from pretraining but written in a covered
    script (Quechua, Aymara: Latin) still gets meaningful subword pieces; one in an uncovered
    script mostly gets ``<unk>``. A measured profile (unknown-piece rate) overrides this.
    """
    spec = MODEL_CORPUS.get(model)
    if script is None or spec is None:
        return None
    corpus = CORPORA[spec[0]]
    if script in corpus_scripts(corpus.name):
        return 1.0
    return 0.0 if corpus.complete else None


# -- the classes every package groups targets by ----------------------------------------------
PRETRAINING_CLASSES = ("present", "absent", "unknown")


def pretraining_class(target: str, model: str) -> str:
    """'present' / 'absent' / 'unknown': is the target in the model's pretraining corpus?

    The one rule for every prediction, the meta-analysis and the app: :func:`coverage`'s
    status, with a present language whose size is unlisted counted as present.
    """
    status = coverage(str(model), str(target)).status
    return "present" if status == "present_size_unlisted" else status


#: CC-100 size (GiB of text, from the XLM-R paper's size table, Conneau et al. 2020, in
#: coverage.csv) below which a pretraining language counts as low-resource. 10 GiB separates
#: the two XNLI languages the XLM-R paper itself names as its low-resource examples (Swahili
#: and Urdu) from the next ones (Hindi, Turkish, Arabic at 20-28 GiB). Chosen from the size
#: table, before looking at any score.
CC100_LOW_GIB = 10.0
#: the meta-analysis's target classes: the pretraining class, the present one split by size
RESOURCE_CLASSES = ("absent", "xnli-low", "high")
CLASS_LABELS = {"absent": "absent from pretraining (AmericasNLI)",
                "xnli-low": f"XNLI low-resource (CC-100 < {CC100_LOW_GIB:g} GiB)",
                "high": "high-resource"}
#: the reference model of the meta-analysis's classes (its corpus is CC-100)
CLASS_MODEL = "me5-small"


def resource_class(target: str, model: str = CLASS_MODEL) -> str:
    """'absent', 'xnli-low' or 'high'; 'unknown' when the model's coverage is unknown and
    'present-unlisted' for a present language whose size the corpus table does not list.

    :func:`pretraining_class` split by size: the same rule, so a target is never absent for
    the predictor and of unknown class for the report."""
    cov = coverage(str(model), str(target))
    if cov.status in ("absent", "unknown"):
        return cov.status
    if cov.status == "present_size_unlisted":
        return "present-unlisted"
    return "xnli-low" if 10 ** cov.log_bytes < CC100_LOW_GIB * 2 ** 30 else "high"


def size_gib(target: str, model: str = CLASS_MODEL) -> float:
    """The target's listed pretraining size in GiB (0 when absent, unknown or unlisted)."""
    cov = coverage(str(model), str(target))
    return 10 ** cov.log_bytes / 2 ** 30 if cov.status == "present" else 0.0


def class_rule(languages: tuple[str, ...], name_of: Callable[[str], str]) -> str:
    """:func:`resource_class` in one sentence, naming the low-resource ``languages`` (dataset
    codes) and the next smallest, with their sizes."""
    gib = {c: size_gib(c) for c in languages}
    low = sorted((c for c in languages if resource_class(c) == "xnli-low"), key=gib.get)
    nxt = sorted((c for c in languages if resource_class(c) == "high"), key=gib.get)[:3]
    return ("absent = not in the model's pretraining corpus (CC-100 for multilingual-e5-small "
            "and XLM-R: the 7 AmericasNLI languages); xnli-low = in CC-100 with less than "
            f"{CC100_LOW_GIB:g} GiB of text (sizes from the XLM-R paper's table, "
            "measure/resources/coverage.csv; of the XNLI languages: "
            + " and ".join(f"{name_of(c)} {gib[c]:.1f} GiB" for c in low)
            + "); high = every other target (the next smallest: "
            + ", ".join(f"{name_of(c)} {gib[c]:.1f}" for c in nxt) + " GiB)")
