"""Save and load the fitted predictor safely: plain arrays + JSON (no pickle), a checksummed
card, and an optional signature with a key the user holds.

Why: a pickle (or an unrestricted skops load) runs whatever code the file names, and the
model directory is something users download and the app loads automatically. So:

* the model file (``predictor.npz``) is a NumPy archive read with ``allow_pickle=False``:
  one JSON document (``state.json``) describing the fitted objects as plain data --
  numbers, strings, lists, dicts -- whose arrays are the archive's other members. The only
  objects it may construct are the types in ``TRUSTED_TYPES`` (the feature transformer),
  rebuilt from their plain state; the file is checked for other types before anything is
  built (``UntrustedModelError``). Why not skops: reading the 10 MB skops file of the
  first predictors (1,500 tree objects) took ~3 s and imported every scikit-learn
  estimator; the arrays load in milliseconds (the learners predict from them, see
  :mod:`predictor.models.compact`). Model files written as skops (``model_format``
  absent from the card) still load, through skops with the same allow-list;
* ``model_card.json`` beside it records the file's sha256 together with the training
  data fingerprint, features, CV table, interval calibration and library versions;
* the card carries a checksum, ``card_sha256``: the sha256 of its canonical JSON (sorted
  keys, compact separators) without that one field. It catches ACCIDENTS -- a hand edit
  of one number, a truncated download, a card from another fit beside this model file --
  and :func:`load` refuses such a card. It cannot stop a deliberate edit: anyone can
  recompute a sha256. For that, set ``$XLT_MODEL_KEY`` (a secret you hold) when fitting:
  the card then carries ``card_hmac``, an HMAC-SHA256 with that key of the card and of the
  model file's sha256, and whenever ``$XLT_MODEL_KEY`` is set at load time a card without
  a valid HMAC is refused (:func:`verify_signature`);
* ``model_file`` must be a plain file name inside the model directory: ``../x``, absolute
  paths, and symlinks that lead out of the directory are refused;
* loading verifies the card, then the model file's sha256 (a tampered or truncated file
  raises ``ModelIntegrityError``) and the signature, and only then reads the file.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

MODEL_FILE = "predictor.npz"
LEGACY_MODEL_FILE = "predictor.skops"
CARD_FILE = "model_card.json"
CARD_VERSION = 1
CARD_HASH_KEY = "card_sha256"
CARD_HMAC_KEY = "card_hmac"
#: the card field naming the model file's format; absent: a skops file (before arrays)
FORMAT_KEY = "model_format"
MODEL_FORMAT = "xlt-arrays-1"
KEY_ENV = "XLT_MODEL_KEY"
#: the card fields :func:`save` writes itself (a card passed in may hold old values)
GENERATED_FIELDS = ("model_file", "model_sha256", FORMAT_KEY, CARD_HASH_KEY, CARD_HMAC_KEY)

_STATE_MEMBER = "state.json"
_TAG = "__xlt__"
_ARRAY_KINDS = "biufU"

# The types beyond plain data that a fitted predictor holds: the feature transformer (and,
# in skops files written before the arrays format, HistGradientBoosting's trees; skops
# also allows numpy, builtins and scikit-learn estimators). Anything else in a model file
# is refused (a class is named by its own module, so a class that moves is a new name).
TRUSTED_TYPES: frozenset[str] = frozenset({
    "predictor.features.transformer.TransferFeatures",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
})


class ModelIntegrityError(RuntimeError):
    """The model file does not match its card (tampered, truncated or replaced)."""


class UntrustedModelError(ModelIntegrityError):
    """The model file would construct a type outside ``TRUSTED_TYPES``."""


class SigningKeyError(ModelIntegrityError):
    """``$XLT_MODEL_KEY`` is set but unusable (empty)."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for pkg in ("xlt", "scikit-learn", "numpy", "pandas", "scipy", "lang2vec"):
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
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model dir is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- the signing key ---------------------------------------------------------------------------
def signing_key() -> bytes | None:
    """``$XLT_MODEL_KEY`` as bytes, None when unset; set but empty is an error (a user who
    set it means to sign, and an empty key would sign nothing)."""
    value = os.environ.get(KEY_ENV)
    if value is None:
        return None
    if not value.strip():
        raise SigningKeyError(f"${KEY_ENV} is set but empty: set it to a secret (e.g. the "
                              "output of `python -c 'import secrets; print(secrets."
                              f"token_hex(32))'`) or unset it")
    return value.encode("utf-8")


