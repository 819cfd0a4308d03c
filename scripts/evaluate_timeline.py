#!/usr/bin/env python3
"""Accuracy of LangShazam's language timeline on conversations joined from real clips, and on real
code-switching recordings.

    python scripts/evaluate_timeline.py [--conversations N] [--seed N] [--tune] [--json PATH]

From the repository root. Settings come from the environment / `.env` as for the server
(TIMELINE_WINDOW_SECONDS, TIMELINE_MERGE_GAP_SECONDS, TIMELINE_SWITCH_PENALTY, UNCERTAIN_BELOW, ...).

Sets: ../shared/eval (all clips) and ../shared/eval-more (kind `speech`, languages Whisper knows), beside
the project (`$LANGSHAZAM_EVAL_DIR` and `$LANGSHAZAM_EVAL_MORE_DIR` override). From each set, N
synthetic conversations (fixed seed): 2-4 languages, 4-8 turns, each turn a clip trimmed to its speech
(VAD), at most 10 s; 0.3-1.5 s pauses (faint noise) between turns; about one turn in four in the same
language as the one before (another clip), one in four a short turn (1-2 s of speech). Plus the two
`code_switch` recordings of eval-more, whose language spans were annotated by hand (below).

Measures, per set, through `processor.identify_timeline`'s building blocks (the same VAD, windows,
engine detections, smoothing and segments):

- speech time right: share of the reference speech labelled with the right language. Reference speech:
  the speech of each turn (the VAD on the turn alone: pauses of 0.5 s and more inside a turn are not
  speech); for the real recordings, the annotated spans. Reference speech not covered by a segment
  takes the nearest segment within 0.5 s, otherwise it counts as wrong; a segment with no language
  (uncertain) counts as wrong;
- switches: a true switch (between turns of different languages, at the middle of the pause) is found
  when a predicted switch (between consecutive segments with different languages) lies within 1 s;
  unmatched predicted switches are invented; median boundary error over found switches;
- invented switches per minute of audio; timeline time per minute of audio (this machine);
- for reference, "uncertain": the share of speech time in segments that name no language, and "turn by
  turn": the share labelled right when each turn, its bounds known, is detected alone (what the model
  can do on these turns without any timeline method).

`--tune` sweeps window length, merge gap and switch penalty on the first set's conversations and
reports the best settings' figures on both sets (tune on one, check on the other).
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import SAMPLE_RATE, default_manifest, default_more_manifest, read_set, table, write_json  # noqa: E402

import numpy as np  # noqa: E402

MAX_TURN_SECONDS = 10.0
MATCH_SECONDS = 1.0  # a predicted switch this close to a true one finds it
NEAREST_SECONDS = 0.5  # uncovered reference time takes the nearest segment this close
UNCERTAIN = "?"  # the label of time in a segment that names no language
# --tune: the choices swept (TimelineOptions fields).
TUNING = {
    "window_seconds": (3.0, 5.0, 8.0),
    "merge_gap": (0.0, 0.2, 0.5),
    "switch_penalty": (1.0, 2.0, 3.0),
    "focus_probability": (1.0, 0.4),
}

# The code-switching recordings of eval-more, annotated by hand from their VAD segments and transcripts
# (language, start, end in seconds).
CODE_SWITCH = {
    "mix_es-en_azure_1.wav": [("es", 0.32, 6.95), ("en", 7.23, 11.72), ("es", 11.90, 19.45), ("en", 19.60, 23.89)],
    "mix_en-zh_azure_1.wav": [("en", 0.00, 1.32), ("zh", 2.91, 4.26), ("en", 6.27, 7.81), ("zh", 9.76, 11.56),
                              ("en", 13.56, 15.81), ("zh", 16.99, 18.63)],
}


def eval_dirs() -> dict[str, Path]:
    return {"eval": default_manifest().parent, "eval-more": default_more_manifest().parent}


@dataclass
class Conversation:
    name: str
    samples: np.ndarray
    turns: list[tuple[str, float, float]]  # (language, start, end) in seconds
    # Per turn, its speech (start, end) in seconds (the VAD on the turn alone); None: all of the turn.
    speech: list[list[tuple[float, float]]] | None = None

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def speech_clips(directory: Path, known: set[str]) -> dict[str, list[Path]]:
    """Clips by language: kind `speech` (all clips when the manifest has no kind), languages Whisper knows."""
    by_lang: dict[str, list[Path]] = {}
    for clip in read_set(directory, "evaluate_timeline.py", kinds=("speech",)):
        if clip.lang in known:
            by_lang.setdefault(clip.lang, []).append(clip.path)
    return by_lang


def trimmed(path: Path, decode, vad, cache: dict) -> np.ndarray:
    """The clip from its first speech to the end of its last (VAD)."""
    if path not in cache:
        samples = decode(path.read_bytes())
        cache[path] = vad.find_speech(samples).audio(samples)
    return cache[path]


def make_conversations(set_name: str, by_lang: dict[str, list[Path]], count: int, seed: int, decode, vad,
                       ) -> list[Conversation]:
    rng = random.Random(f"{seed}:{set_name}")
    cache: dict = {}
    languages = sorted(by_lang)
    conversations = []
    for number in range(count):
        chosen = rng.sample(languages, rng.choice([2, 3, 4]))
        turns_wanted = rng.randint(4, 8)
        pieces: list[np.ndarray] = []
        turns: list[tuple[str, float, float]] = []
        speech: list[list[tuple[float, float]]] = []
        used: set[Path] = set()
        position = 0
        previous = None
        for turn in range(turns_wanted):
            same = previous is not None and rng.random() < 0.25 and len(set(by_lang[previous]) - used) > 0
            if same:
                lang = previous
            else:
                options = [lang for lang in chosen if lang != previous and set(by_lang[lang]) - used] or [
                    lang for lang in chosen if lang != previous]
                lang = rng.choice(options)
            fresh = sorted(set(by_lang[lang]) - used) or sorted(by_lang[lang])
            path = rng.choice(fresh)
            used.add(path)
            audio = trimmed(path, decode, vad, cache)
            limit = MAX_TURN_SECONDS
            if rng.random() < 0.25:
                limit = rng.uniform(1.0, 2.0)
            audio = audio[: int(limit * SAMPLE_RATE)]
            if len(audio) < 0.5 * SAMPLE_RATE:  # a clip with (almost) no speech makes no turn
                continue
            if pieces:
                pause = np.asarray(np.random.default_rng(rng.randrange(1 << 30)).normal(
                    0, 3e-4, int(rng.uniform(0.3, 1.5) * SAMPLE_RATE)), dtype=np.float32)
                pieces.append(pause)
                position += len(pause)
            turns.append((lang, position / SAMPLE_RATE, (position + len(audio)) / SAMPLE_RATE))
            speech.append([((position + a) / SAMPLE_RATE, (position + b) / SAMPLE_RATE)
                           for a, b in vad.find_speech(audio).segments])
            pieces.append(audio.astype(np.float32))
            position += len(audio)
            previous = lang
        conversations.append(Conversation(f"{set_name}#{number}", np.concatenate(pieces), turns, speech))
    return conversations


def real_recordings(directory: Path, decode) -> list[Conversation]:
    out = []
    for name, spans in CODE_SWITCH.items():
        path = directory / "clips" / name
        if path.is_file():
            out.append(Conversation(name, decode(path.read_bytes()), spans))
    return out


# --- scoring ------------------------------------------------------------------------------------

def true_switches(turns) -> list[tuple[float, str]]:
    return [((a[2] + b[1]) / 2, b[0]) for a, b in zip(turns, turns[1:]) if a[0] != b[0]]


def predicted_switches(segments) -> list[tuple[float, str]]:
    named = [s for s in segments if s.language]
    return [((a.end + b.start) / 2, b.language) for a, b in zip(named, named[1:]) if a.language != b.language]


def labels_at(times: np.ndarray, segments) -> list[str | None]:
    """The language of the segment at each time; off every segment, the nearest one within
    NEAREST_SECONDS; else None."""
    if not segments:
        return [None] * len(times)
    starts = np.array([s.start for s in segments])
    ends = np.array([s.end for s in segments])
    previous = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(segments) - 1)
    following = np.clip(previous + 1, 0, len(segments) - 1)
    to_previous = np.where(times >= starts[previous], np.maximum(0.0, times - ends[previous]), np.inf)
    to_following = np.where(starts[following] >= times, starts[following] - times, np.inf)
    chosen = np.where(to_previous <= to_following, previous, following)
    distance = np.minimum(to_previous, to_following)
    return [(segments[i].language or UNCERTAIN) if d <= NEAREST_SECONDS else None for i, d in zip(chosen, distance)]


def score(conversation: Conversation, segments, turn_labels: list[str | None] | None = None) -> dict:
    """`turn_labels`: each turn's language detected on the turn alone (the turn-level reference)."""
    step = 0.01
    right = total = uncertain = turn_right = 0
    for index, (lang, start, end) in enumerate(conversation.turns):
        spans = conversation.speech[index] if conversation.speech else [(start, end)]
        times = np.concatenate([np.arange(a, b, step) for a, b in spans] or [np.zeros(0)])
        labels = labels_at(times, segments)
        total += len(times)
        right += sum(label == lang for label in labels)
        uncertain += sum(label == UNCERTAIN for label in labels)
        if turn_labels is not None:
            turn_right += len(times) * (turn_labels[index] == lang)
    truth = true_switches(conversation.turns)
    predicted = predicted_switches(segments)
    pairs = sorted((abs(p[0] - t[0]), i, j) for i, t in enumerate(truth) for j, p in enumerate(predicted))
    found_t, found_p, errors = set(), set(), []
    for distance, i, j in pairs:
        if distance <= MATCH_SECONDS and i not in found_t and j not in found_p:
            found_t.add(i)
            found_p.add(j)
            errors.append(distance)
    return {"frames": total, "right": right, "uncertain": uncertain, "turn_right": turn_right,
            "switches": len(truth), "found": len(found_t),
            "invented": len(predicted) - len(found_p), "errors": errors, "seconds": conversation.seconds}


