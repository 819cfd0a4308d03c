"""The `corpus` command: the language of every file of a corpus, one row each, resumable.

    cd backend && python -m src.corpus clips/ more/*.mp3 manifest.jsonl --out languages.parquet

Inputs are files, folders (recursive), globs or manifests (src/corpus/inputs.py); paths may be fsspec
URLs. The output (.parquet or .jsonl) gets one row per input (src/corpus/rows.py); run the same command
again to go on after a crash, Ctrl-C or kill. A progress bar (on a terminal) and the summary go to stderr;
`--summary-json` writes the summary as JSON. Exit code 0 when every input has its row (errors included),
1 when the run itself failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from tqdm import tqdm

# Encoder windows per CTranslate2 call. scripts/benchmark_corpus.py, one thread, 8 s windows, 2 cores under load
# ~12: CPU per detection 316 ms at 1, 290 ms at 2 (1.09x), 302-317 ms at 3-6, 361-374 ms at 7-8.
BATCH_SIZE = 2


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """The `corpus` subcommand, for a command with subcommands."""
    parser = subparsers.add_parser("corpus", help="identify the language of every file of a corpus",
                                   description=__doc__.split("\n")[0])
    _arguments(parser)
    parser.set_defaults(run=run)
    return parser


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="audio files, folders, globs, or .jsonl/.csv/.parquet manifests "
                        "(local paths or fsspec URLs)")
    parser.add_argument("--out", required=True, type=Path, help="the output: .parquet or .jsonl")
    parser.add_argument("--overwrite", action="store_true", help="start again instead of resuming OUT")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes, each with its own engine (default: every core); with --ray: actors "
                        "(default: as many as the cluster's CPUs or GPUs hold)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help=f"encoder windows per engine call (default {BATCH_SIZE})")
    parser.add_argument("--languages", help="candidate languages, e.g. en,es,fr")
    parser.add_argument("--top-k", type=int, default=None, help="candidates per row (default: the TOP_K setting)")
    parser.add_argument("--path-column", default="path", help="a manifest's column of paths (default: path)")
    parser.add_argument("--label-column", default="label", help="a manifest's column of labels (default: label)")
    parser.add_argument("--keep", choices=("agrees", "disagrees"),
                        help="also write the manifest of the labelled files whose language agrees (or disagrees) "
                        "with their label")
    parser.add_argument("--min-confidence", type=float, default=0.0,
                        help="with --keep: the least confidence of a kept file's language (default 0)")
    parser.add_argument("--keep-out", type=Path, help="with --keep: that manifest, .jsonl or .csv "
                        "(default: beside OUT, NAME.keep.jsonl)")
    parser.add_argument("--summary-json", help="write the summary as JSON to this file ('-': stdout)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (there is none unless "
                        "stderr is a terminal)")
    parser.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                        help="run on a Ray cluster (its address; without one: the cluster `ray start` runs here)")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="with --ray: GPUs per actor (default 0)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.corpus", description=__doc__.split("\n")[0])
    _arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the corpus command with parsed arguments (as `add_parser` sets them); the exit code."""
    from ..config import SettingsError
    from ..languages import parse_language_list
    from .detector import DetectOptions
    from .inputs import InputError
    from .output import Output, OutputError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    problems = _check(args)
    try:
        languages = parse_language_list(args.languages)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        return 2
    options = DetectOptions(languages=languages, top_k=args.top_k, batch_size=args.batch_size)
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        output = Output(args.out, overwrite=args.overwrite)
    except (OutputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finished = False
    written = errors = 0
    try:
        todo = _todo(args, output.done)
        total = None if args.no_progress or not sys.stderr.isatty() else sum(1 for _ in _todo(args, output.done))
        rows = _rows(args, todo, options)
        with tqdm(total=total, unit="file", file=sys.stderr, disable=total is None, leave=False, smoothing=0.1) as bar:
            for row in rows:
                output.write(row)
                written += 1
                bar.update()
                if row["status"] == "error":
                    errors += 1
                    bar.set_postfix(errors=errors, refresh=False)
        finished = True
    except (InputError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {written} rows written this run; run the same command again to go on", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the run failed: what is written stays, and resumes
        logging.getLogger(__name__).exception("The corpus run failed")
        print(f"error: the run failed after {written} rows: {exc}; run it again to go on", file=sys.stderr)
        return 1
    finally:
        output.close(finished)
    return _report(args, output, written, time.perf_counter() - started, time.process_time() - cpu_started)


def _check(args: argparse.Namespace) -> list[str]:
    problems = []
    if args.workers is not None and args.workers < 1:
        problems.append("--workers must be 1 or more")
    if not 1 <= args.batch_size <= 64:
        problems.append("--batch-size must be between 1 and 64")
    if args.top_k is not None and not 1 <= args.top_k <= 100:
        problems.append("--top-k must be between 1 and 100")
    if not 0.0 <= args.min_confidence <= 1.0:
        problems.append("--min-confidence must be between 0 and 1")
    if args.keep_out is not None and args.keep is None:
        problems.append("--keep-out needs --keep")
    if args.keep_out is not None and args.keep_out.suffix not in (".jsonl", ".csv"):
        problems.append("--keep-out must end in .jsonl or .csv")
    return problems


def _todo(args: argparse.Namespace, done: set[str]) -> Iterator[Any]:
    from .inputs import iter_items

    return (item for item in iter_items(args.inputs, args.path_column, args.label_column) if item.id not in done)


def _rows(args: argparse.Namespace, todo: Iterable[Any], options: Any) -> Iterator[dict[str, Any]]:
    if args.ray is not None:
        from .ray_pipeline import run_ray

        address = None if args.ray == "auto" and not os.environ.get("RAY_ADDRESS") else args.ray
        return run_ray(list(todo), address, options, args.workers, args.num_gpus)
    from .pool import run_local

    return run_local(todo, args.workers or os.cpu_count() or 1, options)


def _report(args: argparse.Namespace, output: Any, written: int, wall: float, cpu: float) -> int:
    from .summary import summarise, write_keep

    summary = summarise(output.rows() if args.out.suffix == ".jsonl" else _parquet_rows(args.out))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary.new, summary.wall_seconds = written, wall
    summary.cpu_seconds = cpu + children.ru_utime + children.ru_stime
    print(summary.text(), file=sys.stderr)
    data = summary.as_dict()
    if args.keep:
        keep_out = args.keep_out or args.out.with_name(args.out.stem + ".keep.jsonl")
        rows = output.rows() if args.out.suffix == ".jsonl" else _parquet_rows(args.out)
        data["kept"] = write_keep(rows, keep_out, args.keep, args.min_confidence)
        data["keep_manifest"] = str(keep_out)
        print(f"kept {data['kept']} files ({args.keep}, confidence >= {args.min_confidence:g}): {keep_out}",
              file=sys.stderr)
    if args.summary_json == "-":
        print(json.dumps(data, ensure_ascii=False))
    elif args.summary_json:
        Path(args.summary_json).write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    return 0


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=2048):
        yield from batch.to_pylist()
