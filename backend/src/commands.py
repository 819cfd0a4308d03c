"""The `langshazam` command: `langshazam serve`, `langshazam detect PATHS...`, `langshazam --version`.

Each subcommand lives in its own module, which exposes `add_parser(subparsers)`: it adds its parser and
sets `run` (a function of the parsed arguments returning the exit code) as the parser's default. A new
subcommand is one more module named in SUBCOMMANDS; one that is not there (yet) is left out.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from . import __version__

SUBCOMMANDS = ("serve", "cli", "corpus")  # modules of this package, in the order --help lists them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="langshazam", description="Spoken language identification.")
    parser.add_argument("--version", action="version", version=f"langshazam {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        if importlib.util.find_spec(f"{__package__}.{name}") is None:
            continue
        module = importlib.import_module(f"{__package__}.{name}")
        if hasattr(module, "add_parser"):
            module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
