#!/usr/bin/env python3
"""Capacity of one LangShazam server: how many concurrent real-time streams it serves well, and whether one
long continuous call stays flat in memory, CPU and accuracy from its first minute to its last.

    python scripts/capacity.py [--quick] [--streams 10,20,30,40,60] [--call-minutes 60] [--speed 8]
                               [--call-languages en,zh,...] [--manifest PATH ...] [--env KEY=VALUE ...]
                               [--no-streams] [--no-call] [--json PATH]

From the repository root, with the project's Python. Clips: the speech clips (kinds speech and
speech_unverified; languages Whisper knows) of ../shared/eval, ../shared/eval-more and ../shared/eval-extra
beside the project (--manifest PATH, repeatable, instead), never copied. Every clip is encoded as a browser's
MediaRecorder streams it (audio_tools.encode_chunks: webm/opus, one piece per 250 ms of audio, cut at packet
times), and piece i is sent when its 250 ms have been "recorded". Each server is started here
(`python -m src.main`, 127.0.0.1, a free port, default settings plus every --env KEY=VALUE) and always
stopped (SIGTERM, then kill), also on error or Ctrl-C.

1. Streams: for each N of --streams, a fresh server and N concurrent clients on /ws?mode=stream, starts
   staggered over 2 s. Each streams one clip (languages in turn; clips of at most --max-clip-seconds, 15,
   what one stream holds) followed by 4 s of an open microphone's quiet room (-60 dBFS noise), and never
   sends stop: the server must end the stream itself. Each waits for the final answer or an error, at most
   --answer-timeout (30 s) after its last piece. A stream is
   - answered: a final success came;
   - refused at connect: an error message came before any partial, within 1 s of opening, and the server
     closed with 1013 (its connection limit; `retry_after` is recorded when given);
   - refused mid-stream: any other error (after a partial, or later than 1 s);
   - lost: neither a final nor an error (closed without one, or silent for the timeout).
   Admitted = all connected streams but those refused at connect. Figures per N: answered / admitted;
   refused at connect; refused mid-stream; lost; end of speech → final p50 / p95 over answered streams
   (end of speech: when the piece holding the clip's last speech sample was sent; the speech end is the
   Silero VAD's last segment end minus its padding, found offline on the clip's 16 kHz samples; a final
   that came before that piece was sent, the stream ended early (confident), counts as 0 and is counted
   apart); first partial p50 / p95 from when the piece holding the first speech sample was sent; top-1
   of answered finals against the manifest; server CPU seconds per admitted stream (psutil on the pid,
   from the first start to the last answer); server RSS peak (psutil, 4/s) over the phase.
2. Call: one /ws?mode=continuous call of --call-minutes of audio (60; --quick 3): the clips of several
   languages (--call-languages; default the 6 with the most clips) joined in turn, the list repeated as
   often as needed (never two turns of one language in a row), each followed by 0.8 s of quiet, sent
   FASTER than real time (--speed, 8: piece i at (i+1) x 250 ms / speed), then {"type": "stop"}, then the
   summary (data.final true, data.segments). Its server gets MAX_CALL_SECONDS above the call's length.
   Every 2 s: server RSS and CPU seconds (psutil on the pid) and GET /metrics (audio_held_seconds, and
   analysis_steps / analysis_step_seconds when the server has them: its per-step decode + VAD work,
   detections excluded). By quarter of the call's audio (a quarter ends at the first sample at which the
   server's answers, segment or partial `end`, reached that point of the audio; the last at the summary):
   RSS at its end, CPU seconds per minute of audio, mean analysis step cost (delta step seconds / delta
   steps; faster than real time a step covers more than 250 ms of audio when the server is behind, so also
   step seconds per audio minute), segments (by `end`), turns right (by turn start), the audio held at
   most, how far the server's answers were behind the audio sent; RSS growth after the first quarter (the
   highest RSS sampled after it, minus the RSS at its end); the ratios last / first quarter. Turns right: for each true turn
   (a clip's span in the call's audio), the language of the segments overlapping it most (summed overlap
   per language; segments' start / end are seconds of the stream's audio); a turn no segment overlaps, or
   whose segments name no language, is wrong. A flood of bytes is closed with 1009: then lower --speed.

Prints the machine, the CTranslate2 backend, the settings overrides and markdown tables of the figures,
with the targets beside them (ok / MISS): at 30 streams, every admitted stream answered, 0 refused
mid-stream, end of speech → final p95 <= 1.5 s, first partial p95 <= 3 s; the call: RSS growth <= 100 MB
after the first quarter, CPU per audio minute and step cost last / first quarter <= 1.2, turns right >= 80 %.
--json PATH saves every figure. Exit 2 when it could not run, 1 when a stream's answer or the call's summary
was lost, else 0 (targets missed or not). About 1-2 minutes per N plus the call's length / speed and
server start-ups: ~20 minutes by default; --quick (N = 4, 8; a 3-minute call) about 3 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (  # noqa: E402
    CHUNK_SECONDS, SAMPLE_RATE, SPEECH_KINDS, Clip, CpuAccount, Exchange, RssPeak, Server, ct2_backend,
    default_manifests, describe_backend, log, machine, model_path, pct, quantile, read_manifest, round_robin,
    secs, stop_on_sigterm, stream, table, with_silence, write_json,
)

import numpy as np  # noqa: E402

PROG = "capacity.py"
STAGGER_SECONDS = 2.0
TRAILING_SILENCE_SECONDS = 4.0  # an open microphone after the speech, never a stop
CONNECT_REFUSAL_SECONDS = 1.0  # an error this soon after opening, before any partial, with 1013: refused at connect
CLOSE_TRY_AGAIN_LATER = 1013
TURN_GAP_SECONDS = 0.8
CALL_LANGUAGES = 6  # the call's languages by default: those with the most clips
SAMPLE_EVERY_SECONDS = 2.0

TARGET_STREAMS = 30
TARGET_EOS_P95 = 1.5
TARGET_FIRST_PARTIAL_P95 = 3.0
TARGET_RSS_GROWTH_MB = 100.0
TARGET_RATIO = 1.2
TARGET_TURNS_RIGHT = 0.8


def eval_extra_manifest() -> Path:
    """The third set, beside the other two."""
    return default_manifests()[0].parent.parent / "eval-extra" / "manifest.csv"


def ok(flag: bool | None) -> str:
    return "n/a" if flag is None else ("ok" if flag else "MISS")


def within(value: float | None, limit: float) -> str:
    return ok(None if value is None else value <= limit)


def num(value: float | None, digits: int = 2, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


# --- clips ----------------------------------------------------------------------------------------------


def load_clips(manifests: list[Path]) -> list[Clip]:
    """The speech clips of the manifests that are present, in languages the engine can name."""
    from src.languages import WHISPER_LANGUAGES

    clips = [clip for path in manifests
             for clip in read_manifest(path, PROG, kinds=SPEECH_KINDS, skip_missing=True)]
    return [clip for clip in clips if clip.lang in WHISPER_LANGUAGES]


class SpeechFinder:
    """Where a clip's speech starts and ends (seconds), by the server's own VAD with its padding taken off."""

    def __init__(self) -> None:
        from src.vad import VoiceActivityDetector

        self.vad = VoiceActivityDetector()

    def bounds(self, samples: np.ndarray) -> tuple[float, float] | None:
        speech = self.vad.find_speech(samples)
        if not speech.segments:
            return None
        start = speech.segments[0][0] + (speech.pad if speech.segments[0][0] > 0 else 0)
        end = max(start, speech.segments[-1][1] - speech.pad)
        return start / SAMPLE_RATE, end / SAMPLE_RATE


@dataclass
class StreamClip:
    clip: Clip
    chunks: list[bytes]
    speech_start: float  # s of the clip's audio
    speech_end: float

    @property
    def first_piece(self) -> int:
        return min(int(self.speech_start / CHUNK_SECONDS), len(self.chunks) - 1)

    @property
    def last_piece(self) -> int:
        return min(int(self.speech_end / CHUNK_SECONDS), len(self.chunks) - 1)


def prepare_stream_clips(clips: list[Clip], count: int, max_seconds: float, finder: SpeechFinder) -> list[StreamClip]:
    """`count` clips, languages in turn, each with its trailing quiet, encoded as MediaRecorder streams it."""
    from audio_tools import encode_chunks

    fitting = [clip for clip in clips if clip.seconds <= max_seconds]
    out: list[StreamClip] = []
    for index, clip in enumerate(round_robin(fitting, len(fitting))):
        if len(out) == count:
            break
        samples = clip.samples()
        bounds = finder.bounds(samples)
        if bounds is None:
            log(f"{clip.file}: no speech found by the VAD, left out")
            continue
        rng = np.random.default_rng(index)
        audio = with_silence(samples, TRAILING_SILENCE_SECONDS, rng)
        chunks = encode_chunks(audio, CHUNK_SECONDS)
        expected = math.ceil(len(audio) / (CHUNK_SECONDS * SAMPLE_RATE))
        if len(chunks) != expected:
            log(f"{clip.file}: {len(chunks)} pieces for {expected} x 250 ms (piece times are approximate)")
        out.append(StreamClip(clip, chunks, *bounds))
    return out


# --- phase 1: concurrent streams ------------------------------------------------------------------------


@dataclass
class StreamOutcome:
    item: StreamClip
    kind: str  # answered, refused_connect, refused_mid, lost, connect_failed
    timed_out: bool = False
    language: str | None = None
    reason: str | None = None
    ended_by: str | None = None
    error: str | None = None
    retry_after: float | None = None
    close_code: int | None = None
    partials: int = 0
    eos_to_final: float | None = None  # s from the piece holding the last speech; 0 when the final came first
    ended_early: bool = False
    first_partial: float | None = None  # s from the piece holding the first speech

    def row(self) -> dict:
        return {"file": self.item.clip.file, "lang": self.item.clip.lang, "kind": self.kind,
                "speech_start": round(self.item.speech_start, 3), "speech_end": round(self.item.speech_end, 3),
                "language": self.language, "reason": self.reason, "ended_by": self.ended_by, "error": self.error,
                "retry_after": self.retry_after, "close_code": self.close_code, "partials": self.partials,
                "eos_to_final": self.eos_to_final, "ended_early": self.ended_early,
                "first_partial": self.first_partial, "timed_out": self.timed_out}


def since_piece(ex: Exchange, piece: int, at: float) -> tuple[float, bool]:
    """Seconds from the sending of `piece` to `at`; (0, True) when `at` came before it was sent."""
    if piece < len(ex.sent) and at >= ex.sent[piece]:
        return at - ex.sent[piece], False
    return 0.0, True


def classify(ex: Exchange, item: StreamClip) -> StreamOutcome:
    if ex.connect_error:
        return StreamOutcome(item, "connect_failed", error=ex.connect_error)
    out = StreamOutcome(item, "lost", timed_out=ex.timed_out, close_code=ex.close_code)
    partials = ex.partials()
    out.partials = len(partials)
    if partials:
        out.first_partial, _ = since_piece(ex, item.first_piece, partials[0][0])
    answer = ex.answer
    if answer is None:
        return out
    at, message = answer
    if message.get("status") == "error":
        out.error = str(message.get("message", ""))[:200]
        out.retry_after = message.get("retry_after")
        at_connect = (at - ex.opened <= CONNECT_REFUSAL_SECONDS and not any(t <= at for t, _ in partials)
                      and ex.close_code == CLOSE_TRY_AGAIN_LATER)
        out.kind = "refused_connect" if at_connect else "refused_mid"
        return out
    data = message.get("data") or {}
    out.kind = "answered"
    out.language, out.reason, out.ended_by = data.get("language"), data.get("reason"), data.get("ended_by")
    out.eos_to_final, out.ended_early = since_piece(ex, item.last_piece, at)
    return out


async def run_streams(server: Server, items: list[StreamClip], answer_timeout: float) -> tuple[list[StreamOutcome], int]:
    """Every item streamed at once (starts staggered), until its final answer or error; the outcomes and
    how many clients were cut off by the phase's hard deadline."""
    url = server.ws + "/ws?mode=stream"
    n = len(items)

    async def client(index: int, item: StreamClip) -> StreamOutcome:
        await asyncio.sleep(STAGGER_SECONDS * index / max(1, n))
        ex = await stream(url, item.chunks, pace=CHUNK_SECONDS, send_at_chunk_end=True, stop=False,
                          until_answer=True, answer_timeout=answer_timeout, open_timeout=15, compression=None)
        return classify(ex, item)

    longest = max(len(item.chunks) for item in items) * CHUNK_SECONDS
    tasks = [asyncio.create_task(client(i, item)) for i, item in enumerate(items)]
    done, pending = await asyncio.wait(tasks, timeout=STAGGER_SECONDS + longest + answer_timeout + 30)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    outcomes = []
    for task in done:
        if task.exception() is not None:
            log(f"a client failed: {task.exception()!r}")
        else:
            outcomes.append(task.result())
    return outcomes, len(pending)


