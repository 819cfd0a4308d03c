#!/usr/bin/env python3
"""Load and soak test of LangShazam's WebSocket service, on the loopback interface only.

    python scripts/loadtest.py [--quick] [--clients N] [--duration S] [--soak N] [--url ws://127.0.0.1:PORT]
                               [--eval-dir DIR] [--env KEY=VALUE ...] [--json PATH]

From the repository root (it finds backend/ itself), with the project's Python (faster-whisper, PyAV,
websockets, psutil). Real clips come from DIR/clips/*.mp3 and DIR/manifest.csv (file, lang, seconds);
DIR defaults to ../shared/eval beside the project. Each clip is encoded once to webm/opus (as a browser's
MediaRecorder sends it).

Server: without --url, the script starts its own (`python -m src.main` from backend/, HOST=127.0.0.1, a free
PORT, MODEL_CACHE_DIR from the environment or the server's default, plus every --env KEY=VALUE) in its own session, and
always stops it at the end (SIGTERM, then kill), also on error or Ctrl-C. Its log is kept in a temporary file
whose path is printed. With --url it uses a running server (127.0.0.1 / localhost only).

1. Load: --clients concurrent clients (default 20; starts staggered over the first 1.5 s) for --duration
   seconds (default 60). Each client repeatedly opens /ws?mode=stream, streams a clip at real-time pace in
   250 ms chunks, sends {"type": "stop"} after the last chunk (unless the final answer came already), waits
   for the final answer, and goes on with the next clip until the duration is over (a connection started
   before then is finished). Every connection owes one answer: a final success (data.final true) or an
   error message; a connection closed without either, or silent for --answer-timeout, is LOST.
   Figures: answers owed / final / error (by message) / lost, partial answers, accuracy against the manifest,
   time to answer (from stop, or from the last chunk sent when the answer came first) p50/p95/max, time from
   open to the first partial p50/p95, and the server's /metrics sampled every 2 s (CPU, queue, inference).
2. Soak: --soak sequential connections (default 1000) in the original one-shot mode (no mode parameter):
   a short clip (< 20 KB of webm) in one frame, then {"type": "stop"}; answers owed / received / errors,
   time to answer p50/p95, server RSS before and after (psutil on the pid of a server started here, else
   /metrics memory_usage_mb) and its growth.
3. Long streams: --long concurrent streams (default 20) of --long-seconds of audio each (default 120), in
   real time in 250 ms chunks, then stop: the worst case for decoding and memory, each stream holding
   up to two minutes of audio. Each stream is one language's clips joined and repeated to that length.
   A server started here for this phase runs apart, with STREAM_MAX_SECONDS=min(120, length),
   FINAL_PROBABILITY=1.0 (so that no stream ends early, confident) and MAX_AUDIO_SECONDS above the
   length; with --url the running server's own settings decide when streams end. Figures: answers
   owed / final / lost, time to answer after stop p50/p95, server CPU (cores, and per stream), and server
   RSS at the start, at its peak (sampled every 0.5 s) and at the end.
4. At the end, GET /metrics: active_connections and active_processes must be back to 0.

Prints the machine and a markdown table of every figure; --json PATH saves them. Exit status 1 when an
answer was lost or the active counters did not return to 0 (2 when the test could not run), else 0.
Targets (2-core machine): 20 streaming clients for 60 s with 0 lost and p95 time to answer <= 3 s; RSS growth
after 1,000 one-shot connections <= 50 MB. `--quick`: 4 clients x 15 s, soak 100, 4 long streams of 30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (  # noqa: E402
    REPO_ROOT, CpuAccount, Encoded, RssPeak, Server, log, machine, quantile, read_set, samples_to_webm, secs, stop_on_sigterm,
    stream,
)
from benchkit import encode_clips as _encode_clips  # noqa: E402
from benchkit import pct as _pct  # noqa: E402

DEFAULT_EVAL_DIR = REPO_ROOT.parent / "shared" / "eval"

CHUNK_SECONDS = 0.25
STAGGER_SECONDS = 1.5
ONCE_MAX_BYTES = 20000  # a soak clip must be answered on stop, not at MIN_AUDIO_SIZE
TARGET_P95_SECONDS = 3.0
TARGET_RSS_GROWTH_MB = 50.0
Clip = Encoded


def pct(num: int, den: int) -> str:
    return _pct(num, den, counts=True)


# --- clips --------------------------------------------------------------------------------------------


def load_clips(eval_dir: Path) -> list[Clip]:
    """The set's clips (those present), each encoded once as webm/opus."""
    return _encode_clips(read_set(eval_dir, "loadtest.py", skip_missing=True))


