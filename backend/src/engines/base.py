"""The one small interface every engine implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class EngineError(RuntimeError):
    """An engine could not answer; the message is meant for the client (no internals, no secrets)."""


@dataclass(frozen=True)
class Detection:
    """What an engine says about one piece of audio.

    `probabilities` lists (ISO code, probability) pairs, most likely first, summing to about 1 over all
    the languages the engine knows (or over the candidates, when candidates were given). Engines that
    give only a language and no probability (OpenAI's whisper-1) return it with probability None.
    """

    probabilities: list[tuple[str, float | None]]


class Engine(Protocol):
    #: Shown to clients in each answer, e.g. "local:whisper-base".
    name: str

    def load(self) -> None:
        """Load models or clients; called once at start-up, before the first detection."""

    def detect(self, audio: np.ndarray, languages: list[str] | None = None) -> Detection:
        """Identify the language of 16 kHz mono float32 audio, optionally among candidate languages.

        Runs in a worker thread; may block.
        """

    def close(self) -> None:
        """Release what load() took."""