def summarise(scores: list[dict], cost_seconds: float) -> dict:
    frames = sum(s["frames"] for s in scores)
    right = sum(s["right"] for s in scores)
    switches = sum(s["switches"] for s in scores)
    found = sum(s["found"] for s in scores)
    invented = sum(s["invented"] for s in scores)
    errors = [e for s in scores for e in s["errors"]]
    minutes = sum(s["seconds"] for s in scores) / 60
    return {
        "conversations": len(scores), "minutes": round(minutes, 2),
        "speech_right": right / frames if frames else 0.0,
        "speech_uncertain": sum(s["uncertain"] for s in scores) / frames if frames else 0.0,
        "turn_reference_right": sum(s["turn_right"] for s in scores) / frames if frames else 0.0,
        "switches": switches, "found": found, "missed": switches - found, "invented": invented,
        "median_boundary_error": statistics.median(errors) if errors else None,
        "invented_per_minute": invented / minutes if minutes else 0.0,
        "cost_per_minute": cost_seconds / minutes if minutes else 0.0,
    }


def row(label: str, summary: dict) -> list[object]:
    error = summary["median_boundary_error"]
    return [label, summary["conversations"], f"{summary['minutes']:.1f}",
            f"{100 * summary['speech_right']:.1f} %", f"{100 * summary['speech_uncertain']:.1f} %",
            f"{100 * summary['turn_reference_right']:.1f} %", summary["switches"], summary["found"], summary["missed"],
            summary["invented"], "n/a" if error is None else f"{error:.2f} s",
            f"{summary['invented_per_minute']:.2f}", f"{summary['cost_per_minute']:.1f} s"]


