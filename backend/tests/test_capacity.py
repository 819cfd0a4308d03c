"""Graceful under load: streams are admitted or refused at the door (1013 with `retry_after`, before any
audio), and an admitted stream gets its final answer however saturated the engine is."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import pytest
from websockets.sync.client import connect

from audio_tools import clip, encode
from conftest import exchange, start_server
from src.inference_slots import Priority, Slots

MAX_STREAMS = 3
CLIPS = ["es_cv_5.mp3", "de_cv_5.mp3", "fr_cv_3.mp3"]


@pytest.fixture(scope="module")
def saturated(tmp_path_factory, model_cache):
    """One inference slot, no queue for new requests, slow detections (30 s windows), three live streams."""
    srv = start_server(tmp_path_factory.mktemp("saturated"), model_cache, {
        "MAX_CONCURRENT_CALLS": "1", "MAX_QUEUED_DETECTIONS": "0", "DETECTION_WINDOW_SECONDS": "30",
        "MAX_STREAMS": str(MAX_STREAMS), "FINAL_PROBABILITY": "1.0",
    })
    yield srv
    srv.stop()


def wait_for(srv, key: str, value: int, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        metrics = srv.metrics()
        if metrics[key] == value:
            return metrics
        if time.monotonic() > deadline:
            pytest.fail(f"{key} did not reach {value}: {metrics}")
        time.sleep(0.05)


def refused_at_connect(url: str) -> tuple[dict, int | None, float]:
    """Connect, send nothing, and read the refusal: the message, the close code, the seconds it took."""
    started = time.monotonic()
    with connect(url, open_timeout=10, close_timeout=5) as ws:
        message = json.loads(ws.recv(timeout=10))
        with pytest.raises(Exception):
            ws.recv(timeout=10)
        return message, ws.close_code, time.monotonic() - started


def test_admitted_streams_get_their_finals_and_new_ones_are_refused_at_connect(saturated):
    results: dict[str, object] = {}
    audio = {name: encode(clip(name).samples(), "webm") for name in CLIPS}
    # Each stream sends its whole clip at once, then stop: three final answers want the one slot together,
    # and no request may wait for it (MAX_QUEUED_DETECTIONS=0). Before, the later finals were "busy".
    threads = [threading.Thread(target=lambda n=name: results.update({n: exchange(
        saturated.ws + "?mode=stream", audio[n], frame_size=2048, timeout=60)})) for name in CLIPS]
    for thread in threads:
        thread.start()
    wait_for(saturated, "live_streams", MAX_STREAMS)
    message, code, seconds = refused_at_connect(saturated.ws + "?mode=stream")
    assert message["status"] == "error" and code == 1013, message
    assert "try again" in message["message"] and message["retry_after"] > 0, message
    assert seconds < 5  # at once, not after a wait for the engine
    for thread in threads:
        thread.join(90)
    for name in CLIPS:
        result = results[name]
        assert result.close_code == 1000 and result.last["status"] == "success", (name, result.messages)
        assert result.last["data"]["final"] is True and result.last["data"]["language"] == name[:2], result.last
    metrics = wait_for(saturated, "live_streams", 0)
    assert metrics["rejections"].get("streams_full", 0) >= 1 and "busy" not in metrics["rejections"], metrics


def test_the_door_is_shared_by_ws_and_realtime_and_once_mode_is_not_a_stream(saturated):
    rest = saturated.ws.replace("/ws", "")
    with contextlib.ExitStack() as holding:
        for _ in range(MAX_STREAMS):
            holding.enter_context(connect(saturated.ws + "?mode=continuous", open_timeout=10))
        wait_for(saturated, "live_streams", MAX_STREAMS)
        # A start frame naming a live mode is refused as the query is.
        with connect(saturated.ws, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "start", "mode": "stream"}))
            refusal = json.loads(ws.recv(timeout=10))
            assert refusal["status"] == "error" and refusal["retry_after"] > 0, refusal
        event, code, _ = refused_at_connect(rest + "/v1/realtime?intent=transcription")
        assert event["type"] == "error" and event["error"]["code"] == "server_busy" and code == 1013, event
        assert event["retry_after"] > 0
        # Once mode is one request, not a live stream: served while the streams are full.
        once = exchange(saturated.ws, encode(clip("es_cv_5.mp3").samples(), "webm"), frame_size=1 << 20)
        assert once.last["status"] == "success", once.messages
    wait_for(saturated, "live_streams", 0)


def test_slots_serve_owed_answers_first_then_in_order():
    async def scenario() -> list[str]:
        slots = Slots(1)
        order: list[str] = []
        assert slots.try_take() and not slots.try_take()

        async def wait(name: str, priority: Priority) -> None:
            await slots.take(priority)
            order.append(name)
            slots.release()

        tasks = [asyncio.create_task(wait(name, priority)) for name, priority in [
            ("request 1", Priority.REQUEST), ("first 1", Priority.FIRST), ("final 1", Priority.FINAL),
            ("request 2", Priority.REQUEST), ("final 2", Priority.FINAL)]]
        cancelled = asyncio.create_task(wait("gone", Priority.FINAL))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
        assert slots.waiting() == 5 and slots.waiting(Priority.FINAL) == 2
        slots.release()
        await asyncio.gather(*tasks)
        assert slots.free == 1 and not slots.saturated
        return order

    assert asyncio.run(scenario()) == ["final 1", "final 2", "first 1", "request 1", "request 2"]
