#!/usr/bin/env python3
"""Speed of LangShazam: in-process detection against stock faster-whisper, then a real server streaming.

    python scripts/benchmark.py [--quick] [--manifest PATH ...] [--json PATH] [--no-server] [--only-eos]

From the repository root (it finds backend/ itself). Settings come from the environment / `.env` as for the
server (MODEL_CACHE_DIR, WHISPER_CPU_THREADS, ...). The manifests (file, lang, seconds[, kind]; clips in
`clips/` beside each) default to both evaluation sets, ../shared/eval and ../shared/eval-more beside the project
($LANGSHAZAM_EVAL_DIR / $LANGSHAZAM_EVAL_MORE_DIR when set): short and long clips alike.

1. In process, on the manifest's clips, several passes, ours and stock alternated clip by clip:
   - ours, as POST /detect runs it: `decode(bytes)` then `processor.identify(samples)` (VAD + engine on the
     speech + gc when GC_AFTER_PROCESSING), and its engine-only part (`Identification.processing_time`);
   - stock: faster-whisper's `decode_audio(file)` then `processor.engine.model.detect_language(samples)`, the
     same WhisperModel (same weights, same threads), which pads every input to 30 s;
   per-clip medians over the passes, then median / p95 over the clips, the ratio stock/ours, top-1 of both;
   and the cost of GC_AFTER_PROCESSING (a gc.collect() right after a detection).
2. A real server (`python -m src.main` from backend/, 127.0.0.1, a free port), clips encoded to webm/opus and
   streamed in real time in 250 ms chunks to /ws?mode=stream:
   - latency, one stream at a time: time to the first answer and to the final one, from the moment the
     chunk holding the first speech (per the VAD) is sent;
   - throughput with 1, 4 and 16 concurrent streams (starts staggered over 1 s): final answers received vs
     owed, time to final after stop, detections per second (/metrics total_requests delta), server CPU;
   - server RSS after start-up, after the run, and its peak (sampled).
   The server is always stopped at the end (SIGTERM, then kill), even on error or Ctrl-C.
3. End of speech, on a second server whose streams end only on the speaker's pause (FINAL_STABLE_UPDATES
   very high): >= 20 clips encoded to webm/opus as MediaRecorder streams them (one chunk per 250 ms of
   audio, sent when those 250 ms have been "recorded"), then 3 s of quiet-room noise, never a stop:
   end of speech (Silero VAD, no padding) to the final answer, p50 / p95; speech start to the first
   partial answer; and silent streams: start to the `no_speech` final. `--only-eos` runs only this part.
4. Decoding a 120 s real-time stream per analysis step, whole-buffer (before) against incremental, and
   the decoding CPU of one long stream (scripts/benchmark_decoding.py; `--no-decoding` skips it).

Default run ≤ 10 minutes; `--quick` about 2 minutes (one clip per language, one pass, fewer streams).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (  # noqa: E402
    CHUNK_SECONDS, SAMPLE_RATE, Clip, Server, ct2_backend, default_manifests, describe_backend, log, machine, med,
    model_path, ms, one_per_language, p95, pct, round_robin, samples_to_webm, split_frames, stop_on_sigterm,
    stream, table, with_silence, write_json,
)
from benchkit import read_manifest as _read_manifest  # noqa: E402

import numpy as np  # noqa: E402


def read_manifest(path: Path) -> list[Clip]:
    return _read_manifest(path, "benchmark.py")


class Printed(list):
    """The report's lines, printed as soon as they are added: a failure later keeps what was measured."""

    def __iadd__(self, lines):
        print("\n".join(lines), flush=True)
        return super().__iadd__(lines)

    def append(self, line) -> None:
        print(line, flush=True)
        super().append(line)


# --- part 1: in process -----------------------------------------------------------------------------

