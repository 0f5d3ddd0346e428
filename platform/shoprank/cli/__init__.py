"""The ``shoprank`` command line. Each sub-command group lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

from shoprank.cli.options import warn_deprecated
from shoprank.errors import ShoprankError

# Modules under shoprank.cli that each define ``register(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = (
    "data", "demo", "tune", "campaign", "train", "evaluate", "onnx", "serve", "events", "replay", "k8s",
    "cross", "distill",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="shoprank",
        description="Multi-task search and recommendation on Ray: data, training, serving, campaigns.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"shoprank.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; user errors print one line and exit 2."""
    args = build_parser().parse_args(argv)
    warn_deprecated(args)
    try:
        return int(args.func(args) or 0)
    except ShoprankError as e:
        print(f"shoprank: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("shoprank: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