def summarize_streams(outcomes: list[StreamOutcome]) -> dict:
    kinds = Counter(o.kind for o in outcomes)
    answered = [o for o in outcomes if o.kind == "answered"]
    admitted = sum(o.kind != "connect_failed" for o in outcomes) - kinds["refused_connect"]
    eos = [o.eos_to_final for o in answered if o.eos_to_final is not None]
    firsts = [o.first_partial for o in outcomes if o.first_partial is not None]
    retry = [o.retry_after for o in outcomes if o.kind == "refused_connect" and o.retry_after is not None]
    return {
        "streams": len(outcomes), "admitted": admitted, "answered": kinds["answered"],
        "refused_connect": kinds["refused_connect"], "refused_mid": kinds["refused_mid"],
        "lost": kinds["lost"], "lost_timed_out": sum(o.kind == "lost" and o.timed_out for o in outcomes),
        "connect_failed": kinds["connect_failed"],
        "errors_by_message": dict(Counter(f"{o.kind}: {o.error}" for o in outcomes if o.error)),
        "retry_after": retry,
        "ended_by": dict(Counter(o.ended_by or "none" for o in answered)),
        "right": sum(o.language == o.item.clip.lang for o in answered),
        "named": sum(o.language is not None for o in answered),
        "eos_to_final_p50": quantile(eos, 0.5), "eos_to_final_p95": quantile(eos, 0.95),
        "eos_to_final_max": max(eos) if eos else None, "eos_n": len(eos),
        "ended_early": sum(o.ended_early for o in answered),
        "first_partial_p50": quantile(firsts, 0.5), "first_partial_p95": quantile(firsts, 0.95),
        "first_partial_n": len(firsts),
        "misses": dict(Counter(f"{o.item.clip.file}: {o.item.clip.lang}→{o.language or o.reason}"
                               for o in answered if o.language != o.item.clip.lang)),
    }


