"""AudioProcessor: decodes audio, finds the speech, and runs the engine on it, a few inferences at a time,
off the event loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import numpy as np

from . import audio as audio_codec
from .audio import SAMPLE_RATE
from .engines.base import Detection, Engine
from .protocol import Identification
from .vad import Speech, VoiceActivityDetector

logger = logging.getLogger(__name__)


class AudioProcessor:
    def __init__(
        self,
        engine: Engine,
        max_concurrent_calls: int = 3,
        *,
        vad: VoiceActivityDetector | None = None,
        min_speech_seconds: float = 0.5,
        gc_after_processing: bool = True,
    ) -> None:
        self.engine = engine
        self.max_concurrent_calls = max_concurrent_calls
        self.vad = vad or VoiceActivityDetector()
        self.min_speech_seconds = min_speech_seconds
        self.gc_after_processing = gc_after_processing
        self._semaphore = asyncio.Semaphore(max_concurrent_calls)

    def load(self) -> None:
        self.engine.load()
        self.vad.find_speech(np.zeros(SAMPLE_RATE, dtype=np.float32))  # load the VAD model now, not mid-request

    def close(self) -> None:
        self.engine.close()

    async def decode(self, data: bytes, connection_id: str, *, final: bool = True) -> np.ndarray:
        """Decode a whole compressed stream (see audio.decode) in a worker thread."""
        started = time.perf_counter()
        samples = await asyncio.to_thread(audio_codec.decode, data, final=final)
        logger.debug(
            "[%s] Decoded %d bytes to %.2fs of audio in %.3fs",
            connection_id, len(data), len(samples) / SAMPLE_RATE, time.perf_counter() - started,
        )
        return samples

    async def find_speech(self, samples: np.ndarray) -> Speech:
        return await asyncio.to_thread(self.vad.find_speech, samples)

    async def process_audio(
        self,
        samples: np.ndarray,
        connection_id: str,
        languages: list[str] | None = None,
        speech: Speech | None = None,
    ) -> Identification:
        """Identify the language spoken in 16 kHz mono float32 samples (only their speech is used).

        Without enough speech the result has no probabilities and a `reason` ("no_speech", "too_short").
        """
        duration = len(samples) / SAMPLE_RATE
        if speech is None:
            speech = await self.find_speech(samples)
        speech_seconds = speech.seconds
        extra = {"speech_duration": round(speech_seconds, 3)}
        if speech_seconds < self.min_speech_seconds:
            reason = "no_speech" if speech_seconds == 0 else "too_short"
            logger.info("[%s] %s: %.2fs of speech in %.2fs of audio", connection_id, reason, speech_seconds, duration)
            return Identification([], 0.0, duration, self.engine.name, reason=reason, extra=extra)
        voiced = speech.audio(samples)
        async with self._semaphore:
            started = time.perf_counter()
            detection = await asyncio.to_thread(self._detect, voiced, languages)
            elapsed = time.perf_counter() - started
        result = Identification(
            probabilities=detection.probabilities,
            processing_time=elapsed,
            audio_duration=duration,
            engine=self.engine.name,
            reason=None if detection.probabilities else "uncertain",
            extra=extra,
        )
        logger.info(
            "[%s] Detected %s (%s) in %.3fs on %.2fs of speech",
            connection_id, result.language, _fmt(detection.probabilities), elapsed, speech_seconds,
        )
        return result


    def _detect(self, voiced: np.ndarray, languages: list[str] | None) -> Detection:
        try:
            return self.engine.detect(voiced, languages)
        finally:
            if self.gc_after_processing:
                gc.collect()  # in the worker thread, not on the event loop


def _fmt(probabilities: list[tuple[str, float | None]]) -> str:
    if not probabilities:
        return "no candidate"
    code, prob = probabilities[0]
    return f"{code} p={prob:.3f}" if prob is not None else f"{code}, no probability"
