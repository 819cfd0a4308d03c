"""The honesty rule and the likely set, chosen on two evaluation sets and checked on the third, each way
round, from one detection per clip (scripts/evaluate.py's rows, or the clips of its --json dump):

- the likely set's split-conformal threshold (src/conformal.py), calibrated on the speech of two sets and
  checked on the third: coverage where not empty, share with a set, mean size, non-speech with a set;
- the confident rule (FINAL_PROBABILITY) and UNCERTAIN_BELOW, chosen the same way;
- per set, per kind and per duration of speech (1-3 s, 3-6 s, 6+ s) with the rule as configured.

A row needs: set, kind, lang ("a+b" for two), speech_seconds, and the engine's raw probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchkit.clips import SPEECH_KINDS
from benchkit.figures import pct, table

CALIBRATION_KINDS = (*SPEECH_KINDS, "code_switch")  # every clip with a right language
COVERAGE_LEVELS = (0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99)
PROBABILITY_GRID = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
UNCERTAIN_GRID = (0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65)
PRECISION_TARGET = 0.98  # confident answers right on each set the rule is chosen on (the goal is 97 % held out)
DURATIONS = ((1.0, 3.0, "1–3 s"), (3.0, 6.0, "3–6 s"), (6.0, float("inf"), "6+ s"))


def rows_from_json(path: Path) -> tuple[dict, list[dict]]:
    """(the dump's header, its clips) from scripts/evaluate.py --json."""
    dump = json.loads(path.read_text())
    rows = [dict(r, _raw=[tuple(pair) for pair in r.get("raw_probabilities") or []]) for r in dump["clips_detail"]]
    return dump, rows


def truth(row: dict) -> list[str]:
    return row["lang"].split("+")


class Judged:
    """A row judged by one rule: calibrated probabilities, the verdict and the likely set."""

    def __init__(self, row: dict, rule) -> None:
        self.row = row
        self.probabilities = rule.calibrate(row["_raw"]) if row["_raw"] else []
        verdict = rule.verdict(self.probabilities) if self.probabilities else None
        self.confident = bool(verdict and verdict.confident)
        self.named = self.probabilities[0][0] if verdict and verdict.reason is None else None
        self.likely = list(verdict.likely) if verdict else []

    @property
    def right(self) -> bool:
        return self.named is not None and self.named in truth(self.row)


def _examples(judged: list[Judged]) -> list[tuple]:
    return [(j.probabilities, truth(j.row), j.confident) for j in judged
            if j.row["kind"] in CALIBRATION_KINDS and j.probabilities]


def likely_cells(judged: list[Judged]) -> list[str]:
    """coverage where not empty · share with a set · mean size (or, for non-speech: how many got a set)."""
    if judged and all(j.row["kind"] == "non_speech" for j in judged):
        return ["—", f"{sum(bool(j.likely) for j in judged)} with a set", "—"]
    with_set = [j for j in judged if j.likely]
    held = sum(any(code in truth(j.row) for code in j.likely) for j in with_set)
    size = sum(len(j.likely) for j in with_set)
    return [f"{held}/{len(with_set)} = {pct(held, len(with_set))}", f"{len(with_set)}/{len(judged)} = {pct(len(with_set), len(judged))}",
            f"{size / len(with_set):.2f}" if with_set else "—"]


def confident_cells(judged: list[Judged]) -> list[str]:
    speech = [j for j in judged if j.row["kind"] != "non_speech"]
    if not speech:
        return ["—", f"named {sum(j.named is not None for j in judged)}"]
    sure = [j for j in speech if j.confident]
    good = sum(j.right for j in sure)
    return [f"{good}/{len(sure)} = {pct(good, len(sure))}", f"{len(sure)}/{len(speech)} = {pct(len(sure), len(speech))}"]


def _groups(judged: list[Judged], key) -> dict[str, list[Judged]]:
    groups: dict[str, list[Judged]] = {}
    for j in judged:
        for name in key(j):
            groups.setdefault(name, []).append(j)
    return groups


def _kinds(j: Judged) -> list[str]:
    return [j.row["kind"]] + (["speech (all)"] if j.row["kind"] in CALIBRATION_KINDS else [])


def _confident_share(judged: list[Judged]) -> tuple[int, int, int]:
    speech = [j for j in judged if j.row["kind"] in CALIBRATION_KINDS and j.probabilities]
    sure = [j for j in speech if j.confident]
    return len(speech), len(sure), sum(j.right for j in sure)


def _ceiling(speech: list[dict], rule, coverage: float) -> dict | None:
    """The threshold (on a 0.005 grid) that gives these clips the most sets at coverage >= `coverage`."""
    from dataclasses import replace

    best = None
    for step in range(0, 201):
        trial = replace(rule, likely_threshold=step / 200)
        with_set = [j for j in (Judged(r, trial) for r in speech) if j.likely]
        held = sum(any(c in truth(j.row) for c in j.likely) for j in with_set)
        if with_set and held >= coverage * len(with_set) and (best is None or len(with_set) > best["with_set"]):
            best = {"threshold": step / 200, "with_set": len(with_set), "held": held}
    return best


def report(rows: list[dict], rule, coverage: float, most: int) -> tuple[list[str], dict]:
    """Markdown lines and the figures, for one backend's rows."""
    from dataclasses import replace

    from src import conformal

    sets = list(dict.fromkeys(r["set"] for r in rows))
    out, figures = [], {"folds": {}, "calibration": {}}

    # --- the likely set: calibrated on two sets, checked on the third ---------------------------------
    fold_rows = []
    for held in sets:
        chosen_on = [s for s in sets if s != held]
        calibration = [Judged(r, rule) for r in rows if r["set"] in chosen_on]
        limit = conformal.threshold([conformal.score(*e) for e in _examples(calibration)], coverage)
        fold_rule = replace(rule, likely_threshold=min(limit, 1.0))
        checked = [Judged(r, fold_rule) for r in rows if r["set"] == held]
        for kind, items in sorted(_groups(checked, _kinds).items()):
            fold_rows.append([f"{'+'.join(chosen_on)} → {held}", f"{limit:.4f}", kind, len(items),
                              *likely_cells(items), *confident_cells(items)])
        speech = [j for j in checked if j.row["kind"] in CALIBRATION_KINDS]
        with_set = [j for j in speech if j.likely]
        figures["folds"][held] = {
            "threshold": limit, "speech": len(speech), "with_set": len(with_set),
            "held": sum(any(c in truth(j.row) for c in j.likely) for j in with_set),
            "size": sum(len(j.likely) for j in with_set),
            "non_speech_with_set": sum(bool(j.likely) for j in checked if j.row["kind"] == "non_speech"),
        }
    out += [f"### Likely set, chosen on two sets and checked on the third (coverage {coverage:g}, at most {most})", "",
            "Threshold: the split-conformal threshold on cumulative probability from the speech of the two sets. "
            "Coverage: the spoken language in the set, where the set is not empty.", "",
            table(["fold", "threshold", "kind", "clips", "coverage", "with a set", "mean size",
                   "confident right", "confident share"], fold_rows)]

    # --- the ceiling: the best any threshold does on a set, chosen on that set itself ----------------------
    ceiling_rows = []
    for held in [*sets, "all"]:
        speech = [r for r in rows if (held == "all" or r["set"] == held) and r["kind"] in CALIBRATION_KINDS]
        best = _ceiling(speech, rule, coverage)
        figures.setdefault("ceiling", {})[held] = best
        ceiling_rows.append([held, len(speech), f"{best['threshold']:.3f}" if best else "none",
                             pct(best["with_set"], len(speech)) if best else "—",
                             pct(best["held"], best["with_set"]) if best else "—"])
    out += ["", f"The most a threshold can give, chosen on the very clips it is scored on (no guarantee; an upper "
            f"bound for any threshold chosen elsewhere): the largest share with a set whose coverage is still "
            f"≥ {coverage:.0%}.", "", table(["set", "speech clips", "threshold", "with a set", "coverage"], ceiling_rows)]

    # --- the defaults: calibrated on all three -----------------------------------------------------------
    everything = [Judged(r, rule) for r in rows]
    scores = [conformal.score(*e) for e in _examples(everything)]
    levels = {level: conformal.threshold(scores, level) for level in COVERAGE_LEVELS}
    figures["calibration"] = {"clips": len(scores), "levels": levels, "setting": conformal.table_text(levels)}
    out += ["", f"Calibrated on the {len(scores)} speech clips of all sets (LIKELY_THRESHOLDS): "
            f"`{conformal.table_text(levels)}`"]

    # --- per set and kind, and per duration, with the rule as configured ----------------------------------
    per_set = [[s, kind, len(items), *likely_cells(items), *confident_cells(items)]
               for s in sets for kind, items in sorted(_groups([j for j in everything if j.row["set"] == s], _kinds).items())]
    out += ["", f"### Likely set and confident rule per set and kind (threshold {rule.likely_threshold:g}, as configured)", "",
            table(["set", "kind", "clips", "coverage", "with a set", "mean size", "confident right", "confident share"], per_set)]
    duration_rows = []
    for s in [*sets, "all"]:
        for low, high, label in DURATIONS:
            items = [j for j in everything if (s == "all" or j.row["set"] == s) and j.row["kind"] in CALIBRATION_KINDS
                     and low <= j.row["speech_seconds"] < high]
            if items:
                top1 = sum(bool(j.probabilities) and j.probabilities[0][0] in truth(j.row) for j in items)
                duration_rows.append([s, label, len(items), pct(top1, len(items)), *likely_cells(items), *confident_cells(items)])
    out += ["", "### By seconds of speech (speech clips; under 1 s: too short or few)", "",
            table(["set", "speech", "clips", "top-1", "coverage", "with a set", "mean size", "confident right",
                   "confident share"], duration_rows)]

    # --- the confident rule and UNCERTAIN_BELOW, chosen on two and checked on the third ---------------------
    rule_rows = []
    for held in sets:
        chosen_on = [s for s in sets if s != held]
        fits = []
        for p in PROBABILITY_GRID:
            trial = replace(rule, final_probability=p)
            ok = True
            for s in chosen_on:
                n, k, good = _confident_share([Judged(r, trial) for r in rows if r["set"] == s])
                ok = ok and k > 0 and good >= PRECISION_TARGET * k
            if ok:
                fits.append(p)
        below_fits = [u for u in UNCERTAIN_GRID if not any(
            Judged(r, replace(rule, uncertain_below=u)).named for r in rows if r["set"] in chosen_on and r["kind"] == "non_speech")]
        p = min(fits) if fits else None
        u = min(below_fits) if below_fits else None
        cells = [f"{'+'.join(chosen_on)} → {held}", f"{p:g}" if p is not None else "none", f"{u:g}" if u is not None else "none"]
        if p is not None:
            n, k, good = _confident_share([Judged(r, replace(rule, final_probability=p)) for r in rows if r["set"] == held])
            cells += [f"{good}/{k} = {pct(good, k)}", f"{k}/{n} = {pct(k, n)}"]
        else:
            cells += ["—", "—"]
        n, k, good = _confident_share([Judged(r, rule) for r in rows if r["set"] == held])
        cells += [f"{good}/{k} = {pct(good, k)} · {pct(k, n)}"]
        noise = [r for r in rows if r["set"] == held and r["kind"] == "non_speech"]
        if u is not None:
            cells.append(f"{sum(Judged(r, replace(rule, uncertain_below=u)).named is not None for r in noise)}/{len(noise)}")
        else:
            cells.append("—")
        cells.append(f"{sum(Judged(r, rule).named is not None for r in noise)}/{len(noise)}")
        rule_rows.append(cells)
        figures["folds"].setdefault(held, {}).update({"final_probability": p, "uncertain_below": u})
    out += ["", f"### Confident rule and UNCERTAIN_BELOW, chosen on two sets and checked on the third (lead ≥ {rule.final_margin:g})", "",
            f"P: the lowest FINAL_PROBABILITY with ≥ {PRECISION_TARGET:.0%} of confident answers right on each of the two; "
            "U: the lowest UNCERTAIN_BELOW naming no non-speech clip on either.", "",
            table(["fold", "P", "U", "held out: confident right at P", "confident share at P",
                   f"as configured (P {rule.final_probability:g}): right · share", "non-speech named at U",
                   f"as configured (U {rule.uncertain_below:g})"], rule_rows)]
    return out, figures
