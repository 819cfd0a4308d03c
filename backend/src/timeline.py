"""Language timeline: which language is spoken when, in audio where people switch languages.

1. The VAD (with a short minimum silence, so that turn-taking pauses show) finds the speech; speech
   regions closer than `merge_gap` are merged.
2. Each region is cut into windows a detection can judge, at most `window_seconds` long: a longer region
   at its own pauses (a change of language mostly falls at one), speech without a pause in equal pieces.
3. One detection per window, one after another in one inference slot (the local engine batches them with
   other connections' detections of the same padded length).
4. Only the languages some window names with at least `focus_probability` are considered (a
   conversation uses few languages), the windows' probabilities renormalised over them.
5. Viterbi over the windows: each window scores each language by the log of its probability (weighted
   by the window's length, short windows saying less), and changing language costs `switch_penalty`,
   so that one doubtful window does not make a switch; a window the honesty rule finds confident keeps
   its own language. Each run of windows of one language is then detected as a whole (`refine`: longer
   audio is judged better) and smoothed again.
6. Consecutive windows of the same language in the same region become a segment; its probabilities are
   the windows' length-weighted mean (of calibrated probabilities). The honesty rule every answer follows
   (src/confidence.py) judges it: under UNCERTAIN_BELOW it names no language (`reason: "uncertain"`)
   rather than guess; `confident` as for any answer.

The defaults were chosen with scripts/evaluate_timeline.py (see docs/timeline.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .audio import SAMPLE_RATE
from .confidence import ConfidenceRule
from .languages import language_name
from .vad import VoiceActivityDetector

if TYPE_CHECKING:
    from .config.settings import Settings

Probabilities = list[tuple[str, "float | None"]]

_MAX_DETECTION = 30  # seconds: Whisper's window
_FLOOR = 1e-4  # probability given to a language a window does not list (log stays finite)


@dataclass(frozen=True)
class TimelineOptions:
    window_seconds: float = 8.0  # longest window; longer regions are cut (at pauses, else in equal pieces)
    merge_gap: float = 0.2  # speech regions closer than this (s) are one region
    switch_penalty: float = 2.0  # cost (in log-probability) of changing language between windows
    reference_seconds: float = 2.0  # a window this long or longer counts fully in the smoothing
    refine: bool = True  # second pass: one detection per run of same-language windows, then smooth again
    cut_at_pauses: bool = True  # a region longer than a window is cut at its pauses (else in equal pieces)
    keep_confident: bool = True  # a window confident by the honesty rule keeps its own language
    focus_probability: float = 0.4  # only the languages some window names this surely (heard_languages); 1: all
    min_silence_ms: int = 150  # VAD: shortest pause that ends a speech segment
    # The honesty rule (src/confidence.py): when a segment may name its language, and when it is confident.
    confidence: ConfidenceRule = field(default_factory=ConfidenceRule.default)

    @classmethod
    def from_settings(cls, settings: "Settings") -> "TimelineOptions":
        return cls(
            window_seconds=settings.TIMELINE_WINDOW_SECONDS,
            merge_gap=settings.TIMELINE_MERGE_GAP_SECONDS,
            switch_penalty=settings.TIMELINE_SWITCH_PENALTY,
            focus_probability=settings.TIMELINE_FOCUS_PROBABILITY,
            confidence=ConfidenceRule.from_settings(settings),
        )


@dataclass(frozen=True)
class Window:
    start: int  # sample indexes in the input
    end: int
    region: int  # index of the speech region it belongs to
    probabilities: Probabilities

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


@dataclass
class Segment:
    start: float  # seconds in the input
    end: float
    language: str | None
    probabilities: list[tuple[str, float | None]]  # most likely first (length-weighted mean of windows)
    confident: bool
    windows: int
    likely: list[str] = field(default_factory=list)  # the likely set (src/confidence.py)

    def as_dict(self, top_k: int) -> dict[str, Any]:
        prob = dict(self.probabilities).get(self.language) if self.language else None
        data: dict[str, Any] = {
            "start": round(self.start, 2),
            "end": round(self.end, 2),
            "language": self.language,
            "language_name": language_name(self.language) if self.language else None,
            "confidence": None if prob is None else round(float(prob), 4),
            "confident": self.confident,
            "likely": list(self.likely),
            "top": [
                {"language": code, "language_name": language_name(code),
                 "probability": None if p is None else round(float(p), 4)}
                for code, p in self.probabilities[:top_k]
            ],
        }
        if self.language is None:
            data["reason"] = "uncertain"
        return data


@dataclass
class Timeline:
    segments: list[Segment]
    windows: list[Window] = field(default_factory=list)
    speech_seconds: float = 0.0
    processing_time: float = 0.0

    def as_list(self, top_k: int) -> list[dict[str, Any]]:
        return [segment.as_dict(top_k) for segment in self.segments]


def verdict(probabilities: Probabilities, options: TimelineOptions) -> tuple[bool, bool, list[str]]:
    """(named, confident, likely set) for a segment's probabilities, its language first, by the honesty
    rule that every answer follows (src/confidence.py)."""
    judged = options.confidence.verdict(probabilities)
    return judged.reason is None, judged.confident, list(judged.likely)


# --- 1-2: regions and windows ------------------------------------------------------------------

def speech_regions(segments: list[tuple[int, int]], merge_gap: float) -> list[tuple[int, int]]:
    """VAD segments (sample indexes) merged across pauses shorter than `merge_gap` seconds."""
    regions: list[tuple[int, int]] = []
    gap = int(merge_gap * SAMPLE_RATE)
    for start, end in segments:
        if regions and start - regions[-1][1] < gap:
            regions[-1] = (regions[-1][0], max(end, regions[-1][1]))
        else:
            regions.append((start, end))
    return regions


def cut_windows(regions: list[tuple[int, int]], window_seconds: float,
                segments: list[tuple[int, int]] | None = None) -> list[tuple[int, int, int]]:
    """(start, end, region) of windows at most `window_seconds` long covering each region. A longer
    region is cut at its own pauses when the VAD `segments` are given (consecutive segments packed
    into windows up to that length: a change of language mostly falls at a pause), else in equal
    pieces; a segment longer than a window is cut in equal pieces."""
    longest = window_seconds * SAMPLE_RATE
    windows = []
    for index, (start, end) in enumerate(regions):
        inside = [(a, b) for a, b in segments or [] if a >= start and b <= end] if end - start > longest else []
        pieces = []
        for a, b in inside or [(start, end)]:
            count = max(1, math.ceil((b - a) / longest))
            bounds = np.linspace(a, b, count + 1).round().astype(int)
            pieces += [(int(x), int(y)) for x, y in zip(bounds[:-1], bounds[1:]) if y > x]
        first, last = pieces[0]
        for a, b in pieces[1:]:
            if b - first <= longest:
                last = b
            else:
                windows.append((first, last, index))
                first, last = a, b
        windows.append((first, last, index))
    return windows


# --- 4-5: focus and smoothing -------------------------------------------------------------------

def smooth(windows: list[Window], switch_penalty: float, reference_seconds: float,
           languages: list[str] | None = None) -> list[str]:
    """The most likely language of each window (Viterbi): window scores are length-weighted
    log-probabilities, each change of language costs `switch_penalty`."""
    if not windows:
        return []
    states = list(languages) if languages else _states(windows)
    index = {code: i for i, code in enumerate(states)}
    scores = np.full((len(windows), len(states)), math.log(_FLOOR))
    for row, window in enumerate(windows):
        weight = min(1.0, window.seconds / reference_seconds) if reference_seconds > 0 else 1.0
        for code, prob in window.probabilities:
            if code in index:
                # No probability (an engine that only names a language): that language, for sure.
                scores[row, index[code]] = math.log(max(1.0 if prob is None else prob, _FLOOR))
        scores[row] *= weight
    total = scores[0].copy()
    back = np.zeros((len(windows), len(states)), dtype=int)
    for row in range(1, len(windows)):
        best_prev = int(np.argmax(total))
        stay = total
        switch = total[best_prev] - switch_penalty
        back[row] = np.where(stay >= switch, np.arange(len(states)), best_prev)
        total = np.maximum(stay, switch) + scores[row]
    path = [int(np.argmax(total))]
    for row in range(len(windows) - 1, 0, -1):
        path.append(int(back[row, path[-1]]))
    return [states[i] for i in reversed(path)]


def _states(windows: list[Window]) -> list[str]:
    """Languages worth considering: every window's top 5."""
    states: dict[str, None] = {}
    for window in windows:
        for code, _ in window.probabilities[:5]:
            states[code] = None
    return list(states)


