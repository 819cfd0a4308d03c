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
3. **Likely set** (`likely`): the fewest languages, most likely first, whose cumulative calibrated
   probability passes `LIKELY_THRESHOLDS`' threshold for `LIKELY_COVERAGE`, at most three; a confident
   answer's is its language alone; `[]` when more than three would be needed (and with no probabilities).
   The threshold is split-conformal (src/conformal.py): on answers like the calibration data, the
   uncapped set holds the spoken language with probability >= LIKELY_COVERAGE; the cap empties the sets
   that would need more than three, and only those lose coverage. `likely` never changes `language`.
4. **Per request** (`Strictness`): `min_confidence` takes FINAL_PROBABILITY's place for one request (and
   UNCERTAIN_BELOW's, when lower, so a looser request's confident answers are named); with
   `fallback_language`, an answer that would be uncertain names that language instead, `fallback: true`
   and never confident.

Answers with no speech or too little (the VAD decides first) never reach this rule: they name no
language and are not confident. The numbers are Whisper base's calibration, chosen on data (see
docs/accuracy.md): the settings' defaults; another model brings its own calibration file, or answers
under the conservative rule (src/calibration.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from typing import TYPE_CHECKING

from . import calibration, conformal

if TYPE_CHECKING:
    from .config.settings import Settings

Probabilities = list[tuple[str, float | None]]

LIKELY_MAX = 3  # the most languages a likely set lists


@dataclass(frozen=True)
class Verdict:
    confident: bool
    reason: str | None  # "uncertain" when no language may be named, else None
    likely: tuple[str, ...] = ()  # the likely set, most likely first
    fallback: str | None = None  # the request's fallback language, named because the answer was uncertain


@dataclass(frozen=True)
class Strictness:
    """One request's own thresholds (None: the server's)."""

    min_confidence: float | None = None
    fallback_language: str | None = None


@dataclass(frozen=True)
class ConfidenceRule:
    temperature: float = 1.0
    final_probability: float = 0.85
    final_margin: float = 0.5
    uncertain_below: float = 0.55
    likely_threshold: float = 0.95  # cumulative probability a likely set must pass (conformal, see above)
    likely_max: int = LIKELY_MAX
    fallback_language: str | None = None
    # Where the numbers come from (calibration.Calibration.describe); False: the conservative rule of a
    # model without calibration. Not part of a rule's identity: two rules with the same numbers are equal.
    calibration: str = field(default="whisper-base", compare=False)
    calibrated: bool = field(default=True, compare=False)

    @classmethod
    def from_settings(cls, settings: "Settings") -> "ConfidenceRule":
        """The rule for the model the settings name: its calibration (src/calibration.py), the settings
        given explicitly on top; SettingsError naming the setting (or file) that does not check out."""
        from .config.settings import SettingsError

        try:
            found = calibration.for_settings(settings)
            table = conformal.parse_table(found.likely_thresholds)
        except ValueError as exc:
            raise SettingsError(f"LIKELY_THRESHOLDS (or the model's calibration): {exc}") from None
        try:
            likely_threshold = conformal.threshold_for(table, settings.LIKELY_COVERAGE)
        except ValueError as exc:
            raise SettingsError(f"LIKELY_COVERAGE={settings.LIKELY_COVERAGE!r}: {exc} in LIKELY_THRESHOLDS") from None
        return cls(
            temperature=found.temperature,
            final_probability=found.final_probability,
            final_margin=found.final_margin,
            uncertain_below=found.uncertain_below,
            likely_threshold=likely_threshold,
            calibration=found.describe(),
            calibrated=found.calibrated,
        )

    def for_request(self, strictness: "Strictness | None") -> "ConfidenceRule":
        """This rule with one request's own thresholds."""
        if strictness is None:
            return self
        changes: dict = {}
        if strictness.min_confidence is not None:
            changes["final_probability"] = strictness.min_confidence
            changes["uncertain_below"] = min(self.uncertain_below, strictness.min_confidence)
        if strictness.fallback_language is not None:
            changes["fallback_language"] = strictness.fallback_language
        return replace(self, **changes) if changes else self

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
            likely_threshold=conformal.threshold_for(
                conformal.parse_table(fields["LIKELY_THRESHOLDS"].default), fields["LIKELY_COVERAGE"].default
            ),
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
        verdict = self._judge(probabilities)
        if verdict.reason == "uncertain" and self.fallback_language is not None:
            return Verdict(confident=False, reason=None, likely=verdict.likely, fallback=self.fallback_language)
        return verdict

    def likely(self, probabilities: Probabilities, confident: bool) -> tuple[str, ...]:
        """The likely set of calibrated probabilities (most likely first), see 3. above."""
        return tuple(conformal.likely_set(probabilities, self.likely_threshold, confident, self.likely_max))

    def _judge(self, probabilities: Probabilities) -> Verdict:
        if not probabilities:
            return Verdict(confident=False, reason="uncertain")
        top = probabilities[0][1]
        if top is None:  # a language without a probability (whisper-1): named, not confident
            return Verdict(confident=False, reason=None)
        runner_up = probabilities[1][1] if len(probabilities) > 1 and probabilities[1][1] is not None else 0.0
        confident = top >= self.final_probability and top - runner_up >= self.final_margin
        likely = self.likely(probabilities, confident)
        if top < self.uncertain_below:
            return Verdict(confident=False, reason="uncertain", likely=likely)
        return Verdict(confident=confident, reason=None, likely=likely)

    def apply(self, probabilities: Probabilities) -> tuple[Probabilities, Verdict]:
        calibrated = self.calibrate(probabilities)
        return calibrated, self.verdict(calibrated)
