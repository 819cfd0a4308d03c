#!/usr/bin/env python3
"""What a transcription (POST /v1/audio/transcriptions) costs next to a detection alone, in process.

    python scripts/benchmark_transcription.py [--quick] [--words] [--manifest PATH] [--json PATH]

From the repository root. Settings come from the environment / `.env` as for the server (MODEL_CACHE_DIR,
WHISPER_CPU_THREADS, ...); the manifest defaults to ../shared/eval beside the project. On each clip, one
after the other with the same AudioProcessor:
- detection: `processor.identify(samples)` (VAD + the engine on the speech), as /detect and /ws answer;
- transcription: `processor.transcription(samples, options)`, as /v1/audio/transcriptions runs it (VAD,
  the detection, then faster-whisper's transcribe in the detected language with its VAD on; with
  `--words`, word timestamps too).
Prints the medians and p95 over the clips, the ratio transcription / detection (median of the per-clip
ratios), the real-time factor, and how often the transcript came out empty. Default: every clip (a few
minutes on 2 cores); `--quick`: one clip per language.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import default_manifest, log, machine, med, ms, one_per_language, p95, read_manifest, table, write_json  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=default_manifest())
    parser.add_argument("--quick", action="store_true", help="one clip per language")
    parser.add_argument("--words", action="store_true", help="word timestamps too (timestamp_granularities[]=word)")
    parser.add_argument("--json", type=Path, default=None, help="dump the figures to this JSON file")
    args = parser.parse_args()

    from src.audio import SAMPLE_RATE, decode
    from src.audio_processor import AudioProcessor
    from src.config.settings import load_settings
    from src.engines.base import TranscribeOptions

    clips = read_manifest(args.manifest, "benchmark_transcription.py")
    if args.quick:
        clips = one_per_language(clips)
    settings = load_settings()
    processor = AudioProcessor.from_settings(settings)
    processor.load()
    options = TranscribeOptions(words=args.words)
    processor.transcription(decode(clips[0].path.read_bytes()), options)  # warm-up, not counted

    rows = []
    for index, clip in enumerate(clips, start=1):
        samples = decode(clip.path.read_bytes())
        started = time.perf_counter()
        detection = processor.identify(samples)
        detect_seconds = time.perf_counter() - started
        started = time.perf_counter()
        result = processor.transcription(samples, options)
        transcribe_seconds = time.perf_counter() - started
        rows.append({
            "file": clip.file, "lang": clip.lang, "audio_seconds": len(samples) / SAMPLE_RATE,
            "detect_seconds": detect_seconds, "transcribe_seconds": transcribe_seconds,
            "detected": detection.language, "transcript_language": result.transcript.language,
            "words": len(result.transcript.text.split()),
        })
        log(f"{index}/{len(clips)} {clip.file}: detection {ms(detect_seconds)}, transcription "
            f"{ms(transcribe_seconds)}, {rows[-1]['words']} words in {result.transcript.language}")
    processor.close()

    detect = [row["detect_seconds"] for row in rows]
    transcribe = [row["transcribe_seconds"] for row in rows]
    ratios = [row["transcribe_seconds"] / row["detect_seconds"] for row in rows]
    realtime = [row["transcribe_seconds"] / row["audio_seconds"] for row in rows]
    empty = sum(1 for row in rows if row["words"] == 0)
    info = machine()
    print(f"## Transcription vs detection ({len(rows)} clips of {args.manifest.parent.name}, "
          f"{processor.engine.name}, {settings.WHISPER_COMPUTE_TYPE}, {info['affinity_cpus']} cores, {info['cpu_model']}"
          f"{', word timestamps' if args.words else ''})\n")
    print(table(
        ["per clip", "median", "p95"],
        [
            ["detection alone (VAD + engine)", ms(med(detect)), ms(p95(detect))],
            ["transcription (VAD + detection + transcribe)", ms(med(transcribe)), ms(p95(transcribe))],
            ["ratio transcription / detection", f"{med(ratios):.1f}x", f"{p95(ratios):.1f}x"],
            ["transcription time / audio duration", f"{med(realtime):.2f}", f"{p95(realtime):.2f}"],
        ],
    ))
    print(f"\nclip length median {med([row['audio_seconds'] for row in rows]):.1f} s; empty transcripts: "
          f"{empty}/{len(rows)}; load average at the end: {' '.join(f'{x:.2f}' for x in info['loadavg_start'])}")
    if args.json:
        write_json(args.json, {"machine": info, "clips": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
