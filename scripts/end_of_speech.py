#!/usr/bin/env python3
"""What stream mode's end-of-speech rule costs: top-1 at the moment the rule would end each clip, for
several (minimum speech, pause) choices, against the answer without the rule, on both evaluation sets.

    python scripts/end_of_speech.py [--sets DIR ...] [--json PATH]

From the repository root. Default sets: ../shared/eval and ../shared/eval-more beside the project (their
`kind` column, when present, splits the figures: speech, speech_unverified, code_switch, non_speech).

For every clip the audio is replayed as a stream would see it: every 0.25 s (the server's analysis
step) the Silero VAD looks at the audio so far, and the rule of src/streaming.py (StreamTracker.ending)
decides whether the stream ends there. The Silero model scores each 32 ms window from that window and
64 samples before it only, so the probabilities of a prefix are those of the whole clip's first windows:
they are computed once per clip, and faster-whisper's own segmentation runs on each prefix (checked
against a direct VAD call on a few prefixes per clip). At the end point, `processor.identify` runs on
the audio so far (the answer the stream would give); "without the rule" is `identify` on the first
STREAM_MAX_SECONDS of the clip (the stream's answer on stop or at max duration). People pause
mid-sentence: a pause rule that is too eager cuts them off and answers on less speech.

Figures per set (and kind): clips cut before their last speech, top-1 at the end point vs without the
rule, how many answers changed, and the seconds the rule saves.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import SAMPLE_RATE, default_manifests, pct, read_set, table, write_json  # noqa: E402

import numpy as np  # noqa: E402

STEP = 0.25
MIN_SPEECH = (0.5, 1.0, 1.5)
PAUSES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


@dataclass
class Item:
    set: str
    file: str
    lang: str
    kind: str
    samples: np.ndarray


def load_sets(dirs: list[Path]) -> list[Item]:
    return [Item(directory.name, clip.file, clip.lang, clip.kind, clip.samples())
            for directory in dirs for clip in read_set(directory, "end_of_speech.py")]


class _Cached:
    """The Silero model's window probabilities of one clip, computed once; prefixes get the first ones."""

    def __init__(self, model, samples: np.ndarray) -> None:
        padded = np.pad(samples, (0, 512 - samples.shape[0] % 512))
        self.probs = model(padded)

    def __call__(self, audio: np.ndarray):
        return self.probs[: audio.shape[0] // 512]


from src.streaming import STREAM_VAD_MIN_SILENCE_MS  # noqa: E402


def prefix_segments(vad, samples: np.ndarray, ends: list[int]) -> dict[int, list[tuple[int, int]]]:
    """VAD segments of samples[:end] for each end, with the window probabilities computed once."""
    from faster_whisper import vad as fw_vad

    cached = _Cached(fw_vad.get_vad_model(), samples)
    out = {}
    with mock.patch.object(fw_vad, "get_vad_model", lambda: cached):
        for end in ends:
            out[end] = vad.find_speech(samples[:end], STREAM_VAD_MIN_SILENCE_MS).segments
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_sets = [manifest.parent for manifest in default_manifests()]
    parser.add_argument("--sets", nargs="+", type=Path, default=default_sets)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from src.audio_processor import AudioProcessor
    from src.config.settings import load_settings
    from src.streaming import StreamPolicy, StreamTracker
    from src.vad import Speech

    settings = load_settings()
    processor = AudioProcessor.from_settings(settings, gc_after_processing=False)
    processor.load()
    vad = processor.vad
    pad = int(vad.options.speech_pad_ms * SAMPLE_RATE / 1000)
    max_samples = int(settings.STREAM_MAX_SECONDS * SAMPLE_RATE)
    started = time.perf_counter()
    items = load_sets(args.sets)
    print(f"{len(items)} clips from {', '.join(str(d) for d in args.sets)}; engine {processor.engine.name}",
          file=sys.stderr)

    records = []
    checked = mismatches = 0
    for index, item in enumerate(items):
        samples = item.samples[:max_samples]
        step = int(STEP * SAMPLE_RATE)
        ends = list(range(step, len(samples), step)) + [len(samples)]
        segments = prefix_segments(vad, samples, ends)
        for end in ends[:: max(1, len(ends) // 3)][:3]:  # the shortcut equals a direct VAD call
            checked += 1
            mismatches += vad.find_speech(samples[:end], STREAM_VAD_MIN_SILENCE_MS).segments != segments[end]
        speech_full = Speech(segments[len(samples)], pad)
        full = processor.identify(samples, None, speech_full)
        last_speech = speech_full.segments[-1][1] / SAMPLE_RATE if speech_full.segments else None
        answers: dict[int, str | None] = {len(samples): full.top_language}
        record = {"set": item.set, "file": item.file, "lang": item.lang, "kind": item.kind,
                  "seconds": len(samples) / SAMPLE_RATE, "last_speech": last_speech,
                  "full": full.top_language, "full_named": full.language, "choices": {}}
        for min_speech in MIN_SPEECH:
            for pause in PAUSES:
                tracker = StreamTracker(StreamPolicy(end_min_speech_seconds=min_speech, end_silence_seconds=pause,
                                                     no_speech_seconds=4.0))
                end_at = next((end for end in ends if tracker.ending(Speech(segments[end], pad), end)), None)
                if end_at is None:
                    end_at, ended = len(samples), None
                else:
                    ended = tracker.ending(Speech(segments[end_at], pad), end_at)
                if end_at not in answers:
                    speech_then = Speech(segments[end_at], pad)
                    answers[end_at] = processor.identify(samples[:end_at], None, speech_then).top_language
                speech_after = sum(max(0, e - max(s, end_at)) for s, e in speech_full.segments) / SAMPLE_RATE
                record["choices"][f"{min_speech}/{pause}"] = {
                    "end": end_at / SAMPLE_RATE, "ended_by": ended, "top1": answers[end_at],
                    "cut": speech_after > 0.3,  # ended with more than 0.3 s of the clip's speech still to come
                }
        records.append(record)
        if (index + 1) % 20 == 0:
            print(f"{index + 1}/{len(items)} clips, {time.perf_counter() - started:.0f} s", file=sys.stderr)

    print(f"## End-of-speech rule: what each choice costs ({len(records)} clips, step {STEP} s)\n")
    print(f"VAD shortcut checked against direct calls: {checked - mismatches}/{checked} identical.\n")
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(f"{r['set']} (all speech kinds)" if r["kind"] in ("speech", "speech_unverified") else
                          f"{r['set']} {r['kind']}", []).append(r)
        if r["kind"] in ("speech", "speech_unverified") and r["set"] != "eval":
            groups.setdefault(f"{r['set']} {r['kind']}", []).append(r)
    summary = {}
    for name, rows in groups.items():
        n = len(rows)
        right_full = sum(r["full"] == r["lang"] for r in rows)
        lines = []
        for min_speech in MIN_SPEECH:
            for pause in PAUSES:
                key = f"{min_speech}/{pause}"
                choice = [r["choices"][key] for r in rows]
                right = sum(c["top1"] == r["lang"] for c, r in zip(choice, rows))
                changed = sum(c["top1"] != r["full"] for c, r in zip(choice, rows))
                cut = sum(c["cut"] for c in choice)
                ended = sum(c["ended_by"] == "end_of_speech" for c in choice)
                waits = [c["end"] - r["last_speech"] for c, r in zip(choice, rows)
                         if c["ended_by"] == "end_of_speech" and not c["cut"] and r["last_speech"] is not None]
                saved = [r["seconds"] - c["end"] for c, r in zip(choice, rows)]
                lines.append([f"{min_speech:g} s", f"{pause:g} s", f"{ended}/{n}", f"{cut}",
                              f"{pct(right, n)} ({right}/{n})", f"{right - right_full:+d}", changed,
                              f"{np.median(waits):.2f} s" if waits else "n/a", f"{np.mean(saved):.2f} s"])
                summary[f"{name} {key}"] = {"right": right, "n": n, "cut": cut, "changed": changed}
        print(f"### {name}: {n} clips, top-1 without the rule {pct(right_full, n)} ({right_full}/{n})\n")
        print(table(["min speech", "pause (non-speech)", "ended by the rule", "cut mid-speech",
                     "top-1 at the end", "vs without", "answers changed", "audio after last speech (median)",
                     "audio saved (mean)"], lines))
        print()
    print(f"Run: {time.perf_counter() - started:.0f} s.")
    if args.json:
        write_json(args.json, {"records": records, "summary": summary})
    processor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
