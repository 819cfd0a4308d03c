"""The local engine in-process: the batched encoder gives the same answers as single calls."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from audio_tools import clip


@pytest.fixture(scope="module")
def engine(model_cache):
    from src.engines.local_whisper import LocalWhisperEngine

    eng = LocalWhisperEngine(cache_dir=str(model_cache), max_batch=2)
    eng.load()
    yield eng
    eng.close()


def test_concurrent_detections_are_batched_and_agree(engine):
    files = ["en_cv_5.mp3", "es_cv_3.mp3", "de_cv_3.mp3", "fr_cv_3.mp3", "ja_cv_1.mp3", "zh_cv_1.mp3"]
    samples = [clip(file).samples() for file in files]
    single = [engine.detect(s).probabilities for s in samples]
    calls = []
    original = engine._detect_batch

    def spy(batch):
        calls.append(len(batch))
        return original(batch)

    engine._batcher._run_batch = spy
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            together = list(pool.map(lambda s: engine.detect(s).probabilities, samples))
    finally:
        engine._batcher._run_batch = original
    assert sum(calls) == len(files) and max(calls) == 2, calls  # some detections shared an encoder pass
    for file, a, b in zip(files, single, together):
        assert a[0][0] == b[0][0] == file[:2]
        assert a[0][1] == pytest.approx(b[0][1], abs=0.02)


def test_candidates_renormalise(engine):
    probabilities = engine.detect(clip("pt_cv_1.mp3").samples(), ["es", "pt"]).probabilities
    assert [code for code, _ in probabilities] == ["pt", "es"]
    assert sum(p for _, p in probabilities) == pytest.approx(1.0)


def test_engine_error_reaches_the_caller(engine):
    from src.engines.base import EngineError

    with pytest.raises(EngineError):
        engine.detect(clip("pt_cv_1.mp3").samples()[:0])


def test_long_speech_costs_a_bounded_window(engine):
    """A detection looks at the first `max_seconds` of audio only: a 40 s input gets the same window as a
    12 s one (and the same answer as its first 12 s), a short one the minimum window."""
    import numpy as np

    speech = clip("es_cv_3.mp3").samples()
    long = np.concatenate([speech] * (int(40 * 16000 / len(speech)) + 1))[: 40 * 16000]
    assert engine.features(long).shape[1] == int(engine.max_seconds * 100) == 1200
    assert engine.features(speech[: 3 * 16000]).shape[1] == int(engine.window_seconds * 100)
    capped = engine.detect(long).probabilities
    first = engine.detect(long[: int(engine.max_seconds * 16000)]).probabilities
    assert capped[0][0] == first[0][0] == "es"
    assert capped[0][1] == pytest.approx(first[0][1], abs=1e-4)


def test_a_first_impression_uses_a_short_window_and_is_never_confident(engine, model_cache):
    """A stream's first partial (StreamTracker.window): the engine pads to the window asked for, half the
    8 s one, and the processor never calls that answer confident, even on a clear clip."""
    from src.audio_processor import AudioProcessor
    from src.streaming import StreamPolicy, StreamTracker
    from src.vad import VoiceActivityDetector

    second = clip("es_cv_5.mp3").samples()[:16000]
    assert engine.features(second).shape[1] == 800 and engine.features(second, 4.0).shape[1] == 400
    processor = AudioProcessor(engine, vad=VoiceActivityDetector())
    samples = clip("es_cv_5.mp3").samples()
    full = processor.identify(samples)
    first = processor.identify(samples, window_seconds=4.0)
    assert full.confident and full.language == "es", full
    assert not first.confident and first.probabilities != full.probabilities, first
    assert first.likely != [] or first.language is None

    tracker = StreamTracker(StreamPolicy(first_window_seconds=4.0))
    assert tracker.window(0.0) == 4.0 and tracker.window(0.3) is None  # at a pause: maybe the final
    tracker.update(full, 1.0)
    assert tracker.window(0.0) is None  # later partials: the engine's own window
