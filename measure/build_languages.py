"""Build ``measure/resources/languages.csv``, the project's own language table.

Run from the checkout: ``python -m measure.build_languages [--shared ../shared/data]``.

Why a build step: pretraining sizes come from the shared published tables, names from
ISO 639-3 (pycountry), and the URIEL code and script choices are editorial decisions
that must be visible in one reviewed place (``OVERRIDES`` below). The generated CSV is
committed so that installing xlt never needs ``../shared``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from measure.knowledge.languages import import_lang2vec
from measure.knowledge.nli import XNLI_15
from measure.outputs import atomic_path

OUT = Path(__file__).resolve().parent / "resources" / "languages.csv"

# dataset code -> (URIEL/ISO 639-3 code, ISO 15924 script). A code is listed here when
# its ISO 639-1 -> 639-3 mapping is a macrolanguage that lang2vec does not know, or when
# the dataset's own code is not an ISO code at all. Comments give the reason.
OVERRIDES: dict[str, tuple[str, str]] = {
    # --- AmericasNLI (codes are the dataset's, not always ISO) -----------------------
    "aym": ("ayr", "Latn"),  # AmericasNLI Aymara is Central Aymara; ayr has its own URIEL row
    "bzd": ("bzd", "Latn"),  # Bribri
    "cni": ("cni", "Latn"),  # Asháninka
    "hch": ("hch", "Latn"),  # Wixarika = Huichol
    # "nah" is a language *family* code (Nahuatl languages). The AmericasNLI translations
    # come from a Puebla variety; we use Zacatlán-Ahuacatlán-Tepetzintla Nahuatl (nhi),
    # a Sierra Norte de Puebla variety with a URIEL row. Nahuatl varieties are nearly
    # identical in URIEL's genetic/geographic vectors, so the choice barely moves features.
    "nah": ("nhi", "Latn"),
    # "oto" is the Otomian family code. The AmericasNLI Otomí is Hñähñu of the Valle del
    # Mezquital, ISO ote (Mezquital Otomi), which URIEL has.
    "oto": ("ote", "Latn"),
    "tar": ("tar", "Latn"),  # Rarámuri = Central Tarahumara
    # --- macrolanguages lang2vec lacks: pick the individual language the data is in ---
    "ar": ("arb", "Arab"),   # Modern Standard Arabic
    "sw": ("swh", "Latn"),   # Swahili (individual language)
    "fa": ("pes", "Arab"),   # Iranian Persian
    "uz": ("uzn", "Latn"),   # Northern Uzbek
    "om": ("gaz", "Latn"),   # West Central Oromo
    "ps": ("pbu", "Arab"),   # Northern Pashto (URIEL lacks it too: kept, flagged unknown)
    "sq": ("als", "Latn"),   # Tosk Albanian (standard Albanian)
    "az": ("azj", "Latn"),   # North Azerbaijani
    "mn": ("khk", "Cyrl"),   # Halh Mongolian
    "lv": ("lav", "Latn"),
    "ne": ("nep", "Deva"),
    "or": ("ori", "Orya"),
    "qu": ("quy", "Latn"),   # Ayacucho Quechua
    "gn": ("gug", "Latn"),   # Paraguayan Guaraní
    "zh": ("cmn", "Hans"),   # XNLI Chinese is Mandarin in simplified script
    "ms": ("zsm", "Latn"),   # Standard Malay
    "et": ("ekk", "Latn"),   # Standard Estonian
    "mg": ("plt", "Latn"),   # Plateau Malagasy
    "no": ("nob", "Latn"),   # Bokmål
    "ku": ("kmr", "Latn"),   # Kurmanji (CC-100 ku is mostly Latin-script Kurmanji)
    "yi": ("ydd", "Hebr"),   # Eastern Yiddish
    "hbs": ("hbs", "Latn"),
}

# ISO 15924 script of each language's main written form in the corpora we use.
SCRIPTS: dict[str, str] = {
    "af": "Latn", "am": "Ethi", "as": "Beng", "ast": "Latn", "ba": "Cyrl", "bar": "Latn",
    "be": "Cyrl", "bg": "Cyrl", "bn": "Beng", "br": "Latn", "bs": "Latn", "ca": "Latn",
    "ce": "Cyrl", "ceb": "Latn", "cs": "Latn", "cv": "Cyrl", "cy": "Latn", "da": "Latn",
    "de": "Latn", "el": "Grek", "en": "Latn", "eo": "Latn", "es": "Latn", "eu": "Latn",
    "fi": "Latn", "fr": "Latn", "fy": "Latn", "ga": "Latn", "gd": "Latn", "gl": "Latn",
    "gu": "Gujr", "ha": "Latn", "he": "Hebr", "hi": "Deva", "hr": "Latn", "ht": "Latn",
    "hu": "Latn", "hy": "Armn", "id": "Latn", "is": "Latn", "it": "Latn", "ja": "Jpan",
    "jv": "Latn", "ka": "Geor", "kk": "Cyrl", "km": "Khmr", "kn": "Knda", "ko": "Kore",
    "ky": "Cyrl", "la": "Latn", "lb": "Latn", "lo": "Laoo", "lt": "Latn", "mk": "Cyrl",
    "ml": "Mlym", "mr": "Deva", "min": "Latn", "my": "Mymr", "nds": "Latn", "new": "Deva",
    "nl": "Latn", "oc": "Latn", "pa": "Guru", "pl": "Latn", "pms": "Latn", "pt": "Latn",
    "ro": "Latn", "ru": "Cyrl", "sa": "Deva", "sd": "Arab", "si": "Sinh", "sk": "Latn",
    "sl": "Latn", "so": "Latn", "sr": "Cyrl", "su": "Latn", "sv": "Latn", "ta": "Taml",
    "te": "Telu", "tg": "Cyrl", "th": "Thai", "tl": "Latn", "tr": "Latn", "tt": "Cyrl",
    "ug": "Arab", "uk": "Cyrl", "ur": "Arab", "vi": "Latn", "war": "Latn", "xh": "Latn",
    "yo": "Latn",
}

NAME_FIXES = {"zh": "Chinese (Mandarin)", "el": "Greek", "sw": "Swahili", "ar": "Arabic",
              "hch": "Wixarika (Huichol)", "tar": "Rarámuri (Central Tarahumara)",
              "nah": "Nahuatl", "oto": "Otomí (Hñähñu)", "aym": "Aymara",
              "ne": "Nepali", "or": "Odia", "ms": "Malay", "et": "Estonian", "fa": "Persian"}

# XLM-R's pretraining languages (Conneau et al., 2020, Table 6: 100 entries, 7 of them
# romanised/traditional-script variants of listed languages) that the published size table
# (87 languages, via microsoft/Litmus) lacks: present in pretraining, size unlisted.
# code -> (ISO 639-3 for URIEL, ISO 15924 script). With these six the table is XLM-R's
# complete language list, so any other language is *absent* from XLM-R / multilingual-e5
# pretraining (shared/data/README.md's "hr is not absent" is this case: hr is here).
CC100_UNLISTED: dict[str, tuple[str, str]] = {
    "eo": ("epo", "Latn"), "hr": ("hrv", "Latn"), "la": ("lat", "Latn"),
    "mn": ("khk", "Cyrl"), "sa": ("san", "Deva"), "sr": ("srp", "Cyrl"),
}

COVERAGE_OUT = OUT.with_name("coverage.csv")

# Which shipped datasets each dataset code appears in (documentation and validation).
DATASETS = {
    "xnli": list(XNLI_15),
    "xnli_mt9k": "de en es fr sw tr vi zh".split(),
    "americas_nli": "aym bzd cni hch nah oto tar".split(),
}


def build(shared: Path) -> pd.DataFrame:
    import pycountry  # build-time only

    l2v = import_lang2vec()

    sizes = shared / "published" / "pretraining_sizes"
    cc100 = pd.read_csv(sizes / "xlmr_cc100_bytes.csv").set_index("language")["cc100_bytes"]
    wiki = pd.read_csv(sizes / "mbert_wikipedia_bytes.csv").set_index("language")["wikipedia_bytes"]
    codes = sorted(set(cc100.index) | set(wiki.index) | {c for v in DATASETS.values() for c in v})
    uriel = set(l2v.LANGUAGES)
    rows = []
    for code in codes:
        if code in OVERRIDES:
            iso3, script = OVERRIDES[code]
        else:
            rec = (pycountry.languages.get(alpha_2=code) if len(code) == 2
                   else pycountry.languages.get(alpha_3=code))
            if rec is None:
                raise SystemExit(f"no ISO 639 record for {code!r}: add it to OVERRIDES")
            iso3 = rec.alpha_3
            script = SCRIPTS.get(code)
            if script is None:
                raise SystemExit(f"no script for {code!r}: add it to SCRIPTS")
        rec3 = pycountry.languages.get(alpha_3=iso3)
        name = rec3.name if rec3 else iso3
        name = NAME_FIXES.get(code, name)
        rows.append({
            "code": code,
            "iso639_3": iso3,
            "name": name,
            "script": script,
            "in_uriel": iso3 in uriel,
            "datasets": " ".join(ds for ds, langs in DATASETS.items() if code in langs),
        })
    # pretraining sizes and presence live in coverage.csv only (measure.knowledge.coverage)
    return pd.DataFrame(rows)


def build_coverage(shared: Path, languages: pd.DataFrame) -> pd.DataFrame:
    """coverage.csv: one row per (corpus, language) *present* in that corpus.

    Absence is not a row: ``measure.knowledge.coverage`` knows which corpora are complete lists
    (CC-100 for XLM-R: yes; mBERT's Wikipedia table: 88 of 104 languages, no).
    """
    sizes = shared / "published" / "pretraining_sizes"
    tables = {"cc100": pd.read_csv(sizes / "xlmr_cc100_bytes.csv"),
              "wikipedia": pd.read_csv(sizes / "mbert_wikipedia_bytes.csv")}
    reg = languages.set_index("code")
    rows = []
    for corpus, table in tables.items():
        for code, size in zip(table["language"], table.iloc[:, 1]):
            rows.append({"corpus": corpus, "code": code, "iso639_3": reg.loc[code, "iso639_3"],
                         "script": reg.loc[code, "script"], "status": "present",
                         "bytes": int(size)})
    for code, (iso3, script) in CC100_UNLISTED.items():
        rows.append({"corpus": "cc100", "code": code, "iso639_3": iso3, "script": script,
                     "status": "present_size_unlisted", "bytes": None})
    df = pd.DataFrame(rows)
    df["bytes"] = df["bytes"].astype("Int64")
    return df.sort_values(["corpus", "code"]).reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"),
                        help="the shared data directory holding published/pretraining_sizes")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not (args.shared / "published").is_dir():
        parser.error(f"{args.shared}/published not found: pass --shared DIR")
    df = build(args.shared)
    with atomic_path(args.out) as tmp:
        df.to_csv(tmp, index=False)
    cov = build_coverage(args.shared, df)
    cov_out = args.out.with_name(COVERAGE_OUT.name)
    with atomic_path(cov_out) as tmp:
        cov.to_csv(tmp, index=False)
    print(f"wrote {len(cov)} (corpus, language) rows to {cov_out}", file=sys.stderr)
    missing = df.loc[~df["in_uriel"], "code"].tolist()
    print(f"wrote {len(df)} languages to {args.out}; not in URIEL: {missing}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
