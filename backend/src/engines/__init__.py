"""Engines that identify the language of audio: the embedded Whisper (local) and OpenAI's whisper-1."""

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
        model_path=settings.WHISPER_MODEL or None,
        cache_dir=settings.MODEL_CACHE_DIR,
        compute_type=settings.WHISPER_COMPUTE_TYPE,
        cpu_threads=settings.WHISPER_CPU_THREADS,
        window_seconds=settings.DETECTION_WINDOW_SECONDS,
        max_seconds=settings.DETECTION_MAX_SECONDS,
        max_batch=settings.BATCH_MAX_SIZE,
        workers=settings.WHISPER_WORKERS,
    )


__all__ = ["Detection", "Engine", "EngineError", "Segment", "TranscribeOptions", "Transcript", "VadChunking", "Word", "create_engine"]
