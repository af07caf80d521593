"""``xlt-predict``: fit, evaluate and query the transfer-performance predictor."""

from __future__ import annotations

import argparse
import sys


def cmd_not_implemented(args: argparse.Namespace) -> int:
    print(f"xlt-predict: error: '{args.command}' is not implemented yet", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xlt-predict",
        description="Predict zero-shot cross-lingual NLI performance from typology, the number "
                    "of supervised languages, data sizes and pretraining coverage.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_ in [("fit", "fit and save the predictor"),
                        ("evaluate", "grouped cross-validation table"),
                        ("query", "predict one configuration"),
                        ("recommend", "best source sets for targets"),
                        ("batch", "predict a JSONL file"),
                        ("report", "meta-analysis report")]:
        p = sub.add_parser(name, help=help_)
        p.set_defaults(func=cmd_not_implemented)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