def _canonical(card: dict[str, Any], leave_out: tuple[str, ...]) -> bytes:
    body = {k: v for k, v in card.items() if k not in leave_out}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=True).encode("utf-8")


def card_sha256(card: dict[str, Any]) -> str:
    """sha256 of the card's canonical JSON without its own ``card_sha256`` field."""
    return hashlib.sha256(_canonical(card, (CARD_HASH_KEY,))).hexdigest()


def card_hmac(card: dict[str, Any], model_sha256: str, key: bytes) -> str:
    """HMAC-SHA256 with ``key`` of the card (canonical JSON without its checksum and HMAC)
    and of the model file's sha256: a signature only the key's holder can make."""
    msg = b"xlt model card v1\n" + _canonical(card, (CARD_HASH_KEY, CARD_HMAC_KEY)) \
        + b"\n" + model_sha256.encode("ascii")
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def verify_card(card: Any, path: str | Path) -> dict[str, Any]:
    """The card if its checksum matches, else ``ModelIntegrityError`` naming the fix."""
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
            f"{path}: the model card was modified or damaged (sha256 {digest[:16]}... does "
            f"not match its {CARD_HASH_KEY} {expected[:16]}...), so its numbers (intervals, "
            "CV table) cannot be trusted: restore the original model directory or refit with "
            "`xlt-predict fit`. This checksum catches accidental edits and truncation, not a "
            f"deliberate edit (anyone can recompute it); set ${KEY_ENV} to sign cards with "
            "your own key")
    return card


def verify_signature(card: dict[str, Any], model_sha256: str, path: str | Path) -> None:
    """With ``$XLT_MODEL_KEY`` set, the card's HMAC must match it (else
    ``ModelIntegrityError``); without it, nothing is checked here."""
    key = signing_key()
    if key is None:
        return
    given = card.get(CARD_HMAC_KEY)
    if not isinstance(given, str):
        raise ModelIntegrityError(
            f"{path}: ${KEY_ENV} is set but this model card is not signed (no "
            f"{CARD_HMAC_KEY}: it was fitted without a key, so an edit to it cannot be "
            f"detected); refit with ${KEY_ENV} set, or unset ${KEY_ENV} to load unsigned "
            "models")
    if not hmac.compare_digest(given, card_hmac(card, model_sha256, key)):
        raise ModelIntegrityError(
            f"{path}: the card's {CARD_HMAC_KEY} does not match ${KEY_ENV}: the card or the "
            "model file changed after signing, or another key signed it; restore the "
            "original model directory or refit with your key")


def signature_status(card: dict[str, Any]) -> str:
    """How far a loaded card is vouched for: 'verified' (HMAC checked with
    ``$XLT_MODEL_KEY``), 'signed, not verified' (an HMAC, no key here) or 'checksum only'."""
    if CARD_HMAC_KEY not in card:
        return "checksum only"
    return "verified" if os.environ.get(KEY_ENV, "").strip() else "signed, not verified"


# -- plain state <-> (JSON, arrays) ------------------------------------------------------------
def _type_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


class _Encoder:
    """A tree of plain data and trusted objects -> JSON-able tree + named arrays."""

    def __init__(self) -> None:
        self.arrays: dict[str, Any] = {}

    def array(self, a: Any) -> str:
        name = f"a{len(self.arrays)}"
        self.arrays[name] = a
        return name

    def encode(self, x: Any) -> Any:
        import numpy as np
        if isinstance(x, np.generic):  # before float: np.float64 is a float subclass
            return {_TAG: "scalar", "array": self.array(np.asarray(x))}
        if x is None or isinstance(x, (bool, int, float, str)):
            return _plain_scalar(x)
        if isinstance(x, np.ndarray):
            return self.encode_array(x)
        if isinstance(x, (list, tuple)):
            items = [self.encode(v) for v in x]
            return items if isinstance(x, list) else {_TAG: "tuple", "items": items}
        if isinstance(x, dict):
            if all(type(k) is str for k in x) and _TAG not in x:
                return {k: self.encode(v) for k, v in x.items()}
            return {_TAG: "dict", "items": [[self.encode(k), self.encode(v)]
                                            for k, v in x.items()]}
        name = _type_name(x)
        if name not in TRUSTED_TYPES:
            raise UntrustedModelError(f"refusing to save a {name}: the model file holds plain "
                                      "data and the types in predictor.persist.TRUSTED_TYPES "
                                      "(add it there after review, with a plain state)")
        state = x.__getstate__()
        if not isinstance(state, dict):
            raise UntrustedModelError(f"refusing to save a {name}: its state is not a dict")
        return {_TAG: "object", "type": name, "state": self.encode(state)}

    def encode_array(self, x: Any) -> Any:
        if x.dtype.kind == "O":
            if not all(type(v) is str for v in x.ravel().tolist()):
                raise UntrustedModelError("refusing to save an object array that is not all "
                                          "strings")
            return {_TAG: "strings", "shape": list(x.shape), "items": x.ravel().tolist()}
        if x.dtype.kind not in _ARRAY_KINDS:
            raise UntrustedModelError(f"refusing to save an array of dtype {x.dtype}")
        return {_TAG: "array", "array": self.array(x)}


