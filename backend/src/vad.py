"""Voice activity: the Silero VAD that ships inside faster-whisper finds the speech in audio, in a whole clip
(`VoiceActivityDetector.find_speech`) or in a stream as it grows (`VadStream`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps, get_vad_model

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

    def stream(self) -> "VadStream":
        """A VAD that follows a growing stream at a cost per step in proportion to the new audio."""
        return VadStream(self)


# --- a growing stream -------------------------------------------------------------------------------

_FRAME = 512  # samples per Silero window at 16 kHz
_CONTEXT = 64  # samples of the previous window the model sees with each one


class VadStream:
    """The Silero VAD over a stream that grows: each `push` runs the model over the new samples only, its
    state (the LSTM's h and c, and the last 64 samples) carried from the previous call, and keeps one
    speech probability per 512-sample frame. `speech` then finds the segments from those probabilities
    by faster-whisper's own rule (`get_speech_timestamps`), so a step costs in proportion to the audio
    that arrived, not to the stream. The result equals `VoiceActivityDetector.find_speech` over the same
    audio (the model reads a batch of frames as a sequence, so state carried between calls is the same
    computation). `release` lets go of the probabilities before a point, as the stream's audio is."""

    def __init__(self, detector: "VoiceActivityDetector") -> None:
        self.detector = detector
        self._session = get_vad_model().session
        self._state = (np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32))
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)  # samples after the last whole frame
        self._probs = np.zeros(0, dtype=np.float32)  # frame `_first` onwards
        self._first = 0
        self.samples = 0  # samples pushed since the stream began

    def push(self, new: np.ndarray) -> None:
        """Add the samples that follow the ones pushed before."""
        if not new.size:
            return
        self.samples += new.size
        data = np.concatenate([self._pending, new.astype(np.float32, copy=False)])
        whole = data.size // _FRAME * _FRAME
        self._pending = data[whole:].copy()
        if whole:
            frames = data[:whole].reshape(-1, _FRAME)
            probs, self._state, self._context = self._run(frames, self._state, self._context)
            self._probs = np.concatenate([self._probs, probs])

    def follow(self, held: np.ndarray, base: int) -> None:
        """Push what `held` (a stream's audio from its sample `base`) has beyond the samples pushed."""
        start = self.samples - base
        if start < 0:
            raise ValueError(f"the audio before sample {self.samples} was released before the VAD saw it")
        self.push(held[start:])

    def speech(self, start: int = 0, min_silence_ms: int | None = None) -> Speech:
        """The speech in the stream from its sample `start` to the last sample pushed, positions counted
        from `start` (as `find_speech(audio[start:])` would give them)."""
        length = self.samples - start
        pad = int(self.detector.options.speech_pad_ms * SAMPLE_RATE / 1000)
        if length < _FRAME:
            return Speech([], pad)
        first = -(-start // _FRAME)  # the first whole frame from `start`
        if first < self._first:
            raise ValueError(f"the VAD's frames before sample {self._first * _FRAME} were released")
        # The last, incomplete frame, zero-padded as get_speech_timestamps pads the audio (a whole frame
        # of zeros when there is none): its state is not kept, the next push computes it anew.
        tail = np.zeros(_FRAME, dtype=np.float32)
        tail[: self._pending.size] = self._pending
        last, _, _ = self._run(tail.reshape(1, -1), self._state, self._context)
        probs = np.concatenate([self._probs[first - self._first :], last])
        options = self.detector.options
        if min_silence_ms is not None:
            options = replace(options, min_silence_duration_ms=min_silence_ms)
        stamps = speech_timestamps(probs, first * _FRAME - start, length, options)
        return Speech(stamps, pad)

    def release(self, before: int) -> None:
        """Forget the probabilities of the frames before stream sample `before`."""
        drop = min(before // _FRAME, self._first + self._probs.size) - self._first
        if drop > 0:
            self._probs = self._probs[drop:].copy()
            self._first += drop

    def _run(self, frames: np.ndarray, state, context):
        contexts = np.concatenate([context.reshape(1, -1), frames[:-1, -_CONTEXT:]])
        batch = np.concatenate([contexts, frames], axis=1)
        out, h, c = self._session.run(None, {"input": batch, "h": state[0], "c": state[1]})
        return out.reshape(-1).astype(np.float32), (h, c), frames[-1, -_CONTEXT:].copy()


def speech_timestamps(probs: np.ndarray, shift: int, length: int, options: VadOptions) -> list[tuple[int, int]]:
    """Speech segments (start, end samples) from Silero's per-frame probabilities, frame i starting at
    sample `shift + 512 i` of audio `length` samples long: faster-whisper's `get_speech_timestamps` rule
    (faster_whisper/vad.py, 1.2), which computes the probabilities itself and so cannot take them."""
    threshold = options.threshold
    neg_threshold = options.neg_threshold if options.neg_threshold is not None else max(threshold - 0.15, 0.01)
    min_speech = SAMPLE_RATE * options.min_speech_duration_ms / 1000
    pad = SAMPLE_RATE * options.speech_pad_ms / 1000
    max_speech = SAMPLE_RATE * options.max_speech_duration_s - _FRAME - 2 * pad
    min_silence = SAMPLE_RATE * options.min_silence_duration_ms / 1000
    min_silence_at_max_speech = SAMPLE_RATE * 98 / 1000

    triggered = False
    speeches: list[list[int]] = []
    current: list[int] = []  # [start] while a segment is open
    temp_end = prev_end = next_start = 0
    for i, prob in enumerate(probs.tolist()):
        at = shift + _FRAME * i
        if prob >= threshold and temp_end:
            temp_end = 0
            if next_start < prev_end:
                next_start = at
        if prob >= threshold and not triggered:
            triggered = True
            current = [at]
            continue
        if triggered and at - current[0] > max_speech:
            if prev_end:
                speeches.append([current[0], prev_end])
                if next_start < prev_end:
                    triggered, current = False, []
                else:
                    current = [next_start]
                prev_end = next_start = temp_end = 0
            else:
                speeches.append([current[0], at])
                current, triggered = [], False
                prev_end = next_start = temp_end = 0
                continue
        if prob < neg_threshold and triggered:
            if not temp_end:
                temp_end = at
            if at - temp_end > min_silence_at_max_speech:
                prev_end = temp_end
            if at - temp_end < min_silence:
                continue
            if temp_end - current[0] > min_speech:
                speeches.append([current[0], temp_end])
            current, triggered = [], False
            prev_end = next_start = temp_end = 0
            continue
    if current and length - current[0] > min_speech:
        speeches.append([current[0], length])

    for i, speech in enumerate(speeches):
        if i == 0:
            speech[0] = int(max(0, speech[0] - pad))
        if i != len(speeches) - 1:
            silence = speeches[i + 1][0] - speech[1]
            if silence < 2 * pad:
                speech[1] += int(silence // 2)
                speeches[i + 1][0] = int(max(0, speeches[i + 1][0] - silence // 2))
            else:
                speech[1] = int(min(length, speech[1] + pad))
                speeches[i + 1][0] = int(max(0, speeches[i + 1][0] - pad))
        else:
            speech[1] = int(min(length, speech[1] + pad))
    return [(int(start), int(min(end, length))) for start, end in speeches]
