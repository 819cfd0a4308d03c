#!/usr/bin/env python3
"""Accuracy of LangShazam's language identification on an evaluation manifest (the dev set by default).

    python scripts/evaluate.py [--manifest PATH] [--png PATH] [--json PATH] [--seed N]

From the repository root (it finds backend/ itself). Settings come from the environment / `.env` as for
the server (MODEL_CACHE_DIR, VAD_THRESHOLD, FINAL_PROBABILITY, ...). The manifest is a CSV with columns
file, lang, seconds (others ignored); clips are read from `clips/` beside it. Default: ../shared/eval
beside the project ($LANGSHAZAM_EVAL_DIR when set).

What it measures, all through the product API (AudioProcessor / engine), never the engine's internals:

- top-1 / top-3 of `processor.identify(samples)` (VAD, then the engine on the speech), per language,
  the most frequent confusions, and a confusion-matrix PNG;
- accuracy by seconds of speech: the clip's speech (VAD segments, joined) cut to its first 1, 2, 4 s and
  given to `processor.engine.detect` directly (full = `identify` on the whole clip);
- confident answers (stream rule on one detection: top >= FINAL_PROBABILITY and lead >= FINAL_MARGIN):
  how many, how many right, for several threshold pairs and speech lengths; the share "uncertain"
  (top < UNCERTAIN_BELOW); and an offline replay of the stream rule (a detection per whole second of
  speech, final after FINAL_STABLE_UPDATES consecutive confident detections of the same language);
- accuracy with 5 candidate languages (the right one + 4 others drawn with a fixed seed from the
  manifest's languages): `processor.identify(samples, languages=[...])`.

Prints markdown tables; `--json` dumps the numbers (and every clip's result).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from manifest import Clip, default_manifest  # noqa: E402
from manifest import read_manifest as _read_manifest  # noqa: E402
from report import pct, table  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
BACKEND_DIR = REPO_ROOT / "backend"
sys.path.insert(0, str(BACKEND_DIR))

import numpy as np  # noqa: E402

SAMPLE_RATE = 16000
SPEECH_CUTS = (1.0, 2.0, 4.0)  # seconds of speech for the "by speech length" table
THRESHOLD_PAIRS = ((0.5, 0.3), (0.6, 0.3), (0.7, 0.4), (0.8, 0.5), (0.9, 0.7))
N_CANDIDATES = 5


def read_manifest(path: Path) -> list[Clip]:
    return _read_manifest(path, "evaluate.py")


def candidates_for(clip: Clip, languages: list[str], seed: int) -> list[str]:
    """The right language plus N_CANDIDATES-1 others, drawn deterministically (per clip, from the seed)."""
    others = sorted(set(languages) - {clip.lang})
    rng = random.Random(f"{seed}:{clip.file}")
    picked = rng.sample(others, min(N_CANDIDATES - 1, len(others)))
    return sorted([clip.lang, *picked])


def top(probabilities, k: int = 1) -> list[str]:
    return [code for code, _ in probabilities[:k]]


def is_confident(probabilities, min_prob: float, min_margin: float) -> bool:
    if not probabilities or probabilities[0][1] is None:
        return False
    first = probabilities[0][1]
    second = probabilities[1][1] if len(probabilities) > 1 and probabilities[1][1] is not None else 0.0
    return first >= min_prob and first - second >= min_margin



def replay_stream(prefix_results: list[list[tuple[str, float]]], min_prob: float, min_margin: float,
                  stable: int) -> tuple[str | None, int | None]:
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


def save_confusion_png(path: Path, langs: list[str], pairs: list[tuple[str, str | None]], title: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no PNG written"
    columns = list(langs)
    extra = sorted({p for _, p in pairs if p is not None and p not in langs})
    columns += extra
    if any(p is None for _, p in pairs):
        columns.append("none")
    index_row = {lang: i for i, lang in enumerate(langs)}
    index_col = {lang: i for i, lang in enumerate(columns)}
    matrix = np.zeros((len(langs), len(columns)), dtype=int)
    for truth, predicted in pairs:
        matrix[index_row[truth], index_col[predicted if predicted is not None else "none"]] += 1
    size = max(6.0, 0.38 * len(columns) + 2)
    fig, ax = plt.subplots(figsize=(size, max(5.0, 0.38 * len(langs) + 2)))
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=default_manifest(), help="manifest.csv (clips in clips/ beside it)")
    parser.add_argument("--png", type=Path, default=REPO_ROOT / "artifacts" / "confusion.png", help="confusion matrix PNG")
    parser.add_argument("--json", type=Path, default=None, help="dump the numbers to this JSON file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the candidate-language draw")
    args = parser.parse_args()

    from src.audio import decode
    from src.audio_processor import AudioProcessor
    from src.config.settings import load_settings

    clips = read_manifest(args.manifest)
    set_langs = sorted({c.lang for c in clips})
    settings = load_settings()
    processor = AudioProcessor.from_settings(settings)
    wall = time.perf_counter()
    processor.load()
    load_seconds = time.perf_counter() - wall
    print(f"Engine {processor.engine.name}, loaded in {load_seconds:.1f}s; {len(clips)} clips, "
          f"{len(set_langs)} languages, from {args.manifest}", file=sys.stderr)

    rows = []
    identify_times = []
    for number, clip in enumerate(clips, 1):
        samples = decode(clip.path.read_bytes())
        started = time.perf_counter()
        result = processor.identify(samples)
        identify_times.append(time.perf_counter() - started)
        speech = processor.vad.find_speech(samples)
        speech_audio = speech.audio(samples)
        # Detections on the first 1, 2, 3, ... whole seconds of speech (engine only, on the speech).
        prefixes = []
        for n in range(1, int(min(speech.seconds, settings.STREAM_MAX_SECONDS)) + 1):
            prefixes.append(processor.engine.detect(speech_audio[: n * SAMPLE_RATE]).probabilities)
        cands = candidates_for(clip, set_langs, args.seed)
        with_cands = processor.identify(samples, languages=cands)
        rows.append({
            "file": clip.file, "lang": clip.lang, "seconds": clip.seconds,
            "speech_seconds": round(speech.seconds, 3),
            "reason": result.reason,
            "probabilities": [(c, round(p, 4)) for c, p in result.probabilities[:5]],
            "prefixes": [[(c, round(p, 4)) for c, p in probs[:3]] for probs in prefixes],
            "candidates": cands,
            "candidates_top": with_cands.probabilities[0][0] if with_cands.probabilities else None,
            "_full": result.probabilities, "_prefixes": prefixes,
        })
        if sys.stderr.isatty():
            print(f"\r{number}/{len(clips)} clips", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    n = len(rows)

    # --- overall and per language ------------------------------------------------------------------
    top1 = sum(r["lang"] in top(r["_full"], 1) for r in rows)
    top3 = sum(r["lang"] in top(r["_full"], 3) for r in rows)
    cand_right = sum(r["candidates_top"] == r["lang"] for r in rows)
    no_answer = Counter(r["reason"] for r in rows if r["reason"])
    uncertain = sum(bool(r["_full"]) and r["_full"][0][1] < settings.UNCERTAIN_BELOW for r in rows)
    conf_now = [r for r in rows if is_confident(r["_full"], settings.FINAL_PROBABILITY, settings.FINAL_MARGIN)]
    conf_now_right = sum(r["_full"][0][0] == r["lang"] for r in conf_now)

    out = [f"## LangShazam accuracy — {processor.engine.name}, {n} clips, {len(set_langs)} languages "
           f"({args.manifest})", ""]
    out.append("Top-1/top-3: `processor.identify` on each whole clip (VAD, then the engine on the speech). "
               f"Candidates: `identify(samples, languages=[right + {N_CANDIDATES - 1} others])`, seed {args.seed}.")
    out.append("")
    out.append(table(["metric", "value"], [
        ["top-1", f"{pct(top1, n)} ({top1}/{n})"],
        ["top-3", f"{pct(top3, n)} ({top3}/{n})"],
        [f"top-1 among {N_CANDIDATES} candidates", f"{pct(cand_right, n)} ({cand_right}/{n})"],
        [f"confident (p >= {settings.FINAL_PROBABILITY}, lead >= {settings.FINAL_MARGIN})",
         f"{len(conf_now)}/{n} ({pct(len(conf_now), n)}), right {conf_now_right}/{len(conf_now)} "
         f"({pct(conf_now_right, len(conf_now))})"],
        [f"uncertain (top < {settings.UNCERTAIN_BELOW})", f"{uncertain}/{n} ({pct(uncertain, n)})"],
        ["no answer (no_speech / too_short)", ", ".join(f"{k}: {v}" for k, v in no_answer.items()) or "0"],
        ["identify() time per clip, median", f"{1000 * float(np.median(identify_times)):.0f} ms"],
    ]))

    by_lang: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_lang[r["lang"]].append(r)
    lang_rows = []
    per_language = {}
    for lang in set_langs:
        items = by_lang[lang]
        t1 = sum(lang in top(r["_full"], 1) for r in items)
        t3 = sum(lang in top(r["_full"], 3) for r in items)
        c5 = sum(r["candidates_top"] == lang for r in items)
        wrong = [top(r["_full"], 1)[0] if r["_full"] else (r["reason"] or "none")
                 for r in items if lang not in top(r["_full"], 1)]
        mean_p = float(np.mean([dict(r["_full"]).get(lang, 0.0) for r in items]))
        lang_rows.append([lang, len(items), f"{t1}/{len(items)}", f"{t3}/{len(items)}", f"{c5}/{len(items)}",
                          f"{mean_p:.2f}", " ".join(wrong) or "—"])
        per_language[lang] = {"clips": len(items), "top1": t1, "top3": t3, "candidates5": c5,
                              "mean_p_true": round(mean_p, 4), "wrong_answers": wrong}
    out += ["", "### Per language", "",
            table(["lang", "clips", "top-1", "top-3", f"{N_CANDIDATES} cand.", "mean p(true)", "answered instead"],
                  lang_rows)]

    confusions = Counter((r["lang"], top(r["_full"], 1)[0]) for r in rows if r["_full"] and r["lang"] not in top(r["_full"], 1))
    out += ["", "### Most frequent confusions (true → answered)", "",
            table(["true", "answered", "clips"], [[t, p, k] for (t, p), k in confusions.most_common(10)])
            if confusions else "none"]

    # --- by seconds of speech --------------------------------------------------------------------
    by_speech = {}
    speech_rows = []
    for cut in SPEECH_CUTS:
        index = int(cut) - 1
        # Clips with less speech than the cut: their whole speech (as identify would use it).
        probs = [r["_prefixes"][index] if len(r["_prefixes"]) > index else r["_full"] for r in rows]
        enough = [i for i, r in enumerate(rows) if r["speech_seconds"] >= cut]
        right = [bool(p) and p[0][0] == r["lang"] for p, r in zip(probs, rows)]
        right3 = [r["lang"] in top(p, 3) for p, r in zip(probs, rows)]
        conf = [i for i, p in enumerate(probs) if is_confident(p, settings.FINAL_PROBABILITY, settings.FINAL_MARGIN)]
        conf_right = sum(right[i] for i in conf)
        speech_rows.append([f"first {cut:g} s", f"{pct(sum(right), n)}", f"{pct(sum(right3), n)}",
                            f"{len(enough)} · {pct(sum(right[i] for i in enough), len(enough))}",
                            f"{len(conf)} · {pct(conf_right, len(conf))}"])
        by_speech[f"{cut:g}"] = {"top1": sum(right), "top3": sum(right3), "clips_with_enough_speech": len(enough),
                                 "top1_among_those": sum(right[i] for i in enough), "confident": len(conf),
                                 "confident_right": conf_right}
    speech_rows.append(["full (identify)", pct(top1, n), pct(top3, n), f"{n} · {pct(top1, n)}",
                        f"{len(conf_now)} · {pct(conf_now_right, len(conf_now))}"])
    speech_secs = [r["speech_seconds"] for r in rows]
    out += ["", "### Accuracy by seconds of speech", "",
            "The clip's speech (VAD segments joined) cut to its first N s, given to `processor.engine.detect` "
            "directly; a clip with less speech than N s uses all of it. \"≥ N s\": only clips with that much "
            f"speech (clips' speech: median {np.median(speech_secs):.1f} s, min {min(speech_secs):.1f} s, "
            f"max {max(speech_secs):.1f} s). Confident: p ≥ {settings.FINAL_PROBABILITY}, lead ≥ {settings.FINAL_MARGIN}.",
            "",
            table(["speech", "top-1 (all clips)", "top-3 (all clips)", "clips ≥ N s · their top-1",
                   "confident · right among them"], speech_rows)]

    # --- confident answers vs thresholds ---------------------------------------------------------
    pairs = sorted(set(THRESHOLD_PAIRS) | {(settings.FINAL_PROBABILITY, settings.FINAL_MARGIN)})
    thr_rows = []
    thresholds = {}
    views = [("1 s", lambda r: r["_prefixes"][0] if r["_prefixes"] else r["_full"]),
             ("2 s", lambda r: r["_prefixes"][1] if len(r["_prefixes"]) > 1 else r["_full"]),
             ("full", lambda r: r["_full"])]
    for prob, margin in pairs:
        cells = [f"p ≥ {prob:g}, lead ≥ {margin:g}" + (" (current)" if (prob, margin) == (
            settings.FINAL_PROBABILITY, settings.FINAL_MARGIN) else "")]
        entry = {}
        for label, view in views:
            conf = [r for r in rows if is_confident(view(r), prob, margin)]
            good = sum(view(r)[0][0] == r["lang"] for r in conf)
            cells.append(f"{len(conf)}/{n} · {good}/{len(conf)} = {pct(good, len(conf))}")
            entry[label] = {"confident": len(conf), "right": good}
        replay_lang = [replay_stream(r["_prefixes"], prob, margin, settings.FINAL_STABLE_UPDATES) for r in rows]
        finals = [(r, lang, s) for r, (lang, s) in zip(rows, replay_lang) if lang is not None]
        good = sum(lang == r["lang"] for r, lang, _ in finals)
        when = f", median {np.median([s for _, _, s in finals]):.0f} s" if finals else ""
        cells.append(f"{len(finals)}/{n} · {good}/{len(finals)} = {pct(good, len(finals))}{when}")
        entry["stream_replay"] = {"final_confident": len(finals), "right": good}
        thr_rows.append(cells)
        thresholds[f"{prob:g}/{margin:g}"] = entry
    out += ["", "### Confident answers by threshold pair", "",
            "Each cell: confident/all clips · right/confident. Columns 1 s, 2 s: the first 1 or 2 s of speech "
            "(engine only); full: `identify`. Stream replay: detections at every whole second of speech, final "
            f"once {settings.FINAL_STABLE_UPDATES} consecutive detections are confident for the same language "
            "(as the server's stream mode; offline, on the whole clip's VAD), with the median speech seconds "
            "at which it became final.",
            "",
            table(["rule", "1 s of speech", "2 s of speech", "full clip", "stream replay (confident finals)"], thr_rows)]

    unc_rows = []
    for below in sorted({0.3, 0.4, 0.5, settings.UNCERTAIN_BELOW}):
        named = [r for r in rows if r["_full"] and r["_full"][0][1] >= below]
        good = sum(r["_full"][0][0] == r["lang"] for r in named)
        unc = n - len(named)
        unc_rows.append([f"{below:g}" + (" (current)" if below == settings.UNCERTAIN_BELOW else ""),
                         f"{unc}/{n} ({pct(unc, n)})", f"{good}/{len(named)} = {pct(good, len(named))}"])
    out += ["", "### \"Uncertain\" (no language named) by threshold, full clips", "",
            table(["UNCERTAIN_BELOW", "uncertain", "right among the answers named"], unc_rows)]

    note = save_confusion_png(args.png, set_langs, [(r["lang"], top(r["_full"], 1)[0] if r["_full"] else None)
                                                   for r in rows],
                              f"LangShazam {processor.engine.name}: top-1 {pct(top1, n)} on {n} clips")
    out += ["", f"Confusion matrix: {note or args.png}",
            f"Run time: {time.perf_counter() - wall:.0f} s (model load {load_seconds:.1f} s)."]
    print("\n".join(out))

    if args.json:
        summary = {
            "engine": processor.engine.name, "manifest": str(args.manifest), "clips": n,
            "languages": set_langs, "seed": args.seed,
            "top1": top1, "top3": top3, "candidates5": cand_right,
            "top1_rate": top1 / n, "top3_rate": top3 / n, "candidates5_rate": cand_right / n,
            "confident": len(conf_now), "confident_right": conf_now_right, "uncertain": uncertain,
            "no_answer": dict(no_answer), "by_speech_seconds": by_speech, "thresholds": thresholds,
            "per_language": per_language,
            "confusions": [{"true": t, "answered": p, "clips": k} for (t, p), k in confusions.most_common()],
            "identify_ms_median": 1000 * float(np.median(identify_times)),
            "settings": {k: getattr(settings, k) for k in (
                "FINAL_PROBABILITY", "FINAL_MARGIN", "FINAL_STABLE_UPDATES", "UNCERTAIN_BELOW",
                "MIN_SPEECH_SECONDS", "VAD_THRESHOLD", "DETECTION_WINDOW_SECONDS")},
            "clips_detail": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))
    processor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
