"""`langshazam serve`: the server (main.py), with the same settings as `python -m src.main`; `--host`
and `--port` set HOST and PORT for this run."""

from __future__ import annotations

import argparse
import os


def add_parser(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser("serve", help="run the server (settings: environment and .env)",
                                   description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--host", help="interface to listen on (the HOST setting)")
    parser.add_argument("--port", help="TCP port (the PORT setting)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # The settings are read once, when main is imported: these take the environment's place for this run.
    if args.host is not None:
        os.environ["HOST"] = args.host
    if args.port is not None:
        os.environ["PORT"] = args.port
    from . import main

    main.main()
    return 0