# --- 6: segments -------------------------------------------------------------------------------

def segments_of(windows: list[Window], labels: list[str], options: TimelineOptions) -> list[Segment]:
    """Runs of windows with the same label in the same speech region, as segments."""
    segments: list[Segment] = []
    start = 0
    for i in range(1, len(windows) + 1):
        if i == len(windows) or labels[i] != labels[start] or windows[i].region != windows[start].region:
            segments.append(_segment(windows[start:i], labels[start], options))
            start = i
    return segments


def _segment(run: list[Window], label: str, options: TimelineOptions) -> Segment:
    total = sum(w.seconds for w in run)
    mean: dict[str, float] = {}
    known = all(p is not None for w in run for _, p in w.probabilities)
    for window in run:
        for code, prob in window.probabilities:
            value = (1.0 if code == window.probabilities[0][0] else 0.0) if prob is None else prob
            mean[code] = mean.get(code, 0.0) + value * window.seconds / total
    ranked = sorted(mean.items(), key=lambda item: -item[1])
    probabilities: list[tuple[str, float | None]] = ranked if known else [(label, None)]
    # The smoothed label first, whatever the mean says; then the others by mean probability.
    mine = dict(probabilities).get(label, 0.0 if known else None)
    probabilities = [(label, mine)] + [(c, p) for c, p in probabilities if c != label]
    named, confident, likely = verdict(probabilities, options)
    return Segment(run[0].start / SAMPLE_RATE, run[-1].end / SAMPLE_RATE, label if named else None,
                   probabilities, confident, len(run), likely)


