"""The honesty rule: one verdict on every answer, whatever the surface (/ws once and stream, POST /detect,
the command line, the page).

1. **Calibration.** The engine's probabilities are tempered: p_i ∝ p_i ** (1 / T), renormalised
   (`CALIBRATION_TEMPERATURE`; T > 1 softens over-confident answers, T = 1 leaves them as they are).
   The engine gives probabilities over every language it knows, or renormalised over the candidate
   languages when a client names some. Tempering and restricting commute (both renormalise a product of
   per-language factors), so applying the temperature to what the engine returns is the same as
   applying it over all languages first and restricting afterwards: one temperature serves both.
2. **Verdict** on the calibrated probabilities:
   - *confident*: top >= `FINAL_PROBABILITY` and top - runner-up >= `FINAL_MARGIN`;
   - *uncertain*: top < `UNCERTAIN_BELOW`: the answer names no language (`language: null`,
     `reason: "uncertain"`) and still lists `top`;
   - otherwise the language is named, not confident (a tentative answer).
   Engines that give a language without a probability (OpenAI's whisper-1) get their language named,
   never confident and never uncertain: there is nothing to measure it by.

Answers with no speech or too little (the VAD decides first) never reach this rule: they name no
language and are not confident. The four numbers are settings whose defaults were chosen on data (see the
README's accuracy section); changing those defaults is all a new calibration needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Probabilities = list[tuple[str, float | None]]


@dataclass(frozen=True)
class Verdict:
    confident: bool
    reason: str | None  # "uncertain" when no language may be named, else None


@dataclass(frozen=True)
class ConfidenceRule:
    temperature: float = 1.0
    final_probability: float = 0.85
    final_margin: float = 0.5
    uncertain_below: float = 0.55

    @classmethod
    def from_settings(cls, settings) -> "ConfidenceRule":
        return cls(
            temperature=settings.CALIBRATION_TEMPERATURE,
            final_probability=settings.FINAL_PROBABILITY,
            final_margin=settings.FINAL_MARGIN,
            uncertain_below=settings.UNCERTAIN_BELOW,
        )

    @classmethod
    def default(cls) -> "ConfidenceRule":
        """The rule of the settings' default values (one place for the calibrated numbers)."""
        from .config.settings import Settings

        fields = Settings.model_fields
        return cls(
            temperature=fields["CALIBRATION_TEMPERATURE"].default,
            final_probability=fields["FINAL_PROBABILITY"].default,
            final_margin=fields["FINAL_MARGIN"].default,
            uncertain_below=fields["UNCERTAIN_BELOW"].default,
        )

    def calibrate(self, probabilities: Probabilities) -> Probabilities:
        """Tempered probabilities, most likely first (unchanged when T = 1 or there are no numbers)."""
        if not probabilities or any(p is None for _, p in probabilities):
            return list(probabilities)
        if self.temperature == 1.0:
            return sorted(probabilities, key=lambda item: -item[1])  # type: ignore[operator]
        exponent = 1.0 / self.temperature
        logs = [(code, math.log(p) * exponent) for code, p in probabilities if p and p > 0]  # type: ignore[arg-type]
        if not logs:
            return list(probabilities)
        peak = max(value for _, value in logs)
        weights = [(code, math.exp(value - peak)) for code, value in logs]
        total = sum(weight for _, weight in weights)
        zeros = [(code, 0.0) for code, p in probabilities if not p]
        return sorted([(code, weight / total) for code, weight in weights], key=lambda item: -item[1]) + zeros

    def verdict(self, probabilities: Probabilities) -> Verdict:
        """The verdict on calibrated probabilities (most likely first)."""
        if not probabilities:
            return Verdict(confident=False, reason="uncertain")
        top = probabilities[0][1]
        if top is None:  # a language without a probability (whisper-1): named, not confident
            return Verdict(confident=False, reason=None)
        runner_up = probabilities[1][1] if len(probabilities) > 1 and probabilities[1][1] is not None else 0.0
        if top < self.uncertain_below:
            return Verdict(confident=False, reason="uncertain")
        confident = top >= self.final_probability and top - runner_up >= self.final_margin
        return Verdict(confident=confident, reason=None)

    def apply(self, probabilities: Probabilities) -> tuple[Probabilities, Verdict]:
        calibrated = self.calibrate(probabilities)
        return calibrated, self.verdict(calibrated)
