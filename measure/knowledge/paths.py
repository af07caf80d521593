"""Where xlt looks for its data, published results and models when no path is given.

Every command (``xlt-measure``, ``xlt-predict``, ``xlt-app``) resolves its defaults here, so
they agree whether xlt was installed editable or not and whether it runs inside the
checkout or elsewhere. The order is always: the environment variable, then the working
directory and each of its parents, then the checkout this file lives in (editable
installs). A normal ``pip install .`` copies the code into site-packages, so "next to the
package" means nothing there: the working directory is what finds the checkout's
``models/`` and its sibling ``../shared/``.

User profiles (``xlt-measure profile``) have a default of their own, outside the checkout:
``$XLT_PROFILES_DIR``, else the per-user data directory (``platformdirs``), so measuring a
language never writes into the shipped ``models/profiles/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs


@dataclass(frozen=True)
class DefaultPath:
    """One kind of default location: its env variable, its path below a base, and a marker."""

    what: str          # words for the error message
    env: str           # environment variable that overrides the search
    relative: str      # path below a base directory (the checkout or its parent)
    marker: str = ""   # a file or folder that must exist inside, so a stray dir is not taken
    flag: str = ""     # the command-line option that sets it


DATA = DefaultPath("NLI data directory", "XLT_DATA_DIR", "shared/data/nli", "", "--data-dir")
PUBLISHED = DefaultPath("published results directory", "XLT_PUBLISHED_DIR",
                        "shared/data/published", "sumeval2022", "--published-dir")
MODELS = DefaultPath("models directory", "XLT_MODELS_DIR", "models", "predictor", "--models-dir")

_CHECKOUT = Path(__file__).resolve().parents[2]

#: the environment variable naming the directory ``xlt-measure profile`` writes to
PROFILES_ENV = "XLT_PROFILES_DIR"


class DefaultPathNotFound(FileNotFoundError):
    """No default location exists; the message lists every path tried and how to set one."""


def _bases() -> list[Path]:
    cwd = Path.cwd().resolve()
    out: list[Path] = []
    for base in (cwd, *cwd.parents, _CHECKOUT, *_CHECKOUT.parents):
        if base not in out:
            out.append(base)
    return out


def candidates(kind: DefaultPath) -> list[Path]:
    """Every directory tried for ``kind``, in order (the env variable is handled separately)."""
    return [base / kind.relative for base in _bases()]


def find_default(kind: DefaultPath) -> Path | None:
    """The first existing candidate for ``kind`` (env variable first), or None."""
    env = os.environ.get(kind.env)
    if env:
        return Path(env)
    for path in candidates(kind):
        if path.is_dir() and (not kind.marker or (path / kind.marker).exists()):
            return path
    return None


def resolve_default(kind: DefaultPath) -> Path:
    """Like :func:`find_default`, but fail with the paths tried and how to point xlt elsewhere."""
    found = find_default(kind)
    if found is not None:
        return found
    tried = candidates(kind)
    shown = ", ".join(str(p) for p in tried[:4]) + (f" (and {len(tried) - 4} more parents)"
                                                    if len(tried) > 4 else "")
    how = f"pass {kind.flag} DIR or set {kind.env}" if kind.flag else f"set {kind.env}"
    raise DefaultPathNotFound(f"no {kind.what} found: tried ${kind.env} (unset), {shown}; {how}")


def models_subdir(name: str) -> Path:
    """Where an output goes by default: ``name`` in the models directory every command finds
    (:func:`find_default`), or ``./models/name`` when there is none yet."""
    return (find_default(MODELS) or Path("models")) / name


def user_profiles_dir() -> Path:
    """Where ``xlt-measure profile`` writes a user's profiles unless ``--profiles`` is given:
    ``$XLT_PROFILES_DIR``, else ``platformdirs.user_data_dir("xlt")/profiles`` (on Linux
    ``~/.local/share/xlt/profiles``), laid out ``<dir>/<model>/<code>.json`` like the
    shipped ``models/profiles``. Outside the checkout on purpose: the shipped profiles are
    what the shipped predictor was fitted with."""
    env = os.environ.get(PROFILES_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("xlt")) / "profiles"


def find_checkout() -> Path | None:
    """The xlt source checkout (a directory whose ``pyproject.toml`` names the project
    ``xlt``): the working directory or a parent, else the directory above this package
    (editable installs); None for an installed copy run from elsewhere."""
    for base in _bases():
        project = base / "pyproject.toml"
        try:
            if project.is_file() and 'name = "xlt"' in project.read_text(encoding="utf-8"):
                return base
        except (OSError, UnicodeDecodeError):
            continue
    return None


def shipped_profiles_dir(required: bool = True) -> Path | None:
    """The shipped language profiles, ``<models>/profiles`` (``<models>`` found like every
    default above); with ``required=False`` None when there is no models directory."""
    if required:
        return resolve_default(MODELS) / "profiles"
    found = find_default(MODELS)
    return None if found is None else found / "profiles"
