"""Stream mode on /ws: partial answers while speech arrives, then a final one; candidates; raw PCM; VAD."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audio_tools import clip, encode, tone
from conftest import exchange, stream_exchange

STREAM_CLIPS = ["en_cv_5.mp3", "es_cv_5.mp3", "fr_cv_3.mp3", "de_cv_5.mp3", "ru_cv_1.mp3", "zh_cv_1.mp3"]


def _silence_padded(samples: np.ndarray, before: float = 0.5) -> np.ndarray:
    return np.concatenate([np.zeros(int(16000 * before), np.float32), samples])


@pytest.mark.parametrize("file", STREAM_CLIPS)
def test_partials_then_final(server, file):
    item = clip(file)
    samples = item.samples()
    audio = encode(samples, "webm")
    messages, times, code = stream_exchange(server.ws + "?mode=stream", audio, len(samples) / 16000, speed=2.0)
    statuses = [m["status"] for m in messages]
    assert statuses[-1] == "success", messages
    assert all(s == "partial" for s in statuses[:-1]), statuses
    final = messages[-1]["data"]
    assert final["final"] is True and final["language"] == item.lang, final
    assert final["ended_by"] in ("confident", "end_of_speech", "stop")
    assert 0 < final["speech_duration"] <= final["audio_duration"] + 0.01
    if final["ended_by"] == "stop":
        assert len(messages) >= 2, "a multi-second clip gets partial answers before the final one"
    for partial in messages[:-1]:
        data = partial["data"]
        assert data["final"] is False and isinstance(data["confident"], bool)
        if data["language"]:
            assert 0 < data["confidence"] <= 1
        else:  # too unsure to name one yet: still the candidates
            assert data["reason"] == "uncertain" and data["confident"] is False
        assert len(data["top"]) == 5
    speech = [m["data"]["speech_duration"] for m in messages]
    assert speech == sorted(speech), "each answer rests on at least as much speech as the one before"
    assert code == 1000


def test_start_frame_opts_in_with_candidates(server):
    item = clip("pt_cv_1.mp3")
    samples = item.samples()
    start = {"type": "start", "mode": "stream", "languages": ["es", "pt", "it"], "top_k": 3}
    messages, _, _ = stream_exchange(server.ws, encode(samples, "webm"), len(samples) / 16000, speed=4.0, start=start)
    final = messages[-1]
    assert final["status"] == "success" and final["data"]["language"] == "pt"
    for message in messages:
        top = message["data"]["top"]
        assert {entry["language"] for entry in top} <= {"es", "pt", "it"} and len(top) == 3
        assert sum(entry["probability"] for entry in top) == pytest.approx(1.0, abs=0.002)
    assert final["data"]["candidates"] == ["es", "pt", "it"]


def test_candidates_rescue_a_confusable_clip(server):
    """Welsh is hard for Whisper base: told the few languages it can be, it answers right."""
    item = clip("cy_cv_3.mp3")
    audio = encode(item.samples(), "ogg")
    answer = exchange(server.ws + "?languages=cy,en,fr,de", audio, frame_size=len(audio)).last
    assert answer["status"] == "success" and answer["data"]["language"] == "cy", answer


@pytest.mark.parametrize(
    "query, start, expected",
    [
        ("?mode=stream&languages=en,xx", None, "unknown language code(s): xx"),
        ("", {"type": "start", "mode": "stream", "languages": ["en", "qq"]}, "qq"),
        ("?mode=sideways", None, "unknown mode"),
        ("", {"type": "start", "format": "pcm_s16le"}, "sample_rate"),
        ("", {"type": "start", "format": "aiff"}, "unknown format"),
        ("?top_k=0", None, "top_k"),
    ],
)
def test_bad_options_are_refused(server, query, start, expected):
    texts = [json.dumps(start)] if start else []
    result = exchange(server.ws + query, b"", texts_before=texts, stop=True)
    assert result.last["status"] == "error" and expected in result.last["message"], result.last
    assert result.close_code == 1003


@pytest.mark.parametrize("fmt, rate", [("pcm_s16le", 16000), ("pcm_s16le", 48000), ("pcm_f32le", 16000),
                                       ("pcm_f32le", 44100)])
def test_raw_pcm(server, fmt, rate):
    import av

    item = clip("de_cv_5.mp3")
    samples = item.samples()
    if rate != 16000:
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = 16000
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in resampler.resample(frame) + resampler.resample(None)])
    pcm = (samples * 32767).astype("<i2").tobytes() if fmt == "pcm_s16le" else samples.astype("<f4").tobytes()
    start = {"type": "start", "mode": "stream", "format": fmt, "sample_rate": rate}
    messages, _, _ = stream_exchange(server.ws, pcm, item.seconds, speed=4.0, start=start)
    final = messages[-1]
    assert final["status"] == "success" and final["data"]["language"] == "de", final
    duration = final["data"]["audio_duration"]
    if final["data"]["ended_by"] == "stop":
        assert duration == pytest.approx(item.seconds, abs=0.2)
    else:  # confident, or a pause, before the end: it rests on the audio received so far, resampled to 16 kHz
        assert final["data"]["ended_by"] in ("confident", "end_of_speech") and 1.0 < duration < item.seconds


@pytest.mark.parametrize("kind", ["silence", "white_noise", "tone"])
def test_no_speech(server, kind):
    rng = np.random.default_rng(7)
    samples = {
        "silence": np.zeros(16000 * 3, np.float32),
        "white_noise": rng.normal(0, 0.2, 16000 * 3).astype(np.float32),
        "tone": tone(3.0, 220.0),
    }[kind]
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    start = {"type": "start", "mode": "stream", "format": "pcm_s16le", "sample_rate": 16000}
    messages, _, _ = stream_exchange(server.ws, pcm, 3.0, speed=4.0, start=start)
    assert [m["status"] for m in messages] == ["success"], messages  # no partial guesses either
    data = messages[0]["data"]
    assert data["language"] is None and data["reason"] == "no_speech" and data["speech_duration"] == 0


def test_max_duration_ends_the_stream(make_server):
    srv = make_server({"STREAM_MAX_SECONDS": "2", "FINAL_PROBABILITY": "1.0"})
    item = clip("ru_cv_1.mp3")  # 10 s
    samples = item.samples()
    messages, _, code = stream_exchange(srv.ws + "?mode=stream", encode(samples, "webm"), item.seconds,
                                        speed=4.0, stop=False)
    final = messages[-1]
    assert final["status"] == "success" and final["data"]["ended_by"] == "max_duration"
    assert final["data"]["audio_duration"] == pytest.approx(2.0, abs=0.05)
    assert code == 1000


def test_uncertain_instead_of_a_guess(doubtful):
    srv = doubtful
    item = clip("en_cv_3.mp3")
    samples = item.samples()
    messages, _, _ = stream_exchange(srv.ws + "?mode=stream", encode(samples, "webm"), item.seconds, speed=4.0)
    final = messages[-1]["data"]
    assert final["language"] is None and final["reason"] == "uncertain" and final["confidence"] is None
    assert final["top"] and final["top"][0]["probability"] < srv.rule().uncertain_below