def bench_in_process(clips: list[Clip], passes: int, deadline: float) -> dict:
    import io

    from faster_whisper.audio import decode_audio

    from src.audio import decode
    from src.audio_processor import AudioProcessor
    from src.config.settings import load_settings

    settings = load_settings()
    processor = AudioProcessor.from_settings(settings)
    started = time.perf_counter()
    processor.load()
    load_seconds = time.perf_counter() - started
    model = processor.engine.model
    files = [clip.path.read_bytes() for clip in clips]
    samples = [decode(data) for data in files]
    log(f"in-process: {processor.engine.name} loaded in {load_seconds:.1f}s; {len(clips)} clips x {passes} passes")

    for s in samples[:2]:  # warm-up, both paths
        processor.identify(s)
        model.detect_language(s)

    ours = [[] for _ in clips]
    engine_only = [[] for _ in clips]
    stock = [[] for _ in clips]
    ours_top: list[str | None] = [None] * len(clips)
    stock_top: list[str | None] = [None] * len(clips)
    done_passes = 0
    for p in range(passes):
        if p > 0 and time.monotonic() > deadline:
            log("in-process: time budget reached, fewer passes")
            break
        for i, data in enumerate(files):
            order = ("ours", "stock") if (i + p) % 2 == 0 else ("stock", "ours")
            for which in order:
                if which == "ours":
                    t = time.perf_counter()
                    result = processor.identify(decode(data))
                    ours[i].append(time.perf_counter() - t)
                    engine_only[i].append(result.processing_time)
                    ours_top[i] = result.probabilities[0][0] if result.probabilities else None
                else:
                    t = time.perf_counter()
                    language, _, _ = model.detect_language(decode_audio(io.BytesIO(data)))
                    stock[i].append(time.perf_counter() - t)
                    stock_top[i] = language
        done_passes += 1
        log(f"in-process: pass {p + 1}/{passes} done")

    ours_c = [med(v) for v in ours]
    engine_c = [med(v) for v in engine_only]
    stock_c = [med(v) for v in stock]

    # GC_AFTER_PROCESSING: a gc.collect() right after a detection (the processor's gc switched off here).
    saved = processor.gc_after_processing
    processor.gc_after_processing = False
    gc_times, no_gc_times = [], []
    for s in samples[: min(20, len(samples))]:
        t = time.perf_counter()
        processor.identify(s)
        no_gc_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        gc.collect()
        gc_times.append(time.perf_counter() - t)
    processor.gc_after_processing = saved

    # The first speech start of each clip (for the streaming part), with the same VAD.
    speech_starts = {}
    for clip, s in zip(clips, samples):
        speech = processor.vad.find_speech(s)
        speech_starts[clip.file] = speech.segments[0][0] / SAMPLE_RATE if speech.segments else None
    processor.close()

    n = len(clips)
    right_ours = sum(t in c.lang.split("+") for t, c in zip(ours_top, clips))
    right_stock = sum(t in c.lang.split("+") for t, c in zip(stock_top, clips))
    return {
        "engine": processor.engine.name,
        "threads": getattr(processor.engine, "cpu_threads", None),
        "compute_type": settings.WHISPER_COMPUTE_TYPE,
        "window_seconds": settings.DETECTION_WINDOW_SECONDS,
        "gc_after_processing": settings.GC_AFTER_PROCESSING,
        "clips": n, "passes": done_passes, "load_seconds": load_seconds,
        "audio_seconds_median": med([len(s) / SAMPLE_RATE for s in samples]),
        "audio_seconds_max": max(len(s) / SAMPLE_RATE for s in samples),
        "ours_median": med(ours_c), "ours_p95": p95(ours_c), "ours_mean": float(np.mean(ours_c)),
        "engine_median": med(engine_c), "engine_p95": p95(engine_c),
        "stock_median": med(stock_c), "stock_p95": p95(stock_c), "stock_mean": float(np.mean(stock_c)),
        "ratio_median": med(stock_c) / med(ours_c), "ratio_mean": float(np.mean(stock_c) / np.mean(ours_c)),
        "ratio_engine_median": med(stock_c) / med(engine_c),
        "ours_top1": right_ours, "stock_top1": right_stock,
        "gc_median": med(gc_times), "gc_p95": p95(gc_times), "identify_no_gc_median": med(no_gc_times),
        "speech_starts": speech_starts,
        "answers": {clip.file: top for clip, top in zip(clips, ours_top)},
    }


# --- part 2: a real server ----------------------------------------------------------------------------

def start_server(extra_env: dict | None = None) -> Server:
    """A server of its own (the OpenAI engine's settings left out), its RSS sampled from when it is ready."""
    return Server(extra_env, name="bench", engine_env=False).start()


@dataclass
class StreamClip:
    clip: Clip
    webm: bytes
    seconds: float
    speech_start: float | None


@dataclass
class StreamResult:
    clip: Clip
    first_answer: float | None = None  # s after the first speech chunk was sent
    final: float | None = None  # s after the first speech chunk was sent
    final_after_stop: float | None = None  # s after stop (finals that came after it)
    final_after_last_chunk: float | None = None  # s after the last chunk (negative: before the end)
    ended_by: str | None = None
    language: str | None = None  # None when the final names no language (reason)
    top1: str | None = None  # the final's most likely candidate, named or not
    reason: str | None = None
    partials: int = 0
    error: str | None = None
    close_code: int | None = None
    messages: list = field(default_factory=list)


