"""Hardening v2, the predictor side (#23): no pickle is ever loaded, a language profile is
checked as strictly as a model card and read only if it is a small regular file, and every
bad path on ``xlt-predict``'s command line is one line with the right exit code.

Why: a profile is a JSON file anyone can copy or hand-edit, and its numbers go straight into
the features. ``label_entropy = 25`` bits, ``1e300``, negative rates or ``"schema": 99``
used to give a confident 100.0 [100.0, 100.0]; a FIFO named ``quy.json`` hung ``query``;
a 100k-deep JSON array gave a RecursionError traceback (on the Recommend page too).
"""

from __future__ import annotations

import ast
import copy
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from _profile_fakes import FakeEncoder

from measure.knowledge.nli import LABELS
from predictor.cli import main
from predictor.features.profiles import (DOC_RANGE, MAX_PER_WORD, MAX_PROFILE_BYTES,
                                         PROFILE_SCHEMAS, ProfileError, check_profile,
                                         check_profiles)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models"
SW = json.loads((SHIPPED / "profiles" / "me5-small" / "sw.json").read_text("utf-8"))
QUERY = ["query", "--model", "me5-small", "--train-config", "en:2490", "--target", "eu"]


def _eu() -> dict:
    """Swahili's shipped profile relabelled as Basque (a language without measurements)."""
    return {**copy.deepcopy(SW), "language": "eu", "iso639_3": "eus", "name": "Basque"}


