"""Stream mode's rule: when to send a partial answer, and when an answer is final.

- A detection runs once `first_partial_seconds` of speech have arrived, then again whenever
  `update_seconds` more speech has arrived (speech as counted by the VAD, not bytes or wall time).
- An answer is *confident* when the top language has probability >= `final_probability` and leads the
  runner-up by >= `final_margin`, and that holds, for the same language, over `stable_updates`
  consecutive detections. A confident answer is final at once.
- Otherwise the answer becomes final when the client sends stop or `max_seconds` of audio have arrived.
  A final answer with no speech says `no_speech`, with less than `min_speech_seconds` says `too_short`,
  and with a top probability under `uncertain_below` says `uncertain`: no language rather than a guess.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StreamPolicy:
    first_partial_seconds: float = 1.0
    update_seconds: float = 1.0
    max_seconds: float = 15.0
    final_probability: float = 0.8
    final_margin: float = 0.5
    stable_updates: int = 2
    min_speech_seconds: float = 0.5
    uncertain_below: float = 0.4


class StreamTracker:
    """Follows one stream's detections and applies the policy."""

    def __init__(self, policy: StreamPolicy) -> None:
        self.policy = policy
        self.detected_speech = 0.0  # speech seconds the last detection rested on
        self.detections = 0
        self._streak_language: str | None = None
        self._streak = 0

    def due(self, speech_seconds: float) -> bool:
        """Is a new detection worth running on this much speech?"""
        if self.detections == 0:
            return speech_seconds >= self.policy.first_partial_seconds
        return speech_seconds - self.detected_speech >= self.policy.update_seconds

    def update(self, probabilities: list[tuple[str, float | None]], speech_seconds: float) -> bool:
        """Record a detection; True when the answer is confident (and so final)."""
        self.detections += 1
        self.detected_speech = speech_seconds
        if not probabilities or probabilities[0][1] is None:
            self._streak_language, self._streak = None, 0
            return False
        language, top = probabilities[0]
        runner_up = probabilities[1][1] if len(probabilities) > 1 and probabilities[1][1] is not None else 0.0
        strong = top >= self.policy.final_probability and top - runner_up >= self.policy.final_margin
        if not strong:
            self._streak_language, self._streak = None, 0
        elif language == self._streak_language:
            self._streak += 1
        else:
            self._streak_language, self._streak = language, 1
        return self._streak >= self.policy.stable_updates

    def no_language_reason(self, probabilities: list[tuple[str, float | None]], speech_seconds: float) -> str | None:
        """Why a final answer should name no language, or None if it may name one."""
        if speech_seconds <= 0:
            return "no_speech"
        if speech_seconds < self.policy.min_speech_seconds:
            return "too_short"
        if not probabilities:
            return "uncertain"
        top = probabilities[0][1]
        if top is not None and top < self.policy.uncertain_below:
            return "uncertain"
        return None