async def stream_one(url: str, item: StreamClip, timeout: float, delay: float = 0.0) -> StreamResult:
    """Stream one clip in real time in CHUNK_SECONDS chunks, then stop; collect the answers."""
    await asyncio.sleep(delay)
    out = StreamResult(item.clip)
    frames = split_frames(item.webm, item.seconds, CHUNK_SECONDS)
    speech_index = int(item.speech_start / CHUNK_SECONDS) if item.speech_start is not None else 0
    speech_index = min(speech_index, len(frames) - 1)
    ex = await stream(url, frames, pace=CHUNK_SECONDS, wait_after_last=True, answer_timeout=timeout)
    if ex.connect_error:
        out.error = ex.connect_error
        return out
    if ex.timed_out:
        out.error = f"no final answer {timeout:.0f}s after the end of the clip"
    out.close_code = ex.close_code
    out.messages = ex.messages
    t_speech = ex.sent[speech_index] if len(ex.sent) > speech_index else None
    t_last = ex.sent[-1] if len(ex.sent) == len(frames) else None
    t_stop = ex.stop_sent

    for now, msg in out.messages:
        status = msg.get("status")
        if status == "partial":
            out.partials += 1
        if status in ("partial", "success") and out.first_answer is None and t_speech is not None:
            out.first_answer = now - t_speech
        if status == "success" and msg.get("data", {}).get("final", True):
            data = msg["data"]
            out.ended_by, out.language, out.reason = data.get("ended_by"), data.get("language"), data.get("reason")
            out.top1 = data["top"][0]["language"] if data.get("top") else None
            if t_speech is not None:
                out.final = now - t_speech
            if t_stop is not None and now >= t_stop:
                out.final_after_stop = now - t_stop
            if t_last is not None:
                out.final_after_last_chunk = now - (t_last + CHUNK_SECONDS)
        if status == "error" and out.error is None:
            out.error = msg.get("message")
    return out


def prepare_stream_clips(clips: list[Clip], speech_starts: dict) -> list[StreamClip]:
    out = []
    for clip in clips:
        webm, seconds = samples_to_webm(clip.samples())
        out.append(StreamClip(clip, webm, seconds, speech_starts.get(clip.file)))
    return out


async def run_level(server: Server, items: list[StreamClip], concurrency: int, rounds: int,
                    timeout: float, answers: dict) -> dict:
    url = server.ws + "/ws?mode=stream"
    before = server.metrics()
    cpu_before = server.cpu_seconds()
    started = time.perf_counter()
    results: list[StreamResult] = []
    audio_seconds = 0.0
    cursor = 0
    for _ in range(rounds):
        batch = [items[(cursor + i) % len(items)] for i in range(concurrency)]
        cursor += concurrency
        audio_seconds += sum(item.seconds for item in batch)
        results += await asyncio.gather(*[
            stream_one(url, item, timeout, delay=i / concurrency) for i, item in enumerate(batch)
        ])
    wall = time.perf_counter() - started
    cpu = server.cpu_seconds() - cpu_before
    after = server.metrics()
    finals = [r for r in results if r.ended_by is not None]
    after_stop = [r.final_after_stop for r in results if r.final_after_stop is not None]
    return {
        "concurrency": concurrency, "streams": len(results), "wall": wall,
        "audio_seconds": audio_seconds,
        "finals": len(finals), "right": sum(r.language == r.clip.lang for r in finals),
        "agree": sum(r.top1 == answers[r.clip.file] for r in finals if r.clip.file in answers),
        "comparable": sum(r.clip.file in answers for r in finals),
        "ended_by": {k: sum(r.ended_by == k for r in finals) for k in sorted({r.ended_by for r in finals})},
        "no_language": sum(r.language is None for r in finals),
        "partials": sum(r.partials for r in results),
        "errors": [r.error for r in results if r.error],
        "close_codes": sorted({r.close_code for r in results if r.close_code is not None}),
        "after_stop_median": med(after_stop), "after_stop_p95": p95(after_stop), "after_stop_n": len(after_stop),
        "final_from_speech_median": med([r.final for r in finals if r.final is not None]),
        "final_from_speech_p95": p95([r.final for r in finals if r.final is not None]),
        "first_answer_median": med([r.first_answer for r in results if r.first_answer is not None]),
        "detections": after["total_requests"] - before["total_requests"],
        "detections_per_second": (after["total_requests"] - before["total_requests"]) / wall,
        "server_cpu_cores": cpu / wall,  # psutil on the server's pid (/metrics' figure is since *any* call)
        "server_errors": after["errors"] - before["errors"],
        "rejections": after.get("rejections"),
        "results": results,
    }


