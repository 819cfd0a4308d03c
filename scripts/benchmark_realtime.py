#!/usr/bin/env python3
"""How long after the speaker stops a Realtime transcription arrives: clips streamed in real time to
/v1/realtime?intent=transcription (server_vad turn detection, its defaults), each followed by silence,
through the OpenAI SDK's async realtime client.

    python scripts/benchmark_realtime.py [--clips 20] [--silence 2.0] [--url ws://127.0.0.1:PORT] [--json PATH]

From the repository root. Starts a server with default settings (or uses --url's). The clips (one session,
languages interleaved, from ../shared/eval) are sent as 24 kHz 16-bit PCM in 100 ms appends at the
recording's pace. The speaker stops where the Silero VAD (src/vad.py) finds the end of a clip's last
speech; latency is the time from the moment that audio was sent to the `...transcription.completed` of
the last turn that ended within the clip (a clip the server cut at a pause mid-sentence counts when its
last turn is done). Also: until `speech_stopped` (the end-of-speech rule: the pause, plus the analysis step)
and the transcription alone (speech_stopped to completed). Figures: p50 / p95. About 2-3 minutes for 20 clips.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (  # noqa: E402
    SAMPLE_RATE, SPEECH_KINDS, Server, default_manifest, log, machine, ms, quantile, read_manifest, round_robin,
    stop_on_sigterm, table, write_json,
)

import av  # noqa: E402
import numpy as np  # noqa: E402
import openai  # noqa: E402

from src.vad import VoiceActivityDetector  # noqa: E402

RATE = 24000
PIECE_SECONDS = 0.1


def pcm24(samples: np.ndarray) -> bytes:
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    out = [f.to_ndarray().reshape(-1) for f in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(out).astype("<i2").tobytes()


async def measure(http: str, clips: list, silence: float) -> list[dict]:
    vad = VoiceActivityDetector()
    audio, spans = bytearray(), []  # spans: (clip, start s, speech end s, end s) in the session's audio
    for clip in clips:
        samples = clip.samples()
        speech = vad.find_speech(samples)
        start = len(audio) / 2 / RATE
        speech_end = (speech.segments[-1][1] - speech.pad) / SAMPLE_RATE if speech.segments else len(samples) / SAMPLE_RATE
        audio += pcm24(samples) + bytes(2 * int(silence * RATE))
        spans.append((clip, start, start + speech_end, len(audio) / 2 / RATE))
    piece = int(2 * RATE * PIECE_SECONDS)
    sent_at: list[float] = []  # wall time of each piece sent
    stopped: dict[str, tuple[float, float]] = {}  # item -> (audio_end s, wall time)
    completed: dict[str, float] = {}
    client = openai.AsyncOpenAI(base_url=http + "/v1", api_key="unused", max_retries=0)
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        assert (await conn.recv()).type == "session.created"

        async def send() -> None:
            t0 = time.perf_counter()
            for index in range(0, len(audio), piece):
                await asyncio.sleep(max(0.0, t0 + len(sent_at) * PIECE_SECONDS - time.perf_counter()))
                await conn.send({"type": "input_audio_buffer.append",
                                 "audio": base64.b64encode(bytes(audio[index:index + piece])).decode()})
                sent_at.append(time.perf_counter())

        sender = asyncio.ensure_future(send())
        deadline = time.perf_counter() + len(audio) / 2 / RATE + 120
        while not (sender.done() and set(stopped) <= set(completed)) and time.perf_counter() < deadline:
            try:
                event = await asyncio.wait_for(conn.recv(), timeout=1)
            except asyncio.TimeoutError:
                continue
            now = time.perf_counter()
            if event.type == "input_audio_buffer.speech_stopped":
                stopped[event.item_id] = (event.audio_end_ms / 1000, now)
            elif event.type == "conversation.item.input_audio_transcription.completed":
                completed[event.item_id] = now
                log(f"{event.item_id[-6:]}: {[item.code for item in event.languages or []]} {event.transcript[:50]!r}")
            elif event.type == "error":
                log(f"error event: {event.error.message}")
        await sender
    rows = []
    for clip, start, speech_end, end in spans:
        items = [item for item, (at, _) in stopped.items() if start <= at < end and item in completed]
        if not items:
            rows.append({"file": clip.file, "lang": clip.lang, "missed": True})
            continue
        last = max(items, key=lambda item: stopped[item][0])
        speaker_stop = sent_at[min(len(sent_at) - 1, int(speech_end / PIECE_SECONDS))]
        rows.append({"file": clip.file, "lang": clip.lang, "missed": False, "turns": len(items),
                     "completed": completed[last] - speaker_stop, "speech_stopped": stopped[last][1] - speaker_stop,
                     "transcription": completed[last] - stopped[last][1]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--silence", type=float, default=2.0, help="seconds of silence after each clip")
    parser.add_argument("--url", help="a running server, ws://127.0.0.1:PORT")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    stop_on_sigterm()
    clips = round_robin(read_manifest(default_manifest(), "benchmark_realtime.py", kinds=SPEECH_KINDS), args.clips)
    server = Server.existing(args.url) if args.url else Server(name="realtime")
    try:
        if server.process is None and not args.url:
            server.start()
            server.wait_ready()
        log(f"{len(clips)} clips, {sum(c.seconds for c in clips):.0f} s of audio, streamed in real time")
        rows = asyncio.run(measure(server.http, clips, args.silence))
    finally:
        if not args.url:
            server.stop()
    done = [row for row in rows if not row["missed"]]
    figures = {key: (quantile([row[key] for row in done], 0.5), quantile([row[key] for row in done], 0.95))
               for key in ("completed", "speech_stopped", "transcription")}
    print(f"Realtime transcription after the speaker stops ({len(done)} of {len(rows)} clips answered, "
          f"{sum(row.get('turns', 0) > 1 for row in done)} cut in several turns):\n")
    print(table(["from the speaker's stop to", "p50", "p95"], [
        ["`...transcription.completed`", ms(figures["completed"][0]), ms(figures["completed"][1])],
        ["`input_audio_buffer.speech_stopped`", ms(figures["speech_stopped"][0]), ms(figures["speech_stopped"][1])],
        ["(transcription: speech_stopped to completed)", ms(figures["transcription"][0]), ms(figures["transcription"][1])],
    ]))
    info = machine()
    print(f"\nmachine: {info}")
    if args.json:
        write_json(args.json, {"rows": rows, "figures": figures, "machine": info})


if __name__ == "__main__":
    main()
