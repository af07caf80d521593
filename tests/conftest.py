"""Shared fixtures. The real data lives in ../shared/data (never copied into the repo).

With CI=true a missing ../shared/data is a failure, not a skip: CI must exercise the
real data, and a silently skipped suite would look green.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("XLT_SHARED_DIR", REPO.parent / "shared")) / "data"


def _require(path: Path) -> Path:
    if path.is_dir():
        return path
    msg = f"{path} not found (tests read the real data from ../shared/data)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def nli_dir(shared_data: Path) -> Path:
    return _require(shared_data / "nli")


@pytest.fixture(scope="session")
def published_dir(shared_data: Path) -> Path:
    return _require(shared_data / "published")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: thread start-up costs more than the maths (3.6 s vs 8.9 s of training
    on a busy 2-core machine); the engines' workers run one thread per cell anyway.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    try:
        import torch
    except ImportError:  # the fast tests need no torch
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def _no_user_profiles(tmp_path_factory: pytest.TempPathFactory):
    """No test reads the machine's own user profiles (``xlt-measure profile`` writes them to a
    per-user directory that every command reads by default): a tester's profile of some
    language must not move the recorded answers. Tests that exercise the user directory
    set ``XLT_PROFILES_DIR`` themselves."""
    if "XLT_PROFILES_DIR" in os.environ:
        yield
        return
    os.environ["XLT_PROFILES_DIR"] = str(tmp_path_factory.mktemp("no-user-profiles") / "none")
    yield
    os.environ.pop("XLT_PROFILES_DIR", None)
