"""Split-conformal calibration of the likely set (what `ConfidenceRule.likely` applies; see its rule in
src/confidence.py and docs/honesty.md, the likely set's method).

The sets are nested in one number, a threshold t on cumulative probability: S_t(x) lists the most likely
languages, most likely first, up to and including the first whose cumulative probability passes t (the
fewest top languages holding more than t), except that a confident answer's set is its language alone.
The right language y is in S_t(x) exactly when its *score* is at most t:

- not confident: score = the probability of the languages ranked above y (0 when y is first);
- confident: 0 when y is the answer's language, +inf otherwise (no threshold puts it back in).

Split conformal prediction (Vovk et al.; Angelopoulos & Bates, "A gentle introduction", 2021): with the
scores of n labelled calibration answers, the threshold t = the ceil((n + 1) * coverage)-th smallest score
gives P(y in S_t(x)) >= coverage for a new answer exchangeable with them (marginal coverage, over the
calibration draw and the new answer; +inf when that rank exceeds n: no finite threshold reaches it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

Probabilities = Sequence[tuple[str, float | None]]


def score(probabilities: Probabilities, truth: Iterable[str], confident: bool) -> float:
    """The nonconformity score of an answer (calibrated probabilities, most likely first) whose right
    language is any of `truth` (a code-switched clip has two): the smallest over them."""
    truth = set(truth)
    if not probabilities or any(p is None for _, p in probabilities):
        return math.inf
    if confident:
        return 0.0 if probabilities[0][0] in truth else math.inf
    above = 0.0
    for code, prob in probabilities:
        if code in truth:
            return above
        above += prob  # type: ignore[operator]
    return math.inf  # the right language is not among the answer's (candidates that leave it out)


def threshold(scores: Sequence[float], coverage: float) -> float:
    """The split-conformal threshold for `coverage` (0 < coverage < 1) on these calibration scores."""
    if not 0.0 < coverage < 1.0:
        raise ValueError("coverage must be between 0 and 1")
    n = len(scores)
    if n == 0:
        raise ValueError("no calibration scores")
    rank = math.ceil((n + 1) * coverage)
    if rank > n:
        return math.inf
    return sorted(scores)[rank - 1]


def likely_set(probabilities: Probabilities, limit: float, confident: bool, most: int) -> list[str]:
    """S_t: the fewest top languages whose cumulative probability passes `limit` (a confident answer's
    own language alone); [] when that takes more than `most` languages or there are no probabilities."""
    if not probabilities or any(p is None for _, p in probabilities):
        return []
    if confident:
        return [probabilities[0][0]]
    total = 0.0
    for index, (_, prob) in enumerate(probabilities):
        total += prob  # type: ignore[operator]
        if total > limit:
            return [code for code, _ in probabilities[: index + 1]] if index < most else []
    return []  # no number of languages passes the threshold (a threshold of 1 or more)


def calibrate(examples: Iterable[tuple[Probabilities, Iterable[str], bool]], levels: Iterable[float]) -> dict[float, float]:
    """{coverage: threshold} on calibration examples (probabilities, right languages, confident)."""
    scores = [score(p, truth, sure) for p, truth, sure in examples]
    return {level: threshold(scores, level) for level in levels}


def table_text(table: dict[float, float]) -> str:
    """The LIKELY_THRESHOLDS form of a calibration: "0.9:0.81,0.95:0.93" (coverage:threshold)."""
    return ",".join(f"{level:g}:{value:.4g}" for level, value in sorted(table.items()) if math.isfinite(value))


def parse_table(text: str) -> dict[float, float]:
    """The inverse of table_text; ValueError on a malformed or non-monotone table."""
    table: dict[float, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        level, _, value = item.partition(":")
        try:
            level_f, value_f = float(level), float(value)
        except ValueError:
            raise ValueError(f"{item.strip()!r} is not coverage:threshold (e.g. 0.95:0.9)") from None
        if not 0.0 < level_f < 1.0 or not 0.0 <= value_f <= 1.0:
            raise ValueError(f"{item.strip()!r}: coverage must be in (0, 1) and the threshold in [0, 1]")
        table[level_f] = value_f
    if not table:
        raise ValueError("no coverage:threshold pair")
    ordered = [table[level] for level in sorted(table)]
    if any(b < a for a, b in zip(ordered, ordered[1:])):
        raise ValueError("thresholds must not decrease as the coverage rises")
    return table


def threshold_for(table: dict[float, float], coverage: float) -> float:
    """The threshold for `coverage`: that of the smallest calibrated level at or above it (conservative:
    its guarantee is at least `coverage`); ValueError above the highest calibrated level."""
    levels = [level for level in sorted(table) if level >= coverage - 1e-12]
    if not levels:
        raise ValueError(f"no calibrated threshold for coverage {coverage:g} (highest: {max(table):g})")
    return table[levels[0]]


def coverage_of(examples: Iterable[tuple[Probabilities, Iterable[str], bool]], limit: float,
                most: int) -> tuple[int, int, int, int]:
    """(examples, with a non-empty set, the right language in it, total set size) at `limit`."""
    n = with_set = held = size = 0
    for probabilities, truth, confident in examples:
        n += 1
        chosen = likely_set(probabilities, limit, confident, most)
        if chosen:
            with_set += 1
            size += len(chosen)
            held += any(code in set(truth) for code in chosen)
    return n, with_set, held, size
