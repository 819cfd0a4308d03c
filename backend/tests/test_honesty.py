"""End of speech, no-speech timeout, the one-shot quiet spell, and one honesty rule (`confident`, no
language when uncertain) on every surface: /ws once and stream, POST /detect, the command line.
Real servers, real clips."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest

from audio_tools import clip, encode, encode_chunks, eval_dir
from conftest import BACKEND_DIR, exchange, stream_exchange

RATE = 16000


def _pcm(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


PCM_START = {"type": "start", "mode": "stream", "format": "pcm_s16le", "sample_rate": RATE}


# --- end of speech ------------------------------------------------------------------------------------

def test_a_pause_ends_the_stream(patient):
    """A sentence, then silence, and the client never says stop: the server ends it on the pause."""
    from src.vad import VoiceActivityDetector

    item = clip("es_cv_5.mp3")
    speech = item.samples()
    last_speech = VoiceActivityDetector().find_speech(speech).segments[-1][1] / RATE
    samples = np.concatenate([speech, np.zeros(RATE * 6, np.float32)])
    messages, _, code = stream_exchange(patient.ws + "?mode=stream", encode_chunks(samples), len(samples) / RATE,
                                        speed=2.0, stop=False)
    final = messages[-1]
    assert final["status"] == "success", messages
    data = final["data"]
    assert data["ended_by"] == "end_of_speech" and data["language"] == "es", data
    # It waited for a pause of at least the VAD's minimum silence, and did not wait for the whole silence.
    assert last_speech + 0.4 <= data["audio_duration"] < len(samples) / RATE - 2.0, data
    assert code == 1000


def test_a_short_pause_mid_sentence_does_not_end_it(patient):
    """Two halves of a sentence with 0.3 s between them: one answer resting on both."""
    speech = clip("ru_cv_1.mp3").samples()
    first, second = speech[: RATE * 5], speech[RATE * 5 :]
    samples = np.concatenate([first, np.zeros(int(RATE * 0.3), np.float32), second, np.zeros(RATE * 3, np.float32)])
    messages, _, _ = stream_exchange(patient.ws, _pcm(samples), len(samples) / RATE, speed=4.0,
                                     start=PCM_START, stop=False)
    data = messages[-1]["data"]
    assert data["ended_by"] == "end_of_speech" and data["language"] == "ru", data
    assert data["audio_duration"] > len(first) / RATE + 0.3 + 2.0, data  # well past the short pause
    assert data["speech_duration"] > 6.0, data  # the clip has 6.7 s of speech, 3.3 s of it before the pause


def test_silence_ends_with_no_speech(server):
    """Nothing but silence, and no stop: no_speech after STREAM_NO_SPEECH_SECONDS (4 s), not the whole 10 s."""
    samples = np.zeros(RATE * 10, np.float32)
    messages, _, code = stream_exchange(server.ws, _pcm(samples), 10.0, speed=4.0, start=PCM_START, stop=False)
    assert [m["status"] for m in messages] == ["success"], messages
    data = messages[0]["data"]
    assert data["ended_by"] == "no_speech" and data["reason"] == "no_speech" and data["language"] is None
    assert data["confident"] is False
    assert data["audio_duration"] == pytest.approx(server.settings().STREAM_NO_SPEECH_SECONDS, abs=0.3)
    assert code == 1000


def test_end_of_speech_can_be_turned_off(make_server):
    srv = make_server({"STREAM_END_SILENCE_SECONDS": "0", "FINAL_STABLE_UPDATES": "50", "STREAM_MAX_SECONDS": "6"})
    samples = np.concatenate([clip("de_cv_3.mp3").samples(), np.zeros(RATE * 3, np.float32)])
    messages, _, _ = stream_exchange(srv.ws, _pcm(samples), len(samples) / RATE, speed=4.0, start=PCM_START,
                                     stop=False)
    data = messages[-1]["data"]
    assert data["ended_by"] == "max_duration" and data["language"] == "de", data


# --- one-shot mode: the quiet spell --------------------------------------------------------------------

def test_one_shot_short_clip_is_answered_after_a_quiet_spell(server):
    """A 4.5 s webm clip at 32 kbps is under 20 KB: sent whole, no stop, the client waits for its answer."""
    audio = encode(clip("es_cv_3.mp3").samples(), "webm", bit_rate=32000)
    assert len(audio) < server.settings().MIN_AUDIO_SIZE
    result = exchange(server.ws, audio, stop=False, timeout=20)
    assert result.last["status"] == "success", result.messages
    data = result.last["data"]
    assert data["language"] == "es" and data["ended_by"] == "quiet"
    assert isinstance(data["confident"], bool)
    assert result.close_code == 1000


def test_a_quiet_spell_does_not_answer_audio_that_cannot_be_decoded_yet(server):
    """An ordinary mp4 file keeps its index at the end: its start alone does not decode, so a pause in
    the upload is waited out rather than answered."""
    import time

    from websockets.sync.client import connect

    item = clip("fr_cv_3.mp3")
    audio = encode(item.samples(), "mp4-file")
    with connect(server.ws, max_size=None) as ws:
        ws.send(audio[:15000])
        time.sleep(3.0)  # longer than the quiet spell
        ws.send(audio[15000:])
        ws.send(json.dumps({"type": "stop"}))
        answer = json.loads(ws.recv(timeout=60))
    assert answer["status"] == "success", answer
    assert answer["data"]["language"] == "fr" and "ended_by" not in answer["data"]
    assert answer["data"]["audio_duration"] == pytest.approx(item.seconds, abs=0.15)


def test_without_the_quiet_spell_the_idle_limit_applies(make_server):
    srv = make_server({"ONCE_QUIET_SECONDS": "0", "IDLE_TIMEOUT_SECONDS": "3"})
    audio = encode(clip("es_cv_3.mp3").samples(), "webm", bit_rate=32000)
    result = exchange(srv.ws, audio, stop=False, timeout=20)
    assert result.last["status"] == "error" and "nothing received for 3 s" in result.last["message"]
    assert result.close_code == 1008


# --- one honesty rule on every surface -----------------------------------------------------------------

def _check_rule(data: dict, rule, first_partial: bool = False) -> None:
    """`confident` is a boolean that follows the server's own rule (its settings, not a copy of them) on the
    answer's own probabilities. A stream's first partial may be a first impression (a short window, never
    confident): then it may be unsure where the rule would be sure, never the other way round."""
    assert isinstance(data["confident"], bool), data
    top = data["top"]
    if data["language"] is None:
        assert data["confident"] is False and data["reason"], data
        return
    first = top[0]["probability"]
    lead = first - (top[1]["probability"] if len(top) > 1 else 0.0)
    if min(abs(first - rule.final_probability), abs(lead - rule.final_margin)) < 2e-4:
        return  # within the answer's rounding (4 decimals) of a threshold: either verdict is the rule's
    expected = first >= rule.final_probability and lead >= rule.final_margin
    if first_partial and not data["confident"]:
        return
    assert data["confident"] is expected, (data, rule)


CLIPS = ["en_cv_5.mp3", "fr_cv_1.mp3", "sl_cv_1.mp3", "ta_cv_3.mp3"]


def test_confident_flag_on_every_surface(server, model_cache):
    rule = server.rule()
    answers = {}
    for file in CLIPS:
        item = clip(file)
        mp3 = item.path.read_bytes()  # the same bytes on each surface (the command line reads the file)
        once = exchange(server.ws, mp3, frame_size=len(mp3)).last["data"]
        detect = httpx.post(server.http + "/detect", content=mp3, timeout=60).json()["data"]
        webm = encode(item.samples(), "webm")
        messages, _, _ = stream_exchange(server.ws + "?mode=stream", webm, item.seconds, speed=4.0)
        for index, message in enumerate(messages):
            _check_rule(message["data"], rule, first_partial=index == 0 and message["status"] == "partial")
        for data in (once, detect):
            _check_rule(data, rule)
        assert once["confident"] == detect["confident"] and once["language"] == detect["language"], (once, detect)
        answers[file] = detect
    env = {**os.environ, "MODEL_CACHE_DIR": str(model_cache)}
    paths = [str(eval_dir() / "clips" / file) for file in CLIPS]
    out = subprocess.run([sys.executable, "-m", "src.cli", *paths, "--json", "--no-progress", "--top-k", "5"],
                         cwd=BACKEND_DIR, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    for line, file in zip(out.stdout.strip().splitlines(), CLIPS):
        record = json.loads(line)
        assert record["confident"] is answers[file]["confident"] and record["language"] == answers[file]["language"]
    flags = {data["confident"] for data in answers.values()}
    assert flags == {True, False}, answers  # these clips include sure answers and unsure ones


def test_uncertain_names_no_language_on_every_surface(doubtful, model_cache):
    item = clip("en_cv_3.mp3")
    samples = item.samples()
    webm = encode(samples, "webm")
    once = exchange(doubtful.ws, webm).last["data"]
    detect = httpx.post(doubtful.http + "/detect", content=webm, timeout=60).json()["data"]
    messages, _, _ = stream_exchange(doubtful.ws + "?mode=stream", webm, item.seconds, speed=4.0)
    assert messages[-1]["status"] == "success"
    for data in [once, detect] + [m["data"] for m in messages]:
        assert data["language"] is None and data["reason"] == "uncertain", data
        assert data["confident"] is False and data["confidence"] is None
        assert data["top"] and data["top"][0]["probability"] < doubtful.rule().uncertain_below, data
    env = {**os.environ, "MODEL_CACHE_DIR": str(model_cache), "UNCERTAIN_BELOW": doubtful.env["UNCERTAIN_BELOW"]}
    out = subprocess.run([sys.executable, "-m", "src.cli", str(item.path), "--json"], cwd=BACKEND_DIR, env=env,
                         capture_output=True, text=True, timeout=120)
    record = json.loads(out.stdout.strip())
    assert record["language"] is None and record["reason"] == "uncertain" and record["top"], record


def test_non_speech_is_never_named(doubtful, server):
    rng = np.random.default_rng(3)
    noise = encode(rng.normal(0, 0.1, RATE * 3).astype(np.float32), "wav")
    for srv in (server, doubtful):
        data = httpx.post(srv.http + "/detect", content=noise, timeout=60).json()["data"]
        assert data["language"] is None and data["reason"] == "no_speech" and data["confident"] is False
        assert data["top"] == []


# --- the rule itself ------------------------------------------------------------------------------------

def test_temperature_softens_and_commutes_with_candidates():
    from src.confidence import ConfidenceRule

    probabilities = [("es", 0.9), ("pt", 0.06), ("it", 0.03), ("en", 0.01)]
    warm = ConfidenceRule(temperature=2.0)
    calibrated = warm.calibrate(probabilities)
    assert calibrated[0][0] == "es" and calibrated[0][1] < 0.9
    assert sum(p for _, p in calibrated) == pytest.approx(1.0)
    # Tempering then restricting to candidates == restricting then tempering.
    kept = {"es", "pt"}
    restricted = [(c, p) for c, p in probabilities if c in kept]
    total = sum(p for _, p in restricted)
    first = dict(warm.calibrate([(c, p / total) for c, p in restricted]))
    then = [(c, p) for c, p in calibrated if c in kept]
    total = sum(p for _, p in then)
    assert first == pytest.approx({c: p / total for c, p in then})
    assert ConfidenceRule().calibrate(probabilities) == probabilities  # T = 1 leaves them alone


@pytest.mark.parametrize(
    "probabilities, confident, reason",
    [
        ([("es", 0.92), ("pt", 0.05)], True, None),
        ([("es", 0.85), ("pt", 0.4)], False, None),  # the lead is too small
        ([("es", 0.6), ("pt", 0.2)], False, None),  # named, tentative
        ([("es", 0.3), ("pt", 0.25)], False, "uncertain"),
        ([("es", None)], False, None),  # a language with no probability (whisper-1): named, not confident
        ([], False, "uncertain"),
    ],
)
def test_verdicts(probabilities, confident, reason):
    from src.confidence import ConfidenceRule

    verdict = ConfidenceRule(final_probability=0.8, final_margin=0.5, uncertain_below=0.4).verdict(probabilities)
    assert (verdict.confident, verdict.reason) == (confident, reason)


@pytest.mark.parametrize(
    "segments, audio_seconds, policy, expected",
    [
        ([], 3.9, {}, None),
        ([], 4.0, {}, "no_speech"),
        ([], 10.0, {"no_speech_seconds": 0}, None),  # off
        ([(0.5, 2.0)], 2.0, {}, None),  # still speaking: the last segment is open
        ([(0.5, 2.0)], 2.35, {}, None),  # 0.45 s of pause (the 0.1 s of padding is not speech)
        ([(0.5, 2.0)], 2.45, {}, "end_of_speech"),
        ([(0.5, 1.0), (1.6, 2.2)], 2.7, {}, "end_of_speech"),  # 1.1 s of speech with a pause inside
        ([(0.5, 1.2)], 3.0, {}, None),  # 0.7 s of speech: too little for the pause rule ...
        ([(0.5, 1.2)], 5.2, {}, "end_of_speech"),  # ... until the no-speech time passes after it
        ([(0.5, 2.0)], 9.0, {"end_silence_seconds": 0}, None),  # end of speech off
    ],
)
def test_the_pause_rule(segments, audio_seconds, policy, expected):
    from src.streaming import StreamPolicy, StreamTracker
    from src.vad import Speech

    pad = int(0.1 * RATE)
    speech = Speech([(int(s * RATE), int(e * RATE)) for s, e in segments], pad)
    tracker = StreamTracker(StreamPolicy(**({"end_min_speech_seconds": 1.0, "end_silence_seconds": 0.5,
                                              "no_speech_seconds": 4.0} | policy)))
    assert tracker.ending(speech, int(audio_seconds * RATE)) == expected