def _plain_scalar(x: Any) -> Any:
    """A subclass of a JSON scalar (an IntEnum, a str subclass) as the plain scalar."""
    for t in (bool, int, float, str):
        if isinstance(x, t):
            return t(x)
    return x


def _types_in(tree: Any) -> set[str]:
    """Every object type a decoded state would construct (checked before building any)."""
    out: set[str] = set()
    stack = [tree]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            if x.get(_TAG) == "object":
                out.add(str(x.get("type")))
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return out


def _decode(x: Any, arrays: Any) -> Any:
    import numpy as np
    if isinstance(x, list):
        return [_decode(v, arrays) for v in x]
    if not isinstance(x, dict):
        return x
    tag = x.get(_TAG)
    if tag is None:
        return {k: _decode(v, arrays) for k, v in x.items()}
    if tag in ("array", "scalar"):
        a = arrays[x["array"]]
        if a.dtype.kind not in _ARRAY_KINDS:
            raise ValueError(f"array of dtype {a.dtype}")
        return a[()] if tag == "scalar" else a
    if tag == "strings":
        out = np.empty(len(x["items"]), dtype=object)
        out[:] = [str(v) for v in x["items"]]
        return out.reshape(x["shape"])
    if tag == "tuple":
        return tuple(_decode(v, arrays) for v in x["items"])
    if tag == "dict":
        return {_hashable(_decode(k, arrays)): _decode(v, arrays) for k, v in x["items"]}
    if tag == "object":
        return _construct(str(x["type"]), _decode(x["state"], arrays))
    raise ValueError(f"unknown tag {tag!r}")


def _hashable(k: Any) -> Any:
    return tuple(_hashable(v) for v in k) if isinstance(k, list) else k


def _construct(name: str, state: Any) -> Any:
    """An allow-listed class rebuilt from its plain state, as unpickling would, but only
    for the names in ``TRUSTED_TYPES`` (checked by the caller before anything is built)."""
    if name not in TRUSTED_TYPES or not isinstance(state, dict):
        raise UntrustedModelError(f"refusing to construct {name}")
    module, _, qualname = name.rpartition(".")
    cls = getattr(importlib.import_module(module), qualname, None)
    if not isinstance(cls, type) or f"{cls.__module__}.{cls.__qualname__}" != name:
        raise UntrustedModelError(f"{name} does not name a class of its own module")
    obj = cls.__new__(cls)
    if hasattr(obj, "__setstate__"):
        obj.__setstate__(state)
    else:
        obj.__dict__.update(state)
    return obj


def dumps_state(obj: Any) -> bytes:
    """``obj`` (plain data, arrays and ``TRUSTED_TYPES`` objects) as the model file's bytes."""
    import numpy as np
    enc = _Encoder()
    tree = enc.encode(obj)
    doc = json.dumps({"format": MODEL_FORMAT, "state": tree}, ensure_ascii=False,
                     allow_nan=True).encode("utf-8")
    buf = io.BytesIO()
    np.savez(buf, **{_STATE_MEMBER.removesuffix(".json"): np.frombuffer(doc, dtype=np.uint8)},
             **enc.arrays)
    return buf.getvalue()


