"""The quick start: one default-path rule for every command, resolved the same from any
working directory, with the paths tried in the error; and ``xlt-app`` serving HTTP with
stdin closed and no first-run prompt."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app.cli import default_models_dir
from app.ui import favicon
from measure.data import DataError, resolve_data_dir
from measure.knowledge import paths
from measure.knowledge.paths import DATA, MODELS, PUBLISHED, DefaultPathNotFound
from predictor.dataset import default_published_dir
from predictor.serving import default_predictor_dir

REPO = Path(__file__).resolve().parent.parent
ENV_VARS = ("XLT_DATA_DIR", "XLT_PUBLISHED_DIR", "XLT_MODELS_DIR")


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _defaults() -> dict[str, Path]:
    return {"data": resolve_data_dir(None), "published": default_published_dir(),
            "models": default_models_dir(), "predictor": default_predictor_dir().parent}


def test_every_command_resolves_the_same_from_elsewhere(clean_env: pytest.MonkeyPatch,
                                                        tmp_path: Path, shared_data: Path) -> None:
    clean_env.chdir(REPO)
    inside = _defaults()
    clean_env.chdir(tmp_path)                 # outside the checkout: falls back to it
    outside = _defaults()
    assert {k: v.resolve() for k, v in inside.items()} == {k: v.resolve() for k, v in outside.items()}
    assert outside["models"].resolve() == outside["predictor"].resolve() == (REPO / "models").resolve()
    assert outside["data"].resolve() == (shared_data / "nli").resolve()


def test_working_directory_wins_over_the_checkout(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "models" / "predictor").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "nli").mkdir(parents=True)
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    clean_env.chdir(sub)                      # a parent of the working directory counts too
    assert paths.find_default(MODELS) == tmp_path.resolve() / "models"
    assert paths.find_default(DATA) == tmp_path.resolve() / "shared" / "data" / "nli"
    clean_env.setenv("XLT_MODELS_DIR", str(tmp_path / "elsewhere"))
    assert paths.find_default(MODELS) == tmp_path / "elsewhere"      # the variable wins


def test_errors_name_the_paths_tried(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_checkout = tmp_path / "site-packages"
    fake_checkout.mkdir()
    clean_env.setattr(paths, "_CHECKOUT", fake_checkout)
    work = tmp_path / "work"
    work.mkdir()
    clean_env.chdir(work)
    if any(p.is_dir() for kind in (DATA, PUBLISHED, MODELS) for p in paths.candidates(kind)):
        pytest.skip("a real default exists above the temporary directory")
    for kind in (DATA, PUBLISHED, MODELS):
        with pytest.raises(DefaultPathNotFound) as info:
            paths.resolve_default(kind)
        msg = str(info.value)
        assert f"${kind.env}" in msg and str(work / kind.relative) in msg and kind.flag in msg
    with pytest.raises(DataError, match="tried"):
        resolve_data_dir(None)


def test_cli_errors_name_the_paths_tried(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env["XLT_DATA_DIR"] = str(tmp_path / "missing")
    proc = subprocess.run([sys.executable, "-m", "measure.cli", "data"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and str(tmp_path / "missing") in proc.stderr
    assert "Traceback" not in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("headless", [True, False])
def test_xlt_app_serves_with_stdin_closed(tmp_path: Path, headless: bool) -> None:
    """No ~/.streamlit, stdin closed, no display: the server listens, no e-mail prompt."""
    pytest.importorskip("streamlit")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["HOME"] = str(tmp_path)                               # a first run: no ~/.streamlit
    args = [sys.executable, "-m", "app.cli", "--port", str(port)] + (["--headless"] if headless else [])
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        status = None
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    status = r.status
                    break
            except OSError:
                time.sleep(0.5)
        assert status == 200, f"no HTTP answer; exit code {proc.poll()}"
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert "Email" not in out and "usage statistics" not in out.lower(), out


def test_xlt_app_busy_port_and_bad_models_dir(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "app.cli", "--headless", "--port", str(port)],
                              cwd=REPO, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "not free" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "app.cli", "--headless", "--models-dir",
                           str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and str(tmp_path / "nope") in proc.stderr


def test_no_page_fetches_its_icon_from_a_font_host() -> None:
    """Streamlit loads a ``:material/...:`` favicon from fonts.gstatic.com; every page's tab
    icon must be an emoji (inline SVG) or Streamlit's bundled default."""
    icons = set()
    for page in [REPO / "app" / "Home.py", *sorted((REPO / "app" / "pages").glob("*.py"))]:
        icons |= set(re.findall(r'ui\.setup\([^)]*?"(:material/[a-z_]+:)"', page.read_text(), re.S))
        assert "gstatic" not in page.read_text() and "googleapis" not in page.read_text()
    assert len(icons) >= 6
    for icon in icons:
        fav = favicon(icon)
        assert fav is None or not fav.startswith(":material/"), icon
