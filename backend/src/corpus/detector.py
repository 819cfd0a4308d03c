"""The corpus mode's detector: one engine in one process (a local worker or a Ray actor) that reads an
item's bytes (fsspec), decodes them as POST /detect does (`audio.decode_head`, at most MAX_UPLOAD_SECONDS),
finds the speech, and identifies the language of several items in one batched engine call
(`AudioProcessor.identify_batch`). Every failure of one item becomes that item's error row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np

from ..audio import SAMPLE_RATE, AudioDecodeError, decode_head
from ..audio_processor import AudioProcessor
from ..confidence import Strictness
from ..config import load_settings
from ..vad import Speech
from .inputs import Item
from .rows import answer_row, error_row

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectOptions:
    """What every worker of a run needs to know (picklable: it goes to each process or actor)."""

    languages: list[str] | None = None
    top_k: int | None = None
    min_confidence: float | None = None
    fallback_language: str | None = None
    batch_size: int = 4
    threads: int = 1  # CTranslate2 threads of each worker's engine


@dataclass
class Prepared:
    """An item decoded, with its speech found: ready for the engine."""

    item: Item
    samples: np.ndarray
    speech: Speech
    truncated: bool


class CorpusDetector:
    """One engine and VAD; `prepare` then `detect` (or `run` for both)."""

    def __init__(self, options: DetectOptions) -> None:
        settings = load_settings()
        # One inference at a time in this process, on `threads` cores: the run's parallelism is its processes.
        settings = settings.model_copy(update={"WHISPER_WORKERS": 1, "WHISPER_CPU_THREADS": options.threads})
        self.options = options
        self.max_seconds = settings.MAX_UPLOAD_SECONDS
        self.top_k = options.top_k or settings.TOP_K
        self.strictness = Strictness(options.min_confidence, options.fallback_language)
        self.processor = AudioProcessor.from_settings(settings, gc_after_processing=False)
        self.model = self.processor.engine.name

    def load(self) -> None:
        self.processor.load()

    def close(self) -> None:
        self.processor.close()

    def prepare(self, item: Item) -> Prepared | dict[str, Any]:
        """The item read, decoded and its speech found; or its error row."""
        try:
            with fsspec.open(item.path, "rb") as handle:
                data = handle.read()
        except Exception as exc:  # fsspec and its file systems raise many kinds: each becomes the row's error
            return error_row(item, read_error(exc), self.model)
        if not data:
            return error_row(item, "the file is empty", self.model)
        start = item.offset or 0.0
        limit = self.max_seconds if item.duration is None else min(item.duration, self.max_seconds)
        try:
            samples, over = decode_head(data, start + limit)
        except AudioDecodeError as exc:
            return error_row(item, str(exc), self.model)
        except Exception as exc:  # noqa: BLE001 - a decoder failure must not end the run
            logger.exception("Decoding %s failed", item.path)
            return error_row(item, f"could not decode audio: {exc}", self.model)
        samples = samples[int(start * SAMPLE_RATE):]
        if start and samples.size == 0:
            return error_row(item, f"the offset {start:g} s is past the end of the audio", self.model)
        truncated = over and (item.duration is None or item.duration > self.max_seconds)
        return Prepared(item, samples, self.processor.vad.find_speech(samples), truncated)

    def detect(self, prepared: list[Prepared]) -> list[dict[str, Any]]:
        """The rows of prepared items, their detections batched; when the batch fails, each alone."""
        if not prepared:
            return []
        try:
            results = self.processor.identify_batch(
                [(p.samples, p.speech) for p in prepared], self.options.languages, self.strictness)
        except Exception:  # noqa: BLE001 - find the item at fault
            if len(prepared) == 1:
                logger.exception("Detection of %s failed", prepared[0].item.path)
                return [error_row(prepared[0].item, "the engine failed on this audio", self.model)]
            return [row for one in prepared for row in self.detect([one])]
        return [answer_row(p.item, result, self.top_k, self.model, p.truncated) for p, result in zip(prepared, results)]

    def run(self, items: list[Item]) -> list[dict[str, Any]]:
        """Rows for items, in their order, the detections in batches of `batch_size`."""
        rows: list[dict[str, Any] | None] = []
        ready: list[tuple[int, Prepared]] = []
        for item in items:
            prepared = self.prepare(item)
            rows.append(prepared if isinstance(prepared, dict) else None)
            if isinstance(prepared, Prepared):
                ready.append((len(rows) - 1, prepared))
        for at in range(0, len(ready), self.options.batch_size):
            chunk = ready[at : at + self.options.batch_size]
            for (index, _), row in zip(chunk, self.detect([p for _, p in chunk])):
                rows[index] = row
        return [row for row in rows if row is not None]


def read_error(exc: BaseException) -> str:
    """A read failure in words: what happened to which path."""
    if isinstance(exc, FileNotFoundError):
        return "could not read: no such file"
    if isinstance(exc, IsADirectoryError):
        return "could not read: a folder, not a file"
    if isinstance(exc, PermissionError):
        return "could not read: permission denied"
    return f"could not read: {type(exc).__name__}: {exc}".rstrip(": ")

