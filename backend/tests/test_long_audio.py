"""Hours of audio in a few megabytes: decoding counts seconds and stops at the limit, so memory and CPU
stay bounded whatever the bytes hold; streams are decoded incrementally, once.

The hostile input is two hours of ogg/opus at 6 kbps (about 5 MB, under every byte limit), built with
FFmpeg's libraries in the test. Before decoding was bounded, one such POST /detect raised the server's
RSS by 1.6 GB and held a worker for 16 s before answering `no_speech`. It holds noise here, as it did
then, so that the memory measured is that of decoding (and the VAD); with speech the engine adds its own
working memory, the same as for any clip of 30 s or more (~70 MB at its 30 s window).
"""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import psutil
import pytest

from audio_tools import clip, encode, long_ogg_opus
from conftest import exchange

TWO_HOURS = 2 * 3600
LIMIT = 120  # the default MAX_AUDIO_SECONDS (WebSocket) of the `server` fixture
UPLOAD_LIMIT = 60  # its default MAX_UPLOAD_SECONDS (POST /detect)
RSS_GROWTH_MB = 100


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return np.concatenate([clip(f).samples() for f in ("en_cv_5.mp3", "en_cv_3.mp3", "en_cv_1.mp3")])


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(14).normal(0, 0.1, 16000 * 13).astype(np.float32)


@pytest.fixture(scope="module")
def two_hours(noise) -> bytes:
    data = long_ogg_opus(noise, TWO_HOURS)
    assert len(data) < 6 * 1024 * 1024, "under MAX_UPLOAD_BYTES and MAX_BYTES_PER_CONNECTION"
    return data


