"""The library surface: `langshazam.detect(source, languages=None, ...)` in a Python program.

One AudioProcessor per process, built from the settings (environment and `.env`, as the server reads
them) and loaded on the first call; later calls reuse it. A call answers what POST /detect's `data` says
(`Answer`: the same fields as attributes, and `.to_dict()`), through the same path: the file's first
MAX_UPLOAD_SECONDS decoded, the speech found by the VAD, the engine, the honesty rule.
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import numpy as np

    from .audio_processor import AudioProcessor
    from .config.settings import Settings

_lock = threading.Lock()
_loaded: tuple["Settings", "AudioProcessor"] | None = None


@dataclass(frozen=True)
class Answer:
    """One answer, the fields of POST /detect's `data` (the README describes each)."""

    language: str | None
    language_name: str | None
    confidence: float | None
    confident: bool
    likely: list[str]
    top: list[dict[str, Any]]  # {"language", "language_name", "probability"}, most likely first
    speech_duration: float
    audio_duration: float
    processing_time: float
    engine: str
    final: bool = True
    reason: str | None = None
    fallback: bool | None = None
    candidates: list[str] | None = None
    truncated: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # any other field the engine's answer carries

    def to_dict(self) -> dict[str, Any]:
        """As POST /detect's `data` (fields that are unset there are left out here too)."""
        data = {key: value for key, value in asdict(self).items() if key != "extra"}
        for optional in ("reason", "fallback", "candidates", "truncated"):
            if data[optional] is None:
                del data[optional]
        return data | self.extra


def detect(
    source: "str | os.PathLike[str] | bytes | np.ndarray",
    languages: str | Sequence[str] | None = None,
    *,
    top_k: int | None = None,
    min_confidence: float | None = None,
    fallback_language: str | None = None,
) -> Answer:
    """The language spoken in `source`: a path to an audio file, its bytes (any format FFmpeg reads), or
    16 kHz mono float32 samples (a 1-D numpy array). `languages`: candidate codes ("en,es" or a list);
    `top_k`: candidates listed (default TOP_K); `min_confidence` and `fallback_language` as POST /detect's.
    Raises ValueError for a bad argument, `langshazam.audio.AudioDecodeError` for audio that cannot be
    decoded, `langshazam.config.SettingsError` for bad settings."""
    import numpy as np

    from .confidence import Strictness
    from .languages import parse_language_list
    from .protocol import answer_data, parse_fallback_language, parse_min_confidence

    candidates = parse_language_list(languages if isinstance(languages, (str, type(None))) else list(languages))
    strictness = Strictness(
        None if min_confidence is None else parse_min_confidence(min_confidence),
        None if fallback_language is None else parse_fallback_language(fallback_language),
    )
    if top_k is not None and not 1 <= top_k <= 100:
        raise ValueError("top_k must be between 1 and 100")
    settings, processor = _processor()
    samples, truncated = _samples(source, settings.MAX_UPLOAD_SECONDS)
    result = processor.identify(samples, candidates, strictness=strictness)
    data = answer_data(result, "library", top_k or settings.TOP_K)
    data.pop("connection_id", None)
    data["final"] = True
    if truncated:
        data["truncated"] = True
    if candidates:
        data["candidates"] = candidates
    known = {name for name in Answer.__dataclass_fields__ if name != "extra"}
    return Answer(**{k: v for k, v in data.items() if k in known},
                  extra={k: v for k, v in data.items() if k not in known})


def _samples(source: object, max_seconds: float) -> "tuple[np.ndarray, bool]":
    import numpy as np

    from .audio import SAMPLE_RATE, decode_head

    if isinstance(source, np.ndarray):
        if source.ndim != 1:
            raise ValueError(f"samples must be one channel (a 1-D array), not shape {source.shape}")
        limit = int(max_seconds * SAMPLE_RATE)
        samples = np.ascontiguousarray(source[:limit], dtype=np.float32)
        return samples, len(source) > limit
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_head(bytes(source), max_seconds)
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            return decode_head(file.read(), max_seconds)
    raise TypeError(f"source must be a path, bytes or a numpy array of samples, not {type(source).__name__}")


def _processor() -> "tuple[Settings, AudioProcessor]":
    """The process's AudioProcessor, loaded once (the first caller loads it, others wait)."""
    global _loaded
    with _lock:
        if _loaded is None:
            from .audio_processor import AudioProcessor
            from .config import load_settings

            settings = load_settings()
            processor = AudioProcessor.from_settings(settings, gc_after_processing=False)
            processor.load()
            _loaded = (settings, processor)
        return _loaded
