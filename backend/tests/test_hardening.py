"""Bad input, limits, who gets in, faults, shutdown and metrics: each with a real client against a real
server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from audio_tools import clip, encode
from conftest import BackgroundStream, exchange, free_port


def _good_answer(srv, file="en_cv_5.mp3", lang="en", **kwargs):
    answer = exchange(srv.ws, encode(clip(file).samples(), "webm"), **kwargs).last
    assert answer["status"] == "success" and answer["data"]["language"] == lang, answer


def _wait_idle(srv, timeout=15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        metrics = srv.metrics()
        if metrics["active_connections"] == 0 and metrics["active_processes"] == 0 and metrics["queued_detections"] == 0:
            return metrics
        if time.monotonic() > deadline:
            pytest.fail(f"counters did not return to zero: {metrics}")
        time.sleep(0.1)


# --- the bad-input corpus ----------------------------------------------------------------------------

def _corpus():
    speech = clip("de_cv_3.mp3").samples()
    webm = encode(speech, "webm")
    mp4_file = encode(speech, "mp4-file")
    rng = np.random.default_rng(3)
    junk = random.Random(4096)  # fixed: about 1 in 300 os.urandom draws probes as some container
    pcm_start = json.dumps({"type": "start", "format": "pcm_s16le", "sample_rate": 16000})
    noise = (rng.normal(0, 0.2, 16000 * 2) * 32767).clip(-32768, 32767).astype("<i2").tobytes()
    return [
        # name, binary frames, text frames before, expected status, expected words, close code
        ("random_bytes", [junk.randbytes(4096) for _ in range(6)], [], "error", "not in a known audio format", 1003),
        ("truncated_webm_header_only", [webm[:300]], [], "error", "could not decode", 1003),
        ("mp4_without_header", [mp4_file[2048:]], [], "error", "could not decode", 1003),
        ("empty_frames", [b"", b"", b""], [], "error", "no audio received", 1003),
        ("not_json", [], ["{oops"], "error", "JSON", 1003),
        ("unknown_type", [], [json.dumps({"type": "reboot"})], "error", "unknown message type", 1003),
        ("start_twice", [webm[:1000]], [json.dumps({"type": "start"}), json.dumps({"type": "start"})], "error",
         "first message", 1003),
        ("huge_frame", [b"\0" * (2 * 1024 * 1024)], [], "error", "larger than the limit", 1009),
        ("audio_0.1s", [encode(speech[:1600], "wav")], [], "success", "no_speech|too_short", 1000),
        ("silence_pcm", [b"\0\0" * 32000], [pcm_start], "success", "no_speech", 1000),
        ("noise_pcm", [noise], [pcm_start], "success", "no_speech", 1000),
        ("pcm_rate_too_low", [], [json.dumps({"type": "start", "format": "pcm_s16le", "sample_rate": 1000})],
         "error", "sample_rate must be between", 1003),
        ("pcm_f32_nan", [np.full(4000, np.nan, "<f4").tobytes()],
         [json.dumps({"type": "start", "format": "pcm_f32le", "sample_rate": 16000})], "error", "NaN", 1003),
    ]


@pytest.mark.parametrize("name, frames, texts, status, words, code", _corpus(), ids=[c[0] for c in _corpus()])
def test_bad_input_corpus(server, name, frames, texts, status, words, code):
    before = server.metrics()
    from websockets.exceptions import ConnectionClosed

    messages = []
    with connect(server.ws, max_size=None, open_timeout=10) as ws:
        try:
            for text in texts:
                ws.send(text)
            for frame in frames:
                ws.send(frame)
            ws.send(json.dumps({"type": "stop"}))
        except ConnectionClosed:
            pass
        try:
            while True:
                messages.append(json.loads(ws.recv(timeout=30)))
        except ConnectionClosed:
            pass
        close_code = ws.close_code
    assert len(messages) == 1, messages
    answer = messages[0]
    assert answer["status"] == status, answer
    text = answer.get("message") or answer["data"].get("reason") or ""
    assert any(word in text for word in words.split("|")), answer
    assert "Traceback" not in json.dumps(answer)
    assert close_code == code
    after = server.metrics()
    assert after["errors"] == before["errors"] + (1 if status == "error" else 0)
    _good_answer(server)  # and the next client is served normally


# --- limits --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def limited(tmp_path_factory, model_cache):
    from conftest import start_server

    srv = start_server(
        tmp_path_factory.mktemp("limited"), model_cache,
        {"MAX_BYTES_PER_CONNECTION": "60000", "MAX_CONNECTIONS": "2", "IDLE_TIMEOUT_SECONDS": "2.5",
         "MAX_FRAME_BYTES": "30000", "MAX_AUDIO_SECONDS": "3"},
    )
    yield srv
    srv.stop()


def test_limit_bytes_per_connection(limited):
    wav = encode(clip("ru_cv_1.mp3").samples(), "wav")  # 10 s: 320 KB
    result = exchange(limited.ws + "?mode=stream", wav, frame_size=20000, stop=False, timeout=10)
    assert result.last["status"] == "error" and "60000 bytes" in result.last["message"]
    assert result.close_code == 1009


def test_limit_frame_size(limited):
    result = exchange(limited.ws, b"\0" * 40000, frame_size=40000, stop=False, timeout=10)
    assert "larger than the limit of 30000" in result.last["message"] and result.close_code == 1009


def test_limit_audio_seconds(limited):
    audio = encode(clip("ru_cv_1.mp3").samples()[: 16000 * 5], "mp4-file")  # 5 s; the index comes last
    assert len(audio) < 60000
    result = exchange(limited.ws, audio, frame_size=20000, timeout=10)
    assert result.last["status"] == "error" and "more than 3 s of audio" in result.last["message"]
    assert result.close_code == 1009


def test_limit_idle(limited):
    result = exchange(limited.ws, b"", stop=False, timeout=10)
    idle = limited.settings().IDLE_TIMEOUT_SECONDS  # long enough for the connection test's third client
    assert f"nothing received for {idle:g} s" in result.last["message"] and result.close_code == 1008


def test_limit_connections_and_rejections_in_metrics(limited):
    from websockets.exceptions import ConnectionClosed

    with connect(limited.ws) as first, connect(limited.ws) as second:
        deadline = time.monotonic() + 5
        while limited.metrics()["active_connections"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        result = exchange(limited.ws, b"", stop=False, timeout=10)
        assert result.last["status"] == "error" and "try again later" in result.last["message"]
        assert result.close_code == 1013
        for ws in (first, second):  # they idle out
            assert "nothing received" in json.loads(ws.recv(timeout=5))["message"]
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
    metrics = _wait_idle(limited)
    rejections = metrics["rejections"]
    for reason in ("too_large", "idle", "too_many_connections"):
        assert rejections.get(reason, 0) >= 1, rejections
    _good_answer(limited)


def test_busy_answers_at_once(make_server):
    """With one inference slot and no queue, a detection arriving while another runs is refused at once."""
    srv = make_server({"MAX_CONCURRENT_CALLS": "1", "MAX_QUEUED_DETECTIONS": "0", "DETECTION_WINDOW_SECONDS": "30"})
    audio = encode(clip("ru_cv_1.mp3").samples(), "flac")
    results = []

    def one():
        results.append(exchange(srv.ws, audio, frame_size=len(audio)))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = sorted(r.last["status"] for r in results)
    assert "success" in statuses and "error" in statuses, [r.last for r in results]
    for result in results:
        if result.last["status"] == "error":
            assert "busy" in result.last["message"] and result.close_code == 1013
    assert _wait_idle(srv)["rejections"].get("busy", 0) >= 1


# --- who gets in ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "origin, allowed",
    [(None, True), ("http://127.0.0.1:{port}", True), ("http://localhost:5173", True),
     ("https://evil.example", False), ("null", False)],
)
def test_origin(server, origin, allowed):
    headers = {"Origin": origin.format(port=server.port)} if origin else None
    audio = encode(clip("en_cv_5.mp3").samples(), "webm")
    result = exchange(server.ws, audio, headers=headers) if headers else exchange(server.ws, audio)
    if allowed:
        assert result.last["status"] == "success"
    else:
        assert result.last["status"] == "error" and "not allowed" in result.last["message"]
        assert result.close_code == 1008


def test_origin_star_must_be_explicit(make_server):
    srv = make_server({"CORS_ORIGINS": "*"})
    result = exchange(srv.ws, encode(clip("en_cv_5.mp3").samples(), "webm"), headers={"Origin": "https://evil.example"})
    assert result.last["status"] == "success"


def test_api_key(make_server):
    key = "s3cret-key-value"
    srv = make_server({"API_KEY": key})
    audio = encode(clip("en_cv_5.mp3").samples(), "webm")
    refused = exchange(srv.ws, audio)
    assert "API key" in refused.last["message"] and refused.close_code == 1008
    wrong = exchange(srv.ws + "?token=nope", audio)
    assert wrong.close_code == 1008
    assert exchange(srv.ws, audio, headers={"Authorization": f"Bearer {key}"}).last["status"] == "success"
    assert exchange(srv.ws + f"?mode=stream&token={key}", audio).last["status"] == "success"
    assert httpx.get(srv.http + "/").status_code == 200
    assert httpx.get(srv.http + "/ui/").status_code == 200
    for path in ("/metrics", "/metrics/prometheus"):
        response = httpx.get(srv.http + path)
        assert response.status_code == 401 and "API key" in response.json()["message"]
        assert httpx.get(srv.http + path, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    response = httpx.post(srv.http + "/detect", content=audio)
    assert response.status_code == 401
    response = httpx.post(srv.http + "/detect", content=audio, headers={"Authorization": f"Bearer {key}"})
    assert response.json()["data"]["language"] == "en"
    metrics = httpx.get(srv.http + "/metrics", headers={"Authorization": f"Bearer {key}"}).json()
    assert metrics["rejections"]["unauthorized"] >= 4
    assert key not in srv.log(), "the key must never be logged"
    assert "token=[redacted]" in srv.log()


# --- faults --------------------------------------------------------------------------------------------

def test_client_vanishing_mid_inference(server):
    audio = encode(clip("ru_cv_1.mp3").samples(), "webm")
    for mode in ("", "?mode=stream"):
        with connect(server.ws + mode, max_size=None) as ws:
            for i in range(0, len(audio), 8192):
                ws.send(audio[i : i + 8192])
            ws.send(json.dumps({"type": "stop"}))
        # closed at once, while the detection runs
    _wait_idle(server)
    _good_answer(server)


def test_engine_exception_fails_only_that_connection(model_cache, tmp_path):
    """An exception inside inference (injected into the real engine of an in-process server)."""
    import uvicorn

    from src.config import load_settings
    from src.main import create_app

    port = free_port()
    settings = load_settings(MODEL_CACHE_DIR=str(model_cache), PORT=port, HOST="127.0.0.1")
    app = create_app(settings)
    processor = app.state.audio_processor
    real_detect = processor.engine.detect
    calls = {"n": 0}

    def failing_once(audio, languages=None, **options):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected fault in inference")
        return real_detect(audio, languages, **options)

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not (server.started and app.state.readiness.loaded) and time.monotonic() < deadline:
            time.sleep(0.05)
        processor.engine.detect = failing_once
        url = f"ws://127.0.0.1:{port}/ws"
        audio = encode(clip("es_cv_3.mp3").samples(), "webm")
        failed = exchange(url, audio)
        assert failed.last["status"] == "error" and failed.last["message"] == "internal error while processing the audio"
        assert "injected" not in json.dumps(failed.last) and failed.close_code == 1011
        answer = exchange(url, audio).last
        assert answer["status"] == "success" and answer["data"]["language"] == "es"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").json()
        assert metrics["errors_by_type"] == {"internal": 1}
        assert metrics["active_connections"] == 0 and metrics["active_processes"] == 0
    finally:
        server.should_exit = True
        thread.join(30)


def test_graceful_shutdown(make_server):
    srv = make_server({"SHUTDOWN_GRACE_SECONDS": "15", "FINAL_PROBABILITY": "1.0"})
    samples = clip("fr_cv_5.mp3").samples()
    stream = BackgroundStream(srv, encode(samples, "webm"), len(samples) / 16000)
    srv.process.send_signal(signal.SIGTERM)
    messages, _, code = stream.result()
    final = messages[-1]
    assert final["status"] == "success" and final["data"]["ended_by"] == "shutdown", messages
    assert final["data"]["language"] == "fr"
    assert code == 1000
    srv.process.wait(timeout=30)
    assert srv.process.returncode in (0, -signal.SIGTERM)
    assert "draining open connections" in srv.log()


# --- metrics for operators ----------------------------------------------------------------------------

def test_prometheus_exposition(server):
    _good_answer(server)
    exchange(server.ws, os.urandom(30000))
    text = httpx.get(server.http + "/metrics/prometheus").text
    for needle in ("langshazam_connections_total", "langshazam_requests_total", 'langshazam_errors_total{type="bad_audio"}',
                   "langshazam_processing_seconds_bucket", "langshazam_time_to_answer_seconds_bucket",
                   'langshazam_answers_total{language="en"}', "langshazam_queue_depth", "langshazam_active_connections",
                   "langshazam_memory_bytes"):
        assert needle in text, needle
    json_metrics = server.metrics()
    assert json_metrics["errors_by_type"]["bad_audio"] >= 1
