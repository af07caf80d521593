"""URIEL distances between languages, computed from the lang2vec 1.1.2 vectors.

Why this module: lang2vec 1.1.2 ships URIEL's feature vectors but no ``distance()``; later
lang2vec versions only *look up* precomputed matrices (``distances.zip``, 4,005 languages)
that are not installed here and cannot be downloaded at run time. So the distances are
recomputed from the vectors, with the definitions that reproduce those published matrices
(checked pair by pair in ``tests/test_uriel.py``; sources and tolerances are listed there):

* ``syntactic``, ``phonological``, ``inventory``: *angular* distance ``2*theta/pi`` (not
  1 - cosine) between the binary vectors of URIEL's observed features, each feature being
  the element-wise union of all sources (lang2vec ``syntax_wals|syntax_sswl|
  syntax_ethnologue``, ``phonology_wals|phonology_ethnologue``, the seven
  ``inventory_phoible_*`` sets plus ``inventory_ethnologue``); a missing value counts as
  absent (0), as in URIEL. Inventory reproduces the published values exactly; syntax and
  phonology within the published rounding plus small WALS-version drift.
* ``featural``: the same angular distance over all 289 typological features together.
* ``geographic``: orthodromic (great-circle) distance divided by the antipodal distance,
  in [0, 1]. The ``geo`` vectors hold each language's great-circle distance to 299 fixed
  points (divided by the antipodal distance), so the language's location is recovered by
  least squares from them (residual <= 0.004 for every real language).
* ``genetic``: ``1 - shared / (max(depth_a, depth_b) + 1)``: ``shared`` is the number of
  Glottolog family-tree nodes (``fam`` features) both languages descend from, ``depth``
  a language's number of such nodes, and ``+ 1`` counts the language's own leaf, as URIEL
  does. URIEL's published matrix normalises by the depth of whichever language comes first
  in its internal file order, an asymmetry; normalising by the deeper path keeps the
  distance symmetric and equals the published value whenever the deeper language came
  first (see the tests).

``typology="knn"`` swaps the observed vectors for lang2vec's kNN-imputed ones
(``syntax_knn`` ...), which have no gaps: use it when coverage matters more than fidelity
to URIEL's published numbers.

Missing data is never a silent 0: a typological distance is NaN when either language has
no feature observed as present in that group (its vector is zero, so the angle is
undefined); ``geographic`` is NaN for the few pseudo-codes without a location (``und``,
``mul`` ...); ``genetic`` is never NaN (a language without a recorded family, an isolate
such as Basque, shares no node with any other, so its distance is 1, as in URIEL). A
language and itself are at distance 0 for every kind.

Speed: lang2vec's ``get_features`` re-reads its ``.npz`` files on every call and returns
Python lists, far too slow for feature building. The same files are read once here into
compact arrays for all 7,970 languages, cached on disk under
``platformdirs.user_cache_dir("xlt")/lang2vec`` (or ``$XLT_CACHE_DIR/lang2vec``) and in
memory per process; every distance is then a vectorised array operation.

The disk cache holds no code: one ``.npz`` of plain arrays, read with ``allow_pickle=False``,
named by the data signature (lang2vec's version and its files' sizes and times) and written
atomically (:mod:`measure.outputs`). Why not a pickle (``joblib.Memory`` before): the Ray docs
put ``$XLT_CACHE_DIR`` on a shared file system, and a pickle planted there ran its code in
every ``xlt-predict`` and ``xlt-app`` process. A cache file that does not load, has other
arrays, another signature or contents that do not match its recorded SHA-256 is rebuilt
from lang2vec's files and rewritten (the checksum catches accidents -- a truncated copy, a
half-synced share -- not an attacker, who could recompute it: at worst wrong distances,
never code).

Language codes: ISO 639-3 codes present in lang2vec's data files. ``lang2vec.LANGUAGES`` is
not used as the list because in 1.1.2 it is an artefact of an indexing bug (the first
3,718 rows of ``family_features.npz`` plus the learned-vector languages) that leaves out
codes lang2vec's own ``get_features`` accepts, such as ``ara`` or ``swa``; every code in
``lang2vec.LANGUAGES`` is known here.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from measure.knowledge.languages import lang2vec_data_dir  # found without importing lang2vec
from measure.outputs import OutputError, atomic_write

DISTANCE_KINDS: tuple[str, ...] = ("syntactic", "phonological", "inventory", "featural",
                                   "genetic", "geographic")
TYPOLOGY_SOURCES: tuple[str, ...] = ("observed", "knn")

# Feature-name prefixes of each typological kind (URIEL's S_, P_ and INV_ features).
_PREFIXES: dict[str, tuple[str, ...]] = {
    "syntactic": ("S_",), "phonological": ("P_",), "inventory": ("INV_",),
    "featural": ("S_", "P_", "INV_"),
}
_TYPOLOGICAL = tuple(_PREFIXES)
_FILES = ("features.npz", "feature_predictions.npz", "family_features.npz",
          "geocoord_features.npz", "letter_codes.json")
_GEO_MAX_RESIDUAL = 0.05   # a geo vector the fit cannot explain is not a location
_CHUNK = 65536             # pairs per vectorised block (bounds memory)
_FORMAT = 3                # bump when the cached table layout changes (3: .npz, no pickle)
# the arrays of a cache file, besides its "meta" (JSON text: signature and content SHA-256)
_TABLE_KEYS = ("codes", "feats", "observed", "knn", "fam_data", "fam_indices", "fam_indptr",
               "fam_shape", "geo_unit", "geo_ok", "letter_codes")


# -- locating and caching lang2vec's data -------------------------------------------------
def cache_dir() -> Path:
    """Where the compact URIEL tables are cached: ``$XLT_CACHE_DIR`` or the user cache."""
    base = os.environ.get("XLT_CACHE_DIR")
    if not base:
        import platformdirs
        base = platformdirs.user_cache_dir("xlt")
    return Path(base) / "lang2vec"


def _data_signature(data_dir: Path) -> tuple:
    """What the cached tables depend on: lang2vec's version and its data files."""
    try:
        version = metadata.version("lang2vec")
    except metadata.PackageNotFoundError:
        version = "unknown"
    files = tuple((name, (data_dir / name).stat().st_size, (data_dir / name).stat().st_mtime_ns)
                  for name in _FILES)
    return (_FORMAT, version, files)


