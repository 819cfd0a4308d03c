"""The original one-answer protocol on /ws, end to end: real model, real clips, real server and client."""

from __future__ import annotations

import json
import random
from datetime import datetime

import pytest

from audio_tools import clip, encode, tone
from conftest import exchange

# Clips the embedded Whisper base identifies correctly, in several languages and scripts.
LANG_CLIPS = [
    "en_cv_5.mp3", "es_cv_3.mp3", "de_cv_3.mp3", "fr_cv_3.mp3", "ru_cv_3.mp3", "ja_cv_1.mp3", "zh_cv_1.mp3",
    "ar_cv_5.mp3",
]


@pytest.mark.parametrize("fmt", ["webm", "mp4"])
@pytest.mark.parametrize("file", LANG_CLIPS)
def test_browser_formats_identify_language(server, file, fmt):
    item = clip(file)
    audio = encode(item.samples(), fmt)
    result = exchange(server.ws, audio)
    answer = result.last
    assert answer["status"] == "success", answer
    assert answer["data"]["language"] == item.lang, answer
    assert result.close_code == 1000


def test_answer_shape(server):
    item = clip("es_cv_3.mp3")
    result = exchange(server.ws, encode(item.samples(), "webm"))
    assert len(result.messages) == 1
    answer = result.last
    assert set(answer) == {"status", "data", "timestamp", "connection_id"}
    datetime.fromisoformat(answer["timestamp"])
    data = answer["data"]
    assert len(answer["connection_id"]) == 8 and data["connection_id"] == answer["connection_id"]
    assert data["language"] == "es" and data["language_name"] == "Spanish"
    assert data["engine"] == "local:whisper-base"
    top = data["top"]
    assert len(top) == 5
    probs = [entry["probability"] for entry in top]
    assert probs == sorted(probs, reverse=True)
    assert top[0]["language"] == "es" and data["confidence"] == probs[0]
    assert 0 < sum(probs) <= 1.0001 and 0 < data["confidence"] <= 1
    assert 0 < data["processing_time"] < 30
    # The first 20 KB of the webm stream hold most of the clip (the server answers once it has 20 KB).
    assert 1.0 < data["audio_duration"] <= item.seconds + 0.1


def test_confidence_is_the_models_probability(server):
    """Different clips give different probabilities: the confidence is computed, not a constant. (The top
    probability, not `confidence`, is compared: `confidence` is null when the honesty rule finds an answer
    uncertain, which for the weaker clips here depends on the CPU's kernels.)"""
    probabilities = set()
    for file in ["en_cv_1.mp3", "de_cv_1.mp3", "sl_cv_1.mp3"]:
        audio = encode(clip(file).samples(), "wav")
        answer = exchange(server.ws, audio, frame_size=len(audio)).last
        assert answer["status"] == "success", answer
        data = answer["data"]
        assert data["confidence"] in (None, data["top"][0]["probability"]), data
        probabilities.add(data["top"][0]["probability"])
    assert len(probabilities) == 3


@pytest.mark.parametrize("fmt", ["ogg", "wav", "mp3", "flac", "mp4-file"])
def test_file_formats(server, fmt):
    """A whole file in one frame (20 KB of 16 kHz wav would be only 0.6 s). The answer comes at once, on
    what the stream's decoder has taken in: all of it, except that FFmpeg's flac parser holds its last
    frames (~0.75 s) until the bytes that follow confirm where they end, or the stream ends."""
    item = clip("de_cv_3.mp3")
    audio = encode(item.samples(), fmt)
    answer = exchange(server.ws, audio, frame_size=len(audio)).last
    assert answer["status"] == "success", answer
    assert answer["data"]["language"] == "de"
    held_back = 1.0 if fmt == "flac" else 0.0
    assert item.seconds - held_back - 0.15 <= answer["data"]["audio_duration"] <= item.seconds + 0.15


