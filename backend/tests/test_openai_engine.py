"""The OpenAI engine: the real OpenAI SDK against an OpenAI-compatible server started on 127.0.0.1, with
whisper-1 (a language name back) and gpt-transcribe (candidates out as `languages`, `languages` back)."""

from __future__ import annotations

import httpx
import openai
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
         "OPENAI_MODEL": "whisper-1", "OPENAI_TIMEOUT": "1", "OPENAI_MAX_RETRIES": "1"},
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def gpt_server(tmp_path_factory, model_cache, fake_openai):
    """ENGINE=openai with the default OPENAI_MODEL (gpt-transcribe)."""
    from conftest import start_server

    srv = start_server(
        tmp_path_factory.mktemp("openai-gpt"), model_cache,
        {"ENGINE": "openai", "OPENAI_API_KEY": "sk-test-secret", "OPENAI_BASE_URL": fake_openai.base_url,
         "OPENAI_TIMEOUT": "5", "OPENAI_MAX_RETRIES": "0"},
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


def test_whisper_1_logs_its_shutdown_date(openai_server, gpt_server):
    assert "2027-02-26" in openai_server.log() and "gpt-transcribe" in openai_server.log()
    assert "2027-02-26" not in gpt_server.log()


def test_gpt_transcribe_candidates_out_languages_back(gpt_server, fake_openai):
    fake_openai.replies.append(Reply(languages=["es"]))
    answer = exchange(gpt_server.ws + "?languages=es,pt", _clip_audio()).last
    assert answer["status"] == "success", answer
    data = answer["data"]
    assert data["language"] == "es" and data["confidence"] is None and data["engine"] == "openai:gpt-transcribe"
    request = fake_openai.requests[-1]
    assert request.form_value("model") == "gpt-transcribe" and request.form_value("response_format") == "json"
    assert request.form_values("languages[]") == ["es", "pt"]


def test_gpt_transcribe_no_reliable_language_is_uncertain(gpt_server, fake_openai):
    fake_openai.replies.append(Reply(languages=[]))
    data = exchange(gpt_server.ws, _clip_audio()).last["data"]
    assert data["language"] is None and data["reason"] == "uncertain" and data["confident"] is False
    assert fake_openai.requests[-1].form_values("languages[]") == []  # no candidates: none sent


def test_gpt_transcribe_through_v1(gpt_server, fake_openai):
    """/v1 of a server on the OpenAI engine: the upstream's text and languages, keywords passed on."""
    fake_openai.replies.append(Reply(languages=["de"]))
    client = openai.OpenAI(base_url=gpt_server.http + "/v1", api_key="unused", max_retries=0, timeout=30)
    result = client.audio.transcriptions.create(model="gpt-transcribe", file=("a.webm", _clip_audio()),
                                                languages=["de", "es"], keywords=["Borneo"])
    assert result.text == "hello" and [item.code for item in result.languages] == ["de"]
    request = fake_openai.requests[-1]
    assert request.form_values("languages[]") == ["de", "es"] and request.form_values("keywords[]") == ["Borneo"]
    fake_openai.replies[:] = [Reply(languages=[])]  # (the last reply repeats)
    result = client.audio.transcriptions.create(model="gpt-transcribe", file=("a.webm", _clip_audio()))
    assert result.languages == []
    response = httpx.post(gpt_server.http + "/v1/audio/transcriptions", data={"model": "gpt-transcribe"},
                          files={"file": ("a.webm", _clip_audio())}, timeout=30)
    assert response.json()["languages"] == [] and fake_openai.requests[-1].form_value("model") == "gpt-transcribe"
