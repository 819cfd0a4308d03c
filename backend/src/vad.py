"""Voice activity: the Silero VAD that ships inside faster-whisper finds the speech in audio."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from .audio import SAMPLE_RATE


@dataclass(frozen=True)
class Speech:
    """Where the speech is in a piece of audio."""

    segments: list[tuple[int, int]]  # (start, end) sample indexes
    pad: int = 0  # samples of padding the VAD added around each segment

    @property
    def seconds(self) -> float:
        return sum(end - start for start, end in self.segments) / SAMPLE_RATE

    def audio(self, samples: np.ndarray) -> np.ndarray:
        """The samples from the first speech to the end of the last (pauses kept: joining the segments
        was measured less accurate)."""
        if not self.segments:
            return np.zeros(0, dtype=np.float32)
        return samples[self.segments[0][0] : self.segments[-1][1]]


class VoiceActivityDetector:
    def __init__(
        self,
        threshold: float = 0.5,
        min_speech_ms: int = 250,
        min_silence_ms: int = 500,
        pad_ms: int = 100,
    ) -> None:
        self.options = VadOptions(
            threshold=threshold,
            min_speech_duration_ms=min_speech_ms,
            min_silence_duration_ms=min_silence_ms,
            speech_pad_ms=pad_ms,
        )

    def find_speech(self, samples: np.ndarray, min_silence_ms: int | None = None) -> Speech:
        """Speech segments of 16 kHz mono float32 audio (none in silence, noise, hum or tones); a segment
        ends after `min_silence_ms` of non-speech (default: the detector's)."""
        pad = int(self.options.speech_pad_ms * SAMPLE_RATE / 1000)
        if samples.size < 512:
            return Speech([], pad)
        options = self.options
        if min_silence_ms is not None:
            options = replace(options, min_silence_duration_ms=min_silence_ms)
        stamps = get_speech_timestamps(samples, options, sampling_rate=SAMPLE_RATE)
        return Speech([(int(s["start"]), int(min(s["end"], samples.size))) for s in stamps], pad)