def graceful(server: Server) -> str:
    return " after a graceful shutdown" if "Finished server process" in server.log() else ""


def streams_level(n: int, items: list[StreamClip], env: dict[str, str], answer_timeout: float) -> dict:
    """A fresh server, N streams at once, its figures; the server is stopped before returning."""
    batch = [items[i % len(items)] for i in range(n)]
    server = Server(env, name=f"capacity-{n}", engine_env=False).start()
    log(f"{n} streams: server pid {server.process.pid} on 127.0.0.1:{server.port}, log {server.log_path}")
    try:
        ready = server.wait_ready(180)
        rss_ready = server.rss_mb()
        cpu_before = server.cpu_seconds()
        cpu = CpuAccount(server)
        started = time.perf_counter()
        with RssPeak(server, 0.25) as rss:
            outcomes, cut_off = asyncio.run(run_streams(server, batch, answer_timeout))
        wall = time.perf_counter() - started
        cpu_seconds = server.cpu_seconds() - cpu_before
        account = cpu.summary()
        metrics_end = server.metrics()
    finally:
        code = server.stop()
        log(f"{n} streams: server exited with {code}{graceful(server)}")
    figures = summarize_streams(outcomes)
    figures.update({
        "n": n, "clients_cut_off": cut_off, "wall_s": round(wall, 1), "ready_s": round(ready, 1),
        "server_cpu_seconds": round(cpu_seconds, 2),
        "server_cpu_seconds_per_admitted": round(cpu_seconds / figures["admitted"], 3) if figures["admitted"] else None,
        "rss_ready_mb": round(rss_ready or 0.0, 1), "rss_peak_mb": round(rss.peak or 0.0, 1),
        "cpu_account": account,
        "metrics_end": {k: metrics_end.get(k) for k in ("active_connections", "active_processes", "total_requests",
                                                        "errors", "errors_by_type", "rejections")},
        "log_warnings": server.log_count(" WARNING ") or 0, "log_errors": server.log_count(" ERROR ") or 0,
        "log_path": str(server.log_path), "exit_code": code,
        "outcomes": [o.row() for o in outcomes],
    })
    log(f"{n} streams: {figures['answered']}/{figures['admitted']} answered, {figures['refused_connect']} refused "
        f"at connect, {figures['refused_mid']} mid-stream, {figures['lost']} lost; eos→final p95 "
        f"{secs(figures['eos_to_final_p95'])}")
    return figures