def test_ordinary_mp4_keeps_buffering_until_stop(server):
    """An mp4 file's 20 KB prefix does not decode (its index is at the end): the server waits for more."""
    item = clip("fr_cv_3.mp3")
    audio = encode(item.samples(), "mp4-file")
    assert len(audio) > server.settings().MIN_AUDIO_SIZE
    result = exchange(server.ws, audio)
    assert len(result.messages) == 1, result.messages
    assert result.last["status"] == "success"
    assert result.last["data"]["language"] == "fr"
    assert result.last["data"]["audio_duration"] == pytest.approx(item.seconds, abs=0.15)


def test_short_clip_answers_on_stop(server):
    """Below 20 KB nothing happens until the client says stop."""
    samples = clip("de_cv_1.mp3").samples()[: int(16000 * 1.5)]
    audio = encode(samples, "webm")
    assert len(audio) < server.settings().MIN_AUDIO_SIZE
    result = exchange(server.ws, audio)
    assert len(result.messages) == 1
    assert result.last["status"] == "success" and result.last["data"]["language"] == "de"
    assert result.last["data"]["audio_duration"] == pytest.approx(1.5, abs=0.05)


def test_too_short_speech_has_no_language(server):
    speech = clip("en_cv_5.mp3").samples()[16000 : 16000 + 6400]  # 0.4 s from the middle of a sentence
    answer = exchange(server.ws, encode(speech, "wav")).last
    assert answer["status"] == "success"
    data = answer["data"]
    assert data["language"] is None and data["reason"] == "too_short" and data["confidence"] is None
    assert 0 < data["speech_duration"] < server.settings().MIN_SPEECH_SECONDS


def test_a_tone_is_no_speech(server):
    answer = exchange(server.ws, encode(tone(2.0), "webm")).last
    assert answer["status"] == "success"
    assert answer["data"]["language"] is None and answer["data"]["reason"] == "no_speech"
    assert answer["data"]["speech_duration"] == 0


def test_garbage_gets_an_error_and_the_server_goes_on(server):
    before = server.metrics()
    result = exchange(server.ws, random.Random(25000).randbytes(25000))  # fixed: a random draw can probe as a container
    assert result.last["status"] == "error"
    assert "not in a known audio format" in result.last["message"]
    assert set(result.last) == {"status", "message", "timestamp", "connection_id"}
    assert result.close_code == 1003
    after = server.metrics()
    assert after["errors"] == before["errors"] + 1
    answer = exchange(server.ws, encode(clip("en_cv_5.mp3").samples(), "webm")).last
    assert answer["status"] == "success" and answer["data"]["language"] == "en"


def test_truncated_container_is_named_in_the_error(server):
    audio = encode(clip("en_cv_1.mp3").samples(), "mp4-file")[:5000]
    result = exchange(server.ws, audio)
    assert result.last["status"] == "error"
    assert "mp4" in result.last["message"]


@pytest.mark.parametrize(
    "text, expected",
    [("not json", "JSON"), (json.dumps({"type": "dance"}), "unknown message type"), ("[1]", "type")],
)
def test_bad_text_frames(server, text, expected):
    result = exchange(server.ws, b"", texts_before=[text], stop=False)
    assert result.last["status"] == "error" and expected in result.last["message"]
    assert result.close_code == 1003


def test_stop_without_audio(server):
    result = exchange(server.ws, b"")
    assert result.last["status"] == "error" and "no audio" in result.last["message"]


def test_root_and_metrics(server):
    assert server.get("/").json() == {"message": "Server is running!"}
    before = server.metrics()
    for key in ("active_connections", "total_requests", "errors", "active_processes", "average_processing_time",
                "memory_usage_mb", "cpu_usage_percent", "cpu_usage_per_core", "cpu_cores", "effective_cores_used"):
        assert key in before, key
    for file in ["en_cv_5.mp3", "es_cv_3.mp3"]:
        assert exchange(server.ws, encode(clip(file).samples(), "webm")).last["status"] == "success"
    after = server.metrics()
    assert after["total_requests"] == before["total_requests"] + 2
    assert after["errors"] == before["errors"]
    assert after["active_connections"] == 0 and after["active_processes"] == 0
    assert after["average_processing_time"] > 0
    assert after["memory_usage_mb"] > 50
    assert len(after["cpu_usage_per_core"]) == after["cpu_cores"]
