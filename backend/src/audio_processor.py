"""AudioProcessor: decodes audio and runs the engine, a few inferences at a time, off the event loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import numpy as np

from . import audio as audio_codec
from .audio import SAMPLE_RATE
from .engines.base import Engine
from .protocol import Identification

logger = logging.getLogger(__name__)


class AudioProcessor:
    def __init__(
        self,
        engine: Engine,
        max_concurrent_calls: int = 3,
        *,
        min_audio_seconds: float = 0.3,
        gc_after_processing: bool = True,
    ) -> None:
        self.engine = engine
        self.max_concurrent_calls = max_concurrent_calls
        self.min_audio_seconds = min_audio_seconds
        self.gc_after_processing = gc_after_processing
        self._semaphore = asyncio.Semaphore(max_concurrent_calls)

    def load(self) -> None:
        self.engine.load()

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

    async def process_audio(
        self, samples: np.ndarray, connection_id: str, languages: list[str] | None = None
    ) -> Identification:
        """Identify the language of 16 kHz mono float32 samples."""
        duration = len(samples) / SAMPLE_RATE
        if duration < self.min_audio_seconds:
            logger.info("[%s] %.2fs of audio is too short to identify", connection_id, duration)
            return Identification([], 0.0, duration, self.engine.name, reason="too_short")
        async with self._semaphore:
            started = time.perf_counter()
            try:
                detection = await asyncio.to_thread(self.engine.detect, samples, languages)
            finally:
                elapsed = time.perf_counter() - started
                if self.gc_after_processing:
                    gc.collect()
        result = Identification(
            probabilities=detection.probabilities,
            processing_time=elapsed,
            audio_duration=duration,
            engine=self.engine.name,
            reason=None if detection.probabilities else "uncertain",
        )
        logger.info(
            "[%s] Detected %s (%s) in %.3fs on %.2fs of audio",
            connection_id, result.language, _fmt(detection.probabilities), elapsed, duration,
        )
        return result


def _fmt(probabilities: list[tuple[str, float | None]]) -> str:
    if not probabilities:
        return "no candidate"
    code, prob = probabilities[0]
    return f"{code} p={prob:.3f}" if prob is not None else f"{code}, no probability"