class ServerLoad:
    """The server process's RSS (sampled every 10 ms: its peak) and CPU time while a block runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self._stop = threading.Event()

    def _rss(self) -> float:
        return self.process.memory_info().rss / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> "ServerLoad":
        self.before = self.peak = self._rss()
        times = self.process.cpu_times()
        self._cpu = times.user + times.system
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self._rss())
        times = self.process.cpu_times()
        self.cpu = times.user + times.system - self._cpu
        self.wall = time.perf_counter() - self._started

    @property
    def growth(self) -> float:
        return self.peak - self.before

    def __str__(self) -> str:
        return (f"RSS {self.before:.0f} -> peak {self.peak:.0f} MB (+{self.growth:.0f}), "
                f"server CPU {self.cpu:.2f} s, wall {self.wall:.2f} s")


def _post(srv, data: bytes) -> httpx.Response:
    return httpx.post(srv.http + "/detect", content=data, timeout=120)


def test_detect_answers_on_the_first_seconds_of_two_hours(server, noise, two_hours):
    """POST /detect decodes the first MAX_UPLOAD_SECONDS and answers on them, saying so. The two-hour
    file costs the server about what its first minute alone costs (CPU time of the server process,
    which load from other processes does not inflate the way it does wall time)."""
    shorter = long_ogg_opus(noise, UPLOAD_LIMIT - 15)  # whole repeats of the 13 s of noise: 52 s
    with ServerLoad(server.process.pid) as reference:
        response = _post(server, shorter)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert "truncated" not in data and UPLOAD_LIMIT - 15 < data["audio_duration"] < UPLOAD_LIMIT

    with ServerLoad(server.process.pid) as load:
        response = _post(server, two_hours)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["truncated"] is True and data["audio_duration"] == pytest.approx(UPLOAD_LIMIT, abs=0.01)
    assert data["language"] is None and data["reason"] == "no_speech", data
    assert load.growth < RSS_GROWTH_MB, str(load)
    assert load.cpu < 2 * reference.cpu + 1.0, f"two hours: {load}; under {UPLOAD_LIMIT} s: {reference}"
    assert f"answering on its first {UPLOAD_LIMIT} s" in server.log()


@pytest.mark.parametrize("mode", ["stream", "once"])
def test_websocket_closes_1009_at_the_limit(server, two_hours, mode):
    """Over /ws (frames of at most MAX_FRAME_BYTES) the connection closes with 1009 once the decoded audio
    passes MAX_AUDIO_SECONDS; decoding stops there, so memory stays bounded."""
    before = server.metrics()
    with ServerLoad(server.process.pid) as load:
        result = exchange(f"{server.ws}?mode={mode}", two_hours, frame_size=1024 * 1024, stop=False, timeout=60)
    assert result.close_code == 1009, result.messages
    assert result.last["status"] == "error" and result.last["message"] == f"more than {LIMIT} s of audio on one connection"
    assert load.growth < RSS_GROWTH_MB, str(load)
    after = server.metrics()
    assert after["rejections"].get("too_large", 0) == before["rejections"].get("too_large", 0) + 1


def test_a_handful_at_once_leave_the_server_serving_others(server, two_hours):
    """Four two-hour POSTs and two two-hour WebSocket streams at once, while an ordinary client is served."""
    results: dict[str, object] = {}

    def post(name: str) -> None:
        results[name] = _post(server, two_hours)

    def ws(name: str) -> None:
        results[name] = exchange(f"{server.ws}?mode=stream", two_hours, frame_size=1024 * 1024, stop=False, timeout=90)

    hostile = [threading.Thread(target=post, args=(f"post{i}",)) for i in range(4)]
    hostile += [threading.Thread(target=ws, args=(f"ws{i}",)) for i in range(2)]
    item = clip("es_cv_5.mp3")
    with ServerLoad(server.process.pid) as load:
        for thread in hostile:
            thread.start()
        time.sleep(0.2)
        answer = exchange(server.ws, encode(item.samples(), "webm")).last  # meanwhile, an ordinary client
        for thread in hostile:
            thread.join(120)
    assert answer["status"] == "success" and answer["data"]["language"] == "es", answer
    for name, result in results.items():
        if name.startswith("post"):
            assert result.status_code == 200 and result.json()["data"]["truncated"] is True, result.text
        else:
            assert result.close_code == 1009, result.messages
    assert len(results) == 6
    # Six requests, each holding at most 60 s (POST) or 120 s (/ws) of decoded audio, plus the VAD's
    # working memory, and the ordinary client's detection; unbounded, the same six held some 8 GB. The
    # engine's own working memory differs between CTranslate2's backends: under 200 MB of growth with
    # oneDNN, 332-333 MB with MKL (two runs on the same AMD machine), so the bound is 500 MB: far from 8 GB.
    assert load.growth < 5 * RSS_GROWTH_MB, str(load)
    assert httpx.get(server.http + "/", timeout=10).status_code == 200
    assert exchange(server.ws, encode(item.samples(), "ogg")).last["data"]["language"] == "es"


def test_stream_decoding_is_incremental(speech):
    """In process: an AudioStream fed a webm/opus stream chunk by chunk decodes each chunk once, with one
    decoder that reads every byte once (its input keeps nothing it has read), gives the same samples as
    decoding the whole file, and stops at its limit."""
    from src.audio import AudioIncomplete, AudioStream, AudioTooLong, decode

    data = encode(speech, "webm")
    whole = decode(data)
    stream = AudioStream(max_seconds=60)
    chunk = len(data) // 40
    seen = []
    for start in range(0, len(data), chunk):
        stream.feed(data[start : start + chunk])
        try:
            seen.append(len(stream.samples()))
        except AudioIncomplete:
            seen.append(0)
        assert not stream._decoder.input._pending, "the decoder has taken in every byte fed so far"
    assert stream.mode == "incremental"
    assert seen == sorted(seen) and seen[-1] > 0.95 * len(whole), "the samples grow chunk by chunk"
    assert np.array_equal(stream.samples(final=True), whole)
    stream.close()

    limited = AudioStream(max_seconds=5)
    with pytest.raises(AudioTooLong, match="more than 5 s"):
        limited.feed(data)
        limited.samples()
    assert limited._out.size == 5 * 16000, "nothing decoded beyond the limit is kept"
    with pytest.raises(AudioTooLong):
        limited.feed(data[:100])
    limited.close()


@pytest.mark.parametrize("fmt, mode", [("ogg", "incremental"), ("mp4", "incremental"), ("wav", "incremental"),
                                       ("mp4-file", "whole")])
def test_stream_mode_per_container(speech, fmt, mode):
    """Fragmented mp4 (MediaRecorder's) is decoded as it arrives; an ordinary mp4 file, whose index comes
    after its audio, only as a whole. (FFmpeg reads ~100 KB of a wav stream before its first samples.)"""
    from src.audio import AudioIncomplete, AudioStream, decode

    data = encode(speech[: 16000 * 10], fmt)
    with AudioStream(max_seconds=60) as stream:
        stream.feed(data[: len(data) // 2])
        try:
            half = len(stream.samples())
        except AudioIncomplete:
            half = 0
        assert stream.mode == mode
        assert (half > 16000) == (mode == "incremental"), half
        stream.feed(data[len(data) // 2 :])
        final = stream.samples(final=True)
    expected = decode(data)
    assert abs(len(final) - len(expected)) < 160 and len(final) > 16000 * 9.9


def test_decoder_threads_end_with_their_streams(speech):
    from src.audio import AudioStream

    def decoders() -> int:
        return sum(t.name == "audio-decoder" for t in threading.enumerate())

    data = encode(speech, "webm")
    before = decoders()
    closed, dropped = AudioStream(), AudioStream()
    closed.feed(data[: len(data) // 3])  # mid-stream: the decoders wait for more
    dropped.feed(data[: len(data) // 3])
    assert decoders() == before + 2
    closed.close()
    del dropped  # a stream nobody closed stops its decoder when it is collected
    deadline = time.monotonic() + 10
    while decoders() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert decoders() == before


def test_detect_limit_is_a_setting(make_server, speech):
    """With speech: the answer on the first MAX_UPLOAD_SECONDS names its language."""
    srv = make_server({"MAX_UPLOAD_SECONDS": "4"})
    response = httpx.post(srv.http + "/detect", content=encode(speech, "webm"), timeout=60)
    data = response.json()["data"]
    assert data["truncated"] is True and data["audio_duration"] == pytest.approx(4.0, abs=0.01)
    assert data["language"] == "en", data
    short = encode(speech[: 16000 * 3], "webm")
    data = httpx.post(srv.http + "/detect", content=short, timeout=60).json()["data"]
    assert "truncated" not in data and data["language"] == "en"


def test_a_long_file_is_detected_from_its_head_with_the_whole_files_answer(model_cache, monkeypatch):
    """POST /detect's path (AudioProcessor.process_file) on 40 s of speech and pauses: the detection starts
    once the VAD has found the head of the speech, the VAD finishes the file meanwhile, and the answer is
    `process_audio`'s (VAD over the whole file, then the detection): the same probabilities and the whole
    file's speech_duration. A head that the whole file's speech contradicts is detected again."""
    import asyncio

    from audio_tools import join_clips
    from src import audio_processor as module
    from src.audio_processor import AudioProcessor
    from src.config.settings import load_settings
    from src.vad import Speech

    settings = load_settings(MODEL_CACHE_DIR=str(model_cache), ENGINE="local", WHISPER_MODEL="")
    processor = AudioProcessor.from_settings(settings)
    processor.load()
    samples, _ = join_clips([(f"de_cv_{n}.mp3", "de") for n in (1, 3, 5)] * 4, 0.8)
    assert len(samples) > 35 * 16000, len(samples)
    heads = []

    def find_head(vad, audio, need):
        heads.append(module_find_head(vad, audio, need))
        return heads[-1]

    module_find_head = module._find_head
    monkeypatch.setattr(module, "_find_head", find_head)
    try:
        whole = asyncio.run(processor.process_audio(samples, "whole"))
        early = asyncio.run(processor.process_file(samples, "file"))
        (head,) = heads
        assert head is not None and head.segments[0][1] < len(samples) / 2, head  # found well before the end
        assert early.probabilities == whole.probabilities and early.confident == whole.confident
        assert early.extra["speech_duration"] == whole.extra["speech_duration"] > 25, (early.extra, whole.extra)

        # A head the file's speech does not bear out (it starts later): detected again on the file's speech.
        def wrong_head(vad, audio, need):
            found = module_find_head(vad, audio, need)
            start = found.segments[0][0] + 16000
            return Speech([(start, start + need)], found.pad)

        monkeypatch.setattr(module, "_find_head", wrong_head)
        again = asyncio.run(processor.process_file(samples, "again"))
        assert again.probabilities == whole.probabilities and again.extra == whole.extra
        short = samples[: 10 * 16000]  # under the detection's 12 s: the plain path
        assert asyncio.run(processor.process_file(short, "short")).probabilities == \
            asyncio.run(processor.process_audio(short, "short")).probabilities
    finally:
        processor.close()