def long_clips(eval_dir: Path, count: int, seconds: float) -> list[Clip]:
    """`count` streams of `seconds` each: one language's clips joined, repeated to that length, as webm/opus."""
    import numpy as np

    by_lang: dict[str, list] = {}
    for clip in read_set(eval_dir, "loadtest.py", skip_missing=True):
        by_lang.setdefault(clip.lang, []).append(clip)
    languages = sorted(by_lang)
    out: list[Clip] = []
    for number in range(count):
        lang = languages[number % len(languages)]
        joined = np.concatenate([clip.samples() for clip in by_lang[lang]])
        samples = np.tile(joined, int(np.ceil(seconds * 16000 / len(joined))))[: int(seconds * 16000)]
        webm, length = samples_to_webm(samples)
        out.append(Clip(f"{lang} × {seconds:g} s", lang, length, webm))
    return out


def start_server(extra_env: dict[str, str]) -> Server:
    server = Server(extra_env, name="loadtest").start()
    log(f"server pid {server.process.pid} on 127.0.0.1:{server.port}, log {server.log_path}")
    server.wait_ready()
    return server


def rss_of(server: Server) -> tuple[float | None, str]:
    return server.rss_mb(), server.rss_source


# --- one connection -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str  # "final", "error", "lost", "timeout", "connect_failed"
    clip: Clip
    language: str | None = None
    reason: str | None = None
    ended_by: str | None = None
    error: str | None = None
    close_code: int | None = None
    partials: int = 0
    time_to_answer: float | None = None
    answered_after_stop: bool = False
    first_partial: float | None = None  # s from open



async def finish_by(tasks: list[asyncio.Task], deadline: float, what: str) -> tuple[list, int]:
    """Wait for the tasks until `deadline` (monotonic), cancel those still running, log those that failed;
    the results of those that finished, and how many were cut off."""
    done, pending = await asyncio.wait(tasks, timeout=deadline - time.monotonic())
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            log(f"{what} failed: {task.exception()!r}")
    return [task.result() for task in done if task.exception() is None], len(pending)

async def one_connection(url: str, clip: Clip, *, stream_mode: bool, answer_timeout: float) -> Outcome:
    """Open url, send the clip (paced in 250 ms chunks when `stream_mode`, else in one frame), send stop unless
    answered already, and read until the server closes or answer_timeout after the audio ended."""
    frames = clip.frames(CHUNK_SECONDS) if stream_mode else [clip.webm]
    ex = await stream(url, frames, pace=CHUNK_SECONDS, until_answer=True, answer_timeout=answer_timeout,
                      open_timeout=15, close_timeout=5, compression=None)
    outcome = Outcome("lost", clip)
    if ex.connect_error:
        outcome.kind, outcome.error = "connect_failed", ex.connect_error
        return outcome
    partials = ex.partials()
    outcome.partials = len(partials)
    outcome.first_partial = partials[0][0] - ex.opened if partials else None
    outcome.close_code = ex.close_code
    answer = ex.answer
    if answer is None:
        outcome.kind = "timeout" if ex.timed_out else "lost"
        return outcome
    at, message = answer
    if message.get("status") == "error":
        outcome.kind, outcome.error = "error", str(message.get("message", ""))[:200]
    else:
        data = message.get("data") or {}
        outcome.kind, outcome.language = "final", data.get("language")
        outcome.reason, outcome.ended_by = data.get("reason"), data.get("ended_by")
    if ex.stop_sent is not None and ex.stop_sent <= at:
        outcome.time_to_answer = at - ex.stop_sent
        outcome.answered_after_stop = True
    else:
        outcome.time_to_answer = max(0.0, at - (ex.sent[-1] if ex.sent else ex.opened))
    return outcome


