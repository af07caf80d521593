"""Screenshots of the running app for the README (and the helpers the browser test shares).

    python -m app.screenshots --models-dir models --out docs/

starts ``xlt-app --headless`` on a free local port with the given models directory,
opens the Predict and Scaling pages in headless Chromium (Debian's ``chromium``
package, driven by Playwright's Python API -- no browser download), waits until the
page has finished running and its charts are drawn, and writes ``predict.png`` and
``scaling.png`` into ``--out``. Nothing is written anywhere else; the app is stopped
on exit. ``--pages`` takes other page paths (e.g. ``Transfer_grid``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DEFAULT_PAGES = {"Predict": "predict.png", "Scaling": "scaling.png"}


def find_chromium() -> str | None:
    """Debian's Chromium binary, or None (``$XLT_CHROMIUM`` overrides)."""
    env = os.environ.get("XLT_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for cand in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(cand).is_file():
            return cand
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    """Poll Streamlit's health endpoint until it answers 'ok' (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"xlt-app exited with code {proc.returncode}:\n{out}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"xlt-app did not become healthy at {url} within {timeout:.0f} s")


def app_command() -> list[str]:
    """``xlt-app`` beside this interpreter when installed, else ``python -m app.cli`` (same)."""
    script = Path(sys.executable).with_name("xlt-app")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "app.cli"]


@contextmanager
def running_app(models_dir: Path, port: int | None = None,
                profiles: Path | None = None) -> Iterator[str]:
    """Run ``xlt-app --headless --port P --models-dir DIR`` and yield its base URL.

    ``profiles``: a user profiles directory for the app to read (``--profiles``); None
    reads none, whatever this machine's own profiles directory holds (screenshots and
    tests show the models directory's answers)."""
    port = port or free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("XLT_MODELS_DIR", None)  # --models-dir decides
    env["XLT_PROFILES_DIR"] = str(Path(models_dir) / ".no-user-profiles")
    extra = [] if profiles is None else ["--profiles", str(profiles)]
    env.setdefault("STREAMLIT_CLIENT_TOOLBAR_MODE", "viewer")  # no developer menu/Deploy button
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [*app_command(), "--headless", "--port", str(port), "--models-dir", str(models_dir),
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def launch_browser(playwright: Any, executable: str) -> Any:
    """Headless Chromium with networking extras off (the app is local)."""
    return playwright.chromium.launch(executable_path=executable, headless=True,
                                      args=CHROMIUM_ARGS)


def wait_idle(page: Any, timeout_ms: int = 90_000) -> None:
    """Wait until Streamlit has finished running the page script and drawn its charts.

    The app root carries ``data-test-script-state`` ('running' while the script runs);
    right after navigation it is briefly idle *before* the run starts, so a page counts
    as done only once its title is rendered and the state has been idle for 1 s.
    """
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            const done = app && app.getAttribute('data-test-script-state') !== 'running'
                && document.querySelector('[data-testid="stMainBlockContainer"] h1')
                && !document.querySelector('[data-testid="stSpinner"]');
            const now = Date.now();
            if (!done) { window.__xltIdleSince = null; return false; }
            window.__xltIdleSince = window.__xltIdleSince || now;
            return now - window.__xltIdleSince > 1000;
        }""", timeout=timeout_ms, polling=200)
    # charts draw asynchronously after the script ends
    page.wait_for_function(
        """() => [...document.querySelectorAll('.vega-embed')]
                 .every(e => e.querySelector('canvas, svg'))""", timeout=timeout_ms)
    page.wait_for_timeout(800)


def capture(page: Any, path: Path) -> Path:
    """Full-height screenshot: Streamlit scrolls inside its main section, so grow the viewport."""
    height = page.evaluate(
        """() => {
            const m = document.querySelector('[data-testid="stMainBlockContainer"]')
                   || document.querySelector('section.main') || document.body;
            return Math.ceil(m.getBoundingClientRect().top + m.scrollHeight + 40);
        }""")
    size = page.viewport_size or {"width": 1400, "height": 900}
    page.set_viewport_size({"width": size["width"], "height": max(600, min(int(height), 6000))})
    page.wait_for_timeout(600)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def take_screenshots(models_dir: Path, out: Path, pages: dict[str, str] | None = None,
                     width: int = 1400, chromium: str | None = None) -> list[Path]:
    """Start the app, screenshot each page, stop the app; returns the PNG paths."""
    from playwright.sync_api import sync_playwright

    exe = chromium or find_chromium()
    if exe is None:
        raise FileNotFoundError("Chromium not found: install Debian's package "
                                "(apt-get install chromium) or set XLT_CHROMIUM=/path/to/chromium")
    if not models_dir.is_dir():
        raise FileNotFoundError(f"models directory {models_dir} not found; pass --models-dir")
    written = []
    with running_app(models_dir) as url, sync_playwright() as pw:
        browser = launch_browser(pw, exe)
        try:
            page = browser.new_page(viewport={"width": width, "height": 1000})
            for slug, name in (pages or DEFAULT_PAGES).items():
                page.set_viewport_size({"width": width, "height": 1000})
                page.goto(f"{url}/{slug}", wait_until="domcontentloaded")
                wait_idle(page)
                written.append(capture(page, out / name))
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.screenshots",
                                     description="Save PNG screenshots of the app's Predict and "
                                                 "Scaling pages (for the README).")
    parser.add_argument("--models-dir", type=Path, default=Path("models"),
                        help="models directory the app serves (default models)")
    parser.add_argument("--out", type=Path, default=Path("docs"),
                        help="output directory for the PNGs (default docs/)")
    parser.add_argument("--pages", nargs="+", default=None, metavar="PAGE",
                        help="page paths to capture (default Predict Scaling)")
    parser.add_argument("--width", type=int, default=1400, help="viewport width in pixels")
    args = parser.parse_args(argv)
    pages = None if args.pages is None else {p: f"{p.lower() or 'home'}.png" for p in args.pages}
    try:
        paths = take_screenshots(args.models_dir.resolve(), args.out, pages, args.width)
    except (FileNotFoundError, RuntimeError, TimeoutError) as exc:
        print(f"app.screenshots: error: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
