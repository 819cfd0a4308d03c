"""Engines that identify the language of audio: local Whisper (the embedded base or a model by name, on
the CPU or a GPU) and OpenAI's transcription API."""

from __future__ import annotations

from ..config.settings import Settings
from .base import Detection, Engine, EngineError, Segment, TranscribeOptions, Transcript, VadChunking, Word


def create_engine(settings: Settings) -> Engine:
    """The engine the settings ask for (not loaded yet)."""
    if settings.ENGINE == "openai":
        from .openai_engine import OpenAIEngine

        return OpenAIEngine(
            api_key=settings.OPENAI_API_KEY,
            base_url=settings.OPENAI_BASE_URL or None,
            model=settings.OPENAI_MODEL,
            timeout=settings.OPENAI_TIMEOUT,
            max_retries=settings.OPENAI_MAX_RETRIES,
        )
    from .local_whisper import LocalWhisperEngine

    return LocalWhisperEngine(
        model=settings.WHISPER_MODEL,
        cache_dir=settings.MODEL_CACHE_DIR,
        compute_type=settings.WHISPER_COMPUTE_TYPE,
        device=settings.WHISPER_DEVICE,
        device_index=settings.WHISPER_DEVICE_INDEX,
        cpu_threads=settings.WHISPER_CPU_THREADS,
        window_seconds=settings.DETECTION_WINDOW_SECONDS,
        max_seconds=settings.DETECTION_MAX_SECONDS,
        max_batch=settings.BATCH_MAX_SIZE,
        workers=settings.WHISPER_WORKERS,
    )


__all__ = ["Detection", "Engine", "EngineError", "Segment", "TranscribeOptions", "Transcript", "VadChunking", "Word", "create_engine"]