def _load_npz(data_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(data_dir / name, allow_pickle=False) as z:
        return z["langs"].astype(str), z["feats"].astype(str), z["data"]


def _locate(geo: np.ndarray, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of language locations from their distances to URIEL's fixed points.

    ``geo[i, k] = angle(language i, point k) / pi``, so ``cos(pi * geo) = P @ x`` is linear
    in the location ``x``; least squares over the 299 points recovers it. Returns the unit
    vectors and whether each fit explains its vector (placeholders like ``und`` do not).
    """
    latlon = np.radians(np.array([[float(t) for t in f.split("_")[1:3]] for f in feats]))
    lat, lon = latlon[:, 0], latlon[:, 1]
    points = np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    geo = geo.astype(np.float64)
    x = np.linalg.lstsq(points, np.cos(np.pi * geo).T, rcond=None)[0].T
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x / np.where(norm > 0, norm, 1.0)
    fitted = np.arccos(np.clip(unit @ points.T, -1.0, 1.0)) / np.pi
    ok = (norm[:, 0] > 0) & (np.abs(fitted - geo).max(axis=1) <= _GEO_MAX_RESIDUAL)
    return unit, ok


def _build_tables(d: Path) -> dict[str, np.ndarray]:
    """Read lang2vec's files once into compact per-language arrays (all 7,970 languages).

    Each ``.npz`` has its own language order, so every table is re-indexed to one order.
    """
    codes, feats, obs = _load_npz(d, "features.npz")
    order = np.argsort(codes)
    codes = codes[order]
    pos = {c: i for i, c in enumerate(codes)}
    # union over sources: -1 missing, 0 absent, 1 present; URIEL counts missing as absent
    observed = obs.max(axis=2)[order] > 0

    def aligned(name: str) -> tuple[np.ndarray, np.ndarray]:
        langs, names, data = _load_npz(d, name)
        if set(langs) != set(codes):
            raise ValueError(f"lang2vec's {name} covers other languages than features.npz; "
                             "reinstall lang2vec==1.1.2")
        rows = np.fromiter((pos[c] for c in langs), dtype=np.int64, count=len(langs))
        out = np.empty_like(data[..., 0])
        out[rows] = data[..., 0]
        return names, out

    knn_feats, knn = aligned("feature_predictions.npz")
    if not np.array_equal(knn_feats, feats):
        raise ValueError("lang2vec's kNN features differ from its observed ones; "
                         "reinstall lang2vec==1.1.2")
    _, fam = aligned("family_features.npz")
    geo_feats, geo = aligned("geocoord_features.npz")
    unit, located = _locate(geo, geo_feats)
    fam_csr = sparse.csr_matrix(fam > 0, dtype=np.float64)
    with open(d / "letter_codes.json", encoding="utf-8") as fh:
        letter_codes = json.load(fh)
    return {"codes": codes, "feats": feats, "observed": observed, "knn": knn > 0,
            "fam_data": fam_csr.data, "fam_indices": fam_csr.indices,
            "fam_indptr": fam_csr.indptr, "fam_shape": np.array(fam_csr.shape),
            "geo_unit": unit, "geo_ok": located,
            "letter_codes": np.array(sorted(letter_codes.items()), dtype=str)}


@dataclass(frozen=True)
class _Tables:
    codes: np.ndarray                 # sorted ISO 639-3 codes
    index: dict[str, int]
    feats: np.ndarray                 # the 289 typological feature names
    vectors: dict[str, np.ndarray]    # "observed" / "knn" -> bool (n, 289)
    fam: sparse.csr_matrix            # (n, 3718) ancestor indicators
    depth: np.ndarray                 # ancestors per language
    geo_unit: np.ndarray              # (n, 3) location on the unit sphere
    geo_ok: np.ndarray                # location known
    letter_codes: dict[str, str]      # lang2vec's ISO 639-1 -> 639-3 map (for hints only)


# -- the disk cache: plain arrays, never a pickle ----------------------------------------------
def cache_file(signature: tuple | None = None) -> Path:
    """The cache file of the tables built from data with ``signature`` (default: the
    installed lang2vec's data)."""
    if signature is None:
        signature = _data_signature(lang2vec_data_dir())
    key = hashlib.sha256(json.dumps(signature).encode("utf-8")).hexdigest()[:16]
    return cache_dir() / f"uriel-tables-{key}.npz"


def _content_sha256(raw: dict[str, np.ndarray]) -> str:
    """Digest of every array's name, dtype, shape and bytes: a cache file altered after it
    was written (a bad copy, a half-synced share) no longer matches and is rebuilt."""
    h = hashlib.sha256()
    for k in _TABLE_KEYS:
        a = np.ascontiguousarray(raw[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _read_cache(path: Path, signature: tuple) -> dict[str, np.ndarray] | None:
    """The cached tables, or None when the file is missing, unreadable, not an ``.npz`` of
    exactly these arrays (a pickle is refused by ``allow_pickle=False`` before anything of
    it runs), of another signature, or altered since it was written."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if sorted(z.files) != sorted((*_TABLE_KEYS, "meta")):
                return None
            raw = {k: z[k] for k in _TABLE_KEYS}
            meta = json.loads(str(z["meta"]))
    except Exception:  # noqa: BLE001 - any unreadable cache (bad zip, pickle, I/O) is rebuilt
        return None
    ok = (isinstance(meta, dict) and meta.get("signature") == json.loads(json.dumps(signature))
          and meta.get("sha256") == _content_sha256(raw))
    return raw if ok else None


def _write_cache(path: Path, raw: dict[str, np.ndarray], signature: tuple) -> None:
    """Write the tables to ``path`` atomically; an unwritable cache is skipped (the tables
    then live in this process's memory only)."""
    meta = json.dumps({"signature": signature, "sha256": _content_sha256(raw)})

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:          # a file object: np.savez adds no ".npz"
            np.savez(fh, meta=np.array(meta), **raw)

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write)
    except (OSError, OutputError):
        pass


def _cached_tables() -> dict[str, np.ndarray]:
    """The raw tables from the disk cache, else built from lang2vec's files and cached."""
    data_dir = lang2vec_data_dir()
    signature = _data_signature(data_dir)
    path = cache_file(signature)
    raw = _read_cache(path, signature)
    if raw is None:
        raw = _build_tables(data_dir)
        _write_cache(path, raw, signature)
    return raw


@lru_cache(maxsize=1)
def _tables() -> _Tables:
    """The tables, from memory, else the disk cache, else lang2vec's files."""
    raw = _cached_tables()
    fam = sparse.csr_matrix((raw["fam_data"], raw["fam_indices"], raw["fam_indptr"]),
                            shape=tuple(int(s) for s in raw["fam_shape"]))
    codes = raw["codes"]
    depth = np.asarray(fam.sum(axis=1)).ravel().astype(np.int64)
    letters = {str(k): str(v) for k, v in raw["letter_codes"]}
    return _Tables(codes=codes, index={c: i for i, c in enumerate(codes)}, feats=raw["feats"],
                   vectors={"observed": raw["observed"], "knn": raw["knn"]}, fam=fam,
                   depth=depth, geo_unit=raw["geo_unit"], geo_ok=raw["geo_ok"],
                   letter_codes=letters)


def known_languages() -> frozenset[str]:
    """ISO 639-3 codes that have URIEL vectors in lang2vec 1.1.2 (7,970 codes)."""
    return _known()


@lru_cache(maxsize=1)
def _known() -> frozenset[str]:
    return frozenset(_tables().codes.tolist())


# -- validation -----------------------------------------------------------------------------
def _check_kind(kind: str) -> str:
    if kind not in DISTANCE_KINDS:
        raise ValueError(f"unknown URIEL distance kind {kind!r}; choose from {DISTANCE_KINDS}")
    return kind


def _check_typology(typology: str) -> str:
    if typology not in TYPOLOGY_SOURCES:
        raise ValueError(f"unknown typology source {typology!r}; choose from {TYPOLOGY_SOURCES} "
                         "('observed' reproduces URIEL's published distances, 'knn' uses "
                         "lang2vec's gap-free imputed vectors)")
    return typology


def _close_codes(code: str, known: Sequence[str] | dict[str, int], n: int = 5) -> list[str]:
    """difflib's similar codes, ranked so a shared prefix wins ties ('englsh' -> 'eng')."""
    scored = []
    for cand in known:
        ratio = difflib.SequenceMatcher(None, code, cand).ratio()
        if ratio >= 0.6:
            prefix = len(os.path.commonprefix([code, cand]))
            scored.append((-(ratio + 0.1 * prefix), cand))
    return [cand for _, cand in sorted(scored)[:n]]


def _unknown_code(code: str, t: _Tables) -> ValueError:
    hints: list[str] = []
    if code.lower() in t.letter_codes:
        hints.append(f"{code!r} looks like an ISO 639-1 code; lang2vec maps it to "
                     f"{t.letter_codes[code.lower()]!r} (mapping dataset codes is the "
                     "caller's job)")
    close = _close_codes(code.lower(), t.index)
    if close:
        hints.append("close codes: " + ", ".join(close))
    else:
        hints.append("see measure.knowledge.uriel.known_languages() for the accepted codes")
    return ValueError(f"unknown language code {code!r}: not an ISO 639-3 code in URIEL/lang2vec "
                      f"1.1.2; " + "; ".join(hints))


def _indices(codes: Sequence[str], t: _Tables) -> np.ndarray:
    out = np.empty(len(codes), dtype=np.int64)
    cache: dict[str, int] = {}
    for i, code in enumerate(codes):
        if not isinstance(code, str):
            raise ValueError(f"language codes must be ISO 639-3 strings, got {code!r}")
        j = cache.get(code)
        if j is None:
            j = t.index.get(code.strip().lower())
            if j is None:
                raise _unknown_code(code, t)
            cache[code] = j
        out[i] = j
    return out


# -- the distances ---------------------------------------------------------------------------
class UrielDistances:
    """All six URIEL distances for many language pairs at once (vectorised).

    Parameters
    ----------
    typology : "observed" (default; URIEL's published definition, NaN where URIEL has no
        data) or "knn" (lang2vec's imputed vectors, never NaN for real languages).

    ``pairs(a, b)`` returns one row per (a[i], b[i]) and one column per kind; rows are
    de-duplicated before computing, so 50,000 rows over a few hundred languages take well
    under a second once the tables are cached.
    """

    def __init__(self, typology: str = "observed") -> None:
        self.typology = _check_typology(typology)
        self._t = _tables()
        masks = {k: np.array([f.startswith(_PREFIXES[k]) for f in self._t.feats])
                 for k in _TYPOLOGICAL}
        self._cols = {k: np.flatnonzero(m) for k, m in masks.items()}

    # individual kinds on index arrays (ia, ib) of equal length
    def _typological(self, kind: str, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        vec = self._t.vectors[self.typology]
        cols = self._cols[kind]
        langs, inv = np.unique(np.concatenate([ia, ib]), return_inverse=True)
        X = vec[np.ix_(langs, cols)]                  # 0/1 vectors of the languages involved
        count = X.sum(axis=1).astype(np.float64)
        ua, ub = inv[: len(ia)], inv[len(ia):]
        shared = np.empty(len(ia))
        for s in range(0, len(ia), _CHUNK):
            shared[s:s + _CHUNK] = (X[ua[s:s + _CHUNK]] & X[ub[s:s + _CHUNK]]).sum(axis=1)
        # binary vectors: cosine = shared / sqrt(n_a * n_b), exactly 1 for equal vectors
        denom = np.sqrt(count[ua] * count[ub])
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.clip(shared / denom, 0.0, 1.0)
        out = np.arccos(cos) * 2.0 / np.pi            # angle <= pi/2 for 0/1 vectors
        out[denom == 0] = np.nan
        return out

    def _genetic(self, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        out = np.empty(len(ia))
        for s in range(0, len(ia), _CHUNK):
            a, b = ia[s:s + _CHUNK], ib[s:s + _CHUNK]
            shared = np.asarray(self._t.fam[a].multiply(self._t.fam[b]).sum(axis=1)).ravel()
            deeper = np.maximum(self._t.depth[a], self._t.depth[b])
            out[s:s + _CHUNK] = 1.0 - shared / (deeper + 1.0)
        return out

    def _geographic(self, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        a, b = self._t.geo_unit[ia], self._t.geo_unit[ib]
        theta = np.arctan2(np.linalg.norm(np.cross(a, b), axis=1), np.einsum("ij,ij->i", a, b))
        out = theta / np.pi
        out[~(self._t.geo_ok[ia] & self._t.geo_ok[ib])] = np.nan
        return out

    def _values(self, kind: str, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        if kind in _PREFIXES:
            out = self._typological(kind, ia, ib)
        elif kind == "genetic":
            out = self._genetic(ia, ib)
        else:
            out = self._geographic(ia, ib)
        out[ia == ib] = 0.0
        return out

    # public API
    def pairs(self, a: Sequence[str], b: Sequence[str],
              kinds: Sequence[str] = DISTANCE_KINDS) -> pd.DataFrame:
        """Distances of the pairs (a[i], b[i]): one column per kind, NaN where unknown."""
        if len(a) != len(b):
            raise ValueError(f"a and b must have the same length, got {len(a)} and {len(b)}")
        kinds = [_check_kind(k) for k in kinds]
        ia, ib = _indices(list(a), self._t), _indices(list(b), self._t)
        lo, hi = np.minimum(ia, ib), np.maximum(ia, ib)          # symmetric: dedupe {a, b}
        keys, inverse = np.unique(lo * len(self._t.codes) + hi, return_inverse=True)
        ua, ub = keys // len(self._t.codes), keys % len(self._t.codes)
        return pd.DataFrame({k: self._values(k, ua, ub)[inverse] for k in kinds})

    def distance(self, a: str, b: str, kind: str) -> float:
        """One distance; see the module docstring for the definitions."""
        return float(self.pairs([a], [b], [kind]).iloc[0, 0])

    def matrix(self, langs: Sequence[str], kind: str) -> np.ndarray:
        """Symmetric len(langs) x len(langs) matrix, 0 on the diagonal, NaN where unknown."""
        _check_kind(kind)
        idx = _indices(list(langs), self._t)
        n = len(idx)
        iu, ju = np.triu_indices(n, 1)
        mat = np.zeros((n, n))
        if len(iu):
            vals = self._values(kind, idx[iu], idx[ju])
            mat[iu, ju] = vals
            mat[ju, iu] = vals
        return mat


@lru_cache(maxsize=len(TYPOLOGY_SOURCES))
def _engine(typology: str) -> UrielDistances:
    return UrielDistances(typology)


def distance(a: str, b: str, kind: str, *, typology: str = "observed") -> float:
    """URIEL ``kind`` distance between ISO 639-3 codes ``a`` and ``b`` (NaN when unknown)."""
    return _engine(_check_typology(typology)).distance(a, b, kind)


def distance_matrix(langs: list[str], kind: str, *, typology: str = "observed") -> np.ndarray:
    """Pairwise URIEL ``kind`` distances among ``langs`` (symmetric, zero diagonal)."""
    return _engine(_check_typology(typology)).matrix(langs, kind)


def distances_for_pairs(a: Sequence[str], b: Sequence[str],
                        kinds: Sequence[str] = DISTANCE_KINDS, *,
                        typology: str = "observed") -> pd.DataFrame:
    """All requested kinds for the pairs (a[i], b[i]) at once; one row per pair."""
    return _engine(_check_typology(typology)).pairs(a, b, kinds)