# --- phase 2: one long continuous call ------------------------------------------------------------------


@dataclass
class Turn:
    lang: str
    file: str
    start: float  # s of the call's audio
    end: float


def call_languages(clips: list[Clip], wanted: str | None) -> list[str]:
    """--call-languages, else the CALL_LANGUAGES languages with the most clips."""
    if wanted:
        return [code.strip() for code in wanted.split(",") if code.strip()]
    counts = Counter(clip.lang for clip in clips)
    return [code for code, _ in counts.most_common(CALL_LANGUAGES)]


def build_call(clips: list[Clip], seconds: float) -> tuple[np.ndarray, list[Turn]]:
    """Clips joined, languages in turn and never one language twice in a row, each followed by
    TURN_GAP_SECONDS of quiet, repeated until the call lasts `seconds`."""
    rng = np.random.default_rng(0)
    order = round_robin(clips, len(clips))
    cache: dict[str, np.ndarray] = {}
    pieces, turns, position, previous = [], [], 0, None
    queue: list[Clip] = []
    while position < seconds * SAMPLE_RATE:
        if len(queue) < len(order):
            queue += order
        pick = next((i for i, clip in enumerate(queue) if clip.lang != previous), 0)
        clip = queue.pop(pick)
        if clip.file not in cache:
            cache[clip.file] = clip.samples()
        samples = cache[clip.file]
        turns.append(Turn(clip.lang, clip.file, position / SAMPLE_RATE, (position + len(samples)) / SAMPLE_RATE))
        gap = with_silence(np.zeros(0, np.float32), TURN_GAP_SECONDS, rng)
        pieces += [samples, gap]
        position += len(samples) + len(gap)
        previous = clip.lang
    return np.concatenate(pieces), turns


@dataclass
class Sample:
    at: float  # time.perf_counter()
    rss_mb: float | None
    cpu_seconds: float | None
    metrics: dict = field(default_factory=dict)


def take_sample(server: Server) -> Sample:
    try:
        cpu = server.cpu_seconds()
    except Exception:  # noqa: BLE001 (the process is gone)
        cpu = None
    try:
        metrics = server.metrics()
    except (OSError, ValueError):
        metrics = {}
    keep = ("audio_held_seconds", "analysis_steps", "analysis_step_seconds", "queued_detections",
            "active_processes", "active_connections", "total_requests", "memory_usage_mb")
    return Sample(time.perf_counter(), server.rss_mb(), cpu, {k: metrics[k] for k in keep if k in metrics})


async def run_call(server: Server, chunks: list[bytes], speed: float,
                   answer_timeout: float) -> tuple[Exchange, list[Sample]]:
    """Stream the call at `speed` x real time, then stop; sample the server every SAMPLE_EVERY_SECONDS."""
    samples = [await asyncio.to_thread(take_sample, server)]
    done = asyncio.Event()

    async def sampler() -> None:
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), SAMPLE_EVERY_SECONDS)
            except asyncio.TimeoutError:
                samples.append(await asyncio.to_thread(take_sample, server))

    sampling = asyncio.create_task(sampler())
    try:
        ex = await stream(server.ws + "/ws?mode=continuous", chunks, pace=CHUNK_SECONDS / speed,
                          send_at_chunk_end=True, stop=True, answer_timeout=answer_timeout, open_timeout=15,
                          compression=None)
    finally:
        done.set()
        await sampling
    samples.append(await asyncio.to_thread(take_sample, server))
    return ex, samples


def turn_verdicts(turns: list[Turn], segments: list[dict]) -> list[str | None]:
    """For each turn, the language (None: no language named, "" no segment) its segments overlap it most with."""
    out: list[str | None] = []
    ordered = sorted(segments, key=lambda s: s.get("start") or 0.0)
    for turn in turns:
        overlap: dict[str | None, float] = {}
        for segment in ordered:
            start, end = segment.get("start"), segment.get("end")
            if start is None or end is None or end <= turn.start or start >= turn.end:
                continue
            shared = min(end, turn.end) - max(start, turn.start)
            if shared > 0:
                overlap[segment.get("language")] = overlap.get(segment.get("language"), 0.0) + shared
        out.append(max(overlap.items(), key=lambda kv: kv[1])[0] if overlap else "")
    return out