HEADERS = ["set", "conv.", "minutes", "speech time right", "uncertain", "turn by turn", "switches", "found", "missed",
           "invented",
           "median boundary error", "invented / min", "timeline time / min of audio"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=20, help="synthetic conversations per set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tune", action="store_true", help="sweep the timeline's choices on the first set")
    parser.add_argument("--tune-on", default="eval", choices=["eval", "eval-more"])
    parser.add_argument("--candidates", action="store_true",
                        help="also run with each conversation's languages given as candidates")
    parser.add_argument("--json", type=Path, default=None, help="dump the figures to this JSON file")
    args = parser.parse_args()

    from src import timeline as tl
    from src.audio import decode
    from src.audio_processor import AudioProcessor
    from src.config.settings import load_settings
    from src.engines.local_whisper import restrict
    from src.languages import WHISPER_LANGUAGES
    from src.vad import VoiceActivityDetector

    settings = load_settings()
    processor = AudioProcessor.from_settings(settings, gc_after_processing=False)
    processor.load()
    base = processor.timeline_options

    sets: dict[str, list[Conversation]] = {}
    dirs = eval_dirs()
    for name, directory in dirs.items():
        by_lang = speech_clips(directory, set(WHISPER_LANGUAGES))
        sets[name] = make_conversations(name, by_lang, args.conversations, args.seed, decode, processor.vad)
        print(f"{name}: {len(by_lang)} languages, {args.conversations} conversations, "
              f"{sum(c.seconds for c in sets[name]) / 60:.1f} min", file=sys.stderr)
    sets["code-switch (real)"] = real_recordings(dirs["eval-more"], decode)

    detect_cache: dict = {}

    def run(conversations, options, candidates=False, cached=True):
        """Timelines of the conversations through the product's steps; detections of the same audio
        are cached across settings (`cached`), the cost is that of the runs that did detect."""
        scores, cost = [], 0.0
        details = []
        vad = VoiceActivityDetector(threshold=settings.VAD_THRESHOLD, min_silence_ms=options.min_silence_ms)
        for conv in conversations:
            languages = sorted({t[0] for t in conv.turns}) if candidates else None

            def detect(audio, langs, _conv=conv):
                calibrate = processor.confidence.calibrate  # as AudioProcessor.identify_timeline does
                if not cached:
                    return calibrate(processor.engine.detect(audio, langs).probabilities)
                key = (_conv.name, audio.ctypes.data, len(audio))
                if key not in detect_cache:
                    detect_cache[key] = processor.engine.detect(audio).probabilities
                return calibrate(restrict(detect_cache[key], langs))  # as the engine restricts to candidates

            vad_key = (conv.name, "vad", options.min_silence_ms)
            if vad_key not in detect_cache:
                detect_cache[vad_key] = vad.find_speech(conv.samples)
            speech = detect_cache[vad_key]
            started = time.perf_counter()
            if cached:
                regions = tl.speech_regions(speech.segments, options.merge_gap)
                windows = []
                pauses = speech.segments if options.cut_at_pauses else None
                for a, b, r in tl.cut_windows(regions, options.window_seconds, pauses):
                    windows.append(tl.Window(a, b, r, detect(conv.samples[a:b], languages)))
                segments = tl.build(windows, options, languages, conv.samples, detect)
            else:
                segments = tl.timeline(conv.samples, detect, vad, options, languages).segments
            cost += time.perf_counter() - started
            turn_labels = None
            if not cached:  # the reference: each turn detected alone, as if the turns were known
                turn_labels = []
                for _, start, end in conv.turns:
                    found = processor.confidence.calibrate(processor.engine.detect(
                        conv.samples[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)], languages).probabilities)
                    turn_labels.append(found[0][0] if tl.verdict(found, options)[0] else None)
            scores.append(score(conv, segments, turn_labels))
            details.append({"name": conv.name, "turns": conv.turns,
                            "segments": [(s.language, round(s.start, 2), round(s.end, 2)) for s in segments]})
        return summarise(scores, cost), details

    results: dict = {"settings": {"window_seconds": base.window_seconds, "merge_gap": base.merge_gap,
                                  "switch_penalty": base.switch_penalty, "confidence": vars(base.confidence)}}
    out = []
    if args.tune:
        tune_set = sets[args.tune_on]
        check_set = sets["eval-more" if args.tune_on == "eval" else "eval"]
        grid = []
        for values in itertools.product(*TUNING.values()):
            options = replace(base, **dict(zip(TUNING, values)))
            summary, _ = run(tune_set, options)
            grid.append((options, summary))
            print(" ".join(f"{k} {v}" for k, v in zip(TUNING, values)) + ": "
                  f"{100 * summary['speech_right']:.1f} % right, found {summary['found']}/{summary['switches']}, "
                  f"invented {summary['invented']}, err {summary['median_boundary_error']}", file=sys.stderr)

        def goodness(item):
            s = item[1]
            return s["speech_right"] - 0.02 * max(0.0, s["invented_per_minute"] - 1.0) \
                - 0.05 * max(0.0, (s["median_boundary_error"] or 1.0) - 0.5)

        grid.sort(key=goodness, reverse=True)
        rows = []
        for options, summary in grid[:8]:
            check, _ = run(check_set, options)
            rows.append([getattr(options, name) for name in TUNING]
                        + row(args.tune_on, summary)[3:4] + row("", check)[3:4]
                        + [f"{summary['invented_per_minute']:.2f} / {check['invented_per_minute']:.2f}",
                           f"{summary['median_boundary_error'] or 0:.2f} / {check['median_boundary_error'] or 0:.2f}"])
        out += [f"### Tuning on {args.tune_on}, checked on the other set (best 8 of {len(grid)})", "",
                table([*TUNING, f"right ({args.tune_on})", "right (other)",
                       "invented/min", "median boundary error"], rows), ""]
        results["tuning"] = [{"options": vars(o) if hasattr(o, "__dict__") else str(o), "summary": s}
                             for o, s in grid]

    rows = []
    results["sets"] = {}
    for name, conversations in sets.items():
        summary, details = run(conversations, base, cached=False)
        rows.append(row(name, summary))
        results["sets"][name] = {"summary": summary, "conversations": details}
        if args.candidates:
            summary_c, _ = run(conversations, base, candidates=True, cached=False)
            rows.append(row(f"{name}, languages given", summary_c))
            results["sets"][name + ", languages given"] = {"summary": summary_c}
    out += [f"## Language timeline — {processor.engine.name}; window {base.window_seconds} s, merge gap "
            f"{base.merge_gap} s, switch penalty {base.switch_penalty}, focus {base.focus_probability}, "
            f"uncertain below {base.confidence.uncertain_below}, "
            f"confident from {base.confidence.final_probability}", "",
            table(HEADERS, rows)]
    print("\n".join(out))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
