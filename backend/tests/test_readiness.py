"""GET /ready and the shutdown sequence a load balancer sees: real server processes, real signals."""

from __future__ import annotations

import signal
import time

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from audio_tools import clip, encode
from conftest import BackgroundStream, exchange


def _upgrade_status(url: str) -> int:
    """The HTTP status of a WebSocket upgrade: 101 when the connection opens, else what the server sent."""
    try:
        with connect(url, open_timeout=10, close_timeout=2):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_ready_is_503_while_loading_then_200(make_server):
    srv = make_server(wait=False)
    states, checked_while_loading = [], []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert srv.process.poll() is None, srv.log()
        try:
            # The engine only ever goes from loading to loaded: when /ready still says `loading` after an
            # attempt, the attempt met a loading server and must have been refused with 503.
            upgrade = _upgrade_status(srv.ws)
            post = httpx.post(srv.http + "/detect", content=b"x" * 100, timeout=10)
            response = srv.get("/ready")
        except (OSError, httpx.TransportError):  # not listening yet
            time.sleep(0.02)
            continue
        states.append((response.status_code, response.json()["status"]))
        if response.status_code == 200:
            break
        checked_while_loading.append((upgrade, post.status_code, post.json()))
        assert srv.get("/").status_code == 200  # liveness answers while the model loads
    assert states and states[-1] == (200, "ready"), states
    assert set(states[:-1]) == {(503, "loading")}, states
    for upgrade, post_status, body in checked_while_loading:
        assert upgrade == 503 and post_status == 503, checked_while_loading
        assert body["status"] == "error" and "loading" in body["message"]
    answer = exchange(srv.ws, encode(clip("en_cv_5.mp3").samples(), "webm")).last
    assert answer["status"] == "success" and answer["data"]["language"] == "en"


def test_sigterm_fails_readiness_then_serves_for_the_delay_then_drains(make_server):
    delay = 8.0
    # The stream must still be open at SIGTERM: no early final (confident or at a pause).
    srv = make_server({"SHUTDOWN_READINESS_DELAY_SECONDS": str(delay), "SHUTDOWN_GRACE_SECONDS": "15",
                       "FINAL_PROBABILITY": "1.0", "STREAM_END_SILENCE_SECONDS": "0"})
    samples = clip("ru_cv_1.mp3").samples()
    stream = BackgroundStream(srv, encode(samples, "webm"), len(samples) / 16000)
    assert srv.get("/ready").status_code == 200

    signalled = time.monotonic()
    srv.process.send_signal(signal.SIGTERM)
    while srv.get("/ready").status_code == 200:
        assert time.monotonic() - signalled < 5, "GET /ready still 200 after SIGTERM"
        time.sleep(0.02)
    not_ready = srv.get("/ready")
    assert not_ready.status_code == 503 and not_ready.json() == {"status": "draining"}
    assert srv.get("/").status_code == 200  # liveness stays up

    # Within the delay the server still takes new sessions (a balancer may not have noticed yet).
    during = exchange(srv.ws, encode(clip("de_cv_3.mp3").samples(), "webm"))
    served_at = time.monotonic() - signalled
    assert served_at < delay, f"the check took {served_at:.1f}s, longer than the delay: raise the delay"
    assert during.last["status"] == "success" and during.last["data"]["language"] == "de", during.messages

    # After the delay new sessions get an HTTP 503 on the upgrade (a proxy retries it on another replica).
    refused_at = None
    while refused_at is None and time.monotonic() - signalled < delay + 15:
        try:
            if _upgrade_status(srv.ws) == 503:
                refused_at = time.monotonic() - signalled
        except OSError:
            pytest.fail("the server stopped listening before refusing a new session with 503")
        time.sleep(0.05)
    assert refused_at is not None and refused_at >= delay, refused_at

    messages, _, code = stream.result()
    final = messages[-1]
    assert final["status"] == "success" and final["data"]["ended_by"] == "shutdown", messages
    assert code == 1000
    assert srv.process.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    log = srv.log()
    order = [log.index(line) for line in ("readiness off", f"Still serving for {delay}s", "Draining open connections")]
    assert order == sorted(order), log[-3000:]


def test_a_model_that_cannot_load_stops_the_server(make_server, tmp_path):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    srv = make_server({"WHISPER_MODEL": str(empty)}, wait=False)
    assert srv.process.wait(timeout=120) == 1, srv.log()
    assert "failed to load" in srv.log()
