"""Command line: identify the language of audio files or folders, one line per file and a summary.

    cd backend && python -m src.cli path/to/clip.mp3 path/to/folder [--languages en,es] [--top-k 3] [--json]
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


def find_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {name}")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.cli", description=__doc__.split("\n")[1].strip())
    parser.add_argument("paths", nargs="+", help="audio files or folders (searched recursively)")
    parser.add_argument("--languages", help="candidate languages, e.g. en,es,fr")
    parser.add_argument("--top-k", type=int, default=3, help="candidates to show per file (default 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--timeline", action="store_true", help="also show which language is spoken when")
    args = parser.parse_args(argv)

    from .audio import AudioDecodeError, decode_head
    from .audio_processor import AudioProcessor
    from .config import SettingsError, load_settings
    from .languages import language_name, parse_language_list

    try:
        languages = parse_language_list(args.languages)
        files = find_files(args.paths)
        settings = load_settings()
    except (ValueError, FileNotFoundError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not files:
        print("error: no audio files found", file=sys.stderr)
        return 2

    processor = AudioProcessor.from_settings(settings, gc_after_processing=False)
    processor.load()
    counts: Counter[str] = Counter()
    failures = 0
    started = time.perf_counter()
    progress = tqdm(files, unit="file", file=sys.stderr, disable=args.no_progress or len(files) < 5, leave=False)
    for path in progress:
        try:
            samples = decode_head(path.read_bytes(), settings.MAX_UPLOAD_SECONDS)[0]
            result = processor.identify(samples, languages)
        except (AudioDecodeError, OSError) as exc:
            failures += 1
            line = {"file": str(path), "error": str(exc)} if args.json else f"{path}\terror: {exc}"
            tqdm.write(json.dumps(line) if args.json else line, file=sys.stdout)
            continue
        spans = processor.identify_timeline(samples, languages) if args.timeline else None
        language = result.language
        counts[language or result.reason or "none"] += 1
        top = result.probabilities[: args.top_k]
        if args.json:
            record = {
                "file": str(path), "language": language, "confidence": top[0][1] if language else None,
                "confident": bool(result.confident and language), "reason": result.reason,
                "top": [{"language": c, "probability": p} for c, p in top],
                "audio_duration": round(result.audio_duration, 3),
                "speech_duration": result.extra.get("speech_duration"),
            }
            if spans is not None:
                record["timeline"] = spans.as_list(args.top_k)
            tqdm.write(json.dumps(record), file=sys.stdout)
        else:
            if language:
                head = f"{language}\t{language_name(language)}\t{'confident' if result.confident else 'tentative'}"
            else:
                head = f"-\t({result.reason})\t-"
            others = ", ".join(f"{c} {p:.2f}" if p is not None else c for c, p in top)
            tqdm.write(f"{path}\t{head}\t{others}", file=sys.stdout)
            for segment in spans.as_list(args.top_k) if spans is not None else []:
                said = segment["language"] or f"- ({segment['reason']})"
                sure = f"{segment['confidence']:.2f}" if segment["confidence"] is not None else ""
                tqdm.write(f"  {segment['start']:7.2f} - {segment['end']:7.2f} s\t{said}\t{sure}", file=sys.stdout)
    elapsed = time.perf_counter() - started
    summary = ", ".join(f"{name} {count}" for name, count in counts.most_common())
    print(
        f"{len(files)} files in {elapsed:.1f}s ({elapsed / len(files):.2f}s per file): {summary or 'none'}"
        + (f"; {failures} could not be read" if failures else ""),
        file=sys.stderr if args.json else sys.stdout,
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