# --- phases -------------------------------------------------------------------------------------------


@dataclass
class Sampler:
    """Samples /metrics every `every` seconds while a phase runs."""

    server: Server
    every: float = 2.0
    samples: list[dict] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self.samples.append(await asyncio.to_thread(self.server.metrics))
            except (OSError, ValueError):
                pass
            try:
                await asyncio.wait_for(stop.wait(), self.every)
            except asyncio.TimeoutError:
                pass

    def summary(self) -> dict:
        s = self.samples
        if not s:
            return {}
        cpu = [m.get("cpu_usage_percent", 0.0) for m in s]
        cores = [m.get("effective_cores_used", 0.0) for m in s]
        return {
            "metrics_samples": len(s),
            "server_cpu_mean_percent": round(sum(cpu) / len(cpu), 1),
            "server_cores_used_mean": round(sum(cores) / len(cores), 2),
            "queued_detections_max": max(m.get("queued_detections", 0) for m in s),
            "active_processes_max": max(m.get("active_processes", 0) for m in s),
            "active_connections_max": max(m.get("active_connections", 0) for m in s),
            "avg_processing_time_max": max(m.get("average_processing_time", 0.0) for m in s),
        }


def summarize(outcomes: list[Outcome]) -> dict:
    finals = [o for o in outcomes if o.kind == "final"]
    errors = Counter(o.error or "" for o in outcomes if o.kind == "error")
    named = [o for o in finals if o.language]
    correct = [o for o in named if o.language == o.clip.lang]
    tta = [o.time_to_answer for o in outcomes if o.time_to_answer is not None and o.kind == "final"]
    tta_stop = [o.time_to_answer for o in finals if o.answered_after_stop and o.time_to_answer is not None]
    first = [o.first_partial for o in outcomes if o.first_partial is not None]
    owed = sum(o.kind != "connect_failed" for o in outcomes)
    return {
        "answers_owed": owed,
        "final_answers": len(finals),
        "error_answers": sum(errors.values()),
        "errors_by_message": dict(errors),
        "lost": sum(o.kind == "lost" for o in outcomes),
        "timed_out": sum(o.kind == "timeout" for o in outcomes),
        "connect_failed": sum(o.kind == "connect_failed" for o in outcomes),
        "connect_errors": dict(Counter(o.error or "" for o in outcomes if o.kind == "connect_failed")),
        "close_codes": dict(Counter(str(o.close_code) for o in outcomes)),
        "partial_answers": sum(o.partials for o in outcomes),
        "ended_by": dict(Counter(o.ended_by or "none" for o in finals)),
        "no_language": dict(Counter(o.reason or "none" for o in finals if not o.language)),
        "wrong_language": len(named) - len(correct),
        "wrong_detail": dict(Counter(f"{o.clip.file}: {o.clip.lang}→{o.language or o.reason} ({o.ended_by})"
                                     for o in finals if o.language != o.clip.lang)),
        "correct_language": len(correct),
        "accuracy": round(len(correct) / len(finals), 4) if finals else None,
        "time_to_answer_p50": quantile(tta, 0.5),
        "time_to_answer_p95": quantile(tta, 0.95),
        "time_to_answer_max": max(tta) if tta else None,
        "answers_after_stop": len(tta_stop),
        "time_to_answer_after_stop_p50": quantile(tta_stop, 0.5),
        "time_to_answer_after_stop_p95": quantile(tta_stop, 0.95),
        "first_partial_p50": quantile(first, 0.5),
        "first_partial_p95": quantile(first, 0.95),
        "connections_with_partial": len(first),
    }


