"""/ws in continuous mode: a language timeline live, over real-time webm of a real 3-language join."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audio_tools import clip, encode, join_clips
from conftest import exchange, stream_exchange

# Clips the model names confidently (p >= 0.99 on the whole clip), three languages; pauses long enough
# for stream mode's end-of-speech rule to end each utterance.
JOIN = [("es_cv_5.mp3", "es"), ("de_cv_5.mp3", "de"), ("fr_cv_3.mp3", "fr")]
PAUSE_SECONDS = 1.6


def test_continuous_stream_of_three_languages(server):
    samples, spans = join_clips(JOIN, PAUSE_SECONDS)
    samples = np.concatenate([samples, np.zeros(int(2.0 * 16000), np.float32)])  # a last pause before stop
    seconds = len(samples) / 16000
    messages, times, close_code = stream_exchange(
        server.ws, encode(samples, "webm"), seconds, chunk_seconds=0.25, speed=1.0,
        start={"type": "start", "mode": "continuous"}, timeout=60,
    )
    assert close_code == 1000, messages
    assert all(m["status"] in ("partial", "segment", "success") for m in messages), messages
    segments = [m["data"] for m in messages if m["status"] == "segment"]
    assert [s["language"] for s in segments] == [lang for lang, _, _ in spans], segments
    for segment, (_, start, end) in zip(segments, spans):
        assert segment["start"] == pytest.approx(start, abs=0.5) and segment["end"] == pytest.approx(end, abs=0.5)
        assert segment["final"] is True and segment["ended_by"] == "end_of_speech"
    # Live: each segment arrives after its utterance and before the next one is over (the pacing is by
    # bytes of variable-bitrate Opus, so arrival times are only roughly those of the audio).
    arrivals = [t for m, t in zip(messages, times) if m["status"] == "segment"]
    for arrival, (_, _, end), (_, _, next_end) in zip(arrivals, spans, spans[1:]):
        assert end < arrival < next_end, (arrivals, spans)
    assert arrivals[-1] < times[-1]  # the last one too came before the summary, by the pause rule
    partials = [m["data"] for m in messages if m["status"] == "partial"]
    assert partials and all("start" in p and "end" in p and p["final"] is False for p in partials)
    summary = messages[-1]
    assert summary["status"] == "success", summary
    data = summary["data"]
    assert data["mode"] == "continuous" and data["final"] is True and data["ended_by"] == "stop"
    assert [s["language"] for s in data["segments"]] == ["es", "de", "fr"]
    assert {item["language"] for item in data["languages"]} == {"es", "de", "fr"}
    assert data["language"] == data["languages"][0]["language"]


def test_continuous_by_query_with_no_speech(server):
    silence = np.random.default_rng(1).normal(0, 3e-4, 3 * 16000).astype(np.float32)
    result = exchange(server.ws + "?mode=continuous", encode(silence, "wav"))
    assert result.close_code == 1000
    assert [m["status"] for m in result.messages] == ["success"], result.messages
    data = result.last["data"]
    assert data["segments"] == [] and data["language"] is None and data["reason"] == "no_speech"


def test_continuous_bad_audio(server):
    result = exchange(server.ws, b"\x00\x01garbage" * 500,
                      texts_before=[json.dumps({"type": "start", "mode": "continuous"})])
    assert result.last["status"] == "error" and result.close_code == 1003, result.messages


def test_continuous_ends_with_a_summary_at_the_audio_limit(make_server):
    srv = make_server({"MAX_CALL_SECONDS": "8"})  # a call's length limit (stream mode keeps MAX_AUDIO_SECONDS)
    samples, spans = join_clips(JOIN, PAUSE_SECONDS)  # ~20 s: over the limit
    result = exchange(srv.ws + "?mode=continuous", encode(samples, "wav"), stop=False, timeout=60)
    assert result.close_code == 1000, result.messages
    data = result.last["data"]
    assert result.last["status"] == "success" and data["ended_by"] == "max_duration", result.messages
    assert data["audio_duration"] == pytest.approx(8.0, abs=0.01)
    # Audio sent at once: the utterances within the limit, ended as the pause rule would have ended them
    # live (Spanish), and the last one cut at the limit (German).
    segments = [m["data"] for m in result.messages if m["status"] == "segment"]
    assert [(s["language"], s["ended_by"]) for s in segments] == [("es", "end_of_speech"), ("de", "max_duration")]
    assert segments[0]["end"] == pytest.approx(spans[0][2], abs=0.5) and segments[1]["end"] <= 8.0
    assert [s["language"] for s in data["segments"]] == ["es", "de"] and data["language"] == "es"


# --- a whole call --------------------------------------------------------------------------------------

def test_a_call_longer_than_the_stream_limit_stays_open_and_holds_little_audio(server):
    """Over two minutes of turns (past MAX_AUDIO_SECONDS, stream mode's limit), sent at 8x real time: the
    call stays open, every turn gets its segment, the summary covers the whole call, and the server never
    holds more than about one utterance of decoded audio (GET /metrics: audio_held_seconds)."""
    import threading
    import time

    from src.audio import SAMPLE_RATE

    settings = server.settings()
    turns = JOIN * (int(settings.MAX_AUDIO_SECONDS // 18) + 1)
    samples, spans = join_clips(turns, PAUSE_SECONDS)
    samples = np.concatenate([samples, np.zeros(2 * SAMPLE_RATE, np.float32)])
    seconds = len(samples) / SAMPLE_RATE
    assert seconds > settings.MAX_AUDIO_SECONDS
    pcm = (samples * 32767).astype("<i2").tobytes()

    held: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            held.append(server.metrics()["audio_held_seconds"])
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        messages, _, close_code = stream_exchange(
            server.ws, pcm, seconds, speed=8.0, timeout=120,
            start={"type": "start", "mode": "continuous", "format": "pcm_s16le", "sample_rate": SAMPLE_RATE},
        )
    finally:
        done.set()
        watcher.join(10)
    assert close_code == 1000, messages[-3:]
    summary = messages[-1]
    assert summary["status"] == "success" and summary["data"]["ended_by"] == "stop", summary
    data = summary["data"]
    assert data["audio_duration"] == pytest.approx(seconds, abs=0.5)
    assert [s["language"] for s in data["segments"]] == [lang for lang, _, _ in spans], data["segments"]
    assert data["segments"][-1]["end"] == pytest.approx(spans[-1][2], abs=0.5)
    # Held: the utterance in progress and its lead-in (utterances here are under 7 s; a turn is cut at
    # STREAM_MAX_SECONDS), never the call so far.
    longest = max(end - start for _, start, end in spans)
    assert held and 0 < max(held) < longest + PAUSE_SECONDS + 3.0, (max(held), longest)
    assert server.metrics()["audio_held_seconds"] == 0


def test_a_flood_of_bytes_ends_with_1009(make_server):
    """More bytes than audio (on average per second, beyond the allowance) closes the call with 1009."""
    srv = make_server({"MAX_CALL_BYTES_PER_SECOND": "16000", "MAX_CALL_BURST_BYTES": "64000"})
    pcm = (np.random.default_rng(2).normal(0, 0.01, 10 * 16000) * 32767).astype("<i2").tobytes()  # 32 KB/s
    result = exchange(srv.ws, pcm, frame_size=8000, stop=False, timeout=30,
                      texts_before=[json.dumps({"type": "start", "mode": "continuous", "format": "pcm_s16le",
                                                "sample_rate": 16000})])
    assert result.close_code == 1009, result.messages
    assert result.last["status"] == "error" and "16000 bytes per second of audio" in result.last["message"]
    # The rule allows burst + rate x seconds: 64000 + 16000 t bytes, and 32000 t arrive: it ends near 4 s.
    assert srv.metrics()["rejections"].get("too_large") == 1


def test_a_call_in_a_file_only_decodable_whole_is_refused(server):
    """An mp4 whose index comes last can only be decoded whole, at a cost that grows with the call."""
    audio = encode(clip("es_cv_5.mp3").samples(), "mp4-file")
    result = exchange(server.ws + "?mode=continuous", audio, frame_size=len(audio))
    assert result.close_code == 1003 and result.last["status"] == "error", result.messages
    assert "decoded as it arrives" in result.last["message"]
    # The same file in stream mode (a few seconds, bounded) is still answered.
    assert exchange(server.ws + "?mode=stream", audio, frame_size=len(audio)).last["status"] == "success"
