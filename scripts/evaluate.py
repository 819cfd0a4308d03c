#!/usr/bin/env python3
"""Accuracy and honesty of LangShazam's language identification on the evaluation sets.

    python scripts/evaluate.py [--manifest PATH ...] [--png PATH] [--json PATH] [--seed N] [--write-calibration PATH]

From the repository root (it finds backend/ itself). Settings come from the environment / `.env` as for
the server (MODEL_CACHE_DIR, CALIBRATION_TEMPERATURE, FINAL_PROBABILITY, UNCERTAIN_BELOW, ...). Default
manifests: ../shared/eval and ../shared/eval-more beside the project ($LANGSHAZAM_EVAL_DIR and
$LANGSHAZAM_EVAL_MORE_DIR when set). A manifest is a CSV with columns file, lang, seconds (and optionally
kind: speech, speech_unverified, code_switch, non_speech); clips are read from `clips/` beside it.

What it measures, through the product API (`processor.identify`: VAD, engine, the honesty rule), reported
per set and per kind, never only pooled:

- top-1 / top-3; confident share and precision; uncertain share (no language named); non-speech named;
  expected calibration error and a reliability table;
- the choice of the rule: temperature fitted per set (negative log-likelihood), and the confident and
  uncertain thresholds tuned on one set and checked on the other, both ways;
- accuracy by seconds of speech (the first 1, 2, 4 s), and an offline replay of the stream rule;
- accuracy with 5 candidate languages (the right one + 4 others drawn with a fixed seed), per language
  figures, confusions and a confusion-matrix PNG.

`--write-calibration PATH` writes the model's calibration file (benchkit/calibrate.py: temperature,
confident and uncertain thresholds, the likely set's conformal thresholds, chosen on these sets) for
backend/src/calibration.py: put it in the model's directory as langshazam-calibration.json, or as
`<model key>.json` in CALIBRATION_DIR or backend/src/calibrations/. Evaluate with all three dev sets
(--manifest each) to calibrate as Whisper base was.

The first line names the machine and how CTranslate2 runs on it (oneDNN or MKL: figures differ by a few
points between them; `CT2_USE_MKL=0` / `=1` select each). `--json` dumps the numbers and every clip's result.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (  # noqa: E402
    REPO_ROOT, SAMPLE_RATE, SPEECH_KINDS, Clip, ct2_backend, default_manifests, describe_backend, pct, table, write_json,
)
from benchkit import read_manifest as _read_manifest  # noqa: E402

import numpy as np  # noqa: E402

SPEECH_CUTS = (1.0, 2.0, 4.0)  # seconds of speech for the "by speech length" table
PROBABILITY_GRID = (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
UNCERTAIN_GRID = (0.3, 0.4, 0.45, 0.5, 0.55, 0.6)
PRECISION_TARGET = 0.98  # confident answers right, per set, when tuning (a point above the 97 % goal)
N_CANDIDATES = 5
BINS = 10


def right(row: dict, code: str | None) -> bool:
    return code is not None and code in row["lang"].split("+")


def top(probabilities, k: int = 1) -> list[str]:
    return [code for code, _ in probabilities[:k]]


def is_confident(probabilities, min_prob: float, min_margin: float) -> bool:
    if not probabilities or probabilities[0][1] is None:
        return False
    first = probabilities[0][1]
    second = probabilities[1][1] if len(probabilities) > 1 and probabilities[1][1] is not None else 0.0
    return first >= min_prob and first - second >= min_margin


def tempered(probabilities, temperature: float):
    from src.confidence import ConfidenceRule

    return ConfidenceRule(temperature=temperature).calibrate(probabilities)


def candidates_for(clip: Clip, languages: list[str], seed: int) -> list[str]:
    """The right language plus N_CANDIDATES-1 others, drawn deterministically (per clip, from the seed)."""
    others = sorted(set(languages) - {clip.lang})
    rng = random.Random(f"{seed}:{clip.file}")
    picked = rng.sample(others, min(N_CANDIDATES - 1, len(others)))
    return sorted([clip.lang, *picked])


def replay_stream(prefix_results, min_prob: float, min_margin: float, stable: int) -> tuple[str | None, int | None]:
    """The stream rule on detections at 1, 2, 3, ... s of speech: (language, seconds) of the first
    confident final, or (None, None) if the clip ends first."""
    streak_lang, streak = None, 0
    for index, probabilities in enumerate(prefix_results):
        if is_confident(probabilities, min_prob, min_margin):
            lang = probabilities[0][0]
            streak = streak + 1 if lang == streak_lang else 1
            streak_lang = lang
            if streak >= stable:
                return lang, index + 1
        else:
            streak_lang, streak = None, 0
    return None, None


def reliability(rows: list[dict]) -> tuple[float, list[list[object]]]:
    """Expected calibration error of the top-1 probability, and the table behind it (10 equal bins)."""
    conf = np.array([r["_full"][0][1] for r in rows if r["_full"]])
    acc = np.array([right(r, r["_full"][0][0]) for r in rows if r["_full"]])
    if conf.size == 0:
        return float("nan"), []
    ece, lines = 0.0, []
    for b in range(BINS):
        low, high = b / BINS, (b + 1) / BINS
        mask = (conf >= low) & ((conf < high) if b < BINS - 1 else (conf <= high))
        if not mask.any():
            continue
        gap = abs(conf[mask].mean() - acc[mask].mean())
        ece += mask.sum() / conf.size * gap
        lines.append([f"{low:.1f}–{high:.1f}", int(mask.sum()), f"{conf[mask].mean():.2f}", f"{acc[mask].mean():.2f}"])
    return float(ece), lines


def nll(rows: list[dict], temperature: float) -> float:
    total = 0.0
    for r in rows:
        probabilities = dict(tempered(r["_raw"], temperature))
        total -= math.log(max(sum(probabilities.get(code, 0.0) for code in r["lang"].split("+")), 1e-9))
    return total / len(rows)


def confident_at(rows: list[dict], prob: float, margin: float) -> tuple[int, int]:
    """(confident, right among them) with the rule top >= prob, lead >= margin on the calibrated answers."""
    sure = [r for r in rows if r["_full"] and is_confident(r["_full"], prob, margin)]
    return len(sure), sum(right(r, r["_full"][0][0]) for r in sure)


def read_manifest(path: Path) -> list[Clip]:
    return _read_manifest(path, "evaluate.py")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, action="append",
                        help="manifest.csv (clips in clips/ beside it); repeat for several sets (default: both sets)")
    parser.add_argument("--png", type=Path, default=REPO_ROOT / "artifacts" / "confusion.png", help="confusion matrix PNG")
    parser.add_argument("--json", type=Path, default=None, help="dump the numbers to this JSON file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the candidate-language draw")
    parser.add_argument("--from-json", type=Path, action="append", default=None,
                        help="no model: the likely-set and fold tables from this --json dump (repeat: one per backend)")
    parser.add_argument("--once", action="store_true",
                        help="one detection per clip: skip the by-seconds table, the stream replay and the candidate "
                             "runs (the likely-set and fold tables need only the one detection)")
    parser.add_argument("--write-calibration", type=Path, default=None,
                        help="write the model's calibration file here (see backend/src/calibration.py)")
    args = parser.parse_args()
    if args.from_json:
        return report_dumps(args.from_json)
    manifests = args.manifest or default_manifests()

    from src.audio import decode
    from src.audio_processor import AudioProcessor
    from src.config.settings import load_settings

    settings = load_settings()
    processor = AudioProcessor.from_settings(settings)
    wall = time.perf_counter()
    processor.load()
    load_seconds = time.perf_counter() - wall
    backend = ct2_backend(getattr(processor.engine, "loaded_path", "") or "") if settings.ENGINE == "local" else {}
    sets = {path.parent.name: read_manifest(path) for path in manifests}
    print(f"Engine {processor.engine.name}, loaded in {load_seconds:.1f}s; "
          + ", ".join(f"{name}: {len(clips)} clips" for name, clips in sets.items()), file=sys.stderr)

    rows: list[dict] = []
    identify_times = []
    total = sum(len(clips) for clips in sets.values())
    for set_name, clips in sets.items():
        set_langs = sorted({c.lang for c in clips if c.kind in SPEECH_KINDS})
        for clip in clips:
            samples = decode(clip.path.read_bytes())
            started = time.perf_counter()
            result = processor.identify(samples)
            identify_times.append(time.perf_counter() - started)
            speech = processor.vad.find_speech(samples)
            speech_audio = speech.audio(samples)
            raw = result.raw_probabilities or []  # the engine's own, before calibration (none without speech)
            prefixes = []  # detections on the first 1, 2, 3, ... whole seconds of speech (engine, then calibrated)
            for n in range(1, 0 if args.once else int(min(speech.seconds, settings.STREAM_MAX_SECONDS)) + 1):
                prefixes.append(tempered(processor.engine.detect(speech_audio[: n * SAMPLE_RATE]).probabilities,
                                         settings.CALIBRATION_TEMPERATURE))
            cands = with_cands = None
            if not args.once and clip.kind in SPEECH_KINDS and clip.lang in set_langs and len(set_langs) > N_CANDIDATES:
                cands = candidates_for(clip, set_langs, args.seed)
                found = processor.identify(samples, languages=cands).probabilities
                with_cands = found[0][0] if found else None
            rows.append({
                "set": set_name, "kind": clip.kind, "file": clip.file, "lang": clip.lang, "seconds": clip.seconds,
                "speech_seconds": round(speech.seconds, 3), "language": result.language,
                "confident": bool(result.confident), "reason": result.reason,
                "probabilities": [(c, round(p, 4)) for c, p in result.probabilities[:5]],
                "candidates": cands, "candidates_top": with_cands,
                "_full": result.probabilities, "_raw": raw, "_prefixes": prefixes,
            })
            if sys.stderr.isatty():
                print(f"\r{len(rows)}/{total} clips", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)

    out = [f"## LangShazam accuracy — {processor.engine.name}",
           "",
           f"Machine: {os.cpu_count()} cores; {describe_backend(backend) if backend else 'engine ' + settings.ENGINE}. "
           f"Rule: temperature {settings.CALIBRATION_TEMPERATURE:g}; confident = top ≥ {settings.FINAL_PROBABILITY:g} "
           f"and lead ≥ {settings.FINAL_MARGIN:g}; uncertain (no language named) = top < {settings.UNCERTAIN_BELOW:g}; "
           f"window {settings.DETECTION_WINDOW_SECONDS:g}–{settings.DETECTION_MAX_SECONDS:g} s.",
           ""]
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["set"], r["kind"])].append(r)
        if r["kind"] in SPEECH_KINDS:
            groups[(r["set"], "speech (all)")].append(r)
    summary_rows, summary = [], {}
    for (set_name, kind), items in sorted(groups.items()):
        if kind == "speech (all)" and sum(1 for k in groups if k[0] == set_name and k[1] in SPEECH_KINDS) < 2:
            continue
        n = len(items)
        t1 = sum(right(r, r["language"] or (r["_full"][0][0] if r["_full"] else None)) for r in items)
        t3 = sum(any(right(r, c) for c in top(r["_full"], 3)) for r in items)
        sure = [r for r in items if r["confident"]]
        sure_right = sum(right(r, r["language"]) for r in sure)
        unc = sum(r["reason"] == "uncertain" for r in items)
        silent = sum(r["reason"] in ("no_speech", "too_short") for r in items)
        named_wrong = sum(r["language"] is not None and not right(r, r["language"]) for r in items)
        ece, _ = reliability(items)
        named = sum(r["language"] is not None for r in items)
        if kind == "non_speech":
            cells = [set_name, kind, n, "—", "—", "—", "—", f"{unc}", f"{silent}", f"named: {named}", "—"]
        else:
            cells = [set_name, kind, n, pct(t1, n), pct(t3, n), f"{len(sure)} ({pct(len(sure), n)})",
                     f"{sure_right}/{len(sure)} = {pct(sure_right, len(sure))}", f"{unc} ({pct(unc, n)})",
                     f"{silent}", f"{named_wrong}", f"{ece:.3f}"]
        summary_rows.append(cells)
        summary[f"{set_name}/{kind}"] = {"clips": n, "top1": t1, "top3": t3, "confident": len(sure),
                                         "confident_right": sure_right, "uncertain": unc, "no_speech_or_short": silent,
                                         "named": named, "named_wrong": named_wrong, "ece": round(ece, 4)}
    out += ["### Per set and kind", "",
            "Top-1 counts the engine's first candidate (named or not); confident/uncertain are the answers' own "
            "flags; \"named wrong\": a language named (confident or not) that is not the clip's. Code-switch clips "
            "count either language as right.", "",
            table(["set", "kind", "clips", "top-1", "top-3", "confident", "confident right", "uncertain",
                   "no speech / too short", "named wrong", "ECE"], summary_rows)]

    # --- reliability -------------------------------------------------------------------------------
    for set_name in sets:
        items = [r for r in rows if r["set"] == set_name and r["kind"] in SPEECH_KINDS]
        ece, lines = reliability(items)
        out += ["", f"### Reliability, {set_name} (speech, top-1 probability after calibration): ECE {ece:.3f}", "",
                table(["probability", "answers", "mean probability", "share right"], lines)]

    # --- choosing the rule: temperature, then thresholds tuned on one set and checked on the other -----
    speech_by_set = {s: [r for r in rows if r["set"] == s and r["kind"] in SPEECH_KINDS and r["_raw"]] for s in sets}
    grid = np.round(np.arange(0.6, 2.01, 0.1), 2)
    fit_rows, fits = [], {}
    for set_name, items in speech_by_set.items():
        losses = [nll(items, t) for t in grid]
        best = float(grid[int(np.argmin(losses))])
        fits[set_name] = best
        others = [s for s in speech_by_set if s != set_name]
        check = "; ".join(f"{o}: NLL {nll(speech_by_set[o], best):.3f} at T={best:g} vs {nll(speech_by_set[o], 1.0):.3f} at T=1"
                          for o in others)
        fit_rows.append([set_name, f"{best:g}", f"{min(losses):.3f}", f"{nll(items, 1.0):.3f}", check or "—"])
    out += ["", "### Temperature (negative log-likelihood of the right language, speech clips)", "",
            table(["fitted on", "best T", "NLL at best T", "NLL at T=1", "checked on the other set"], fit_rows)]

    margin = settings.FINAL_MARGIN
    thr_rows = []
    for prob in sorted(set(PROBABILITY_GRID) | {settings.FINAL_PROBABILITY}):
        cells = [f"{prob:g}" + (" (current)" if prob == settings.FINAL_PROBABILITY else "")]
        for set_name, items in speech_by_set.items():
            k, good = confident_at(items, prob, margin)
            cells.append(f"{k}/{len(items)} · {pct(good, k)}")
        thr_rows.append(cells)
    tuned = []
    for set_name, items in speech_by_set.items():
        ok = [p for p in PROBABILITY_GRID
              if confident_at(items, p, margin)[0] and confident_at(items, p, margin)[1] >= PRECISION_TARGET * confident_at(items, p, margin)[0]]
        if not ok:
            continue
        chosen = min(ok)
        checks = []
        for other, other_items in speech_by_set.items():
            if other != set_name:
                k, good = confident_at(other_items, chosen, margin)
                checks.append(f"{other}: {k}/{len(other_items)} confident, {pct(good, k)} right")
        tuned.append([set_name, f"{chosen:g}", "; ".join(checks) or "—"])
    if tuned:
        strict = max(float(row[1]) for row in tuned)
        cells = [f"{name}: {confident_at(items, strict, margin)[0]}/{len(items)} confident, "
                 f"{pct(confident_at(items, strict, margin)[1], confident_at(items, strict, margin)[0])} right"
                 for name, items in speech_by_set.items()]
        tuned.append(["the stricter of the two", f"{strict:g}", "; ".join(cells)])
    out += ["", f"### Confident rule: top ≥ P and lead ≥ {margin:g} (confident/speech clips · share right)", "",
            table(["P", *speech_by_set], thr_rows), "",
            f"Tuned on one set (the lowest P with ≥ {PRECISION_TARGET:.0%} right there), checked on the other:", "",
            table(["tuned on", "P", "check"], tuned) if tuned else "no P reaches the target"]

    unc_rows = []
    for below in sorted(set(UNCERTAIN_GRID) | {settings.UNCERTAIN_BELOW}):
        cells = [f"{below:g}" + (" (current)" if below == settings.UNCERTAIN_BELOW else "")]
        for set_name in sets:
            items = [r for r in rows if r["set"] == set_name and r["_full"]]
            speech_items = [r for r in items if r["kind"] in SPEECH_KINDS]
            named = [r for r in speech_items if r["_full"][0][1] >= below]
            good = sum(right(r, r["_full"][0][0]) for r in named)
            noise = sum(r["kind"] == "non_speech" and r["_full"][0][1] >= below for r in items)
            cells.append(f"{len(speech_items) - len(named)}/{len(speech_items)} uncertain · named {pct(good, len(named))} right"
                         + (f" · non-speech named {noise}" if any(r["kind"] == "non_speech" for r in items) else ""))
        unc_rows.append(cells)
    out += ["", "### Uncertain threshold (no language named below it)", "", table(["UNCERTAIN_BELOW", *sets], unc_rows)]

    # --- by seconds of speech, and the stream replay ---------------------------------------------------
    speech_rows_all = [r for r in rows if r["kind"] in SPEECH_KINDS]
    cut_rows = []
    for set_name in sets:
        items = [r for r in speech_rows_all if r["set"] == set_name]
        n = len(items)
        cells = [set_name]
        for cut in SPEECH_CUTS:
            index = int(cut) - 1
            probs = [r["_prefixes"][index] if len(r["_prefixes"]) > index else r["_full"] for r in items]
            good = sum(bool(p) and right(r, p[0][0]) for p, r in zip(probs, items))
            sure = [(p, r) for p, r in zip(probs, items) if is_confident(p, settings.FINAL_PROBABILITY, margin)]
            sure_good = sum(right(r, p[0][0]) for p, r in sure)
            cells.append(f"{pct(good, n)} · {len(sure)} conf. {pct(sure_good, len(sure))}")
        replay = [replay_stream(r["_prefixes"], settings.FINAL_PROBABILITY, margin, settings.FINAL_STABLE_UPDATES)
                  for r in items]
        finals = [(r, lang, s) for r, (lang, s) in zip(items, replay) if lang is not None]
        good = sum(right(r, lang) for r, lang, _ in finals)
        when = f", median {np.median([s for _, _, s in finals]):.0f} s" if finals else ""
        cells.append(f"{len(finals)}/{n} · {pct(good, len(finals))}{when}")
        cut_rows.append(cells)
    out += ["", "### By seconds of speech (first N s of the VAD speech, engine then calibration) and stream replay", "",
            "Each cell: top-1 · confident answers and the share right among them. Stream replay: a detection per "
            f"whole second of speech, final once {settings.FINAL_STABLE_UPDATES} consecutive ones are confident for "
            "the same language (confident finals · right, median seconds of speech).", "",
            table(["set", *[f"first {c:g} s" for c in SPEECH_CUTS], "stream replay"], cut_rows)]

    # --- candidates, per language, confusions ----------------------------------------------------------
    cand_rows = []
    for set_name in sets:
        items = [r for r in speech_rows_all if r["set"] == set_name and r["candidates"]]
        good = sum(r["candidates_top"] == r["lang"] for r in items)
        cand_rows.append([set_name, f"{pct(good, len(items))} ({good}/{len(items)})"])
    out += ["", f"### Top-1 among {N_CANDIDATES} candidate languages (right + {N_CANDIDATES - 1} drawn from the set's "
            f"languages, seed {args.seed})", "", table(["set", "top-1"], cand_rows)]

    by_lang: dict[str, list[dict]] = defaultdict(list)
    for r in speech_rows_all:
        by_lang[r["lang"]].append(r)
    lang_rows, per_language = [], {}
    for lang in sorted(by_lang):
        items = by_lang[lang]
        t1 = sum(right(r, top(r["_full"], 1)[0] if r["_full"] else None) for r in items)
        sure = sum(r["confident"] for r in items)
        wrong = [top(r["_full"], 1)[0] if r["_full"] else (r["reason"] or "none")
                 for r in items if not right(r, top(r["_full"], 1)[0] if r["_full"] else None)]
        lang_rows.append([lang, len(items), f"{t1}/{len(items)}", f"{sure}", " ".join(wrong) or "—"])
        per_language[lang] = {"clips": len(items), "top1": t1, "confident": sure, "wrong_answers": wrong}
    out += ["", "### Per language (speech clips of all sets)", "",
            table(["lang", "clips", "top-1", "confident", "answered instead"], lang_rows)]
    confusions = Counter((r["lang"], top(r["_full"], 1)[0]) for r in speech_rows_all
                         if r["_full"] and not right(r, top(r["_full"], 1)[0]))
    out += ["", "### Most frequent confusions (true → answered)", "",
            table(["true", "answered", "clips"], [[t, p, k] for (t, p), k in confusions.most_common(10)])
            if confusions else "none"]
    sure_wrong = [r for r in rows if r["confident"] and not right(r, r["language"])]
    out += ["", "Confident and wrong: " + (", ".join(
        f"{r['set']}/{r['file']} ({r['lang']} → {r['language']} {r['_full'][0][1]:.2f})" for r in sure_wrong) or "none")]

    fold_lines, fold_figures = fold_report(rows, settings)
    out += ["", *fold_lines]

    langs = sorted({r["lang"] for r in speech_rows_all})
    note = save_confusion_png(args.png, langs, [(r["lang"], top(r["_full"], 1)[0] if r["_full"] else None)
                                                for r in speech_rows_all], f"LangShazam {processor.engine.name}")
    out += ["", f"Confusion matrix: {note or args.png}",
            f"identify() per clip, median {1000 * float(np.median(identify_times)):.0f} ms; run time "
            f"{time.perf_counter() - wall:.0f} s (model load {load_seconds:.1f} s)."]
    print("\n".join(out))

    if args.json:
        dump = {
            "engine": processor.engine.name, "backend": backend, "manifests": [str(m) for m in manifests],
            "seed": args.seed, "summary": summary, "folds": fold_figures, "temperature_fits": fits, "per_language": per_language,
            "confusions": [{"true": t, "answered": p, "clips": k} for (t, p), k in confusions.most_common()],
            "identify_ms_median": 1000 * float(np.median(identify_times)),
            "settings": {k: getattr(settings, k) for k in (
                "CALIBRATION_TEMPERATURE", "FINAL_PROBABILITY", "FINAL_MARGIN", "FINAL_STABLE_UPDATES",
                "UNCERTAIN_BELOW", "LIKELY_COVERAGE", "LIKELY_THRESHOLDS", "MIN_SPEECH_SECONDS", "VAD_THRESHOLD", "DETECTION_WINDOW_SECONDS",
                "DETECTION_MAX_SECONDS")},
            "clips_detail": [{k: v for k, v in r.items() if not k.startswith("_")}
                             | {"raw_probabilities": [(c, round(p, 6)) for c, p in r["_raw"] if p is not None and p >= 1e-6]}
                             for r in rows],
        }
        write_json(args.json, dump)
    if args.write_calibration:
        write_calibration(args.write_calibration, rows, processor, settings, backend, sets)
    processor.close()
    return 0


def write_calibration(path: Path, rows: list[dict], processor, settings, backend: dict, sets: dict) -> None:
    from benchkit.calibrate import fit
    from src.calibration import write

    key = getattr(processor.engine, "model_key", None)
    if key is None:
        print("error: only the local engine's models carry a calibration", file=sys.stderr)
        return
    found = fit(rows, key, margin=settings.FINAL_MARGIN, precision=PRECISION_TARGET)
    about = (f"{', '.join(f'{name} ({len(clips)} clips)' for name, clips in sets.items())}; "
             f"{describe_backend(backend) if backend else settings.ENGINE}; scripts/evaluate.py --write-calibration")
    write(path, found, measured_on=about)
    print(f"Calibration of {key} written to {path}: temperature {found.temperature:g}, confident at "
          f"{found.final_probability:g} (lead {found.final_margin:g}), uncertain below {found.uncertain_below:g}, "
          f"likely {found.likely_thresholds}", file=sys.stderr)


def fold_report(rows: list[dict], settings) -> tuple[list[str], dict]:
    """The likely set, confident rule and UNCERTAIN_BELOW per fold, set, kind and duration (benchkit/folds.py)."""
    from benchkit.folds import report
    from src.confidence import ConfidenceRule

    return report(rows, ConfidenceRule.from_settings(settings), settings.LIKELY_COVERAGE, 3)


def report_dumps(paths: list[Path]) -> int:
    """The fold tables from --json dumps, one per backend, without running the model."""
    from benchkit.folds import rows_from_json
    from src.config.settings import load_settings

    settings = load_settings()
    out, figures = [], {}
    for path in paths:
        dump, rows = rows_from_json(path)
        backend = dump.get("backend") or {}
        name = backend.get("backend", path.stem)
        lines, figures[name] = fold_report(rows, settings)
        out += [f"## {dump.get('engine', '')} · {describe_backend(backend) if backend else path.name} · "
                + ", ".join(f"{s}: {sum(r['set'] == s for r in rows)} clips" for s in dict.fromkeys(r["set"] for r in rows)), "",
                *lines, ""]
    print("\n".join(out))
    return 0


def save_confusion_png(path: Path, langs: list[str], pairs: list[tuple[str, str | None]], title: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no PNG written"
    columns = list(langs) + sorted({p for _, p in pairs if p is not None and p not in langs})
    if any(p is None for _, p in pairs):
        columns.append("none")
    index_row = {lang: i for i, lang in enumerate(langs)}
    index_col = {lang: i for i, lang in enumerate(columns)}
    matrix = np.zeros((len(langs), len(columns)), dtype=int)
    for truth, predicted in pairs:
        matrix[index_row[truth], index_col[predicted if predicted is not None else "none"]] += 1
    fig, ax = plt.subplots(figsize=(max(6.0, 0.38 * len(columns) + 2), max(5.0, 0.38 * len(langs) + 2)))
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(1, matrix.max()))
    ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=8)
    ax.set_yticks(range(len(langs)), langs, fontsize=8)
    ax.set_xlabel("predicted (top-1)")
    ax.set_ylabel("true language")
    ax.set_title(title, fontsize=10)
    for r in range(matrix.shape[0]):
        for c in range(matrix.shape[1]):
            if matrix[r, c]:
                ax.text(c, r, str(matrix[r, c]), ha="center", va="center", fontsize=7,
                        color="white" if matrix[r, c] > matrix.max() / 2 else "black")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


if __name__ == "__main__":
    sys.exit(main())