async def load_phase(server: Server, clips: list[Clip], clients: int, duration: float,
                     answer_timeout: float) -> dict:
    url = server.ws + "/ws?mode=stream"
    outcomes: list[Outcome] = []
    started = time.monotonic()
    end = started + duration
    longest = max(c.seconds for c in clips)
    # hard bound: the last connection starts before `end`, lasts one clip plus the answer timeout
    hard_deadline = end + STAGGER_SECONDS + longest + answer_timeout + 30
    before = await asyncio.to_thread(server.metrics)
    cpu = CpuAccount(server)

    async def client(number: int) -> None:
        await asyncio.sleep(STAGGER_SECONDS * number / max(1, clients))
        index = (number * max(1, len(clips) // max(1, clients))) % len(clips)
        while time.monotonic() < end:
            outcome = await one_connection(url, clips[index % len(clips)], stream_mode=True, answer_timeout=answer_timeout)
            outcomes.append(outcome)
            index += 1
            if outcome.kind == "connect_failed":
                await asyncio.sleep(0.5)

    stop = asyncio.Event()
    sampler = Sampler(server)
    sampling = asyncio.create_task(sampler.run(stop))
    tasks = [asyncio.create_task(client(n)) for n in range(clients)]
    _, cut_off = await finish_by(tasks, hard_deadline, "a client")
    elapsed = time.monotonic() - started
    cpu_figures = cpu.summary()
    stop.set()
    await sampling
    after = await asyncio.to_thread(server.metrics)
    result = summarize(outcomes)
    result.update({
        "clients": clients, "duration_s": duration, "elapsed_s": round(elapsed, 1),
        "clients_cut_off": cut_off,
        "connections_per_s": round(len(outcomes) / elapsed, 2) if elapsed else None,
        "audio_seconds_streamed": round(sum(o.clip.seconds for o in outcomes), 1),
        "server_detections": after["total_requests"] - before["total_requests"],
        "server_errors": after["errors"] - before["errors"],
        "server_avg_processing_time_end": after["average_processing_time"],
    })
    result.update(sampler.summary())
    result.update(cpu_figures)
    skipped = server.log_count("partial answer skipped")
    if skipped is not None:
        result["partials_skipped_busy"] = skipped
    return result


async def soak_phase(server: Server, clips: list[Clip], count: int, answer_timeout: float) -> dict:
    short = [c for c in clips if len(c.webm) < ONCE_MAX_BYTES]
    if not short:
        short = [min(clips, key=lambda c: len(c.webm))]
    url = server.ws + "/ws"
    await asyncio.sleep(1.0)  # let the load phase's connections settle
    rss_before, rss_source = await asyncio.to_thread(rss_of, server)
    trend = [(0, rss_before)]
    outcomes: list[Outcome] = []
    cpu = CpuAccount(server)
    started = time.monotonic()
    hard_deadline = started + count * (answer_timeout + 5)
    for number in range(count):
        if time.monotonic() > hard_deadline:
            break
        outcomes.append(await one_connection(url, short[number % len(short)], stream_mode=False,
                                             answer_timeout=answer_timeout))
        if (number + 1) % max(1, count // 10) == 0:
            trend.append((number + 1, (await asyncio.to_thread(rss_of, server))[0]))
            log(f"soak {number + 1}/{count}: RSS {trend[-1][1]:.1f} MB")
    elapsed = time.monotonic() - started
    cpu_figures = cpu.summary()
    await asyncio.sleep(1.0)
    rss_after, _ = await asyncio.to_thread(rss_of, server)
    result = summarize(outcomes)
    result.update({
        "connections": len(outcomes), "elapsed_s": round(elapsed, 1),
        "clips_used": len(short), "clip_bytes_max": max(len(c.webm) for c in short),
        "rss_source": rss_source,
        "rss_before_mb": round(rss_before, 1) if rss_before is not None else None,
        "rss_after_mb": round(rss_after, 1) if rss_after is not None else None,
        "rss_growth_mb": round(rss_after - rss_before, 1) if None not in (rss_before, rss_after) else None,
        "rss_trend_mb": [[n, round(v, 1) if v is not None else None] for n, v in trend],
    })
    result.update(cpu_figures)
    return result


async def long_phase(server: Server, clips: list[Clip], answer_timeout: float) -> dict:
    url = server.ws + "/ws?mode=stream"
    started = time.monotonic()
    hard_deadline = started + STAGGER_SECONDS + max(c.seconds for c in clips) + answer_timeout + 30
    rss_start, rss_source = await asyncio.to_thread(rss_of, server)
    before = await asyncio.to_thread(server.metrics)
    cpu = CpuAccount(server)

    async def client(number: int, clip: Clip) -> Outcome:
        await asyncio.sleep(STAGGER_SECONDS * number / len(clips))
        return await one_connection(url, clip, stream_mode=True, answer_timeout=answer_timeout)

    stop = asyncio.Event()
    sampler, rss = Sampler(server), RssPeak(server, every=0.5).__enter__()
    sampling = [asyncio.create_task(sampler.run(stop))]
    tasks = [asyncio.create_task(client(n, clip)) for n, clip in enumerate(clips)]
    outcomes, cut_off = await finish_by(tasks, hard_deadline, "a long stream")
    elapsed = time.monotonic() - started
    cpu_figures = cpu.summary()
    stop.set()
    await asyncio.gather(*sampling)
    rss.__exit__()
    rss_end, _ = await asyncio.to_thread(rss_of, server)
    after = await asyncio.to_thread(server.metrics)
    result = summarize(outcomes)
    result.update({
        "streams": len(clips), "stream_seconds": round(max(c.seconds for c in clips), 1),
        "elapsed_s": round(elapsed, 1), "streams_cut_off": cut_off,
        "server_detections": after["total_requests"] - before["total_requests"],
        "server_errors": after["errors"] - before["errors"],
        "rss_source": rss_source,
        "rss_start_mb": round(rss_start, 1) if rss_start is not None else None,
        "rss_peak_mb": round(rss.peak, 1) if rss.peak is not None else None,
        "rss_end_mb": round(rss_end, 1) if rss_end is not None else None,
    })
    result.update(sampler.summary())
    result.update(cpu_figures)
    if "server_cores" in result:
        result["server_cores_per_stream"] = round(result["server_cores"] / len(clips), 3)
    skipped = server.log_count("partial answer skipped")
    if skipped is not None:
        result["partials_skipped_busy"] = skipped
    return result


def long_server_env(extra_env: dict[str, str], seconds: float) -> dict[str, str]:
    """Settings under which a stream lasts all its `seconds` (never final early, never over the limit)."""
    return {**extra_env, "STREAM_MAX_SECONDS": f"{min(120.0, seconds):g}", "FINAL_PROBABILITY": "1.0",
            "MAX_AUDIO_SECONDS": f"{seconds + 30:g}"}


async def counters_at_rest(server: Server, wait: float = 10.0) -> dict:
    deadline = time.monotonic() + wait
    while True:
        metrics = await asyncio.to_thread(server.metrics)
        if (metrics["active_connections"] == 0 and metrics["active_processes"] == 0) or time.monotonic() > deadline:
            return metrics
        await asyncio.sleep(0.25)


# --- report -------------------------------------------------------------------------------------------


def cpu_row(phase: dict) -> str:
    return "cores busy: machine / server / this script / other processes"


def cpu_value(phase: dict) -> str:
    return (f"{phase.get('machine_cores_busy')} / {phase.get('server_cores', 'n/a')} / "
            f"{phase.get('loadtest_cores')} / {phase.get('other_processes_cores', 'n/a')} "
            f"(load avg at end {phase.get('loadavg_end')})")


def report(info: dict, figures: dict) -> str:
    rows: list[tuple[str, str, str]] = []
    load, soak, final = figures.get("load"), figures.get("soak"), figures.get("metrics_end", {})

    def add(name: str, value: object, target: str = "") -> None:
        rows.append((name, str(value), target))

    def ok(flag: bool) -> str:
        return "✅" if flag else "❌"

    if load:
        add("**load** clients × duration", f"{load['clients']} × {load['duration_s']:g} s (ran {load['elapsed_s']} s)")
        add("load: answers owed (connections opened)", load["answers_owed"])
        add("load: final answers", load["final_answers"])
        add("load: error answers", load["error_answers"])
        for message, n in load["errors_by_message"].items():
            add(f"load: error «{message[:80]}»", n)
        lost = load["lost"] + load["timed_out"]
        add("load: LOST (closed or silent without an answer)",
            f"{load['lost']} closed + {load['timed_out']} timed out", f"0 {ok(lost == 0)}")
        add("load: connection failures (handshake)", load["connect_failed"])
        add("load: partial answers", f"{load['partial_answers']} ({load['connections_with_partial']} connections had ≥ 1)")
        if "partials_skipped_busy" in load:
            add("load: partials skipped by the server (busy, from its log)", load["partials_skipped_busy"])
        add("load: finals ended by", ", ".join(f"{k} {v}" for k, v in sorted(load["ended_by"].items())))
        add("load: finals naming no language", ", ".join(f"{k} {v}" for k, v in load["no_language"].items()) or "0")
        add("load: wrong language", load["wrong_language"])
        worst = sorted(load["wrong_detail"].items(), key=lambda kv: -kv[1])[:5]
        if worst:
            add("load: misses (clip: expected→answer (ended by) ×n, top 5)", "; ".join(f"{k} ×{v}" for k, v in worst))
        add("load: accuracy (correct / final answers)",
            pct(load["correct_language"], load["final_answers"]))
        p95 = load["time_to_answer_p95"]
        add("load: time to answer p50 / p95 / max",
            f"{secs(load['time_to_answer_p50'])} / {secs(p95)} / {secs(load['time_to_answer_max'])}",
            f"p95 ≤ {TARGET_P95_SECONDS:g} s {ok(p95 is not None and p95 <= TARGET_P95_SECONDS)}")
        add(f"load: … answers after stop only ({load['answers_after_stop']}) p50 / p95",
            f"{secs(load['time_to_answer_after_stop_p50'])} / {secs(load['time_to_answer_after_stop_p95'])}")
        add("load: open → first partial p50 / p95", f"{secs(load['first_partial_p50'])} / {secs(load['first_partial_p95'])}")
        add("load: connections/s, audio streamed", f"{load['connections_per_s']}, {load['audio_seconds_streamed']} s")
        add("load: server detections, server errors", f"{load['server_detections']}, {load['server_errors']}")
        add("load: " + cpu_row(load), cpu_value(load))
        if "server_cpu_mean_percent" in load:
            add("load: machine CPU mean (/metrics)", f"{load['server_cpu_mean_percent']} %")
            add("load: server cores used mean", load["server_cores_used_mean"])
            add("load: max queued detections / in flight / open connections",
                f"{load['queued_detections_max']} / {load['active_processes_max']} / {load['active_connections_max']}")
            add("load: average_processing_time (max sampled / at end)",
                f"{load['avg_processing_time_max']:.3f} s / {load['server_avg_processing_time_end']:.3f} s")
    if soak:
        add("**soak** sequential one-shot connections", f"{soak['connections']} in {soak['elapsed_s']} s "
            f"({soak['clips_used']} clips ≤ {soak['clip_bytes_max']} B)")
        add("soak: answers owed", soak["answers_owed"])
        add("soak: answers received (final)", soak["final_answers"])
        add("soak: error answers", soak["error_answers"])
        for message, n in soak["errors_by_message"].items():
            add(f"soak: error «{message[:80]}»", n)
        lost = soak["lost"] + soak["timed_out"]
        add("soak: LOST", f"{soak['lost']} closed + {soak['timed_out']} timed out", f"0 {ok(lost == 0)}")
        add("soak: accuracy", pct(soak["correct_language"], soak["final_answers"]))
        add("soak: time to answer p50 / p95",
            f"{secs(soak['time_to_answer_p50'])} / {secs(soak['time_to_answer_p95'])}")
        growth = soak["rss_growth_mb"]
        add(f"soak: server RSS before → after ({soak['rss_source']})",
            f"{soak['rss_before_mb']} → {soak['rss_after_mb']} MB")
        add("soak: RSS growth", f"{growth} MB",
            f"≤ {TARGET_RSS_GROWTH_MB:g} MB {ok(growth is not None and growth <= TARGET_RSS_GROWTH_MB)}")
        add("soak: " + cpu_row(soak), cpu_value(soak))
        add("soak: RSS trend (connections: MB)", ", ".join(f"{n}: {v}" for n, v in soak["rss_trend_mb"]))
    long = figures.get("long")
    if long:
        add("**long streams** streams × length", f"{long['streams']} × {long['stream_seconds']:g} s in real time "
            f"(ran {long['elapsed_s']} s{', ' + str(long['streams_cut_off']) + ' cut off' if long['streams_cut_off'] else ''})")
        add("long: answers owed / final / error", f"{long['answers_owed']} / {long['final_answers']} / {long['error_answers']}")
        for message, n in long["errors_by_message"].items():
            add(f"long: error «{message[:80]}»", n)
        lost = long["lost"] + long["timed_out"]
        add("long: LOST", f"{long['lost']} closed + {long['timed_out']} timed out", f"0 {ok(lost == 0)}")
        add("long: finals ended by", ", ".join(f"{k} {v}" for k, v in sorted(long["ended_by"].items())))
        add("long: accuracy (correct / final answers)", pct(long["correct_language"], long["final_answers"]))
        add("long: time to answer p50 / p95 / max",
            f"{secs(long['time_to_answer_p50'])} / {secs(long['time_to_answer_p95'])} / {secs(long['time_to_answer_max'])}")
        add("long: partial answers (skipped by the server when busy)",
            f"{long['partial_answers']} ({long.get('partials_skipped_busy', 'n/a')})")
        add("long: " + cpu_row(long), cpu_value(long))
        if "server_cores_per_stream" in long:
            add("long: server cores per stream", long["server_cores_per_stream"])
        add(f"long: server RSS start / peak / end ({long['rss_source']})",
            f"{long['rss_start_mb']} / {long['rss_peak_mb']} / {long['rss_end_mb']} MB")
        end = long.get("metrics_end", {})
        rest = end.get("active_connections") == 0 and end.get("active_processes") == 0
        add("long: /metrics active_connections / active_processes at the end",
            f"{end.get('active_connections')} / {end.get('active_processes')}", f"0 / 0 {ok(rest)}")
    if final:
        rest = final.get("active_connections") == 0 and final.get("active_processes") == 0
        add("end: /metrics active_connections / active_processes",
            f"{final.get('active_connections')} / {final.get('active_processes')}", f"0 / 0 {ok(rest)}")
        add("end: /metrics total_requests / errors / avg processing time",
            f"{final.get('total_requests')} / {final.get('errors')} / {final.get('average_processing_time')} s")
        add("end: /metrics errors_by_type / rejections",
            f"{final.get('errors_by_type')} / {final.get('rejections')}")
        add("end: /metrics memory_usage_mb", final.get("memory_usage_mb"))
    lines = [
        f"Machine: nproc {info['nproc']}, RAM {info['ram_gib']} GiB, CPU {info['cpu_model']}, "
        f"Python {info['python']}, load average before the test {info['loadavg_start']}",
        "",
        "| figure | value | target |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b.replace('|', '/')} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server, ws://127.0.0.1:PORT (default: start one)")
    parser.add_argument("--clients", type=int, help="concurrent streaming clients (default 20; --quick 4)")
    parser.add_argument("--duration", type=float, help="seconds of load (default 60; --quick 15)")
    parser.add_argument("--soak", type=int, help="sequential one-shot connections (default 1000; --quick 100)")
    parser.add_argument("--long", type=int, help="concurrent long streams (default 20; --quick 4)")
    parser.add_argument("--long-seconds", type=float, help="length of each long stream (default 120; --quick 30)")
    parser.add_argument("--quick", action="store_true", help="a small run: 4 clients × 15 s, soak 100, 4 long streams of 30 s")
    parser.add_argument("--eval-dir", type=Path, default=DEFAULT_EVAL_DIR,
                        help=f"manifest.csv + clips/ (default {DEFAULT_EVAL_DIR})")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the server started here (repeatable)")
    parser.add_argument("--answer-timeout", type=float, default=60.0,
                        help="seconds to wait for an answer after the audio (default 60)")
    parser.add_argument("--json", type=Path, help="save every figure as JSON here")
    args = parser.parse_args(argv)
    quick = args.quick
    args.clients = args.clients if args.clients is not None else (4 if quick else 20)
    args.duration = args.duration if args.duration is not None else (15.0 if quick else 60.0)
    args.soak = args.soak if args.soak is not None else (100 if quick else 1000)
    args.long = args.long if args.long is not None else (4 if quick else 20)
    args.long_seconds = args.long_seconds if args.long_seconds is not None else (30.0 if quick else 120.0)
    if args.clients < 0 or args.duration < 0 or args.soak < 0 or args.clients > 500 or args.soak > 100000:
        parser.error("--clients 0..500, --duration >= 0, --soak 0..100000")
    if not 0 <= args.long <= 200 or not 1 <= args.long_seconds <= 3600:
        parser.error("--long 0..200, --long-seconds 1..3600")
    extra = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--env wants KEY=VALUE, got {item!r}")
        extra[key] = value
    args.extra_env = extra
    if args.url and extra:
        parser.error("--env applies only to a server started by this script (not with --url)")
    return args


async def run_long(args: argparse.Namespace, server: Server, long: list[Clip]) -> dict:
    log(f"long: {len(long)} streams of {args.long_seconds:g} s")
    figures = await long_phase(server, long, args.answer_timeout)
    figures["metrics_end"] = await counters_at_rest(server)
    return figures


async def run(args: argparse.Namespace, server: Server, clips: list[Clip]) -> dict:
    figures: dict = {}
    if args.clients and args.duration:
        log(f"load: {args.clients} streaming clients for {args.duration:g} s")
        figures["load"] = await load_phase(server, clips, args.clients, args.duration, args.answer_timeout)
    if args.soak:
        log(f"soak: {args.soak} sequential one-shot connections")
        figures["soak"] = await soak_phase(server, clips, args.soak, args.answer_timeout)
    figures["metrics_end"] = await counters_at_rest(server)
    return figures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    log(f"machine: nproc {info['nproc']}, RAM {info['ram_gib']} GiB, CPU {info['cpu_model']}, "
        f"load average {info['loadavg_start']}")
    if info["loadavg_start"][0] > 0.5 * (info["nproc"] or 1):
        log("warning: the machine is busy before the test (load average above half the cores): "
            "other processes will compete with the server; see 'CPU used by other processes' in the table")
    log(f"encoding clips from {args.eval_dir} to webm/opus")
    clips = load_clips(args.eval_dir)
    log(f"{len(clips)} clips, {sum(c.seconds for c in clips):.0f} s of audio; "
        f"{sum(len(c.webm) < ONCE_MAX_BYTES for c in clips)} under {ONCE_MAX_BYTES} B of webm")

    stop_on_sigterm()
    server: Server | None = None
    figures: dict = {}
    try:
        if args.long:
            log(f"building {args.long} streams of {args.long_seconds:g} s")
            long = long_clips(args.eval_dir, args.long, args.long_seconds)
            # A server of its own (unless --url), whose streams last their whole length.
            server = (Server.existing(args.url) if args.url
                      else start_server(long_server_env(args.extra_env, args.long_seconds)))
            figures["long"] = asyncio.run(run_long(args, server, long))
            if not args.url:
                log("stopping the long streams' server")
                log(f"server exited with {server.stop()}; log {server.log_path}")
                server = None
        if args.clients and args.duration or args.soak or not args.long:
            server = server or (Server.existing(args.url) if args.url else start_server(args.extra_env))
            figures.update(asyncio.run(run(args, server, clips)))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except (RuntimeError, OSError) as exc:
        log(f"the test could not run: {exc}")
        return 2
    finally:
        if server is not None and server.process is not None:
            log("stopping the server")
            code = server.stop()
            log(f"server exited with {code}; log {server.log_path}")
    figures["machine"] = info
    figures["args"] = {"clients": args.clients, "duration": args.duration, "soak": args.soak,
                       "long": args.long, "long_seconds": args.long_seconds,
                       "url": args.url, "env": args.extra_env, "eval_dir": str(args.eval_dir)}
    print(report(info, figures), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
        log(f"figures saved to {args.json}")
    failures = []
    for phase in ("load", "soak", "long"):
        if phase in figures and figures[phase]["lost"] + figures[phase]["timed_out"]:
            failures.append(f"{phase}: {figures[phase]['lost'] + figures[phase]['timed_out']} answers lost")
    for end in (figures.get("metrics_end"), figures.get("long", {}).get("metrics_end")):
        if end is not None and (end.get("active_connections") != 0 or end.get("active_processes") != 0):
            failures.append(f"active counters not back to 0: {end.get('active_connections')} connections, "
                            f"{end.get('active_processes')} processes")
    for failure in failures:
        print(f"FAIL: {failure}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
