"""The model file as arrays: compact regressors predict exactly as scikit-learn, the plain
state round-trips, nothing outside the allow-list is built, the card can be signed with a
user-held key ($XLT_MODEL_KEY), and a skops predictor converts without moving a prediction."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Lasso, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from predictor import persist
from predictor.models.compact import (LinearPipeline, TreeEnsemble, compact_from_state,
                                      compact_state)
from predictor.persist import ModelIntegrityError, UntrustedModelError

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models" / "predictor"


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the signing key it means; none from the developer's shell."""
    monkeypatch.delenv(persist.KEY_ENV, raising=False)


def _data(n: int = 400, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X[:, 0] * 2 - X[:, 1] * X[:, 2] + rng.normal(scale=0.1, size=n)
    return X, y


@pytest.mark.parametrize("reg", [
    Pipeline([("scale", StandardScaler()), ("reg", Ridge(alpha=10.0))]),
    Pipeline([("scale", StandardScaler()), ("reg", Lasso(alpha=0.01, max_iter=5000))]),
    HistGradientBoostingRegressor(max_iter=60, max_leaf_nodes=15, min_samples_leaf=5,
                                  random_state=0),
])
def test_compact_regressors_predict_bit_for_bit(reg) -> None:
    X, y = _data()
    reg.fit(X, y)
    Xt, _ = _data(257, seed=1)
    if isinstance(reg, HistGradientBoostingRegressor):
        Xt[::7, 2] = np.nan                      # missing values follow the trees' rule
    compact = compact_from_state(compact_state(reg))
    assert np.array_equal(compact.predict(Xt), reg.predict(Xt))
    # and once more through the stored arrays: the same bits
    again = compact_from_state(compact_state(compact))
    assert np.array_equal(again.predict(Xt), reg.predict(Xt))


def test_tree_walk_chunks_large_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    from predictor.models import compact
    X, y = _data()
    reg = HistGradientBoostingRegressor(max_iter=20, random_state=0).fit(X, y)
    monkeypatch.setattr(compact, "_CELLS_PER_CHUNK", 50)   # 2 rows per chunk
    assert np.array_equal(compact_from_state(compact_state(reg)).predict(X), reg.predict(X))


def test_linear_pipeline_keeps_the_pipeline_face_and_refuses_bad_input() -> None:
    X, y = _data()
    reg = Pipeline([("scale", StandardScaler()), ("reg", Ridge())]).fit(X, y)
    c = compact_from_state(compact_state(reg))
    assert isinstance(c, LinearPipeline)
    assert np.array_equal(c.named_steps["scale"].transform(X), reg.named_steps["scale"].transform(X))
    assert np.array_equal(c.named_steps["reg"].coef_, reg.named_steps["reg"].coef_)
    with pytest.raises(ValueError, match="features"):
        c.predict(X[:, :3])
    bad = X[:2].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        c.predict(bad)


def test_malformed_tree_arrays_are_refused() -> None:
    X, y = _data()
    state = compact_state(HistGradientBoostingRegressor(max_iter=3).fit(X, y))
    for key, value in (("left", 10**6), ("right", -5), ("feature", 99)):
        broken = {**state, key: state[key].copy()}
        inner = np.flatnonzero(~state["is_leaf"])[0]
        broken[key][inner] = value
        with pytest.raises(ValueError, match="out of range"):
            TreeEnsemble(**{k: broken[k] for k in broken if k != "kind"})
    with pytest.raises(ValueError, match="unknown regressor state"):
        compact_from_state({"kind": "pickle"})


def test_plain_state_round_trips_types() -> None:
    obj = {"f": 1.5, "i": 3, "b": True, "n": None, "s": "é", "np64": np.float64(0.1),
           "i64": np.int64(7), "arr": np.arange(4.0), "mask": np.array([True, False]),
           "strs": np.array(["a", "b"], dtype=object), "tup": (1, "x"), "nan": float("nan"),
           "keys": {("a", 1): 2, 3: "x"}, "tag": {"__xlt__": "not a tag"}, "nested": [[1, {}]]}
    back = persist.loads_state(persist.dumps_state(obj), "mem")
    assert type(back["np64"]) is np.float64 and back["np64"] == np.float64(0.1)
    assert type(back["i64"]) is np.int64 and back["tup"] == (1, "x")
    assert back["arr"].tolist() == [0.0, 1.0, 2.0, 3.0] and back["mask"].dtype == bool
    assert back["strs"].dtype == object and back["strs"].tolist() == ["a", "b"]
    assert back["keys"] == {("a", 1): 2, 3: "x"} and back["tag"] == {"__xlt__": "not a tag"}
    assert np.isnan(back["nan"]) and back["nested"] == [[1, {}]]
    assert {k: back[k] for k in ("f", "i", "b", "n", "s")} == \
        {"f": 1.5, "i": 3, "b": True, "n": None, "s": "é"}


class Gadget:
    """A class outside the allow-list."""

    def __init__(self) -> None:
        self.x = 1


def test_untrusted_objects_are_refused_on_save_and_before_building_on_load() -> None:
    with pytest.raises(UntrustedModelError, match="Gadget"):
        persist.dumps_state({"g": Gadget()})
    with pytest.raises(UntrustedModelError, match="object array"):
        persist.dumps_state({"a": np.array([1, "x"], dtype=object)})
    # a crafted file naming another class: refused before any import or construction
    data = persist.dumps_state({"ok": 1})
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = {n: z.read(n) for n in z.namelist()}
    doc = {"format": persist.MODEL_FORMAT,
           "state": {"x": {"__xlt__": "object", "type": "os.system", "state": {}}}}
    arr = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.save(buf, arr)
    members["state.npy"] = buf.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(UntrustedModelError, match="os.system"):
        persist.loads_state(out.getvalue(), "crafted")
    with pytest.raises(ModelIntegrityError, match="not a readable model file"):
        persist.loads_state(b"PK\x03\x04 not really", "junk")


# -- signing -------------------------------------------------------------------------------------
@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    d = tmp_path / "m"
    persist.save({"w": np.arange(3.0)}, d, {"selected_model": "ridge",
                                            "intervals": {"quantile": 9.5}})
    return d


def test_signed_at_fit_verified_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(persist.KEY_ENV, "my secret")
    d = tmp_path / "signed"
    persist.save({"w": np.arange(3.0)}, d, {"selected_model": "ridge"})
    card = json.loads((d / persist.CARD_FILE).read_text())
    assert len(card[persist.CARD_HMAC_KEY]) == 64
    obj, card = persist.load(d)
    assert obj["w"].tolist() == [0.0, 1.0, 2.0]
    assert persist.signature_status(card) == "verified"
    # someone edits a number and recomputes the public checksum: the HMAC catches it
    card["selected_model"] = "hgb"
    card[persist.CARD_HASH_KEY] = persist.card_sha256(card)
    (d / persist.CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError, match="does not match"):
        persist.load(d)
    # another key: refused; no key: loads (the checksum alone), said so
    persist.save({"w": np.arange(3.0)}, d, {"selected_model": "ridge"})
    monkeypatch.setenv(persist.KEY_ENV, "another")
    with pytest.raises(ModelIntegrityError, match="another key signed it"):
        persist.load(d)
    monkeypatch.delenv(persist.KEY_ENV)
    _, card = persist.load(d)
    assert persist.signature_status(card) == "signed, not verified"


def test_signature_covers_the_model_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(persist.KEY_ENV, "k1")
    a, b = tmp_path / "a", tmp_path / "b"
    persist.save({"w": np.arange(3.0)}, a, {"selected_model": "ridge"})
    persist.save({"w": np.arange(4.0)}, b, {"selected_model": "ridge"})
    # b's model file and a re-checksummed card naming its sha256, but a's HMAC
    shutil.copy(b / persist.MODEL_FILE, a / persist.MODEL_FILE)
    card = json.loads((a / persist.CARD_FILE).read_text())
    card["model_sha256"] = persist.sha256_file(a / persist.MODEL_FILE)
    card[persist.CARD_HASH_KEY] = persist.card_sha256(card)
    (a / persist.CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError, match="card_hmac does not match"):
        persist.load(a)


def test_key_at_load_refuses_an_unsigned_card(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert persist.signature_status(persist.load(saved)[1]) == "checksum only"
    monkeypatch.setenv(persist.KEY_ENV, "my secret")
    with pytest.raises(ModelIntegrityError, match="not signed"):
        persist.load(saved)


def test_empty_key_fails_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(persist.KEY_ENV, "  ")
    with pytest.raises(persist.SigningKeyError, match="empty"):
        persist.save({"w": 1}, tmp_path / "m", {})
    assert not (tmp_path / "m").exists()


def test_checksum_message_says_what_it_protects_against(saved: Path) -> None:
    card = json.loads((saved / persist.CARD_FILE).read_text())
    card["intervals"]["quantile"] = 0.01
    (saved / persist.CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError) as exc:
        persist.load(saved)
    msg = str(exc.value)
    assert "modified or damaged" in msg and "accidental" in msg and persist.KEY_ENV in msg
    assert "\n" not in msg


def test_cli_refuses_unsigned_model_with_key_set(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    shipped = tmp_path / "shipped"
    shutil.copytree(SHIPPED, shipped)
    proc = subprocess.run([sys.executable, "-m", "predictor.cli", "query", "--predictor",
                           str(shipped), "--model", "xlmr", "--train-config", "en:1000",
                           "--target", "sw"], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env={**os.environ, persist.KEY_ENV: "secret"}, check=False)
    assert proc.returncode == 1 and "not signed" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# -- the conversion of a skops predictor -----------------------------------------------------------
@pytest.mark.skipif(persist.read_card(SHIPPED).get(persist.FORMAT_KEY) is not None,
                    reason="the shipped predictor is already in the arrays format")
def test_shipped_skops_predictor_converts_without_moving_a_prediction(tmp_path: Path) -> None:
    from predictor.serving import load_predictor
    from predictor.studies.migrate_model import main
    models = tmp_path / "models"
    shutil.copytree(SHIPPED.parent / "profiles", models / "profiles")
    assert main([str(SHIPPED), "--out", str(models / "predictor")]) == 0
    card = persist.read_card(models / "predictor")
    old_card = persist.read_card(SHIPPED)
    assert card["model_file"] == persist.MODEL_FILE and card["converted_from"]["model_sha256"] \
        == old_card["model_sha256"]
    assert card["library_versions"] == old_card["library_versions"]
    assert {k: v for k, v in card.items() if k not in persist.GENERATED_FIELDS + (
        "converted_from",)} == {k: v for k, v in old_card.items()
                                if k not in persist.GENERATED_FIELDS}
    rows = [{"model": m, "train_config": tc, "target": t}
            for m in ("me5-small", "xlmr", "tulrv6") for t in ("sw", "quy", "cy", "en")
            for tc in ({"en": 2490}, {"en": 10000, "hi": 1000, "de": 500})]
    old = load_predictor(SHIPPED, profiles=SHIPPED.parent / "profiles").predict(rows)
    new = load_predictor(models / "predictor").predict(rows)
    assert old.equals(new)
    assert main([str(models / "predictor")]) == 0            # already converted: nothing to do


def test_fit_with_an_empty_key_fails_before_fitting(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "predictor.cli", "fit", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO,
                          timeout=120, env={**os.environ, persist.KEY_ENV: ""}, check=False)
    assert proc.returncode == 1 and "is set but empty" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / persist.CARD_FILE).exists()
