"""Stream mode's rule: when to send a partial answer, and when the answer is final.

Every answer (partial or final) carries the honesty rule's verdict (src/confidence.py): `confident`,
and no language named under the uncertainty threshold. On top of it, a stream:

- runs a detection once `first_partial_seconds` of speech have arrived, then again whenever
  `update_seconds` more speech has arrived (speech as counted by the Silero VAD, not bytes or wall
  time), and as soon as the speaker pauses (so the answer at the end of speech is ready when it is due);
- ends early when `stable_updates` consecutive detections are confident for the same language
  (`ended_by: "confident"`);
- ends at the **end of speech**: once `end_min_speech_seconds` of speech were heard, a pause of
  `end_silence_seconds` after the last speech ends it (`ended_by: "end_of_speech"`). The pause is the
  non-speech after the VAD's last speech segment; the stream's VAD closes a segment after
  STREAM_VAD_MIN_SILENCE_MS of non-speech, so shorter pauses are not seen. With less speech than that, a
  pause of `no_speech_seconds` ends it too (the answer is then `too_short` or rests on that speech);
- ends with **no speech** after `no_speech_seconds` of audio without any (`ended_by: "no_speech"`);
- otherwise ends on the client's stop (`stop`), the server's shutdown (`shutdown`) or after
  `max_seconds` of audio (`max_duration`).

A final answer with no speech says `no_speech`, with less than `min_speech_seconds` says `too_short`.

The pause rule's values were chosen by measurement (scripts/end_of_speech.py on both evaluation sets:
what each choice costs in top-1, since people pause mid-sentence too, against how long the user waits):
see docs/end-of-speech.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .audio import SAMPLE_RATE
from .protocol import Identification
from .vad import Speech

if TYPE_CHECKING:
    from .config.settings import Settings


@dataclass(frozen=True)
class StreamPolicy:
    first_partial_seconds: float = 1.0
    update_seconds: float = 1.0
    max_seconds: float = 15.0
    stable_updates: int = 2
    min_speech_seconds: float = 0.5
    end_min_speech_seconds: float = 1.0
    end_silence_seconds: float = 0.5
    no_speech_seconds: float = 4.0
    first_window_seconds: float | None = 4.0  # the first partial's detection window (None: the engine's)

    @classmethod
    def from_settings(cls, settings: "Settings") -> "StreamPolicy":
        """The policy of the STREAM_* settings (and MIN_SPEECH_SECONDS, FINAL_STABLE_UPDATES)."""
        first_window = settings.STREAM_FIRST_WINDOW_SECONDS
        return cls(
            first_partial_seconds=settings.STREAM_FIRST_PARTIAL_SECONDS,
            update_seconds=settings.STREAM_UPDATE_SECONDS,
            first_window_seconds=first_window if first_window < settings.DETECTION_WINDOW_SECONDS else None,
            max_seconds=settings.STREAM_MAX_SECONDS,
            stable_updates=settings.FINAL_STABLE_UPDATES,
            min_speech_seconds=settings.MIN_SPEECH_SECONDS,
            end_min_speech_seconds=settings.STREAM_MIN_SPEECH_SECONDS,
            end_silence_seconds=settings.STREAM_END_SILENCE_SECONDS,
            no_speech_seconds=settings.STREAM_NO_SPEECH_SECONDS,
        )


# The stream's VAD closes a speech segment after this much non-speech (the VAD's default, 500 ms, is
# for whole clips): a pause is seen while it happens, and the answer is ready when the pause is long enough.
STREAM_VAD_MIN_SILENCE_MS = 250


_TOLERANCE = 0.005  # seconds: a pause measured in samples may fall a rounding short of a setting


def pause_seconds(speech: Speech, audio_samples: int) -> float:
    """Seconds of non-speech after the last speech (all the audio when there is no speech; 0 while the
    last segment is still open). The VAD pads segments; the padding is not speech."""
    if not speech.segments:
        return audio_samples / SAMPLE_RATE
    last_end = speech.segments[-1][1]
    if last_end >= audio_samples:
        return 0.0
    return (audio_samples - last_end + speech.pad) / SAMPLE_RATE


class StreamTracker:
    """Follows one stream's detections and applies the policy."""

    def __init__(self, policy: StreamPolicy) -> None:
        self.policy = policy
        self.detected_speech = 0.0  # speech seconds the last detection rested on
        self.detections = 0
        self._streak_language: str | None = None
        self._streak = 0

    def due(self, speech_seconds: float, pause: float = 0.0) -> bool:
        """Is a new detection worth running on this much speech, `pause` seconds after the last of it?"""
        pausing = pause > 0 and speech_seconds > 0
        if self.detections == 0:
            return speech_seconds >= self.policy.first_partial_seconds or (
                pausing and speech_seconds >= min(self.policy.end_min_speech_seconds, self.policy.first_partial_seconds)
            )
        grown = speech_seconds - self.detected_speech
        return grown >= self.policy.update_seconds or (pausing and grown > 0.05)

    def window(self, pause: float) -> float | None:
        """The detection window for the partial due now: the first one, on about a second of speech, is a
        first impression on a short window (half the encoder's work of the engine's 8 s), never confident
        (see AudioProcessor.identify; Session.identify for what it brought); later ones, and a detection
        at a pause (it may become the final answer), use the engine's own (None)."""
        return self.policy.first_window_seconds if self.detections == 0 and pause <= 0 else None

    def update(self, result: Identification, speech_seconds: float) -> bool:
        """Record a detection; True when the stream's answer is confident (and so final)."""
        self.detections += 1
        self.detected_speech = speech_seconds
        language = result.language
        if not result.confident or language is None:
            self._streak_language, self._streak = None, 0
        elif language == self._streak_language:
            self._streak += 1
        else:
            self._streak_language, self._streak = language, 1
        return self._streak >= self.policy.stable_updates

    def ending(self, speech: Speech, audio_samples: int) -> str | None:
        """`end_of_speech` or `no_speech` when the speaker's pause ends the stream, else None."""
        heard = speech.seconds
        pause = pause_seconds(speech, audio_samples)
        policy = self.policy
        pause += _TOLERANCE
        if heard == 0:
            return "no_speech" if 0 < policy.no_speech_seconds <= pause else None
        if policy.end_silence_seconds <= 0:  # end of speech turned off
            return None
        needed = policy.end_silence_seconds if heard >= policy.end_min_speech_seconds else policy.no_speech_seconds
        return "end_of_speech" if 0 < needed <= pause else None

    def no_language_reason(self, speech_seconds: float) -> str | None:
        """Why a final answer must name no language for lack of speech, or None."""
        if speech_seconds <= 0:
            return "no_speech"
        if speech_seconds < self.policy.min_speech_seconds:
            return "too_short"
        return None
