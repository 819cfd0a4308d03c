"""The OpenAI engine: the real OpenAI SDK against an OpenAI-compatible server started on 127.0.0.1."""

from __future__ import annotations

import pytest

from audio_tools import clip, encode
from conftest import exchange
from fake_openai import FakeOpenAI, Reply


@pytest.fixture(scope="module")
def fake_openai():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def openai_server(tmp_path_factory, model_cache, fake_openai):
    from conftest import start_server

    srv = start_server(
        tmp_path_factory.mktemp("openai"), model_cache,
        {"ENGINE": "openai", "OPENAI_API_KEY": "sk-test-secret", "OPENAI_BASE_URL": fake_openai.base_url,
         "OPENAI_TIMEOUT": "1", "OPENAI_MAX_RETRIES": "1"},
    )
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _reset(fake_openai):
    fake_openai.replies.clear()
    fake_openai.requests.clear()


def _clip_audio() -> bytes:
    return encode(clip("es_cv_3.mp3").samples(), "webm")


@pytest.mark.parametrize("name, code, label", [("spanish", "es", "Spanish"), ("Chinese", "zh", "Chinese"),
                                               ("welsh", "cy", "Welsh")])
def test_language_name_becomes_iso_code(openai_server, fake_openai, name, code, label):
    fake_openai.replies.append(Reply(language=name))
    result = exchange(openai_server.ws, _clip_audio())
    answer = result.last
    assert answer["status"] == "success", answer
    data = answer["data"]
    assert data["language"] == code and data["language_name"] == label
    assert data["confidence"] is None  # whisper-1 gives no probability: none is invented
    assert data["top"] == [{"language": code, "language_name": label, "probability": None}]
    assert data["engine"] == "openai:whisper-1"
    assert len(fake_openai.requests) == 1
    request = fake_openai.requests[0]
    assert request.path == "/v1/audio/transcriptions"
    assert request.headers["authorization"] == "Bearer sk-test-secret"
    assert request.form_value("model") == "whisper-1"
    assert request.form_value("response_format") == "verbose_json"
    wav = request.file_bytes()
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    # the speech (16 kHz 16-bit mono) that the server found in the first 20 KB of webm
    assert 0 < data["speech_duration"] <= data["audio_duration"]
    assert len(wav) == pytest.approx(data["speech_duration"] * 32000 + 44, abs=64)


@pytest.mark.parametrize(
    "reply, expected",
    [(Reply(status=500), "HTTP 500"), (Reply(status=429, headers={"retry-after-ms": "10"}), "rate-limiting"),
     (Reply(status=401), "refused the API key"), (Reply(delay=2.5), "did not answer in time")],
)
def test_api_failures_become_error_answers(openai_server, fake_openai, reply, expected):
    fake_openai.replies.append(reply)
    before = openai_server.metrics()
    result = exchange(openai_server.ws, _clip_audio(), timeout=30)
    assert result.last["status"] == "error", result.last
    assert expected in result.last["message"]
    assert "sk-test-secret" not in result.last["message"]
    assert result.close_code == 1011
    retried = reply.status in (500, 429) or reply.delay > 0
    assert len(fake_openai.requests) == (2 if retried else 1)  # OPENAI_MAX_RETRIES=1
    after = openai_server.metrics()
    assert after["errors"] == before["errors"] + 1
    assert after["active_connections"] == 0 and after["active_processes"] == 0


def test_recovers_after_a_failure(openai_server, fake_openai):
    fake_openai.replies.extend([Reply(status=500), Reply(status=500), Reply(language="german")])
    assert exchange(openai_server.ws, _clip_audio()).last["status"] == "error"
    answer = exchange(openai_server.ws, _clip_audio()).last
    assert answer["status"] == "success" and answer["data"]["language"] == "de"


def test_secret_stays_out_of_the_log(openai_server):
    assert "sk-test-secret" not in openai_server.log()