async def bench_server(server: Server, items: list[StreamClip], latency_n: int, levels: list[int],
                       deadline: float, answers: dict) -> dict:
    url = server.ws + "/ws?mode=stream"
    out: dict = {"latency": [], "levels": [], "skipped": []}
    for item in items[:latency_n]:
        if time.monotonic() > deadline:
            out["skipped"].append(f"latency: {latency_n - len(out['latency'])} clips (time budget)")
            break
        result = await stream_one(url, item, timeout=30)
        out["latency"].append(result)
        log(f"latency {item.clip.file}: first {result.first_answer}, final {result.final} ({result.ended_by})")
    for concurrency in levels:
        if time.monotonic() > deadline:
            out["skipped"].append(f"{concurrency} concurrent streams (time budget)")
            continue
        rounds = max(1, 4 // concurrency) if latency_n > 6 else 1
        level = await run_level(server, items, concurrency, rounds, timeout=60, answers=answers)
        out["levels"].append(level)
        log(f"{concurrency} streams: {level['finals']}/{level['streams']} finals, "
            f"{level['detections_per_second']:.2f} detections/s")
    return out


def interesting_log_lines(text: str, limit: int = 12) -> list[str]:
    keep = [line for line in text.splitlines()
            if any(word in line for word in (" WARNING ", " ERROR ", "WARNING:", "ERROR:", "Traceback", "Busy", "CRITICAL"))]
    return keep[:limit]


# --- part 3: end of speech ----------------------------------------------------------------------------

EOS_TRAILING_SECONDS = 3.0  # silence (a quiet room: -60 dBFS noise) streamed after each clip
NO_SPEECH_STREAM_SECONDS = 10.0


@dataclass
class EosResult:
    clip: Clip | None
    speech_start: float | None
    speech_end: float | None
    first_partial: float | None = None  # s after speech started (as the speaker speaks)
    final: float | None = None  # s after speech ended (negative: before it ended)
    final_from_start: float | None = None  # s after the stream started
    ended_by: str | None = None
    language: str | None = None
    reason: str | None = None
    confident: bool | None = None
    audio_duration: float | None = None
    error: str | None = None


async def stream_realtime(
    url: str, chunks: list[bytes], timeout: float
) -> tuple[list[tuple[float, dict]], str | None]:
    """Send chunks as a MediaRecorder does (chunk i, holding audio [i, i+1) x 250 ms, at (i+1) x 250 ms),
    never stop; collect the answers with their times (s after the stream's audio started)."""
    ex = await stream(url, chunks, pace=CHUNK_SECONDS, send_at_chunk_end=True, stop=False, answer_timeout=timeout)
    if ex.connect_error:
        return [], ex.connect_error
    error = f"no final answer {timeout:.0f}s after the audio ended" if ex.timed_out else None
    return [(at - ex.opened, message) for at, message in ex.messages], error


def _eos_result(clip, speech_start, speech_end, messages, error) -> EosResult:
    out = EosResult(clip, speech_start, speech_end, error=error)
    for at, msg in messages:
        if msg.get("status") == "partial" and out.first_partial is None and speech_start is not None:
            out.first_partial = at - speech_start
        if msg.get("status") == "success":
            data = msg["data"]
            out.ended_by, out.language, out.reason = data.get("ended_by"), data.get("language"), data.get("reason")
            out.confident, out.audio_duration = data.get("confident"), data.get("audio_duration")
            out.final_from_start = at
            if speech_end is not None:
                out.final = at - speech_end
        if msg.get("status") == "error" and out.error is None:
            out.error = msg.get("message")
    return out


def bench_end_of_speech(clips: list[Clip], n: int, silence_runs: int, deadline: float) -> dict:
    """A server whose streams end only on a pause (FINAL_STABLE_UPDATES very high), clips in real time."""
    from audio_tools import encode_chunks
    from src.audio import decode
    from src.vad import VoiceActivityDetector

    vad = VoiceActivityDetector(pad_ms=0)  # where the speech really starts and ends
    rng = np.random.default_rng(0)
    items = []
    for clip in round_robin(clips, n):
        samples = decode(clip.path.read_bytes())
        segments = vad.find_speech(samples).segments
        if not segments:
            continue
        chunks = encode_chunks(with_silence(samples, EOS_TRAILING_SECONDS, rng), CHUNK_SECONDS)
        items.append((clip, segments[0][0] / SAMPLE_RATE, segments[-1][1] / SAMPLE_RATE, chunks))
    silence = encode_chunks(with_silence(np.zeros(0, np.float32), NO_SPEECH_STREAM_SECONDS, rng))

    server = start_server({"FINAL_STABLE_UPDATES": "1000"})
    log(f"end of speech: server on 127.0.0.1:{server.port}, {len(items)} clips + {silence_runs} silent streams")
    results: list[EosResult] = []
    silent: list[EosResult] = []
    skipped = 0
    try:
        server.wait_ready(120, sample_rss=True)
        url = server.ws + "/ws?mode=stream"

        async def run() -> None:
            nonlocal skipped
            for clip, start, end, chunks in items:
                if time.monotonic() > deadline:
                    skipped += 1
                    continue
                messages, error = await stream_realtime(url, chunks, timeout=20)
                result = _eos_result(clip, start, end, messages, error)
                results.append(result)
                log(f"eos {clip.file}: speech ends {end:.2f}s, final +{result.final}, {result.ended_by}")
            for _ in range(silence_runs):
                messages, error = await stream_realtime(url, silence, timeout=20)
                silent.append(_eos_result(None, None, None, messages, error))

        asyncio.run(run())
    finally:
        server.stop()
    return {"results": results, "silent": silent, "skipped": skipped}


def report_end_of_speech(eos: dict, out: list) -> dict:
    results: list[EosResult] = eos["results"]
    by_pause = [r for r in results if r.ended_by == "end_of_speech" and r.final is not None]
    finals = [r.final for r in by_pause]
    # Where the time goes: the pause the rule waited for (audio after the speech that the final rests on),
    # and the rest (the chunk's 250 ms, the encoder's lag, decoding, VAD, detection, the machine's load).
    waited = [r.audio_duration - r.speech_end for r in by_pause if r.audio_duration is not None]
    rest = [r.final - (r.audio_duration - r.speech_end) for r in by_pause if r.audio_duration is not None]
    firsts = [r.first_partial for r in results if r.first_partial is not None]
    silent = eos["silent"]
    no_speech = [r.final_from_start for r in silent if r.ended_by == "no_speech"]
    right = sum(r.language == r.clip.lang for r in results)
    named = sum(r.language is not None for r in results)
    out += ["", f"### End of speech (real server, {len(results)} clips of {len({r.clip.lang for r in results})} "
            f"languages, webm/opus in {int(CHUNK_SECONDS * 1000)} ms chunks in real time as MediaRecorder sends them, "
            f"then {EOS_TRAILING_SECONDS:g} s of quiet room noise; no stop)", "",
            "The server ran with FINAL_STABLE_UPDATES=1000 so that every stream ends on the speaker's pause "
            "(the default also ends early when two detections are confident). Speech start and end: Silero VAD "
            "without padding on the clip. Each chunk is sent when its 250 ms have been \"recorded\".", "",
            table(["", "median", "p95", "n"], [
                ["end of speech to final answer", ms(med(finals)), ms(p95(finals)), len(finals)],
                ["  of which: audio after the speech in the final (the pause waited for)", ms(med(waited)),
                 ms(p95(waited)), len(waited)],
                ["  of which: the rest (chunking, encoder lag, decoding, VAD, detection, load)", ms(med(rest)),
                 ms(p95(rest)), len(rest)],
                ["speech start to first partial answer", ms(med(firsts)), ms(p95(firsts)), len(firsts)],
                ["silent stream: start to `no_speech` final", ms(med(no_speech)), ms(p95(no_speech)), len(no_speech)],
            ]), "",
            "Ended by: " + ", ".join(f"{k} {sum(r.ended_by == k for r in results)}"
                                      for k in sorted({str(r.ended_by) for r in results}))
            + f"; language named {named}/{len(results)}, right {right}/{len(results)}, confident "
            f"{sum(bool(r.confident) for r in results)}; silent streams ended by "
            + ", ".join(sorted(str(r.ended_by) for r in silent))
            + (f"; errors: {[r.error for r in results + silent if r.error]}" if any(r.error for r in results + silent) else "")
            + (f"; {eos['skipped']} clips skipped (time budget)" if eos["skipped"] else ""),
            "", table(["clip", "speech", "first partial", "final after end of speech", "ended by", "answer", "confident"], [
                [r.clip.file, f"{r.speech_start:.2f}–{r.speech_end:.2f} s",
                 ms(r.first_partial if r.first_partial is not None else float("nan")),
                 ms(r.final if r.final is not None else float("nan")), r.ended_by,
                 r.language or r.reason or r.error, r.confident] for r in results])]
    return {
        "end_of_speech_to_final_median": med(finals), "end_of_speech_to_final_p95": p95(finals), "n": len(finals),
        "pause_waited_median": med(waited), "rest_median": med(rest), "rest_p95": p95(rest),
        "first_partial_median": med(firsts), "first_partial_p95": p95(firsts),
        "no_speech_median": med(no_speech), "no_speech_max": max(no_speech) if no_speech else None,
        "clips": [{"file": r.clip.file, "speech_end": r.speech_end, "final": r.final, "first_partial": r.first_partial,
                   "ended_by": r.ended_by, "language": r.language, "reason": r.reason, "error": r.error}
                  for r in results],
    }


# --- main ----------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, action="append",
                        help="manifest.csv; repeat for several sets (default: eval and eval-more)")
    parser.add_argument("--quick", action="store_true", help="about 2 minutes: 1 pass, 1 clip per language, 6 streams")
    parser.add_argument("--passes", type=int, default=None, help="in-process passes over the clips (3; quick 1)")
    parser.add_argument("--stream-clips", type=int, default=None, help="clips for the latency part (12; quick 6)")
    parser.add_argument("--levels", default="1,4,16", help="concurrent streams to try, comma-separated")
    parser.add_argument("--budget", type=float, default=None, help="minutes before remaining parts are skipped (9; quick 2)")
    parser.add_argument("--no-server", action="store_true", help="only the in-process part")
    parser.add_argument("--eos-clips", type=int, default=None, help="clips for the end-of-speech part (24; quick 20)")
    parser.add_argument("--only-eos", action="store_true", help="only the end-of-speech part")
    parser.add_argument("--no-decoding", action="store_true", help="skip the stream-decoding part (benchmark_decoding.py)")
    parser.add_argument("--json", type=Path, default=None, help="dump the figures to this JSON file")
    args = parser.parse_args()
    passes = args.passes or (1 if args.quick else 3)
    latency_n = args.stream_clips or (6 if args.quick else 12)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    budget = 60 * (args.budget or (2.0 if args.quick else 9.0))
    t_start = time.monotonic()
    deadline = t_start + budget

    # SIGTERM (and Ctrl-C) must still stop the server: turn SIGTERM into an exception that unwinds.
    stop_on_sigterm()

    manifests = args.manifest or default_manifests()
    all_clips = [clip for path in manifests for clip in read_manifest(path)]
    clips = one_per_language(all_clips) if args.quick else all_clips
    speech_clips = [clip for clip in all_clips if clip.kind in ("speech", "speech_unverified")]
    info = machine()
    out = Printed()
    out += ["## LangShazam benchmark", ""]
    out.append(table(["machine", ""], [
        ["nproc", info["affinity_cpus"]],
        ["RAM (MemTotal / MemAvailable)", f"{info['ram_gib']:.1f} GiB / {info['mem_available_gib']:.1f} GiB"],
        ["CPU", info["cpu_model"]],
        ["load average at start (1/5/15 min)", " ".join(f"{x:.2f}" for x in info["loadavg_start"])],
        ["python", info.get("python")],
        ["manifests", ", ".join(f"{path.parent.name}" for path in manifests) + f" ({len(all_clips)} clips)"],
        ["CTranslate2", describe_backend(ct2_backend(model_path()))],
    ]))
    load_now = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0
    if load_now > 0.5 * (info["affinity_cpus"] or 1):
        out.append(f"\n**Warning: the machine was busy at start (load {load_now:.1f} on {info['affinity_cpus']} cores): "
                   "timings are inflated and noisy.**")

    eos_n = args.eos_clips or (20 if args.quick else 24)
    if args.only_eos:
        eos = bench_end_of_speech(speech_clips, eos_n, 3, deadline)
        results = {"machine": info, "end_of_speech": report_end_of_speech(eos, out)}
        out += ["", f"Whole run: {time.monotonic() - t_start:.0f} s."]
        if args.json:
            write_json(args.json, results)
        return 0

    # 1. In process.
    t1 = time.monotonic()
    ip = bench_in_process(clips, passes, deadline=t_start + budget * 0.45)
    n = ip["clips"]
    out += ["", f"### Detection speed in process ({n} clips, median {ip['audio_seconds_median']:.1f} s of audio, "
            f"longest {ip['audio_seconds_max']:.0f} s; "
            f"{ip['passes']} passes, per-clip medians; {ip['threads']} threads, {ip['compute_type']})", "",
            f"Ours: `decode` + `processor.identify` = decoding, VAD, engine on the speech (window ≥ {ip['window_seconds']:g} s)"
            f"{' + gc.collect()' if ip['gc_after_processing'] else ''}; engine only: its `processing_time`. "
            "Stock: `decode_audio` + `model.detect_language(samples)` on the same WhisperModel (30 s window).", "",
            table(["", "median", "p95", "mean", "top-1"], [
                ["ours: decode + identify (POST /detect's pipeline)", ms(ip["ours_median"]), ms(ip["ours_p95"]), ms(ip["ours_mean"]),
                 f"{pct(ip['ours_top1'], n)} ({ip['ours_top1']}/{n})"],
                ["ours: engine only", ms(ip["engine_median"]), ms(ip["engine_p95"]), "", ""],
                ["stock decode_audio + detect_language", ms(ip["stock_median"]), ms(ip["stock_p95"]), ms(ip["stock_mean"]),
                 f"{pct(ip['stock_top1'], n)} ({ip['stock_top1']}/{n})"],
                ["ratio stock / ours (pipeline)", f"{ip['ratio_median']:.2f}x", "", f"{ip['ratio_mean']:.2f}x", ""],
                ["ratio stock / ours (engine only)", f"{ip['ratio_engine_median']:.2f}x", "", "", ""],
            ]),
            "", f"In-process part: {time.monotonic() - t1:.0f} s (model load {ip['load_seconds']:.1f} s)."]

    results: dict = {"machine": info, "in_process": {k: v for k, v in ip.items() if k != "speech_starts"}}
    server: Server | None = None
    try:
        if not args.no_server:
            # 2. A real server.
            stream_clips = round_robin([c for c in (clips if not args.quick else all_clips) if c in speech_clips],
                                       max(latency_n, max(levels, default=1)))
            items = prepare_stream_clips(stream_clips, ip["speech_starts"])
            # Clips of the latency part have a speech start from part 1 when they were benchmarked there.
            missing = [i for i in items if i.clip.file not in ip["speech_starts"]]
            if missing:
                from src.audio import decode
                from src.vad import VoiceActivityDetector

                vad = VoiceActivityDetector()
                for i in missing:
                    speech = vad.find_speech(decode(i.clip.path.read_bytes()))
                    i.speech_start = speech.segments[0][0] / SAMPLE_RATE if speech.segments else None
            server = start_server()
            log(f"server: starting on 127.0.0.1:{server.port} (log {server.log_path})")
            ready = server.wait_ready(120, sample_rss=True)
            m0 = server.metrics()
            rss_start = server.rss_mb()
            t2 = time.monotonic()
            sv = asyncio.run(bench_server(server, items, latency_n, levels, deadline, ip["answers"]))
            m1 = server.metrics()
            rss_end = server.rss_mb()

            lat = sv["latency"]
            firsts = [r.first_answer for r in lat if r.first_answer is not None]
            finals = [r.final for r in lat if r.final is not None]
            confident = [r for r in lat if r.ended_by == "confident"]
            after_stop = [r.final_after_stop for r in lat if r.final_after_stop is not None]
            right = sum(r.language == r.clip.lang for r in lat)
            comparable = [r for r in lat if r.clip.file in ip["answers"]]
            agree = sum(r.top1 == ip["answers"][r.clip.file] for r in comparable)
            out += ["", f"### Streaming latency (real server, one stream at a time, {len(lat)} clips of "
                    f"{len({r.clip.lang for r in lat})} languages, webm/opus in {int(CHUNK_SECONDS * 1000)} ms chunks "
                    "in real time)", "",
                    "Times from the moment the chunk holding the first speech (Silero VAD) is sent. The server "
                    "answers after 1 s of speech (STREAM_FIRST_PARTIAL_SECONDS), so ~1 s of it is the audio itself.",
                    "",
                    table(["", "median", "p95", "n"], [
                        ["time to first answer", ms(med(firsts)), ms(p95(firsts)), len(firsts)],
                        ["time to final answer", ms(med(finals)), ms(p95(finals)), len(finals)],
                        ["  of which confident before the clip ended",
                         ms(med([r.final for r in confident])), ms(p95([r.final for r in confident])), len(confident)],
                        ["final after stop (clips not confident by their end)", ms(med(after_stop)),
                         ms(p95(after_stop)), len(after_stop)],
                    ]),
                    "", f"Finals right: {right}/{len(lat)}; same top candidate as in-process identify on the whole clip: "
                    f"{agree}/{len(comparable)}; ended by: "
                    + ", ".join(f"{k} {sum(r.ended_by == k for r in lat)}" for k in sorted({str(r.ended_by) for r in lat}))
                    + "; no language named: " + str(sum(r.ended_by is not None and r.language is None for r in lat)),
                    "", table(["clip", "speech starts", "first answer", "final", "ended by", "answer", "partials"], [
                        [r.clip.file, f"{next(i.speech_start for i in items if i.clip is r.clip) or 0:.2f} s",
                         ms(r.first_answer if r.first_answer is not None else float("nan")),
                         ms(r.final if r.final is not None else float("nan")), r.ended_by,
                         r.language or r.reason or r.error, r.partials] for r in lat])]

            lv_rows = []
            for lv in sv["levels"]:
                lv_rows.append([
                    lv["concurrency"], lv["streams"], f"{lv['finals']}/{lv['streams']}",
                    f"{lv['right']}/{lv['finals']}" + (f" ({lv['no_language']} named none)" if lv["no_language"] else ""),
                    f"{lv['agree']}/{lv['comparable']}" if lv["comparable"] else "n/a",
                    ", ".join(f"{k} {v}" for k, v in lv["ended_by"].items()) or "—",
                    f"{ms(lv['after_stop_median'])} / {ms(lv['after_stop_p95'])} (n={lv['after_stop_n']})",
                    f"{ms(lv['final_from_speech_median'])} / {ms(lv['final_from_speech_p95'])}",
                    f"{lv['detections']} in {lv['wall']:.1f} s = {lv['detections_per_second']:.2f}/s",
                    lv["partials"], f"{lv['server_cpu_cores']:.2f}",
                    (f"{len(lv['errors'])}: {lv['errors'][0]}" if lv["errors"] else "0"),
                ])
            out += ["", "### Throughput (concurrent real-time streams, starts staggered over 1 s)", "",
                    table(["streams", "total", "finals received/owed", "right", "same top-1 as in-process identify", "ended by",
                           "final after stop med / p95", "final from speech start med / p95",
                           "detections (/metrics)", "partials", "server CPU (cores)", "errors"], lv_rows)]
            if sv["skipped"]:
                out += ["", "Skipped: " + "; ".join(sv["skipped"])]

            out += ["", "### Server memory and GC", "", table(["", "value"], [
                ["server ready after", f"{ready:.1f} s"],
                ["RSS after start-up (/metrics memory_usage_mb)", f"{m0['memory_usage_mb']:.0f} MB (psutil {rss_start:.0f} MB)"],
                ["RSS after the run (/metrics memory_usage_mb)", f"{m1['memory_usage_mb']:.0f} MB (psutil {rss_end:.0f} MB)"],
                ["RSS peak during the run (psutil, sampled 4/s)", f"{server.peak_rss:.0f} MB"],
                ["detections during the run (/metrics)", f"{m1['total_requests'] - m0['total_requests']}, "
                 f"errors {m1['errors'] - m0['errors']}, rejections {m1.get('rejections')}"],
                ["server average_processing_time (last 100)", ms(m1["average_processing_time"])],
                ["gc.collect() after a detection, median / p95 (in process)",
                 f"{ms(ip['gc_median'])} / {ms(ip['gc_p95'])} (vs identify without it: {ms(ip['identify_no_gc_median'])})"],
            ])]
            out += ["", f"Server part: {time.monotonic() - t2:.0f} s."]
            odd = interesting_log_lines(server.log())
            if odd:
                out += ["", "Server log lines worth a look (warnings, errors, busy):", "", "```", *odd, "```"]
            results["server"] = {
                "ready_seconds": ready, "rss_start_mb": m0["memory_usage_mb"], "rss_end_mb": m1["memory_usage_mb"],
                "rss_peak_mb": server.peak_rss, "metrics_end": m1,
                "latency": [{"file": r.clip.file, "first_answer": r.first_answer, "final": r.final,
                             "final_after_stop": r.final_after_stop, "ended_by": r.ended_by,
                             "language": r.language, "reason": r.reason, "partials": r.partials,
                             "error": r.error} for r in lat],
                "levels": [{k: v for k, v in lv.items() if k != "results"} for lv in sv["levels"]],
                "skipped": sv["skipped"],
            }
        else:
            out += ["", "### GC", "", table(["", "value"], [[
                "gc.collect() after a detection, median / p95", f"{ms(ip['gc_median'])} / {ms(ip['gc_p95'])}"]])]
    finally:
        if server is not None:
            code = server.stop()
            clean = "Finished server process" in server.log()
            log(f"server stopped (exit code {code}{', after a graceful shutdown' if clean else ''}); "
                f"log kept at {server.log_path}")

    if not args.no_server:
        # 3. End of speech, on its own server (its streams end only on a pause).
        t3 = time.monotonic()
        eos = bench_end_of_speech(speech_clips, eos_n, 3, deadline=max(deadline, time.monotonic() + 300))
        results["end_of_speech"] = report_end_of_speech(eos, out)
        out += ["", f"End-of-speech part: {time.monotonic() - t3:.0f} s."]
    if not args.no_decoding:  # 4. Decoding a long real-time stream, before / after incremental decoding.
        import benchmark_decoding

        log("decoding: a 120 s stream, step by step")
        results["decoding"] = benchmark_decoding.measure(speech_clips, 120.0)
        out += ["", *benchmark_decoding.report(results["decoding"])]

    try:
        end_load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        end_load = "?"
    out += ["", f"Whole run: {time.monotonic() - t_start:.0f} s; load average at the end: {end_load}."]
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
