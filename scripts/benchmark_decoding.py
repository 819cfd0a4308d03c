#!/usr/bin/env python3
"""Decoding cost of a long real-time stream, per analysis step: whole-buffer (before) against incremental.

    python scripts/benchmark_decoding.py [--seconds 120] [--manifest PATH] [--json PATH]

From the repository root (`scripts/benchmark.py` runs it as its last part). In process, no server: the
manifest's clips, joined to `--seconds` of speech and encoded once as webm/opus (as a browser's
MediaRecorder sends it), are cut into 250 ms chunks; after each chunk comes one analysis step, as in
/ws stream mode:

- before: the joined bytes decoded again (faster-whisper's `decode_audio`, what `AudioStream` did
  until decoding became incremental), so each step costs more than the one before;
- after: `AudioStream.feed(chunk)` then `samples()`: the stream's one demuxer/decoder takes in the new
  chunk only.

Reported at 10 s, 60 s and 120 s into the stream (median of the steps within ±1 s): wall time and CPU
time (the process's, which includes the decoder thread's) of one step; then the decoding CPU of the
whole stream (the "before" column measures every 4th step and counts it 4 times) and the share of a core
that decoding one real-time stream takes. For comparison, the Silero VAD on the whole stream so far
(what stream mode runs at each step after decoding) at the same points and over the whole stream. The
steps are not paced in real time: the work of a step does not depend on when it runs.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (  # noqa: E402
    CHUNK_SECONDS, SAMPLE_RATE, Clip, default_manifest, read_manifest, samples_to_webm, split_frames, table, write_json,
)
from benchkit import ms as _ms  # noqa: E402

POINTS = (10, 60, 120)
BEFORE_EVERY = 4  # the "before" column decodes every 4th step (each costs up to ~0.1 s at 120 s)
VAD_EVERY = 16  # the VAD's total over the stream: every 16th step measured


def stream_audio(clips: list[Clip], seconds: float) -> np.ndarray:
    parts, total = [], 0
    while total < seconds * SAMPLE_RATE:
        for clip in clips:
            parts.append(clip.samples())
            total += len(parts[-1])
            if total >= seconds * SAMPLE_RATE:
                break
    return np.concatenate(parts)[: int(seconds * SAMPLE_RATE)]


def measure(clips: list[Clip], seconds: float) -> dict:
    from faster_whisper.audio import decode_audio

    from src.audio import AudioIncomplete, AudioStream
    from src.vad import VoiceActivityDetector

    samples = stream_audio(clips, seconds)
    webm, _ = samples_to_webm(samples)
    chunks = split_frames(webm, seconds, CHUNK_SECONDS)
    at = [(i + 1) * CHUNK_SECONDS for i in range(len(chunks))]  # seconds of audio after each chunk

    after_wall, after_cpu = [], []
    stream = AudioStream(max_seconds=seconds + 10)
    for chunk in chunks:
        t, c = time.perf_counter(), time.process_time()
        stream.feed(chunk)
        try:
            stream.samples()
        except AudioIncomplete:
            pass
        after_cpu.append(time.process_time() - c)
        after_wall.append(time.perf_counter() - t)
    final = stream.samples(final=True)
    stream.close()

    before_wall: dict[int, float] = {}
    before_cpu: dict[int, float] = {}
    joined = bytearray()
    for index, chunk in enumerate(chunks):
        joined += chunk
        near_point = any(abs(at[index] - p) <= 1.0 for p in POINTS)
        if index % BEFORE_EVERY and not near_point:
            continue
        t, c = time.perf_counter(), time.process_time()
        try:
            decode_audio(io.BytesIO(bytes(joined)), sampling_rate=SAMPLE_RATE)
        except Exception:  # noqa: BLE001 - the first chunks may not decode yet, as before
            pass
        before_cpu[index] = time.process_time() - c
        before_wall[index] = time.perf_counter() - t

    vad = VoiceActivityDetector()
    vad.find_speech(samples[:SAMPLE_RATE])
    vad_at: dict[int, float] = {}
    for point in POINTS:
        if point > seconds:
            continue
        times = []
        for shift in (-0.5, -0.25, 0.0):
            c = time.process_time()
            vad.find_speech(samples[: int((point + shift) * SAMPLE_RATE)])
            times.append(time.process_time() - c)
        vad_at[point] = float(np.median(times))
    vad_total = 0.0  # the VAD of every VAD_EVERY-th step, counted VAD_EVERY times
    for index in range(VAD_EVERY - 1, len(chunks), VAD_EVERY):
        c = time.process_time()
        vad.find_speech(samples[: int(at[index] * SAMPLE_RATE)])
        vad_total += (time.process_time() - c) * VAD_EVERY

    def around(values, point: float) -> float:
        if isinstance(values, dict):
            picked = [v for i, v in values.items() if abs(at[i] - point) <= 1.0]
        else:
            picked = [v for i, v in enumerate(values) if abs(at[i] - point) <= 1.0]
        return float(np.median(picked)) if picked else float("nan")

    sampled = [i for i in before_cpu if i % BEFORE_EVERY == 0]
    before_total = sum(before_cpu[i] for i in sampled) * BEFORE_EVERY
    return {
        "seconds": seconds, "steps": len(chunks), "webm_bytes": len(webm),
        "kbps": round(len(webm) * 8 / seconds / 1000, 1),
        "decoded_seconds": len(final) / SAMPLE_RATE,
        "points": {p: {"before_wall": around(before_wall, p), "before_cpu": around(before_cpu, p),
                       "after_wall": around(after_wall, p), "after_cpu": around(after_cpu, p),
                       "vad_cpu": vad_at.get(p, float("nan"))}
                   for p in POINTS if p <= seconds},
        "stream_cpu_before": before_total, "stream_cpu_after": float(sum(after_cpu)),
        "stream_vad_cpu": vad_total,
    }


def ms(seconds: float) -> str:
    return _ms(seconds, 1)


def report(figures: dict) -> list[str]:
    seconds = figures["seconds"]
    rows = []
    for point, f in figures["points"].items():
        ratio = f["before_cpu"] / f["after_cpu"] if f["after_cpu"] > 0 else float("inf")
        rows.append([f"{point} s", f"{ms(f['before_wall'])} / {ms(f['before_cpu'])}",
                     f"{ms(f['after_wall'])} / {ms(f['after_cpu'])}", f"{ratio:.0f}x", ms(f["vad_cpu"])])
    before, after = figures["stream_cpu_before"], figures["stream_cpu_after"]
    return [
        f"### Stream decoding per analysis step ({seconds:g} s of speech as webm/opus at {figures['kbps']:g} kbps, "
        f"{figures['steps']} steps of {int(CHUNK_SECONDS * 1000)} ms)", "",
        "Before: the joined stream decoded again at each step; after: one incremental decoder per stream. "
        "Median of the steps within ±1 s of each point; wall / CPU (process CPU, decoder thread included).", "",
        table(["into the stream", "before: decode per step", "after: decode per step", "CPU ratio",
               "VAD on the stream so far (CPU, unchanged)"], rows),
        "",
        table(["decoding one real-time stream", "before", "after"], [
            [f"CPU for the whole {seconds:g} s stream", f"{before:.1f} s (every {BEFORE_EVERY}th step ×{BEFORE_EVERY})",
             f"{after:.2f} s"],
            ["share of a core while it streams", f"{before / seconds:.2f}", f"{after / seconds:.3f}"],
            [f"for comparison: the VAD on the stream so far at each step, whole stream (every {VAD_EVERY}th "
             f"step ×{VAD_EVERY})", f"{figures['stream_vad_cpu']:.1f} s", f"{figures['stream_vad_cpu']:.1f} s"],
        ]),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=default_manifest())
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the stream (default 120)")
    parser.add_argument("--json", type=Path, default=None, help="dump the figures to this JSON file")
    args = parser.parse_args()
    clips = read_manifest(args.manifest, "benchmark_decoding.py")
    figures = measure(clips, args.seconds)
    print("\n".join(report(figures)), flush=True)
    if args.json:
        write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
