"""A model's calibration from evaluation rows (what `scripts/evaluate.py --write-calibration` writes; the
file's use is in backend/src/calibration.py).

From the engine's own probabilities of labelled clips (rows of evaluate.py: `set`, `kind`, `lang`,
`_raw`), choose the honesty rule's numbers as the README's "Accuracy" chose Whisper base's:

- temperature: the one of a grid that minimises the negative log-likelihood of the right language over
  the speech clips of all sets together;
- FINAL_PROBABILITY: the lowest P of a grid at which, on every set, confident answers (top >= P, lead
  >= the margin) are right at least `precision` of the time (infinite, never confident, when none is);
- UNCERTAIN_BELOW: the lowest of a grid (at least 0.5) at which no non-speech clip the VAD let through
  is named;
- LIKELY_THRESHOLDS: the split-conformal threshold at each coverage level over the speech clips, 1.0
  (no set) where no finite threshold reaches it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from src import conformal
from src.calibration import Calibration
from src.confidence import ConfidenceRule

TEMPERATURES = tuple(round(0.6 + 0.1 * step, 2) for step in range(15))  # 0.6 ... 2.0
PROBABILITIES = (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)
UNCERTAIN = (0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9)
LEVELS = (0.8, 0.85, 0.9, 0.95)
SPEECH = ("speech", "speech_unverified")


def _truth(row: dict) -> set[str]:
    return set(row["lang"].split("+"))


def _nll(rows: Sequence[dict], temperature: float) -> float:
    rule = ConfidenceRule(temperature=temperature)
    total = 0.0
    for row in rows:
        probabilities = dict(rule.calibrate(row["_raw"]))
        total -= math.log(max(sum(probabilities.get(code, 0.0) for code in _truth(row)), 1e-9))
    return total / len(rows)


def _confident(probabilities, prob: float, margin: float) -> bool:
    second = probabilities[1][1] if len(probabilities) > 1 else 0.0
    return probabilities[0][1] >= prob and probabilities[0][1] - second >= margin


def fit(rows: Sequence[dict], model: str, margin: float = 0.5, precision: float = 0.98,
        describe: Callable[[dict], str] | None = None) -> Calibration:
    speech = [row for row in rows if row["kind"] in SPEECH and row["_raw"]]
    if not speech:
        raise ValueError("no speech clip with probabilities to calibrate on")
    temperature = min(TEMPERATURES, key=lambda t: (_nll(speech, t), abs(t - 1.0)))
    rule = ConfidenceRule(temperature=temperature)
    calibrated = [(row, rule.calibrate(row["_raw"])) for row in speech]

    def precise(prob: float) -> bool:
        for name in {row["set"] for row in speech}:
            sure = [(row, p) for row, p in calibrated if row["set"] == name and _confident(p, prob, margin)]
            if sum(p[0][0] in _truth(row) for row, p in sure) < precision * len(sure):
                return False
        return True

    final = next((prob for prob in PROBABILITIES if precise(prob)), math.inf)
    noise = [rule.calibrate(row["_raw"]) for row in rows if row["kind"] == "non_speech" and row["_raw"]]
    below = next((u for u in UNCERTAIN if all(p[0][1] < u for p in noise)), UNCERTAIN[-1])
    examples = [(p, _truth(row), _confident(p, final, margin)) for row, p in calibrated]
    table = {level: min(value, 1.0) for level, value in conformal.calibrate(examples, LEVELS).items()}
    return Calibration(model, temperature, final, margin, below, conformal.table_text(table), "")
