"""Corpus mode: the language of every file of a corpus (files, folders, globs, manifests; local or fsspec
URLs) into one resumable Parquet or JSONL output, a row per input, with the fields and honesty rule of
POST /detect; on every core of one machine (`pool`) or on a Ray cluster (`ray_pipeline`).

`add_parser(subparsers)` adds the `corpus` subcommand to a command; `main(argv)` runs it alone
(`python -m src.corpus ...`).
"""

from __future__ import annotations

from .command import add_parser, main

__all__ = ["add_parser", "main"]
