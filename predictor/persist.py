"""Save and load the fitted predictor safely: skops with an allow-list, plus a checksummed card.

Why: a pickle (or an unrestricted skops load) runs whatever code the file names, and
the model directory is something users download and the app loads automatically. So:

* the estimator is written with ``skops.io.dump`` (no pickle);
* ``model_card.json`` beside it records the file's sha256 together with the training
  data fingerprint, features, CV table, interval calibration and library versions;
* the card itself is sealed: ``card_sha256`` is the sha256 of the card's canonical JSON
  (sorted keys, compact separators) without that one field, computed inside :func:`save`,
  so every fit or refit carries it; editing any number in the card (say the interval
  ``quantile``) makes :func:`load` raise ``ModelIntegrityError``;
* ``model_file`` must be a plain file name inside the model directory: ``../x``, absolute
  paths, and symlinks that lead out of the directory are refused;
* loading first verifies both checksums (a tampered or truncated file raises
  ``ModelIntegrityError``), then asks skops which types the file would construct and
  refuses any that is not in ``TRUSTED_TYPES`` (``UntrustedModelError``), and only
  then loads with exactly that explicit list.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

MODEL_FILE = "predictor.skops"
CARD_FILE = "model_card.json"
CARD_VERSION = 1
CARD_HASH_KEY = "card_sha256"

# The types beyond skops' built-in safe set (numpy, builtins, sklearn estimators) that a
# fitted predictor holds: the feature transformer and HistGradientBoosting's trees (the
# learners are stored as plain state, see predictor.models); found with
# skops.io.get_untrusted_types on every candidate. Anything else in a model file is refused
# (skops records the class's own module, so a class that moves is a new name here).
TRUSTED_TYPES: frozenset[str] = frozenset({
    "predictor.features.transformer.TransferFeatures",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
})


class ModelIntegrityError(RuntimeError):
    """The model file does not match its card (tampered, truncated or replaced)."""


class UntrustedModelError(ModelIntegrityError):
    """The model file would construct a type outside ``TRUSTED_TYPES``."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for pkg in ("xlt", "scikit-learn", "skops", "numpy", "pandas", "scipy", "lang2vec"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model dir is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(obj: Any, directory: str | Path, card: dict[str, Any]) -> Path:
    """Write ``obj`` (skops) and the card (JSON, with the file's sha256) into ``directory``."""
    import skops.io as sio

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        tmp_model = Path(tmp) / MODEL_FILE
        sio.dump(obj, tmp_model)
        untrusted = set(sio.get_untrusted_types(file=tmp_model)) - TRUSTED_TYPES
        if untrusted:
            raise UntrustedModelError(f"refusing to save: the model contains types outside "
                                      f"the allow-list {sorted(untrusted)}; add them to "
                                      "predictor.persist.TRUSTED_TYPES after review")
        data = tmp_model.read_bytes()
    model_path = directory / MODEL_FILE
    _atomic_write(model_path, data)
    full = {"card_version": CARD_VERSION, **card, "model_file": MODEL_FILE,
            "model_sha256": hashlib.sha256(data).hexdigest(),
            "library_versions": library_versions()}
    full.pop(CARD_HASH_KEY, None)
    # hash what load() will read back: the JSON round trip turns numpy scalars into numbers
    full = json.loads(json.dumps(full, default=_json_default))
    full[CARD_HASH_KEY] = card_sha256(full)
    _atomic_write(directory / CARD_FILE,
                  json.dumps(full, indent=2, sort_keys=False, ensure_ascii=False).encode("utf-8"))
    return model_path


def card_sha256(card: dict[str, Any]) -> str:
    """sha256 of the card's canonical JSON without its own ``card_sha256`` field."""
    body = {k: v for k, v in card.items() if k != CARD_HASH_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def verify_card(card: Any, path: str | Path) -> dict[str, Any]:
    """The card if its seal matches, else ``ModelIntegrityError`` naming the fix."""
    if not isinstance(card, dict):
        raise ModelIntegrityError(f"{path}: the model card must be a JSON object, got "
                                  f"{type(card).__name__}")
    expected = card.get(CARD_HASH_KEY)
    if not isinstance(expected, str):
        raise ModelIntegrityError(f"{path}: the model card has no {CARD_HASH_KEY} (written by an "
                                  "older xlt, or stripped); refit with `xlt-predict fit` or "
                                  "restore the original model directory")
    digest = card_sha256(card)
    if digest != expected:
        raise ModelIntegrityError(
            f"{path}: the model card was modified (sha256 {digest[:16]}... does not match its "
            f"{CARD_HASH_KEY} {expected[:16]}...); its numbers (intervals, CV table) cannot be "
            "trusted. Refit with `xlt-predict fit` or restore the original model directory")
    return card


def model_path_for(directory: str | Path, card: dict[str, Any]) -> Path:
    """The card's ``model_file`` inside ``directory``; anything that leaves it is refused."""
    directory = Path(directory)
    name = card.get("model_file", MODEL_FILE)
    card_path = directory / CARD_FILE
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name \
            or "\\" in name or "\x00" in name or Path(name).is_absolute() or Path(name).name != name:
        raise ModelIntegrityError(f"{card_path}: model_file = {name!r} must be a plain file name "
                                  "inside the model directory (no paths)")
    path = directory / name
    try:
        inside = path.resolve().parent == directory.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        raise ModelIntegrityError(f"{card_path}: model_file {name!r} leads outside {directory} "
                                  "(a symlink?); refusing to load it")
    return path


def _json_default(o: Any) -> Any:
    import numpy as np
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_card(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} is not a fitted predictor "
                                "directory (run `xlt-predict fit --out DIR` first)")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelIntegrityError(f"{path}: the model card is not valid JSON "
                                  f"({type(exc).__name__}: {exc})") from None


def load(directory: str | Path) -> tuple[Any, dict[str, Any]]:
    """(fitted object, card) after checksum and allow-list checks; refuses anything else."""
    import skops.io as sio

    directory = Path(directory)
    card = verify_card(read_card(directory), directory / CARD_FILE)
    model_path = model_path_for(directory, card)
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path} not found (the card names it)")
    data = model_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    expected = card.get("model_sha256")
    if digest != expected:
        raise ModelIntegrityError(
            f"{model_path}: sha256 {digest[:16]}... does not match the card's "
            f"{str(expected)[:16]}...; the file was modified or replaced. Refit with "
            "`xlt-predict fit` or restore the original model directory")
    try:
        found = sio.get_untrusted_types(data=data)
    except Exception as exc:  # a malformed archive with a matching (forged) checksum
        raise ModelIntegrityError(f"{model_path}: not a readable skops file ({exc})") from None
    untrusted = sorted(set(found) - TRUSTED_TYPES)
    if untrusted:
        raise UntrustedModelError(f"{model_path}: refusing to load types outside the "
                                  f"allow-list: {untrusted}")
    obj = sio.load(model_path, trusted=sorted(found))
    return obj, card