# --- the whole -------------------------------------------------------------------------------

Detect = Callable[[np.ndarray, "list[str] | None"], Probabilities]


def window_detections(samples: np.ndarray, detect: Detect, vad: VoiceActivityDetector,
                      options: TimelineOptions, languages: list[str] | None = None) -> tuple[list[Window], float]:
    """Steps 1-3: the windows of the speech with their detections, and the seconds of speech."""
    speech = vad.find_speech(samples)
    regions = speech_regions(speech.segments, options.merge_gap)
    windows = []
    pauses = speech.segments if options.cut_at_pauses else None
    for start, end, region in cut_windows(regions, options.window_seconds, pauses):
        windows.append(Window(start, end, region, detect(samples[start:end], languages)))
    return windows, speech.seconds


def refine(windows: list[Window], labels: list[str], samples: np.ndarray, detect: Detect,
           languages: list[str] | None = None) -> list[Window]:
    """Second pass: each run of consecutive windows with the same label (two or more windows, at most 30 s
    from its first to its last sample) is detected as a whole, and its windows take that detection:
    a longer stretch of one language is judged better than its pieces."""
    refined = list(windows)
    start = 0
    for i in range(1, len(windows) + 1):
        if i == len(windows) or labels[i] != labels[start]:
            first, last = windows[start], windows[i - 1]
            if i - start > 1 and last.end - first.start <= _MAX_DETECTION * SAMPLE_RATE:
                whole = detect(samples[first.start : last.end], languages)
                for j in range(start, i):
                    refined[j] = replace(windows[j], probabilities=whole)
            start = i
    return refined


def heard_languages(windows: list[Window], min_probability: float) -> list[str]:
    """The languages some window names with at least `min_probability`: a conversation uses few
    languages, and a doubtful window is most likely one of those heard clearly elsewhere."""
    heard: dict[str, None] = {}
    for window in windows:
        if window.probabilities and (window.probabilities[0][1] or 0.0) >= min_probability:
            heard[window.probabilities[0][0]] = None
    return list(heard)


def _restricted(probabilities: Probabilities, languages: list[str]) -> Probabilities:
    """Probabilities renormalised over `languages` (as the engines restrict to candidates)."""
    if any(p is None for _, p in probabilities):
        return probabilities
    kept = [(code, p) for code, p in probabilities if code in languages]
    total = sum(p for _, p in kept)  # type: ignore[misc]
    if not kept or total <= 0:
        return [(code, 1.0 / len(languages)) for code in languages]
    return [(code, p / total) for code, p in kept]  # type: ignore[operator]


def build(windows: list[Window], options: TimelineOptions, languages: list[str] | None = None,
          samples: np.ndarray | None = None, detect: Detect | None = None) -> list[Segment]:
    """Steps 4-5 on windows already detected (with the second pass when samples and detect are given)."""
    if not languages and options.focus_probability < 1.0:
        heard = heard_languages(windows, options.focus_probability)
        if heard:
            languages = heard
            windows = [replace(w, probabilities=_restricted(w.probabilities, heard)) for w in windows]
    labels = _labels(windows, options, languages)
    if options.refine and samples is not None and detect is not None:
        windows = refine(windows, labels, samples, detect, languages)
        labels = _labels(windows, options, languages)
    return segments_of(windows, labels, options)


def _labels(windows: list[Window], options: TimelineOptions, languages: list[str] | None) -> list[str]:
    """The smoothed language of each window; a window the honesty rule finds confident keeps its own
    (smoothing is for doubtful windows: a short confident turn between two others is no doubt)."""
    labels = smooth(windows, options.switch_penalty, options.reference_seconds, languages)
    if options.keep_confident:
        labels = [w.probabilities[0][0] if options.confidence.verdict(w.probabilities).confident else label
                  for w, label in zip(windows, labels)]
    return labels


def timeline(samples: np.ndarray, detect: Detect, vad: VoiceActivityDetector,
             options: TimelineOptions | None = None, languages: list[str] | None = None) -> Timeline:
    """The language timeline of 16 kHz mono float32 samples (blocking)."""
    options = options or TimelineOptions()
    started = time.perf_counter()
    windows, speech_seconds = window_detections(samples, detect, vad, options, languages)
    segments = build(windows, options, languages, samples, detect)
    return Timeline(segments, windows, speech_seconds, time.perf_counter() - started)
