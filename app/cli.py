"""``xlt-app``: launch the Streamlit app offline, bound to 127.0.0.1."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent


def default_models_dir() -> Path:
    """``$XLT_MODELS_DIR``, else ``./models`` when it exists, else the checkout's models/."""
    env = os.environ.get("XLT_MODELS_DIR")
    if env:
        return Path(env)
    here = Path.cwd() / "models"
    return here if here.is_dir() else APP_DIR.parent / "models"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xlt-app", description="Open the xlt app (predict, recommend, scaling, transfer grid, "
                                    "features, measurements) in a local browser tab.")
    parser.add_argument("--port", type=int, default=8501, help="port on 127.0.0.1 (default 8501)")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="fitted models and measured tables (default ./models)")
    parser.add_argument("--headless", action="store_true", help="do not open a browser")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    models_dir = (args.models_dir or default_models_dir()).resolve()
    if not models_dir.is_dir():
        print(f"xlt-app: error: models directory {models_dir} not found; pass --models-dir",
              file=sys.stderr)
        return 2
    if not 0 < args.port < 65536:
        print(f"xlt-app: error: invalid port {args.port}", file=sys.stderr)
        return 2
    os.environ["XLT_MODELS_DIR"] = str(models_dir)
    from streamlit.web import cli as stcli
    sys.argv = ["streamlit", "run", str(APP_DIR / "Home.py"),
                "--server.address", "127.0.0.1", "--server.port", str(args.port),
                "--browser.gatherUsageStats", "false",
                "--server.headless", "true" if args.headless else "false",
                "--global.developmentMode", "false",
                "--client.toolbarMode", "viewer"]
    return int(stcli.main() or 0)


if __name__ == "__main__":
    raise SystemExit(main())
