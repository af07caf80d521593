"""``xlt-app``: launch the Streamlit app offline, bound to 127.0.0.1."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
import webbrowser
from pathlib import Path

from measure.knowledge.paths import MODELS, PROFILES_ENV, DefaultPathNotFound, resolve_default

APP_DIR = Path(__file__).resolve().parent


def default_models_dir() -> Path:
    """``$XLT_MODELS_DIR``, else ``models/`` in the working directory or a parent of it, else the
    checkout's (:mod:`measure.knowledge.paths`: the rule every command shares). Fails naming the paths
    tried."""
    return resolve_default(MODELS)


def _open_browser_when_listening(port: int, timeout_s: float = 60.0) -> None:
    """Open the app in the default browser once the server accepts connections (best effort:
    a machine with no browser or display just keeps serving)."""
    def wait_and_open() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            return
        try:
            webbrowser.open(f"http://127.0.0.1:{port}")
        except Exception:  # noqa: BLE001 - no browser is not an error for a server
            pass

    graphical = (sys.platform in ("darwin", "win32")
                 or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")))
    if not graphical:  # webbrowser would fall back to a text browser that grabs the terminal
        return
    threading.Thread(target=wait_and_open, daemon=True, name="xlt-open-browser").start()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xlt-app", description="Open the xlt app (predict, recommend, scaling, transfer grid, "
                                    "features, measurements) in a local browser tab.")
    parser.add_argument("--port", type=int, default=8501, help="port on 127.0.0.1 (default 8501)")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="fitted models and measured tables (default: $XLT_MODELS_DIR, else "
                             "models/ in the working directory or a parent)")
    parser.add_argument("--profiles", type=Path, default=None, metavar="DIR",
                        help="your language profiles (xlt-measure profile --profiles DIR), read "
                             "beside the shipped ones: an unmeasured target DIR has a profile "
                             "for uses it (default: $XLT_PROFILES_DIR, else the per-user data "
                             "directory xlt-measure profile writes to, when it exists)")
    parser.add_argument("--headless", action="store_true",
                        help="do not try to open a browser tab (servers, CI, SSH sessions)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        models_dir = (args.models_dir or default_models_dir()).resolve()
    except DefaultPathNotFound as exc:
        print(f"xlt-app: error: {exc}", file=sys.stderr)
        return 2
    if not models_dir.is_dir():
        print(f"xlt-app: error: models directory {models_dir} not found; pass --models-dir",
              file=sys.stderr)
        return 2
    if args.profiles is not None and not args.profiles.is_dir():
        print(f"xlt-app: error: --profiles {args.profiles} is not a directory; pass the "
              "directory xlt-measure profile wrote to (its <model>/<code>.json files)",
              file=sys.stderr)
        return 2
    if not 0 < args.port < 65536:
        print(f"xlt-app: error: invalid port {args.port}", file=sys.stderr)
        return 2
    with socket.socket() as probe:  # a busy port: say so now, not in Streamlit's traceback
        try:
            probe.bind(("127.0.0.1", args.port))
        except OSError as exc:
            print(f"xlt-app: error: port {args.port} on 127.0.0.1 is not free ({exc.strerror or exc}); "
                  "pass --port N (another xlt-app may already be serving there)", file=sys.stderr)
            return 2
    os.environ["XLT_MODELS_DIR"] = str(models_dir)
    if args.profiles is not None:   # read by app.services through default_profiles_dir()
        os.environ[PROFILES_ENV] = str(args.profiles.resolve())
    from streamlit.web import cli as stcli
    # Streamlit's own non-headless mode asks for an e-mail address on first run (and exits 255
    # when stdin is closed), so the server always runs headless and xlt opens the tab itself.
    if not args.headless:
        _open_browser_when_listening(args.port)
    sys.argv = ["streamlit", "run", str(APP_DIR / "Home.py"),
                "--server.address", "127.0.0.1", "--server.port", str(args.port),
                "--browser.gatherUsageStats", "false",
                "--server.headless", "true",
                "--global.developmentMode", "false",
                "--client.toolbarMode", "viewer",
                # Streamlit runs a full gc.collect(2) after every script run by default; with
                # the predictor, URIEL and the measured table in memory that walks hundreds of
                # thousands of objects, holding the GIL while the run's last messages are
                # sent, on every click. Python's own generational collector still runs.
                "--runner.postScriptGC", "false"]
    return int(stcli.main() or 0)


if __name__ == "__main__":
    raise SystemExit(main())
