"""The OpenAI-compatible /v1 routes, driven by the real OpenAI Python SDK against real servers on 127.0.0.1,
and LangShazam's own OpenAI engine pointed at a second LangShazam. Transcriptions are slower than
detections: each test transcribes as few clips as it can."""

from __future__ import annotations

import math
import re
import threading

import httpx
import numpy as np
import openai
import pytest
from openai.types.audio import Transcription, TranscriptionVerbose

from audio_tools import SPANISH_CLIP, clip, encode, reads_as, share_heard

SPANISH = SPANISH_CLIP


def sdk(server, api_key: str = "unused", **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.http + "/v1", api_key=api_key, max_retries=0, timeout=120, **kwargs)


def transcribe(client: openai.OpenAI, file: str = SPANISH, **kwargs):
    item = clip(file)
    with open(item.path, "rb") as handle:
        return client.audio.transcriptions.create(model=kwargs.pop("model", "whisper-1"), file=handle, **kwargs)


def words_of(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


@pytest.fixture(scope="module")
def verbose(server) -> TranscriptionVerbose:
    """One verbose_json transcription of the Spanish clip, with word timestamps, shared by the format tests."""
    result = transcribe(sdk(server), response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert isinstance(result, TranscriptionVerbose)
    return result


def test_verbose_json(server, verbose):
    item = clip(SPANISH)
    assert verbose.language == "spanish"  # as OpenAI spells it
    # In Spanish, about the known sentence (not Whisper's exact words, which differ between CPUs: at least 3
    # of its 4 content words were heard on oneDNN and on MKL).
    assert reads_as(verbose.text, "es") and share_heard(verbose.text) >= 0.5, verbose.text
    assert verbose.duration == pytest.approx(item.seconds, abs=0.15)
    assert verbose.usage is not None and verbose.usage.seconds == math.ceil(verbose.duration)
    extra = verbose.model_extra
    assert extra["task"] == "transcribe"
    assert verbose.segments, verbose
    for index, segment in enumerate(verbose.segments):
        assert segment.id == index and 0 <= segment.start < segment.end <= verbose.duration + 0.05
        assert segment.tokens and all(isinstance(token, int) for token in segment.tokens)
        assert segment.avg_logprob < 0 and segment.compression_ratio > 0 and 0 <= segment.no_speech_prob <= 1
        assert segment.temperature == 0.0 and segment.seek >= 0
    assert words_of(" ".join(s.text for s in verbose.segments)) == words_of(verbose.text)
    assert verbose.words and words_of("".join(w.word for w in verbose.words)) == words_of(verbose.text)
    assert all(0 <= w.start <= w.end <= verbose.duration + 0.05 for w in verbose.words)
    # LangShazam's own fields: the detection, as /detect would answer it (and gpt-transcribe's `languages`)
    assert extra["language_code"] == "es" and extra["reason"] is None and extra["languages"] == [{"code": "es"}]
    top = extra["top"]
    assert len(top) == 5 and top[0] == {"language": "es", "language_name": "Spanish",
                                        "probability": extra["language_probability"]}
    p1, p2 = top[0]["probability"], top[1]["probability"]
    assert 0.5 < p1 <= 1 and p1 >= p2
    verdict = server.rule().verdict([(t["language"], t["probability"]) for t in top])
    assert extra["confident"] is verdict.confident  # the honesty rule, as on every answer
    # The likely set, as on every answer: a confident answer's is its language alone.
    assert extra["likely"] == ["es"] if extra["confident"] else (extra["likely"] == [] or "es" in extra["likely"])


def test_json_text_srt_vtt(server, verbose):
    before = server.metrics()
    client = sdk(server)
    as_json = transcribe(client, response_format="json")
    assert isinstance(as_json, Transcription) and as_json.text == verbose.text
    assert as_json.usage is not None and as_json.usage.seconds == math.ceil(verbose.duration)

    as_text = transcribe(client, response_format="text")
    assert as_text == verbose.text + "\n"

    as_srt = transcribe(client, response_format="srt")
    blocks = as_srt.strip().split("\n\n")
    texts = []
    for number, block in enumerate(blocks, start=1):
        index, times, *lines = block.split("\n")
        assert index == str(number), as_srt
        assert re.fullmatch(r"\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}", times), as_srt
        texts += lines
    assert words_of(" ".join(texts)) == words_of(verbose.text)

    as_vtt = transcribe(client, response_format="vtt")
    assert as_vtt.startswith("WEBVTT\n\n")
    cues = as_vtt[len("WEBVTT\n\n"):].strip().split("\n\n")
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}", cue.split("\n")[0]) for cue in cues)
    assert words_of(" ".join(" ".join(cue.split("\n")[1:]) for cue in cues)) == words_of(verbose.text)

    after = server.metrics()
    assert after["transcriptions"] == before["transcriptions"] + 4
    assert after["total_requests"] == before["total_requests"] + 4
    assert after["active_processes"] == 0 and after["queued_detections"] == 0


def test_language_given_is_transcribed_in_and_detection_still_reported(server, verbose):
    forced = transcribe(sdk(server), response_format="verbose_json", language="en")
    assert forced.language == "english"
    assert forced.model_extra["language_code"] == "es"  # what was detected, not what was asked
    # Transcribed in English, as asked: it reads as English and differs from the Spanish transcript (the
    # words themselves differ between CPUs: "... Tropical Africa and Borneo" on one, "It is the origin of
    # this tropical and foreign country" on another).
    assert words_of(forced.text) != words_of(verbose.text) and reads_as(forced.text, "en"), forced.text


def test_no_speech_is_an_empty_transcript(server):
    before = server.metrics()
    silence = encode(np.zeros(3 * 16000, dtype=np.float32), "wav")
    result = sdk(server).audio.transcriptions.create(model="whisper-1", file=("quiet.wav", silence),
                                                      response_format="verbose_json")
    assert result.text == "" and result.segments == [] and result.duration == pytest.approx(3.0, abs=0.01)
    extra = result.model_extra
    assert extra["reason"] == "no_speech" and extra["language_code"] is None and extra["top"] == []
    assert extra["confident"] is False and extra["language_probability"] is None and extra["languages"] == []
    as_json = sdk(server).audio.transcriptions.create(model="gpt-transcribe", file=("quiet.wav", silence))
    assert as_json.text == "" and as_json.languages == []  # no speech: no language reliably detected
    assert server.metrics()["transcriptions"] == before["transcriptions"] + 2


def test_bad_file_is_a_400_in_openais_shape(server):
    before = server.metrics()
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server).audio.transcriptions.create(model="whisper-1", file=("clip.wav", b"RIFF\x00\x00\x00\x00WAVEjunk"))
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == "file" and caught.value.body["type"] == "invalid_request_error"
    assert "could not decode wav" in caught.value.body["message"]
    raw = httpx.post(server.http + "/v1/audio/transcriptions", files={"file": ("x.mp3", b"not audio at all")},
                     data={"model": "whisper-1"}, timeout=30)
    assert raw.status_code == 400 and set(raw.json()) == {"error"}
    assert set(raw.json()["error"]) == {"message", "type", "param", "code"}
    after = server.metrics()
    assert after["errors_by_type"].get("bad_audio", 0) == before["errors_by_type"].get("bad_audio", 0) + 2
    assert after["transcriptions"] == before["transcriptions"]


