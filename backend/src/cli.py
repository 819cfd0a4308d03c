"""Command line: identify the language of audio files or folders, one line per file and a summary.

    langshazam detect path/to/clip.mp3 path/to/folder [--languages en,es] [--top-k 3] [--json]
    (from the source tree: cd backend && python -m src.cli ...)

Results go to stdout (a tab-separated line, or with --json one JSON object per file with the fields of the
API's `data`); the summary, errors and the progress bar (only on a terminal) go to stderr. A path that
does not exist or a file that cannot be decoded is reported, the other files still run, and the exit code
is then 1 (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

AUDIO_SUFFIXES = {".mp3", ".wav", ".ogg", ".oga", ".opus", ".webm", ".mp4", ".m4a", ".flac", ".aac", ".mkv"}


def find_files(paths: list[str]) -> tuple[list[Path], list[str]]:
    """The audio files named or found in folders (recursively), and the paths that do not exist."""
    files: list[Path] = []
    missing: list[str] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            missing.append(name)
    return files, missing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="audio files or folders (searched recursively)")
    parser.add_argument("--languages", help="candidate languages, e.g. en,es,fr")
    parser.add_argument("--top-k", type=int, default=None, help="candidates to show per file (default: the TOP_K setting)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (there is none unless stderr is a terminal)")
    parser.add_argument("--timeline", action="store_true", help="also show which language is spoken when")
    parser.add_argument("--min-confidence", help="confident threshold, 0-1 (default: the FINAL_PROBABILITY setting)")
    parser.add_argument("--fallback-language", help="name this language (marked fallback) when an answer would be uncertain")


def add_parser(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """`langshazam detect PATHS...` (commands.py)."""
    summary = "identify the language of audio files or folders (one line per file, and a summary)"
    parser = subparsers.add_parser("detect", help=summary, description=summary)
    add_arguments(parser)
    parser.set_defaults(run=lambda args: run(args, parser))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.cli", description=__doc__.split("\n")[1].strip())
    add_arguments(parser)
    return run(parser.parse_args(argv), parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .audio import AudioDecodeError, decode_head
    from .audio_processor import AudioProcessor
    from .config import SettingsError, load_settings
    from .engines.base import EngineError
    from .engines.model_files import ModelFilesError
    from .languages import language_name, parse_language_list
    from .confidence import Strictness
    from .protocol import ProtocolError, answer_data, parse_fallback_language, parse_min_confidence

    if args.top_k is not None and not 1 <= args.top_k <= 100:
        parser.error("--top-k must be between 1 and 100")
    try:
        strictness = Strictness(
            None if args.min_confidence is None else parse_min_confidence(args.min_confidence),
            None if args.fallback_language is None else parse_fallback_language(args.fallback_language),
        )
    except ProtocolError as exc:
        parser.error(f"--{str(exc).replace('_', '-', 1)}")
    try:
        languages = parse_language_list(args.languages)
        settings = load_settings()
    except (ValueError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    top_k = args.top_k or settings.TOP_K
    files, missing = find_files(args.paths)
    for name in missing:
        print(f"error: no such file or folder: {name}", file=sys.stderr)
    if not files:
        print("error: no audio files found", file=sys.stderr)
        return 2

    try:
        processor = AudioProcessor.from_settings(settings, gc_after_processing=False)
        processor.load()
    except (SettingsError, EngineError, ModelFilesError) as exc:  # bad calibration, model or device
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts: Counter[str] = Counter()
    failures = 0
    started = time.perf_counter()
    show_progress = not args.no_progress and len(files) >= 5 and sys.stderr.isatty()
    progress = tqdm(files, unit="file", file=sys.stderr, disable=not show_progress, leave=False)
    for path in progress:
        try:
            samples, truncated = decode_head(path.read_bytes(), settings.MAX_UPLOAD_SECONDS)
            result = processor.identify(samples, languages, strictness=strictness)
        except (AudioDecodeError, OSError) as exc:
            failures += 1
            line = json.dumps({"file": str(path), "error": str(exc)}) if args.json else f"{path}\terror: {exc}"
            tqdm.write(line, file=sys.stdout)
            continue
        spans = processor.identify_timeline(samples, languages) if args.timeline else None
        language = result.language
        counts[language or result.reason or "none"] += 1
        if args.json:
            record = {"file": str(path)} | answer_data(result, "cli", top_k)
            record.pop("connection_id", None)
            if truncated:  # as POST /detect says it: the answer rests on the first MAX_UPLOAD_SECONDS
                record["truncated"] = True
            if spans is not None:
                record["timeline"] = spans.as_list(top_k)
            tqdm.write(json.dumps(record), file=sys.stdout)
        else:
            if language:
                sure = "fallback" if result.fallback else "confident" if result.confident else "tentative"
                head = f"{language}\t{language_name(language)}\t{sure}"
            else:
                head = f"-\t({result.reason})\t-"
            top = result.probabilities[:top_k]
            others = ", ".join(f"{c} {p:.2f}" if p is not None else c for c, p in top)
            likely = " or ".join(result.likely) or "-"
            tqdm.write(f"{path}\t{head}\t{others}\tlikely: {likely}", file=sys.stdout)
            for segment in spans.as_list(top_k) if spans is not None else []:
                said = segment["language"] or f"- ({segment['reason']})"
                sure = f"{segment['confidence']:.2f}" if segment["confidence"] is not None else ""
                tqdm.write(f"  {segment['start']:7.2f} - {segment['end']:7.2f} s\t{said}\t{sure}", file=sys.stdout)
    elapsed = time.perf_counter() - started
    summary = ", ".join(f"{name} {count}" for name, count in counts.most_common())
    problems = [f"{failures} could not be read"] if failures else []
    problems += [f"{len(missing)} not found"] if missing else []
    print(
        f"{len(files)} files in {elapsed:.1f}s ({elapsed / len(files):.2f}s per file): {summary or 'none'}"
        + "".join(f"; {problem}" for problem in problems),
        file=sys.stderr,
    )
    return 1 if failures or missing else 0


if __name__ == "__main__":
    sys.exit(main())
