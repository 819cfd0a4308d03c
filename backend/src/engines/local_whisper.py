"""The embedded engine: Whisper on faster-whisper / CTranslate2, on the CPU, offline.

Stock `WhisperModel.detect_language` pads every input to a 30 s window, so a 3 s clip pays for a full
30 s encoder pass. CTranslate2's Whisper encoder accepts shorter inputs (whole seconds, multiples of 100
mel frames): this engine runs it on `max(audio, window_seconds)` rounded up to whole seconds, which is
several times faster; a window of about 10 s keeps the accuracy of short clips (see the benchmark).
"""

from __future__ import annotations

import logging
import math
import os

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel

from ..audio import SAMPLE_RATE
from .base import Detection, EngineError
from .model_files import MODEL_NAME, ensure_model

logger = logging.getLogger(__name__)

_HOP = 160  # samples per mel frame
_MAX_SECONDS = 30  # Whisper's positional embedding covers 30 s


class LocalWhisperEngine:
    def __init__(
        self,
        model_path: str | None = None,
        cache_dir: str = "~/.cache/langshazam",
        compute_type: str = "int8",
        cpu_threads: int = 0,
        window_seconds: float = 10.0,
    ) -> None:
        self.model_path = model_path
        self.cache_dir = cache_dir
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads or (os.cpu_count() or 1)
        self.window_seconds = window_seconds
        label = os.path.basename(os.path.normpath(model_path)) if model_path else MODEL_NAME
        self.name = f"local:{label}"
        self._model: WhisperModel | None = None

    def load(self) -> None:
        path = self.model_path or str(ensure_model(self.cache_dir))
        self._model = WhisperModel(
            path, device="cpu", compute_type=self.compute_type, cpu_threads=self.cpu_threads
        )
        if not self._model.model.is_multilingual:
            raise EngineError(f"the model in {path} is English-only: language identification needs a multilingual one")
        logger.info("Loaded %s (%s, %d threads)", path, self.compute_type, self.cpu_threads)

    def close(self) -> None:
        self._model = None

    @property
    def model(self) -> WhisperModel:
        if self._model is None:
            raise EngineError("the model is not loaded")
        return self._model

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Log-mel features of the audio zero-padded to the detection window (whole seconds)."""
        seconds = min(_MAX_SECONDS, max(self.window_seconds, math.ceil(len(audio) / SAMPLE_RATE)))
        n_samples = int(math.ceil(seconds)) * SAMPLE_RATE
        padded = np.zeros(n_samples, dtype=np.float32)
        clip = audio[:n_samples]
        padded[: len(clip)] = clip
        return self.model.feature_extractor(padded, padding=0)[:, : n_samples // _HOP]

    def detect(self, audio: np.ndarray, languages: list[str] | None = None) -> Detection:
        if audio.size == 0:
            raise EngineError("no audio to detect")
        features = np.ascontiguousarray(self.features(audio)[np.newaxis], dtype=np.float32)
        results = self.model.model.detect_language(ctranslate2.StorageView.from_array(features))[0]
        probabilities = [(token[2:-2], float(prob)) for token, prob in results]
        return Detection(probabilities=restrict(probabilities, languages))


def restrict(probabilities: list[tuple[str, float]], languages: list[str] | None) -> list[tuple[str, float]]:
    """Probabilities renormalised over the candidate languages (all of them when None)."""
    if not languages:
        return probabilities
    wanted = set(languages)
    kept = [(code, prob) for code, prob in probabilities if code in wanted]
    if not kept:
        raise EngineError("none of the candidate languages is known to this model")
    total = sum(prob for _, prob in kept)
    if total <= 0:
        return [(code, 1.0 / len(kept)) for code, _ in kept]
    return [(code, prob / total) for code, prob in kept]