def _one_line_error(capsys: pytest.CaptureFixture, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"xlt-predict {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


# -- #23.1: no cache or artefact xlt reads is a pickle ---------------------------------------
_PICKLE_MODULES = {"pickle", "joblib", "cloudpickle", "dill", "shelve", "marshal"}


def _dotted(node: ast.AST) -> str:
    """'np.load' for the call target ``np.load`` ('' for anything not a dotted name)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else ""
    return ""


def _pickle_uses(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) \
                else [node.module or ""]
            found += [f"imports {n}" for n in names if n.split(".")[0] in _PICKLE_MODULES]
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            kw = {k.arg: k.value for k in node.keywords}
            pickle_ok = kw.get("allow_pickle")
            if isinstance(pickle_ok, ast.Constant) and pickle_ok.value is True:
                found.append(f"{name}(allow_pickle=True)")
            if name in ("np.load", "numpy.load") and not (
                    isinstance(pickle_ok, ast.Constant) and pickle_ok.value is False):
                found.append("np.load without allow_pickle=False")
            if name.endswith((".read_pickle", "torch.load")) or \
                    name.split(".")[0] in _PICKLE_MODULES:
                found.append(f"calls {name}")
    return found


def test_no_source_file_loads_a_pickle() -> None:
    """The general class of #23.1: nothing in measure/, predictor/ or app/ imports a pickle
    library or calls a loader that unpickles, and every ``np.load`` passes
    ``allow_pickle=False`` (read from the code's syntax tree: comments do not count)."""
    found = []
    for folder in ("measure", "predictor", "app"):
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            found += [f"{path.relative_to(REPO)}: {use}" for use in _pickle_uses(tree)]
    assert not found, found
    # the check itself sees what it looks for
    assert _pickle_uses(ast.parse("import joblib\nnp.load(p)\nnp.load(p, allow_pickle=True)"))


def test_the_apps_family_table_reads_lang2vec_without_pickle() -> None:
    from app.data import families
    fam = families(["sw", "en", "quy"]).set_index("code")
    assert fam.loc["en", "family"] == "Indo-European" and fam.loc["quy", "family"] == "Quechuan"


# -- #23.3: every profile field's range and the schema, checked on read ------------------------
def _set(path: str, value) -> Callable[[dict], None]:
    def edit(prof: dict) -> None:
        *parents, leaf = path.split(".")
        node = prof
        for key in parents:
            node = node[key]
        node[leaf] = value
    return edit


def _drop(path: str) -> Callable[[dict], None]:
    def edit(prof: dict) -> None:
        *parents, leaf = path.split(".")
        node = prof
        for key in parents:
            node = node[key]
        del node[leaf]
    return edit


BAD_PROFILES = {
    "entropy_25_bits": (_set("label_free.label_entropy", 25), "label_free.label_entropy"),
    "entropy_negative": (_set("label_free.label_entropy", -0.1), "label_free.label_entropy"),
    "atc_1e300": (_set("label_free.atc", 1e300), "label_free.atc"),
    "atc_above_100": (_set("label_free.atc", 100.5), "label_free.atc"),
    "doc_impossible": (_set("label_free.doc", 250.0), "label_free.doc"),
    "confidence_above_1": (_set("label_free.mean_confidence", 1.5), "label_free.mean_confidence"),
    "confidence_below_a_third": (_set("label_free.mean_confidence", 0.2),
                                 "label_free.mean_confidence"),
    "negative_unk_rate": (_set("tokenizer.unk_rate", -0.3), "tokenizer.unk_rate"),
    "share_above_1": (_set("tokenizer.single_char_share", 1.2), "tokenizer.single_char_share"),
    "fertility_zero": (_set("tokenizer.fertility", 0), "tokenizer.fertility"),
    "fertility_1e300": (_set("tokenizer.fertility", 1e300), "tokenizer.fertility"),
    "chars_per_word_huge": (_set("tokenizer.chars_per_word", MAX_PER_WORD * 10),
                            "tokenizer.chars_per_word"),
    "count_negative": (_set("tokenizer.n_words", -5), "tokenizer.n_words"),
    "count_fractional": (_set("tokenizer.n_pieces", 12.5), "tokenizer.n_pieces"),
    "count_1e300": (_set("label_free.n_pairs", 10**300), "label_free.n_pairs"),
    "count_bool": (_set("provenance.n_lines", True), "provenance.n_lines"),
    "segmented_not_bool": (_set("tokenizer.whitespace_segmented", "yes"),
                           "tokenizer.whitespace_segmented"),
    "distance_negative": (_set("centroid_distance.en", -0.3), "centroid_distance.en"),
    "distance_above_2": (_set("centroid_distance.de", 2.5), "centroid_distance.de"),
    "distance_text": (_set("centroid_distance.de", "near"), "centroid_distance.de"),
    "distribution_missing_label": (_set("label_free.label_distribution",
                                        {"entailment": 0.5, "neutral": 0.5}),
                                   "label_free.label_distribution"),
    "distribution_not_summing_to_1": (_set("label_free.label_distribution.neutral", 0.9),
                                      "label_free.label_distribution"),
    "distribution_negative_share": (_set("label_free.label_distribution",
                                         {"entailment": 1.2, "neutral": -0.2,
                                          "contradiction": 0.0}),
                                    "label_free.label_distribution.entailment"),
    "per_source_entropy": (_set("label_free_by_source.de.label_entropy", 9.0),
                           "label_free_by_source.de.label_entropy"),
    "per_source_atc": (_set("label_free_by_source.fr.atc", -1.0), "label_free_by_source.fr.atc"),
    "per_source_entry_missing": (_set("label_free_by_source.en", {}),
                                 "label_free_by_source.en.label_entropy"),
    "label_free_missing_field": (_drop("label_free.doc"), "label_free.doc"),
    "schema_99": (_set("schema", 99), "schema 99 is newer"),
    "schema_0": (_set("schema", 0), "schema 0"),
    "schema_text": (_set("schema", "2"), "schema"),
    "schema_missing": (_drop("schema"), "schema"),
    "tokenizer_not_object": (_set("tokenizer", [1, 2]), "tokenizer"),
    "label_free_not_object": (_set("label_free", 3), "label_free"),
    "provenance_not_object": (_set("provenance", "me"), "provenance"),
    "language_not_text": (_set("language", 5), "language"),
    "pairs_check_share": (_set("pairs_check", {"pairing": 7.0}), "pairs_check.pairing"),
    "other_model": (_set("model", "xlmr"), "folder of 'me5-small'"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROFILES))
def test_an_impossible_profile_value_is_refused_naming_file_and_field(case: str) -> None:
    edit, field = BAD_PROFILES[case]
    prof = _eu()
    edit(prof)
    with pytest.raises(ProfileError) as err:
        check_profile(prof, "/p/me5-small/eu.json", "me5-small")
    msg = str(err.value)
    assert "/p/me5-small/eu.json" in msg and field in msg and "\n" not in msg


def test_a_long_bad_value_is_not_echoed_whole() -> None:
    prof = _eu()
    prof["language"] = ["x" * 10_000]
    with pytest.raises(ProfileError) as err:
        check_profile(prof, "eu.json")
    assert len(str(err.value)) < 400


def test_every_shipped_profile_and_every_schema_measure_writes_passes() -> None:
    from measure.profile import PROFILE_SCHEMA
    assert PROFILE_SCHEMA in PROFILE_SCHEMAS
    assert check_profiles(SHIPPED / "profiles") == 22
    assert DOC_RANGE[0] < 0 and DOC_RANGE[1] > 100       # DoC can leave [0, 100] a little
    # unknown extra fields (what a newer measure adds within the schema) are allowed
    prof = _eu()
    prof["provenance"]["text_sample"] = {"lines_read": 300, "truncated": False}
    prof["pairs_check"] = {"n_pairs_checked": 600, "threshold": 0.65, "pairing": 0.9,
                           "pairing_embedding": 0.95, "pairing_lexical": 0.85,
                           "looks_like_nli": True, "why": "..."}
    prof["future_field"] = {"anything": [1, 2, 3]}
    assert check_profile(prof, "eu.json", "me5-small") is prof
    # a schema-1 profile (no label_free_by_source) and one without pairs
    old = {k: v for k, v in _eu().items() if k != "label_free_by_source"} | {"schema": 1}
    assert check_profile(old, "eu.json") is old
    assert check_profile(_eu() | {"label_free": None, "label_free_by_source": None}, "eu.json")


def test_a_profile_measure_computes_passes_the_check() -> None:
    """The ranges are what ``measure.profile`` can write: a profile it computes (fake
    encoder, toy reference with per-source probes) passes, with and without pairs."""
    from measure.profile import compute_profile
    from measure.profile_reference import Reference
    rng = np.random.default_rng(0)
    ref = Reference(["en", "sw"], rng.normal(size=(2, 4)), rng.normal(size=(3, 16)),
                    np.zeros(3), 0.5, 0.6, 0.7, {"model_fingerprint": "fp"},
                    src_languages=["en", "sw"],
                    src_coef=rng.normal(size=(2, 3, 16)).astype(np.float32),
                    src_intercept=rng.normal(size=(2, 3)),
                    src_scalars=np.array([[0.5, 0.6, 0.7], [0.45, 0.55, 0.65]]))
    lines = [f"una frase corta numero {i}" for i in range(12)]
    pairs = [(f"premisa {i} aaa", f"hipotesis {i}" + " a" * (i % 3)) for i in range(12)]
    for p in (pairs, None):
        prof = json.loads(json.dumps(compute_profile("quy", lines, FakeEncoder(), ref, p)))
        assert check_profile(prof, "quy.json", "me5-small") == prof
    assert math.log2(len(LABELS)) == pytest.approx(1.585, abs=1e-3)


def test_an_impossible_profile_never_gives_a_prediction(tmp_path: Path, capsys) -> None:
    """The CLI path of #23.3: exit 2 and one line, never '100.0 [100.0, 100.0]'."""
    prof = _eu()
    prof["label_free"]["label_entropy"] = 25
    d = tmp_path / "profiles" / "me5-small"
    d.mkdir(parents=True)
    (d / "eu.json").write_text(json.dumps(prof), encoding="utf-8")
    rc = main([*QUERY, "--predictor", str(SHIPPED / "predictor"),
               "--profiles", str(tmp_path / "profiles")])
    out = capsys.readouterr()
    assert rc == 2 and out.out == "" and "label_free.label_entropy" in out.err
    assert "eu.json" in out.err and "Traceback" not in out.err


# -- #23.13: only small regular files are read as profiles ------------------------------------
def _plant(folder: Path, kind: str) -> Path:
    f = folder / "quy.json"
    if kind == "deep_json":
        f.write_text("[" * 100_000, encoding="utf-8")
    elif kind == "deep_object":
        f.write_text('{"a":' * 100_000, encoding="utf-8")
    elif kind == "fifo":
        os.mkfifo(f)
    elif kind == "directory":
        f.mkdir()
    elif kind == "broken_link":
        f.symlink_to(folder / "nowhere.json")
    elif kind == "huge":
        f.write_bytes(b" " * (MAX_PROFILE_BYTES + 1) + b"{}")
    elif kind == "not_utf8":
        f.write_bytes(b'{"language": "\xff\xfe"}')
    elif kind == "nan":
        prof = _eu()
        prof["label_free"]["label_entropy"] = float("nan")      # json.dumps writes NaN
        f.write_text(json.dumps(prof), encoding="utf-8")
    elif kind == "not_json":
        f.write_text("{broken", encoding="utf-8")
    return f


PROFILE_FILES = {"deep_json": "nested too deeply", "deep_object": "nested too deeply",
                 "fifo": "not a regular file", "directory": "not a regular file",
                 "broken_link": "cannot be read", "huge": "bytes, more than a profile",
                 "not_utf8": "not UTF-8", "nan": "label_free.label_entropy",
                 "not_json": "not valid JSON"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", sorted(PROFILE_FILES))
def test_a_bad_profile_file_is_one_profile_error_and_never_hangs(tmp_path: Path,
                                                                kind: str) -> None:
    folder = tmp_path / "me5-small"
    folder.mkdir()
    f = _plant(folder, kind)
    with pytest.raises(ProfileError) as err:
        check_profiles(tmp_path)
    msg = str(err.value)
    assert str(f) in msg and PROFILE_FILES[kind] in msg and len(msg) < 500


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["deep_json", "fifo", "huge"])
def test_the_cli_refuses_a_bad_profile_file_in_one_line(tmp_path: Path, capsys,
                                                        kind: str) -> None:
    folder = tmp_path / "profiles" / "me5-small"
    folder.mkdir(parents=True)
    _plant(folder, kind)
    rc = main([*QUERY, "--predictor", str(SHIPPED / "predictor"),
               "--profiles", str(tmp_path / "profiles")])
    assert rc == 2 and PROFILE_FILES[kind] in _one_line_error(capsys, "query")


@pytest.mark.timeout(120)
def test_the_app_shows_a_deep_profile_as_a_message_on_recommend_and_predict(
        tmp_path: Path) -> None:
    """The Recommend page path: the predictor's own profiles hold a 100k-deep file; the
    service answers with the profile's one-line message, not a RecursionError."""
    from app.services import PredictorService, ServiceError
    from predictor.serving import load_predictor
    (tmp_path / "predictor").symlink_to(SHIPPED / "predictor")
    folder = tmp_path / "profiles" / "me5-small"
    folder.mkdir(parents=True)
    _plant(folder, "deep_json")
    service = PredictorService(load_predictor(tmp_path / "predictor"), tmp_path / "predictor")
    choice = next(c for c in service.models if c.model == "me5-small")
    with pytest.raises(ServiceError, match="nested too deeply"):
        service.recommend(choice, ["sw"], ["en", "de", "fr"], k=1)
    frame, errors = service.predict(choice, {"en": 2490}, ["sw"])
    assert frame.empty and "nested too deeply" in errors["sw"]


# -- #23 Low and #23.9: every bad path is one line with the right exit code --------------------
def _fifo(tmp: Path, name: str) -> Path:
    os.mkfifo(tmp / name)
    return tmp / name


def _file(tmp: Path, name: str, data: bytes = b"x,y\n1,2\n") -> Path:
    (tmp / name).write_bytes(data)
    return tmp / name


def _card_dir(tmp: Path, card: str | None) -> Path:
    d = tmp / "pred"
    d.mkdir()
    if card == "fifo":
        os.mkfifo(d / "model_card.json")
    elif card is not None:
        (d / "model_card.json").write_text(card, encoding="utf-8")
    return d


PRED = str(SHIPPED / "predictor")
QUERY_XLMR = ["query", "--model", "xlmr", "--train-config", "en:100", "--target", "sw"]
RECOMMEND = ["recommend", "--predictor", PRED, "--model", "xlmr", "--targets", "sw",
             "--pool", "en,de,fr", "--k", "1"]
EVAL_DATA = ["evaluate", "--recompute", "--no-include-published", "--measurements"]
# name: (argv builder from tmp_path, exit code, words the one line must hold)
BAD_COMMANDS: dict[str, tuple[Callable[[Path], list[str]], int, str]] = {
    "predictor_missing": (lambda t: [*QUERY_XLMR, "--predictor", str(t / "nope")], 1,
                          "not a fitted predictor directory"),
    "predictor_is_a_file": (lambda t: [*QUERY_XLMR, "--predictor", str(_file(t, "p"))], 1,
                            "not a fitted predictor directory"),
    "predictor_is_a_fifo": (lambda t: ["evaluate", "--predictor", str(_fifo(t, "p"))], 1,
                            "not a fitted predictor directory"),
    "predictor_without_card": (lambda t: [*QUERY_XLMR, "--predictor", str(_card_dir(t, None))],
                               1, "model_card.json not found"),
    "card_is_a_fifo": (lambda t: ["evaluate", "--predictor", str(_card_dir(t, "fifo"))], 1,
                       "model_card.json not found"),
    "card_100k_deep": (lambda t: ["evaluate", "--predictor", str(_card_dir(t, "[" * 100_000))],
                       1, "not valid JSON"),
    "measurements_fifo": (lambda t: [*EVAL_DATA, str(_fifo(t, "m.csv"))], 2,
                          "not a regular file"),
    "measurements_directory": (lambda t: [*EVAL_DATA, str(t)], 2, "is a directory"),
    "measurements_missing": (lambda t: [*EVAL_DATA, str(t / "none.csv")], 1, "not found"),
    "measurements_junk": (lambda t: [*EVAL_DATA, str(_file(t, "j.parquet", b"\0junk"))], 1,
                          "j.parquet"),
    "measurements_wrong_columns": (lambda t: [*EVAL_DATA, str(_file(t, "c.csv"))], 1,
                                   "missing columns"),
    "report_measurements_fifo": (lambda t: ["report", "--no-include-published",
                                            "--measurements", str(_fifo(t, "m.csv")),
                                            "--out", str(t / "rep")], 2, "not a regular file"),
    "report_out_is_a_file": (lambda t: ["report", "--out", str(_file(t, "r"))], 2,
                             "is a file, not a directory"),
    "fit_out_is_a_file": (lambda t: ["fit", "--out", str(_file(t, "f")),
                                     "--no-include-published"], 2,
                          "is a file, not a directory"),
    "profiles_is_a_file": (lambda t: [*QUERY_XLMR, "--profiles", str(_file(t, "p.json"))], 2,
                           "is a file, not a directory"),
    "profiles_is_a_fifo": (lambda t: [*QUERY_XLMR, "--profiles", str(_fifo(t, "p"))], 2,
                           "not a directory"),
    "profiles_missing": (lambda t: [*QUERY_XLMR, "--profiles", str(t / "nope")], 2,
                         "does not exist"),
    "batch_profiles_is_a_file": (lambda t: ["batch", "--input", str(_file(t, "i.jsonl", b"")),
                                            "--output", str(t / "o.jsonl"), "--profiles",
                                            str(_file(t, "p.json"))], 2, "is a file"),
    "recommend_top_0": (lambda t: [*RECOMMEND, "--top", "0"], 2, "top must be"),
    "recommend_top_negative": (lambda t: [*RECOMMEND, "--top", "-3"], 2, "top must be"),
    "query_400_digit_count": (lambda t: ["query", "--predictor", PRED, "--model", "xlmr",
                                         "--train-config", "en:" + "9" * 400, "--target", "sw"],
                              2, "--train-config"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(BAD_COMMANDS))
def test_a_bad_path_or_value_is_one_line_with_the_right_exit_code(tmp_path: Path, capsys,
                                                                  case: str) -> None:
    build, code, words = BAD_COMMANDS[case]
    argv = build(tmp_path)
    try:
        rc = main(argv)
    except SystemExit as exc:          # argparse's own usage errors
        rc = exc.code
        err = capsys.readouterr().err
        assert code == 2 and rc == 2 and words in err and "Traceback" not in err
        return
    assert rc == code
    assert words in _one_line_error(capsys, argv[0])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_predictor_is_one_line(tmp_path: Path, capsys) -> None:
    d = _card_dir(tmp_path, "{}")
    (d / "model_card.json").chmod(0)
    rc = main(["evaluate", "--predictor", str(d)])
    assert rc == 1 and "model_card.json" in _one_line_error(capsys, "evaluate")
