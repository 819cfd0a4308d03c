"""The Realtime transcription WebSocket (/v1/realtime?intent=transcription), driven by the OpenAI SDK's own
realtime clients (sync and async) against real servers on 127.0.0.1. Audio is sent faster than real time:
turns are found in the audio (its pauses), not by the clock."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from contextlib import contextmanager

import av
import numpy as np
import openai
import pytest
from websockets.sync.client import connect

from audio_tools import clip

# The SDK's sync client reads with a websockets call that warns about itself; nothing this project does.
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")

CLIPS = ("es_cv_5.mp3", "de_cv_1.mp3", "fr_cv_3.mp3")
TRANSCRIPTION = {"type": "transcription"}


def pcm(samples: np.ndarray, rate: int = 24000) -> bytes:
    """16 kHz float samples as 16-bit PCM at `rate` (FFmpeg's resampler)."""
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = 16000
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype("<i2").tobytes()


def mulaw(samples: np.ndarray) -> bytes:
    """16 kHz float samples as G.711 mu-law at 8 kHz: each sample the nearest of the 256 codes' values."""
    from src.audio import _MULAW

    linear = np.frombuffer(pcm(samples, 8000), dtype="<i2").astype(np.float32) / 32768.0
    order = np.argsort(_MULAW)
    values = _MULAW[order]
    at = np.clip(np.searchsorted(values, linear), 1, 255)
    nearer = np.where(np.abs(values[at - 1] - linear) <= np.abs(values[at] - linear), at - 1, at)
    return order[nearer].astype(np.uint8).tobytes()


def silence(seconds: float, rate: int = 24000) -> bytes:
    return bytes(2 * int(seconds * rate))


def appends(audio: bytes, piece: int = 9600) -> list[dict]:
    return [{"type": "input_audio_buffer.append", "audio": base64.b64encode(audio[i : i + piece]).decode()}
            for i in range(0, len(audio), piece)]


def sdk(server, api_key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.http + "/v1", api_key=api_key, max_retries=0)


@contextmanager
def session(server, seconds: float = 90, **kwargs):
    """The SDK's sync realtime connection, closed after `seconds` whatever happens (recv has no timeout)."""
    with sdk(server, **kwargs).realtime.connect(extra_query={"intent": "transcription"}) as conn:
        watchdog = threading.Timer(seconds, conn.close)
        watchdog.start()
        try:
            yield conn
        finally:
            watchdog.cancel()


def agrees_with_the_honesty_rule(completed, rule) -> None:
    extra = completed.model_extra
    top = [(item["language"], item["probability"]) for item in extra["top"]]
    verdict = rule.verdict(top) if top else None
    if not top or verdict.reason is not None or extra.get("reason"):
        assert completed.languages == [] and extra["confident"] is False
    else:
        assert [item.code for item in completed.languages] == [top[0][0]]
        assert extra["language_probability"] == top[0][1] and extra["confident"] is verdict.confident


def test_server_vad_session_one_completed_per_clip(server):
    before = server.metrics()
    audio = silence(0.5) + b"".join(pcm(clip(name).samples()) + silence(1.5) for name in CLIPS)
    events = []
    with session(server) as conn:
        created = conn.recv()
        assert created.type == "session.created" and created.session.type == "transcription"
        assert created.session.audio.input.turn_detection.type == "server_vad"
        conn.send({"type": "session.update", "session": {**TRANSCRIPTION, "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "turn_detection": {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 500,
                               "prefix_padding_ms": 300},
            "transcription": {"model": "gpt-transcribe"}}}}})
        assert conn.recv().type == "session.updated"
        for index, event in enumerate(appends(audio)):
            conn.send(event)
            if index == 5:  # a bad event mid-session: an error event, and the session goes on
                conn.send({"type": "response.create", "event_id": "evt_bad"})
        while sum(e.type.endswith("transcription.completed") for e in events) < len(CLIPS):
            events.append(conn.recv())
    errors = [e for e in events if e.type == "error"]
    assert len(errors) == 1 and errors[0].error.event_id == "evt_bad" and errors[0].error.code == "unknown_event"
    completed = [e for e in events if e.type.endswith("transcription.completed")]
    items = [e.item_id for e in events if e.type == "input_audio_buffer.committed"]
    assert [e.item_id for e in completed] == items and len(set(items)) == len(CLIPS)
    for item, name, done in zip(items, CLIPS, completed):
        kinds = [e.type for e in events if getattr(e, "item_id", None) == item]
        assert kinds[:3] == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                             "input_audio_buffer.committed"], kinds
        assert kinds[-1] == "conversation.item.input_audio_transcription.completed"
        deltas = [e.delta for e in events if e.type.endswith("transcription.delta") and e.item_id == item]
        assert deltas and "".join(deltas).strip() == done.transcript and done.transcript
        assert [language.code for language in done.languages] == [name[:2]], done
        agrees_with_the_honesty_rule(done, server.rule())
        assert 0 < done.usage.seconds <= clip(name).seconds + 1
    started = [e.audio_start_ms for e in events if e.type == "input_audio_buffer.speech_started"]
    stopped = [e.audio_end_ms for e in events if e.type == "input_audio_buffer.speech_stopped"]
    assert all(a < b for a, b in zip(started, stopped)) and all(b < a for b, a in zip(stopped, started[1:]))
    after = server.metrics()
    assert after["transcriptions"] == before["transcriptions"] + len(CLIPS)
    assert after["active_connections"] == 0 and after["active_processes"] == 0


