"""The one small interface every engine implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

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


@dataclass(frozen=True)
class Segment:
    """One segment of a transcript, with the fields OpenAI's verbose_json gives (times in seconds of the
    audio as sent, not of the speech alone)."""

    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Transcript:
    """What an engine heard: the text, in `language` (ISO code), by segment (and by word when asked).

    `detection` is set when the engine named the language itself while transcribing (it was not given
    one); otherwise None."""

    text: str
    language: str | None
    segments: list[Segment] = field(default_factory=list)
    words: list[Word] | None = None
    detection: Detection | None = None


@dataclass(frozen=True)
class VadChunking:
    """OpenAI's `chunking_strategy` of type `server_vad`: how the transcription cuts the audio at pauses
    (None: the engine's defaults)."""

    threshold: float | None = None  # speech probability above which a window is speech
    prefix_padding_ms: int | None = None  # audio kept before (and after) each stretch of speech
    silence_duration_ms: int | None = None  # a pause this long ends a stretch of speech


@dataclass(frozen=True)
class TranscribeOptions:
    """OpenAI's transcription parameters, as far as an engine honours them."""

    language: str | None = None  # ISO code to transcribe in; None: the engine decides
    prompt: str | None = None  # text that precedes the audio (spelling, names, style)
    temperature: float | None = None  # None or 0: greedy/beam with temperature fallback, as OpenAI does
    words: bool = False  # word timestamps too
    languages: list[str] | None = None  # candidate languages (gpt-transcribe's `languages`); None: all
    keywords: list[str] | None = None  # words or phrases to expect (gpt-transcribe's `keywords`)
    chunking: VadChunking | None = None  # `chunking_strategy` server_vad; None: the engine's own VAD defaults
    # Called (in the engine's thread) with each segment as soon as it is decoded: streamed transcripts.
    on_segment: Callable[[Segment], None] | None = field(default=None, compare=False)


class Engine(Protocol):
    #: Shown to clients in each answer, e.g. "local:whisper-base".
    name: str
    #: True when `transcribe` without a language names the language itself in `Transcript.detection`
    #: (one call instead of a detection and a transcription); False when the caller detects first.
    names_language_when_transcribing: bool
    #: The most audio `detect` looks at, its first seconds (None: all of it). Lets a caller start the
    #: detection of a long file before the VAD has gone through the rest (AudioProcessor.process_file).
    detection_seconds: float | None

    def load(self) -> None:
        """Load models or clients; called once at start-up, before the first detection."""

    def detect(self, audio: np.ndarray, languages: list[str] | None = None, *,
               window_seconds: float | None = None) -> Detection:
        """Identify the language of 16 kHz mono float32 audio, optionally among candidate languages.
        `window_seconds`: the least window the engine pads short audio to, for this call (None: its own;
        engines without a window ignore it).

        Runs in a worker thread; may block.
        """

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions) -> Transcript:
        """Transcribe 16 kHz mono float32 audio (the whole of it: the engine skips silence itself).

        Runs in a worker thread; may block.
        """

    def languages(self) -> list[str]:
        """ISO codes of every language this engine can name."""

    def close(self) -> None:
        """Release what load() took."""