def loads_state(data: bytes, where: str | Path) -> Any:
    """The object of :func:`dumps_state`'s bytes; anything unreadable or outside the
    allow-list raises ``ModelIntegrityError`` before an object is built."""
    import numpy as np
    try:
        arrays = np.load(io.BytesIO(data), allow_pickle=False)
        doc = json.loads(bytes(arrays[_STATE_MEMBER.removesuffix(".json")]).decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
            raise ValueError(f"not a {MODEL_FORMAT} model file")
        tree = doc["state"]
    except Exception as exc:  # noqa: BLE001 - a malformed archive with a matching checksum
        raise ModelIntegrityError(f"{where}: not a readable model file "
                                  f"({type(exc).__name__}: {exc})") from None
    untrusted = sorted(_types_in(tree) - TRUSTED_TYPES)
    if untrusted:
        raise UntrustedModelError(f"{where}: refusing to load types outside the allow-list: "
                                  f"{untrusted}")
    try:
        return _decode(tree, arrays)
    except UntrustedModelError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ModelIntegrityError(f"{where}: not a readable model file "
                                  f"({type(exc).__name__}: {exc})") from None


# -- save / load -------------------------------------------------------------------------------
def save(obj: Any, directory: str | Path, card: dict[str, Any], *,
         keep_library_versions: bool = False) -> Path:
    """Write ``obj`` (the arrays format) and the card (JSON, with the file's sha256, its
    checksum, and an HMAC when ``$XLT_MODEL_KEY`` is set) into ``directory``.
    ``keep_library_versions``: keep the card's own ``library_versions`` (a conversion of an
    existing fit), instead of this environment's."""
    key = signing_key()  # an empty key fails before anything is written
    data = dumps_state(obj)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_path = directory / MODEL_FILE
    _atomic_write(model_path, data)
    versions = card.get("library_versions") if keep_library_versions else None
    full = {"card_version": CARD_VERSION,
            **{k: v for k, v in card.items() if k not in GENERATED_FIELDS},
            "model_file": MODEL_FILE, FORMAT_KEY: MODEL_FORMAT,
            "model_sha256": hashlib.sha256(data).hexdigest(),
            "library_versions": versions or library_versions()}
    # hash what load() will read back: the JSON round trip turns numpy scalars into numbers
    full = json.loads(json.dumps(full, default=_json_default))
    if key is not None:
        full[CARD_HMAC_KEY] = card_hmac(full, full["model_sha256"], key)
    full[CARD_HASH_KEY] = card_sha256(full)
    _atomic_write(directory / CARD_FILE,
                  json.dumps(full, indent=2, sort_keys=False, ensure_ascii=False).encode("utf-8"))
    return model_path


def model_path_for(directory: str | Path, card: dict[str, Any]) -> Path:
    """The card's ``model_file`` inside ``directory``; anything that leaves it is refused."""
    directory = Path(directory)
    name = card.get("model_file", LEGACY_MODEL_FILE)
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
    """(fitted object, card) after the checksum, signature and allow-list checks; refuses
    anything else."""
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
    verify_signature(card, digest, directory / CARD_FILE)
    fmt = card.get(FORMAT_KEY)
    if fmt == MODEL_FORMAT:
        return loads_state(data, model_path), card
    if fmt is not None:
        raise ModelIntegrityError(f"{model_path}: model_format {fmt!r} is not one this xlt "
                                  f"reads ({MODEL_FORMAT!r}); update xlt or refit")
    return _load_skops(data, model_path), card


def _load_skops(data: bytes, model_path: Path) -> Any:
    """A model file written before the arrays format (skops), with the same allow-list.
    Why kept: model directories fitted before it still load (slowly: skops imports every
    scikit-learn estimator); ``python -m predictor.studies.migrate_model DIR`` converts one."""
    try:
        import skops.io as sio
    except ImportError:
        raise ModelIntegrityError(f"{model_path} is a skops file (an older xlt's format) and "
                                  "skops is not installed: `pip install skops`, then convert "
                                  "it with `python -m predictor.studies.migrate_model "
                                  f"{model_path.parent}`") from None
    try:
        found = sio.get_untrusted_types(data=data)
    except Exception as exc:  # noqa: BLE001 - a malformed archive with a forged checksum
        raise ModelIntegrityError(f"{model_path}: not a readable skops file ({exc})") from None
    untrusted = sorted(set(found) - TRUSTED_TYPES)
    if untrusted:
        raise UntrustedModelError(f"{model_path}: refusing to load types outside the "
                                  f"allow-list: {untrusted}")
    return sio.loads(data, trusted=sorted(found))