def call_figures(ex: Exchange, samples: list[Sample], turns: list[Turn], call_seconds: float) -> dict:
    summary = ex.answer[1] if ex.answer and ex.answer[1].get("status") == "success" else None
    data = (summary or {}).get("data") or {}
    live = [m.get("data") or {} for _, m in ex.messages if m.get("status") == "segment"]
    segments = data.get("segments") if summary else live
    errors = [m.get("message") for _, m in ex.messages if m.get("status") == "error"]
    # How far the server's answers have got into the call's audio, at each moment.
    progress = sorted((at, (m.get("data") or {}).get("end")) for at, m in ex.messages
                      if m.get("status") in ("segment", "partial") and (m.get("data") or {}).get("end") is not None)

    def position(at: float) -> float:
        return max((end for t, end in progress if t <= at), default=0.0)

    def sent_at(at: float) -> float:
        return sum(t <= at for t in ex.sent) * CHUNK_SECONDS

    quarter = call_seconds / 4
    bounds: list[tuple[Sample, float] | None] = [(samples[0], 0.0)]
    for k in (1, 2, 3):
        hit = next((s for s in samples if position(s.at) >= k * quarter), None)
        bounds.append((hit, position(hit.at)) if hit else None)
    bounds.append((samples[-1], float(data.get("audio_duration") or call_seconds)) if summary else None)
    verdicts = turn_verdicts(turns, segments or [])
    quarters = []
    for k in range(1, 5):
        row: dict = {"quarter": k, "audio_from_s": round((k - 1) * quarter, 1), "audio_to_s": round(k * quarter, 1)}
        in_quarter = [i for i, t in enumerate(turns) if (k - 1) * quarter <= t.start < k * quarter]
        row["turns"] = len(in_quarter)
        row["turns_right"] = sum(verdicts[i] == turns[i].lang for i in in_quarter)
        row["segments"] = sum(min(3, int((s.get("end") or 0.0) // quarter)) == k - 1 for s in segments or [])
        begin, end = bounds[k - 1], bounds[k]
        if begin is None or end is None:
            quarters.append(row)
            continue
        (s0, p0), (s1, p1) = begin, end
        minutes = max(1e-9, (p1 - p0) / 60)
        row.update({"rss_end_mb": round(s1.rss_mb, 1) if s1.rss_mb is not None else None,
                    "wall_s": round(s1.at - s0.at, 1), "audio_minutes": round(minutes, 2),
                    "server_lag_s": round(sent_at(s1.at) - p1, 1) if k < 4 else None})
        if s0.cpu_seconds is not None and s1.cpu_seconds is not None:
            row["cpu_seconds"] = round(s1.cpu_seconds - s0.cpu_seconds, 2)
            row["cpu_per_audio_minute"] = round(row["cpu_seconds"] / minutes, 3)
        steps = [s.metrics.get("analysis_steps") for s in (s0, s1)]
        step_seconds = [s.metrics.get("analysis_step_seconds") for s in (s0, s1)]
        if None not in steps and None not in step_seconds and steps[1] > steps[0]:
            row["analysis_steps"] = steps[1] - steps[0]
            row["step_cost_ms"] = round(1000 * (step_seconds[1] - step_seconds[0]) / (steps[1] - steps[0]), 3)
            row["step_seconds_per_audio_minute"] = round((step_seconds[1] - step_seconds[0]) / minutes, 3)
        held = [s.metrics.get("audio_held_seconds") for s in samples if s0.at <= s.at <= s1.at]
        held = [h for h in held if h is not None]
        row["audio_held_max_s"] = max(held) if held else None
        quarters.append(row)
    first_end = bounds[1][0] if bounds[1] else None
    growth = None
    if first_end is not None and first_end.rss_mb is not None:
        later = [s.rss_mb for s in samples if s.at > first_end.at and s.rss_mb is not None]
        growth = round(max(later) - first_end.rss_mb, 1) if later else None

    def ratio(key: str) -> float | None:
        first, last = quarters[0].get(key), quarters[3].get(key)
        return round(last / first, 3) if first and last is not None else None

    right = sum(v == t.lang for v, t in zip(verdicts, turns))
    return {
        "audio_seconds": round(call_seconds, 1), "turns": len(turns), "turns_right": right,
        "turns_right_share": round(right / len(turns), 4) if turns else None,
        "turns_no_segment": sum(v == "" for v in verdicts), "turns_no_language": sum(v is None for v in verdicts),
        "turn_misses": dict(Counter(f"{t.lang}→{v or ('none' if v is None else 'no segment')}"
                                    for v, t in zip(verdicts, turns) if v != t.lang).most_common(12)),
        "summary_received": summary is not None, "ended_by": data.get("ended_by"),
        "summary_audio_duration": data.get("audio_duration"), "close_code": ex.close_code,
        "timed_out": ex.timed_out, "errors": errors, "connect_error": ex.connect_error,
        "pieces_sent": len(ex.sent), "wall_s": round((samples[-1].at - samples[0].at), 1),
        "stop_to_summary_s": round(ex.answer[0] - ex.stop_sent, 2) if summary and ex.stop_sent else None,
        "segments": len(segments or []), "live_segments": len(live),
        "segments_no_language": sum(not s.get("language") for s in segments or []),
        "languages_seen": sorted({s["language"] for s in segments or [] if s.get("language")}),
        "summary_languages": data.get("languages"),
        "true_languages": sorted({t.lang for t in turns}),
        "quarters": quarters, "rss_growth_after_q1_mb": growth,
        "rss_start_mb": samples[0].rss_mb, "rss_peak_mb": max((s.rss_mb for s in samples if s.rss_mb), default=None),
        "audio_held_max_s": max((s.metrics.get("audio_held_seconds", 0.0) for s in samples), default=None),
        "has_step_metrics": any("analysis_steps" in s.metrics for s in samples),
        "cpu_ratio_last_first": ratio("cpu_per_audio_minute"), "step_cost_ratio_last_first": ratio("step_cost_ms"),
        "step_seconds_ratio_last_first": ratio("step_seconds_per_audio_minute"),
        "samples": [{"t": round(s.at - samples[0].at, 1), "rss_mb": s.rss_mb, "cpu_seconds": s.cpu_seconds,
                     "position_s": position(s.at), "sent_s": sent_at(s.at), **s.metrics} for s in samples],
    }


def call_phase(clips: list[Clip], minutes: float, speed: float, env: dict[str, str]) -> dict:
    from audio_tools import encode_chunks

    seconds = 60 * minutes
    if len({clip.lang for clip in clips}) < 2:
        raise RuntimeError("the call needs clips of at least two languages")
    log(f"call: joining clips into {minutes:g} min of audio")
    audio, turns = build_call(clips, seconds)
    call_seconds = len(audio) / SAMPLE_RATE
    started = time.perf_counter()
    chunks = encode_chunks(audio, CHUNK_SECONDS)
    log(f"call: {call_seconds:.0f} s, {len(turns)} turns of {len({t.lang for t in turns})} languages, "
        f"{len(chunks)} pieces ({sum(map(len, chunks)) / 1e6:.1f} MB) encoded in {time.perf_counter() - started:.0f} s")
    del audio
    server = Server(env, name="capacity-call", engine_env=False).start()
    log(f"call: server pid {server.process.pid} on 127.0.0.1:{server.port}, log {server.log_path}")
    try:
        server.wait_ready(180)
        timeout = max(120.0, call_seconds / speed)
        ex, samples = asyncio.run(run_call(server, chunks, speed, timeout))
    finally:
        code = server.stop()
        log(f"call: server exited with {code}{graceful(server)}")
    figures = call_figures(ex, samples, turns, call_seconds)
    figures.update({"minutes": minutes, "speed": speed, "env": env, "log_path": str(server.log_path),
                    "exit_code": code, "log_warnings": server.log_count(" WARNING ") or 0,
                    "turn_list": [{"lang": t.lang, "file": t.file, "start": round(t.start, 2), "end": round(t.end, 2)}
                                  for t in turns]})
    return figures


def call_env(extra: dict[str, str], call_seconds: float) -> dict[str, str]:
    """The call's server: a call limit well above its length (unless --env says otherwise)."""
    return {"MAX_CALL_SECONDS": str(max(4 * 3600, int(2 * call_seconds))), **extra}


# --- report ---------------------------------------------------------------------------------------------


def report_streams(levels: list[dict]) -> list[str]:
    rows = []
    for lv in levels:
        cut = f" ({lv['clients_cut_off']} cut off)" if lv["clients_cut_off"] else ""
        rows.append([
            lv["n"], f"{lv['answered']}/{lv['admitted']}{cut}", lv["refused_connect"], lv["refused_mid"],
            f"{lv['lost']}" + (f" ({lv['lost_timed_out']} silent)" if lv["lost_timed_out"] else ""),
            f"{secs(lv['eos_to_final_p50'])} / {secs(lv['eos_to_final_p95'])}",
            f"{lv['ended_early']}/{lv['answered']}",
            f"{secs(lv['first_partial_p50'])} / {secs(lv['first_partial_p95'])} (n={lv['first_partial_n']})",
            pct(lv["right"], lv["answered"], counts=True), num(lv["server_cpu_seconds_per_admitted"], 2, " s"),
            f"{lv['rss_peak_mb']:.0f} MB", f"{lv['cpu_account'].get('other_processes_cores', 'n/a')}",
        ])
    lines = ["", "### Concurrent streams (/ws?mode=stream, real time, no stop; one fresh server per N)", "",
             table(["N", "answered / admitted", "refused at connect", "refused mid-stream", "lost",
                    "end of speech → final p50 / p95", "ended before speech end (0 s)", "first partial p50 / p95",
                    "top-1 of answered", "server CPU s / stream", "server RSS peak", "other processes (cores)"], rows),
             ""]
    detail = []
    for lv in levels:
        ended = ", ".join(f"{k} {v}" for k, v in sorted(lv["ended_by"].items())) or "—"
        errors = "; ".join(f"{m[:90]} ×{c}" for m, c in lv["errors_by_message"].items()) or "—"
        retry = f"{min(lv['retry_after'])}–{max(lv['retry_after'])} s" if lv["retry_after"] else "—"
        detail.append([lv["n"], ended, errors, retry, lv["connect_failed"],
                       f"{lv['metrics_end'].get('rejections')}", f"{lv['wall_s']} s",
                       f"{lv['log_warnings']} / {lv['log_errors']}"])
    lines += [table(["N", "finals ended by", "errors (kind: message ×n)", "retry_after", "handshake failed",
                     "/metrics rejections", "phase wall", "log warnings / errors"], detail)]
    return lines


def report_call(call: dict) -> list[str]:
    rows = []
    for q in call["quarters"]:
        rows.append([f"Q{q['quarter']} ({q['audio_from_s']:.0f}–{q['audio_to_s']:.0f} s)",
                     num(q.get("rss_end_mb"), 0, " MB"), num(q.get("cpu_per_audio_minute"), 2, " s"),
                     num(q.get("step_cost_ms"), 2, " ms")
                     + (f" ({q['analysis_steps']} steps)" if "analysis_steps" in q else ""),
                     num(q.get("step_seconds_per_audio_minute"), 2, " s"),
                     q["segments"], pct(q["turns_right"], q["turns"], counts=True),
                     num(q.get("audio_held_max_s"), 1, " s"), num(q.get("server_lag_s"), 1, " s"),
                     num(q.get("wall_s"), 0, " s")])
    summary_langs = ", ".join(f"{x['language']} {x['seconds']:.0f} s" for x in call["summary_languages"] or [])
    lines = ["", f"### One continuous call (/ws?mode=continuous, {call['audio_seconds'] / 60:.1f} min of audio, "
             f"{call['turns']} turns of {len(call['true_languages'])} languages, sent at {call['speed']:g}x real time)", "",
             table(["quarter of the audio", "RSS at its end", "server CPU / audio minute", "analysis step cost",
                    "analysis s / audio minute", "segments", "turns right", "audio held max",
                    "server behind the audio sent", "wall"], rows), "",
             table(["figure", "value"], [
                 ["summary", f"{'received' if call['summary_received'] else 'MISSING'}, ended by {call['ended_by']}, "
                  f"audio_duration {call['summary_audio_duration']}, close {call['close_code']}"
                  + (f", {call['stop_to_summary_s']} s after stop" if call["stop_to_summary_s"] is not None else "")],
                 ["errors", "; ".join(str(e)[:120] for e in call["errors"]) or call["connect_error"] or "—"],
                 ["segments (no language)",
                  f"{call['segments']} ({call['segments_no_language']}); live {call['live_segments']}"],
                 ["turns right", pct(call["turns_right"], call["turns"], counts=True)
                  + f"; no segment {call['turns_no_segment']}, no language {call['turns_no_language']}"],
                 ["misses (true→segments, top)",
                  "; ".join(f"{k} ×{v}" for k, v in call["turn_misses"].items()) or "—"],
                 ["languages seen in segments", ", ".join(call["languages_seen"]) or "—"],
                 ["summary's languages", summary_langs or "—"],
                 ["RSS start / peak (psutil)", f"{num(call['rss_start_mb'], 0)} / {num(call['rss_peak_mb'], 0)} MB"],
                 ["/metrics analysis_steps", "present" if call["has_step_metrics"] else "absent (no step cost)"],
                 ["wall", f"{call['wall_s']} s for {call['pieces_sent']} pieces"],
             ])]
    return lines


def targets(levels: list[dict], call: dict | None) -> list[list[str]]:
    rows = []
    at = next((lv for lv in levels if lv["n"] == TARGET_STREAMS), None)
    if at is None:
        rows.append([f"{TARGET_STREAMS} streams", "not run (not in --streams)", "", "n/a"])
    else:
        rows += [
            [f"{TARGET_STREAMS} streams: admitted answered", f"{at['answered']}/{at['admitted']}", "all",
             ok(at["answered"] == at["admitted"] and not at["clients_cut_off"])],
            [f"{TARGET_STREAMS} streams: refused mid-stream", str(at["refused_mid"]), "0", ok(at["refused_mid"] == 0)],
            [f"{TARGET_STREAMS} streams: end of speech → final p95", secs(at["eos_to_final_p95"]),
             f"≤ {TARGET_EOS_P95:g} s", within(at["eos_to_final_p95"], TARGET_EOS_P95)],
            [f"{TARGET_STREAMS} streams: first partial p95", secs(at["first_partial_p95"]),
             f"≤ {TARGET_FIRST_PARTIAL_P95:g} s", within(at["first_partial_p95"], TARGET_FIRST_PARTIAL_P95)],
        ]
    if call is not None:
        growth, cpu, step, share = (call["rss_growth_after_q1_mb"], call["cpu_ratio_last_first"],
                                    call["step_cost_ratio_last_first"], call["turns_right_share"])
        rows += [
            ["call: RSS growth after the first quarter", num(growth, 1, " MB"), f"≤ {TARGET_RSS_GROWTH_MB:g} MB",
             within(growth, TARGET_RSS_GROWTH_MB)],
            ["call: CPU per audio minute, last / first quarter", num(cpu, 2), f"≤ {TARGET_RATIO:g}",
             within(cpu, TARGET_RATIO)],
            ["call: analysis step cost, last / first quarter", num(step, 2), f"≤ {TARGET_RATIO:g}",
             within(step, TARGET_RATIO)],
            ["call: turns right", pct(call["turns_right"], call["turns"]), f"≥ {100 * TARGET_TURNS_RIGHT:g} %",
             ok(None if share is None else share >= TARGET_TURNS_RIGHT)],
        ]
    return rows


# --- main -----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 and 8 streams, a 3-minute call")
    parser.add_argument("--streams",
                        help="concurrent streams per level, comma-separated (default 10,20,30,40,60; --quick 4,8)")
    parser.add_argument("--call-minutes", type=float, help="minutes of audio in the call (default 60; --quick 3)")
    parser.add_argument("--call-languages", metavar="CODES",
                        help=f"the call's languages, comma-separated (default: the {CALL_LANGUAGES} with the most clips)")
    parser.add_argument("--speed", type=float, default=8.0, help="the call's pace, times real time (default 8)")
    parser.add_argument("--max-clip-seconds", type=float, default=15.0,
                        help="longest clip of the streams phase (default 15, STREAM_MAX_SECONDS)")
    parser.add_argument("--answer-timeout", type=float, default=30.0,
                        help="seconds a stream waits for its answer after its last piece (default 30)")
    parser.add_argument("--manifest", type=Path, action="append",
                        help="manifest.csv; repeat for several sets (default: eval, eval-more, eval-extra)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for every server started here (repeatable)")
    parser.add_argument("--no-streams", action="store_true", help="skip phase 1")
    parser.add_argument("--no-call", action="store_true", help="skip phase 2")
    parser.add_argument("--json", type=Path, help="save every figure as JSON here")
    args = parser.parse_args(argv)
    try:
        levels = args.streams or ("4,8" if args.quick else "10,20,30,40,60")
        args.levels = [int(x) for x in levels.split(",") if x.strip()]
    except ValueError:
        parser.error("--streams wants numbers, e.g. 10,20,30")
    if any(not 1 <= n <= 500 for n in args.levels):
        parser.error("--streams: each N in 1..500")
    args.call_minutes = args.call_minutes if args.call_minutes is not None else (3.0 if args.quick else 60.0)
    if not 0.5 <= args.call_minutes <= 240 or not 0.5 <= args.speed <= 100:
        parser.error("--call-minutes 0.5..240, --speed 0.5..100")
    args.extra_env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--env wants KEY=VALUE, got {item!r}")
        args.extra_env[key] = value
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    manifests = args.manifest or [*default_manifests(), eval_extra_manifest()]
    present = [path for path in manifests if path.is_file()]
    for path in set(manifests) - set(present):
        log(f"no manifest at {path}: that set is left out")
    clips = load_clips(present) if present else []
    if not clips:
        log("no speech clip found: nothing to measure")
        return 2
    info = machine()
    backend = describe_backend(ct2_backend(model_path()))
    out: list[str] = ["## LangShazam capacity", ""]
    out.append(table(["machine", ""], [
        ["nproc (usable)", f"{info['nproc']} ({info['affinity_cpus']})"],
        ["RAM (MemTotal / MemAvailable)", f"{info['ram_gib']:.1f} GiB / {info['mem_available_gib']} GiB"],
        ["CPU", info["cpu_model"]],
        ["load average at start (1/5/15 min)", " ".join(f"{x:.2f}" for x in info["loadavg_start"])],
        ["python", info["python"]],
        ["CTranslate2", backend],
        ["clips", f"{len(clips)} speech clips of {len({c.lang for c in clips})} languages from "
                  + ", ".join(p.parent.name for p in present)],
        ["settings overrides (every server)", ", ".join(f"{k}={v}" for k, v in args.extra_env.items()) or "none"],
    ]))
    print("\n".join(out), flush=True)
    if info["loadavg_start"][0] > 0.5 * (info["affinity_cpus"] or 1):
        print(f"\n**The machine was busy at start (load {info['loadavg_start'][0]:.1f}): figures are inflated and noisy.**")
    results: dict = {"machine": info, "ct2_backend": backend, "env": args.extra_env,
                     "args": {"streams": args.levels, "call_minutes": args.call_minutes, "speed": args.speed,
                              "max_clip_seconds": args.max_clip_seconds, "answer_timeout": args.answer_timeout,
                              "manifests": [str(p) for p in present]}}
    levels: list[dict] = []
    call: dict | None = None
    try:
        if not args.no_streams and args.levels:
            finder = SpeechFinder()
            items = prepare_stream_clips(clips, max(args.levels), args.max_clip_seconds, finder)
            log(f"streams: {len(items)} clips of {len({i.clip.lang for i in items})} languages encoded")
            for n in args.levels:
                levels.append(streams_level(n, items, args.extra_env, args.answer_timeout))
            results["streams"] = levels
            lines = report_streams(levels)
            print("\n".join(lines), flush=True)
        if not args.no_call:
            env = call_env(args.extra_env, 60 * args.call_minutes)
            print(f"\nCall server overrides: {', '.join(f'{k}={v}' for k, v in env.items())}", flush=True)
            languages = call_languages(clips, args.call_languages)
            call_clips = [clip for clip in clips if clip.lang in languages]
            call = call_phase(call_clips, args.call_minutes, args.speed, env)
            results["call"] = call
            print("\n".join(report_call(call)), flush=True)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except (RuntimeError, OSError) as exc:
        log(f"the measurement could not run: {exc}")
        if args.json:
            write_json(args.json, results)
        return 2
    rows = targets(levels, call)
    results["targets"] = [dict(zip(("figure", "value", "target", "verdict"), row)) for row in rows]
    print("\n### Targets\n\n" + table(["figure", "value", "target", "verdict"], rows), flush=True)
    try:
        print(f"\nLoad average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}.", flush=True)
    except OSError:
        pass
    if args.json:
        write_json(args.json, results)
        log(f"figures saved to {args.json}")
    lost = sum(lv["lost"] + lv["clients_cut_off"] for lv in levels)
    if call is not None and not call["summary_received"]:
        lost += 1
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