@pytest.mark.parametrize(
    "data, param",
    [({"response_format": "xml"}, "response_format"), ({"temperature": "3"}, "temperature"),
     ({"language": "xx"}, "language"), ({"timestamp_granularities[]": "char"}, "timestamp_granularities"),
     ({"languages[]": ["de", "xx"]}, "languages"), ({"keywords[]": ["x" * 101]}, "keywords"),
     ({"chunking_strategy": "manual"}, "chunking_strategy"),
     ({"chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "2"}, "chunking_strategy"),
     ({"chunking_strategy[type]": "semantic_vad"}, "chunking_strategy"),
     ({"stream": "true", "response_format": "srt"}, "stream")],
)
def test_bad_parameter_is_a_400_naming_it(server, data, param):
    audio = encode(clip("de_cv_1.mp3").samples(), "webm")
    response = httpx.post(server.http + "/v1/audio/transcriptions", files={"file": ("a.webm", audio)},
                          data={"model": "whisper-1", **data}, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK's note on translations
def test_models_and_unknown_model(server):
    client = sdk(server)
    assert [model.id for model in client.models.list()] == ["whisper-1", "gpt-transcribe", "whisper-base"]
    model = client.models.retrieve("whisper-base")
    assert model.id == "whisper-base" and model.object == "model" and model.owned_by == "langshazam"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4o-transcribe")
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError) as caught:
        transcribe(client, model="whisper-large")
    assert caught.value.body["code"] == "model_not_found" and caught.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError) as caught:  # a route LangShazam does not serve, still OpenAI's shape
        with open(clip("de_cv_1.mp3").path, "rb") as handle:
            client.audio.translations.create(model="whisper-1", file=handle)
    assert "does not serve /v1/audio/translations" in caught.value.body["message"]


def test_languages(server):
    response = server.get("/languages")
    assert response.status_code == 200
    languages = response.json()["languages"]
    assert {"code": "es", "name": "Spanish"} in languages and {"code": "cy", "name": "Welsh"} in languages
    assert len(languages) == len({item["code"] for item in languages}) == 99  # Whisper base: no "yue"
    response = httpx.post(server.http + "/v1/audio/transcriptions", data={"model": "whisper-1", "language": "yue"},
                          files={"file": ("a.wav", encode(clip("de_cv_1.mp3").samples(), "wav"))}, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["param"] == "language"


def test_wrong_key_too_large_and_busy(make_server):
    # (UNCERTAIN_BELOW near 1: every answer is uncertain, for gpt-transcribe's `languages: []` at the end)
    srv = make_server({"API_KEY": "right-key", "MAX_UPLOAD_BYTES": "200000", "MAX_CONCURRENT_CALLS": "1",
                       "MAX_QUEUED_DETECTIONS": "0", "UNCERTAIN_BELOW": "0.999"})
    auth = {"Authorization": "Bearer right-key"}
    with pytest.raises(openai.AuthenticationError) as caught:
        transcribe(sdk(srv, "wrong-key"))
    assert caught.value.status_code == 401 and caught.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        sdk(srv, "wrong-key").models.list()
    client = sdk(srv, "right-key")
    assert [model.id for model in client.models.list()] == ["whisper-1", "gpt-transcribe", "whisper-base"]

    big = encode(np.concatenate([clip("en_cv_3.mp3").samples()] * 2), "wav")  # 232 KB: over the 200 KB limit
    with pytest.raises(openai.APIStatusError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=("big.wav", big))
    assert caught.value.status_code == 413 and caught.value.body["code"] == "file_too_large"

    # one inference slot, no queue: a second transcription while the first runs is refused as busy
    long_audio = encode(np.concatenate([clip(f).samples() for f in ("es_cv_5.mp3", "fr_cv_3.mp3", "it_cv_1.mp3")]), "webm")
    first: dict = {}
    worker = threading.Thread(target=lambda: first.update(result=client.audio.transcriptions.create(
        model="whisper-1", file=("long.webm", long_audio), response_format="text")))
    worker.start()
    for _ in range(300):
        if httpx.get(srv.http + "/metrics", headers=auth, timeout=10).json()["active_processes"] == 1:
            break
        threading.Event().wait(0.05)
    with pytest.raises(openai.InternalServerError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=("short.webm", long_audio[:60000]))
    assert caught.value.status_code == 503 and caught.value.body["code"] == "server_busy"
    assert caught.value.response.headers["retry-after"] == "1"
    worker.join(timeout=120)
    assert len(first["result"].split()) > 10, first  # the first one was answered in full
    uncertain = transcribe(client, "de_cv_1.mp3", model="gpt-transcribe")
    assert uncertain.languages == [] and uncertain.text  # transcribed, its language not reliably detected
    metrics = httpx.get(srv.http + "/metrics", headers=auth, timeout=10).json()
    assert metrics["rejections"] == {"unauthorized": 2, "too_large": 1, "busy": 1}, metrics
    assert metrics["transcriptions"] == 2 and metrics["active_processes"] == 0
    assert "right-key" not in srv.log()


def test_openai_engine_against_a_second_langshazam(server, make_server):
    """LangShazam with ENGINE=openai, its OPENAI_BASE_URL at another LangShazam's /v1: both real servers."""
    front = make_server({"ENGINE": "openai", "OPENAI_API_KEY": "sk-unused", "OPENAI_BASE_URL": server.http + "/v1",
                         "OPENAI_MODEL": "whisper-1"})
    before = server.metrics()["transcriptions"]
    for file in ("fr_cv_3.mp3", "de_cv_3.mp3", "ja_cv_1.mp3"):
        response = httpx.post(front.http + "/detect", content=clip(file).path.read_bytes(), timeout=120)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert data["language"] == file[:2], (file, data)
        assert data["engine"] == "openai:whisper-1" and data["confidence"] is None
    passed = transcribe(sdk(front), response_format="verbose_json")  # passed through to the second server
    assert passed.language == "spanish" and reads_as(passed.text, "es") and share_heard(passed.text) >= 0.5, passed
    assert passed.segments and passed.model_extra["language_code"] == "es"
    assert passed.model_extra["language_probability"] is None and passed.model_extra["confident"] is False
    assert server.metrics()["transcriptions"] == before + 4  # each answer came from the second server


def test_openai_engine_on_gpt_transcribe_against_a_second_langshazam(server, make_server):
    """The default OPENAI_MODEL (gpt-transcribe) against another LangShazam's /v1: candidates out as
    `languages`, the second server's `languages` back as the answer."""
    front = make_server({"ENGINE": "openai", "OPENAI_API_KEY": "sk-unused", "OPENAI_BASE_URL": server.http + "/v1"})
    response = httpx.post(front.http + "/detect?languages=de,nl", content=clip("de_cv_3.mp3").path.read_bytes(),
                          timeout=120)
    data = response.json()["data"]
    assert data["language"] == "de" and data["engine"] == "openai:gpt-transcribe" and data["confidence"] is None
    assert data["candidates"] == ["de", "nl"]
    silence = encode(np.zeros(3 * 16000, dtype=np.float32), "wav")
    quiet = httpx.post(front.http + "/detect", content=silence, timeout=60).json()["data"]
    assert quiet["language"] is None and quiet["reason"] == "no_speech"  # the front's own VAD: no request


def test_gpt_transcribe_candidates_keywords_chunking(server):
    before = server.metrics()["transcriptions"]
    result = transcribe(sdk(server), "de_cv_1.mp3", model="gpt-transcribe", languages=["de", "nl"],
                        keywords=["Morgenstund"], chunking_strategy={"type": "server_vad", "threshold": 0.4,
                                                                     "silence_duration_ms": 300, "prefix_padding_ms": 200})
    assert isinstance(result, Transcription) and result.text
    assert [item.code for item in result.languages] == ["de"]
    assert server.metrics()["transcriptions"] == before + 1


def test_gpt_transcribe_several_languages(server):
    """Longer than one timeline window, two languages each confident in its stretch: both named."""
    samples = np.concatenate([clip("es_cv_5.mp3").samples(), np.zeros(16000, np.float32), clip("fr_cv_3.mp3").samples()])
    result = sdk(server).audio.transcriptions.create(model="gpt-transcribe", file=("two.wav", encode(samples, "wav")))
    assert [item.code for item in result.languages] == ["es", "fr"], result


def test_gpt_transcribe_stream(server):
    before = server.metrics()
    events = list(transcribe(sdk(server), model="gpt-transcribe", stream=True))
    kinds = [event.type for event in events]
    assert kinds[-1] == "transcript.text.done" and set(kinds[:-1]) == {"transcript.text.delta"} and len(kinds) > 1
    done = events[-1]
    assert "".join(event.delta for event in events[:-1]).strip() == done.text and "borneo" in words_of(done.text)
    assert [item.code for item in done.languages] == ["es"]
    after = server.metrics()
    assert after["transcriptions"] == before["transcriptions"] + 1 and after["active_processes"] == 0
    with pytest.raises(openai.NotFoundError):  # errors before the first event are ordinary answers
        list(transcribe(sdk(server), model="gpt-9", stream=True))


def test_subtitle_timestamps():
    from src.engines.base import Segment
    from src.openai_api import srt, vtt

    segment = Segment(id=0, seek=0, start=3661.5, end=3723.0456, text=" Hello there. ", tokens=[1], temperature=0.0,
                      avg_logprob=-0.2, compression_ratio=1.0, no_speech_prob=0.01)
    assert srt([segment, segment]) == ("1\n01:01:01,500 --> 01:02:03,046\nHello there.\n\n"
                                       "2\n01:01:01,500 --> 01:02:03,046\nHello there.\n\n")
    assert vtt([segment]) == "WEBVTT\n\n01:01:01.500 --> 01:02:03.046\nHello there.\n\n"
    assert srt([]) == "" and vtt([]) == "WEBVTT\n\n"