def test_async_manual_commit_pcmu_and_no_speech(server):
    """turn_detection null: the client commits; G.711 mu-law at 8 kHz; a silent buffer commits to []."""

    async def run() -> list:
        client = openai.AsyncOpenAI(base_url=server.http + "/v1", api_key="unused", max_retries=0)
        async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
            async def recv():
                return await asyncio.wait_for(conn.recv(), 60)

            assert (await recv()).type == "session.created"
            await conn.send({"type": "session.update", "session": {**TRANSCRIPTION, "audio": {"input": {
                "format": {"type": "audio/pcmu"}, "turn_detection": None,
                "transcription": {"languages": ["de", "nl"]}}}}})
            updated = await recv()
            assert updated.type == "session.updated" and updated.session.audio.input.turn_detection is None
            assert updated.session.audio.input.format.type == "audio/pcmu"
            await conn.send({"type": "input_audio_buffer.commit", "event_id": "evt_empty"})
            empty = await recv()
            assert empty.type == "error" and empty.error.code == "input_audio_buffer_commit_empty"
            for event in appends(mulaw(clip("de_cv_1.mp3").samples()), 4000):
                await conn.send(event)
            await conn.send({"type": "input_audio_buffer.commit"})
            events = []
            while not events or not events[-1].type.endswith("completed"):
                events.append(await recv())
            assert not any(e.type.startswith("input_audio_buffer.speech") for e in events)  # no VAD events
            for event in appends(bytes([0xFF]) * 8000 * 2):  # 2 s of mu-law silence
                await conn.send(event)
            await conn.send({"type": "input_audio_buffer.commit"})
            while not events[-1].type.endswith("completed") or len([e for e in events if e.type.endswith("completed")]) < 2:
                events.append(await recv())
            for event in appends(bytes([0xFF]) * 8000):
                await conn.send(event)
            await conn.send({"type": "input_audio_buffer.clear"})
            events.append(await recv())
            return events

    events = asyncio.run(run())
    committed = [e for e in events if e.type == "input_audio_buffer.committed"]
    completed = [e for e in events if e.type.endswith("transcription.completed")]
    assert [e.item_id for e in completed] == [e.item_id for e in committed] and len(completed) == 2
    german, quiet = completed
    assert [language.code for language in german.languages] == ["de"] and german.transcript
    agrees_with_the_honesty_rule(german, server.rule())
    assert quiet.transcript == "" and quiet.languages == [] and quiet.model_extra["reason"] == "no_speech"
    assert events[-1].type == "input_audio_buffer.cleared"


@pytest.mark.parametrize("update, param", [
    ({"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}, "session.audio.input.turn_detection.type"),
    ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}, "session.audio.input.format"),
    ({"audio": {"input": {"transcription": {"language": "xx"}}}}, "session.audio.input.transcription.language"),
    ({"audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}}, "session.audio.input.transcription.model"),
    ({"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 1.5}}}},
     "session.audio.input.turn_detection.threshold"),
])
def test_bad_session_update_is_an_error_event_and_the_session_goes_on(server, update, param):
    with session(server, 30) as conn:
        assert conn.recv().type == "session.created"
        conn.send({"type": "session.update", "event_id": "evt_1", "session": {**TRANSCRIPTION, **update}})
        error = conn.recv()
        assert error.type == "error" and error.error.event_id == "evt_1", error
        assert error.error.param.startswith(param) and error.error.type == "invalid_request_error", error
        conn.send({"type": "session.update", "session": TRANSCRIPTION})
        updated = conn.recv()
        assert updated.type == "session.updated"
        assert updated.session.audio.input.turn_detection.type == "server_vad"  # unchanged by the bad update


def test_bad_events_are_error_events(server):
    with connect(server.http.replace("http", "ws") + "/v1/realtime?intent=transcription", open_timeout=10) as ws:
        ws.recv(timeout=10)
        for frame, code in [("not json", "invalid_json"), ('{"no": "type"}', "invalid_event"),
                            (b"\x00\x01", "invalid_event"),
                            ('{"type": "input_audio_buffer.append", "audio": "***"}', "invalid_value")]:
            ws.send(frame)
            assert f'"code": "{code}"' in ws.recv(timeout=10)
        ws.send('{"type": "input_audio_buffer.clear"}')
        assert '"input_audio_buffer.cleared"' in ws.recv(timeout=10)


def test_without_intent_transcription_refused(server):
    with connect(server.http.replace("http", "ws") + "/v1/realtime?model=gpt-realtime", open_timeout=10) as ws:
        assert '"unsupported_intent"' in ws.recv(timeout=10)
        with pytest.raises(Exception):
            ws.recv(timeout=10)
        assert ws.close_code == 1008


def test_admission_as_ws(make_server):
    """Bearer API key and the connection limit, as on /ws: refusals are error events and close codes."""
    srv = make_server({"API_KEY": "right-key", "MAX_CONNECTIONS": "1"})
    with session(srv, 30, api_key="wrong-key") as conn:
        error = conn.recv()
        assert error.type == "error" and error.error.code == "invalid_api_key"
    with session(srv, 30, api_key="right-key") as conn:
        assert conn.recv().type == "session.created"
        deadline = time.monotonic() + 10
        headers = {"Authorization": "Bearer right-key"}
        with connect(srv.http.replace("http", "ws") + "/v1/realtime?intent=transcription",
                     additional_headers=headers, open_timeout=10) as second:
            assert '"too_many_connections"' in second.recv(timeout=max(0.1, deadline - time.monotonic()))
            with pytest.raises(Exception):
                second.recv(timeout=10)
            assert second.close_code == 1013
