"""Accuracy guard that holds on every CPU: the embedded engine through the AudioProcessor (VAD + engine, as
the server runs it) on both evaluation sets, judged against stock faster-whisper run in the same test.

Why relative: CTranslate2 runs int8 through MKL on Intel and through oneDNN on AMD, and the two round
differently: dev-set top-1 moves by ~5 points between them (and the order flips on other data). A fixed floor
a few points under one machine's figure fails on the other. So:

- On the dev set (66 clips), LangShazam's top-1 is compared with stock `decode_audio` + `detect_language`
  (30 s window, no VAD) on the same clips, same model, same backend: a regression in our detection shows as
  falling behind stock; the backend moves both. Margin: 3 clips (4.5 points), about the spread of
  LangShazam-minus-stock measured over the two backends.
- Over both sets' speech (66 + 97 clips), top-1 has an absolute floor of 72 %: about 2 standard errors (of a
  163-clip share, ~3.2 points) under the lower of the two backends' figures (79.1 % oneDNN, 81.0 % MKL).
- The honesty rule: confident answers are nearly always right on each set and cover at least half of the
  speech; non-speech is never named; a language the model does not know (Kinyarwanda) is never confident.

Measured (scripts/evaluate.py; 2 cores; `CT2_USE_MKL=0` oneDNN / `=1` MKL): see docs/accuracy.md.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from audio_tools import Clip, manifest, more_manifest

N_CANDIDATES = 5
SEED = 0  # the candidate draw, as scripts/evaluate.py --seed 0
BEHIND_STOCK_MAX = 3  # dev-set clips LangShazam may get wrong beyond stock's
POOLED_TOP1_FLOOR = 0.72
TOP3_FLOOR = 0.83
CANDIDATES5_FLOOR = 0.93
CONFIDENT_PRECISION_FLOOR = 0.95  # per set
CONFIDENT_SHARE_FLOOR = 0.45  # per set, of the speech clips
SPEECH_KINDS = ("speech", "speech_unverified")


@dataclass
class Row:
    clip: Clip
    set: str
    codes: list[str]  # LangShazam's candidates, most likely first
    result: object  # the Identification
    among_candidates: list[str] | None = None
    stock: str | None = None  # stock faster-whisper's top-1 (dev set only)

    @property
    def right(self) -> bool:
        return bool(self.codes) and self.codes[0] in self.clip.lang.split("+")


def candidates_for(file: str, lang: str, languages: list[str]) -> list[str]:
    """The right language plus 4 others, drawn deterministically per clip (same draw as evaluate.py)."""
    others = sorted(set(languages) - {lang})
    picked = random.Random(f"{SEED}:{file}").sample(others, min(N_CANDIDATES - 1, len(others)))
    return sorted([lang, *picked])


CANDIDATE_PATH_CHECKS = 3  # dev clips also run through the engine with candidates, to check the shortcut below


@pytest.fixture(scope="module")
def processor(model_cache):
    """The product's AudioProcessor (VAD, engine, honesty rule) in this process. No gc.collect() after each
    detection: it changes no answer and costs ~40 ms a clip."""
    from src.audio_processor import AudioProcessor
    from src.config.settings import load_settings

    settings = load_settings(MODEL_CACHE_DIR=str(model_cache), ENGINE="local", WHISPER_MODEL="",
                             GC_AFTER_PROCESSING=False)
    processor = AudioProcessor.from_settings(settings)
    processor.load()
    yield processor
    processor.close()


@pytest.fixture(scope="module")
def results(processor) -> list[Row]:
    """Every clip of both sets through `identify` once. The answer among 5 candidates is the full answer
    restricted to them (what the engine does with candidates: `restrict`, checked on a few clips here), and
    stock faster-whisper runs only where it can matter: see test_dev_top1_keeps_up_with_stock_whisper."""
    from src.engines.local_whisper import restrict

    dev = manifest()
    languages = sorted({item.lang for item in dev})
    rows = []
    for index, item in enumerate(dev):
        samples = item.samples()
        full = processor.identify(samples)
        codes = candidates_for(item.file, item.lang, languages)
        among = processor.confidence.calibrate(restrict(full.raw_probabilities or [], codes))
        if index < CANDIDATE_PATH_CHECKS:
            direct = processor.identify(samples, languages=codes).probabilities
            assert [c for c, _ in direct] == [c for c, _ in among], (item.file, direct, among)
            assert [p for _, p in direct] == pytest.approx([p for _, p in among], abs=1e-6)
        rows.append(Row(item, "eval", [c for c, _ in full.probabilities], full, [c for c, _ in among]))
    for item in more_manifest():
        result = processor.identify(item.samples())
        rows.append(Row(item, "eval-more", [c for c, _ in result.probabilities], result))
    return rows


def stock_top1(processor, item: Clip) -> str:
    """Stock faster-whisper: `decode_audio` + `detect_language` (30 s window, no VAD)."""
    from faster_whisper.audio import decode_audio

    language, _, _ = processor.engine.model.detect_language(decode_audio(str(item.path)))
    return language


def confident(result) -> bool:
    return bool(result.confident)


def named(result) -> bool:
    return result.language is not None


def speech_rows(rows, which: str | None = None) -> list[Row]:
    return [r for r in rows if r.clip.kind in SPEECH_KINDS and (which is None or r.set == which)]


def test_sets_are_complete(results):
    assert len(speech_rows(results, "eval")) >= 60, "the dev set has fewer than 60 clips"
    assert len(speech_rows(results, "eval-more")) >= 90, "eval-more has fewer than 90 speech clips"


def test_dev_top1_keeps_up_with_stock_whisper_on_this_backend(results, processor):
    """ours >= stock - BEHIND_STOCK_MAX, i.e. lost - gained <= BEHIND_STOCK_MAX, where `lost` are the clips
    stock gets right and we do not, and `gained` the reverse. Stock runs on the clips we get wrong (to count
    `lost`), then on the ones we get right, least sure first (where stock is likeliest wrong), only until
    enough gains are found: the verdict is the one the full comparison gives, at a fraction of the stock
    detections (30 s windows each, ~4x the cost of ours)."""
    dev = speech_rows(results, "eval")
    ours = sum(r.right for r in dev)
    for row in dev:
        if not row.right:
            row.stock = stock_top1(processor, row.clip)
    lost = [f"{r.clip.file}->{r.codes[0] if r.codes else 'none'}" for r in dev if r.stock == r.clip.lang]
    gained = []
    for row in sorted((r for r in dev if r.right), key=lambda r: r.result.probabilities[0][1]):
        if len(lost) - len(gained) <= BEHIND_STOCK_MAX:
            break
        row.stock = stock_top1(processor, row.clip)
        if row.stock != row.clip.lang:
            gained.append(row.clip.file)
    checked = sum(r.stock is not None for r in dev)
    assert len(lost) - len(gained) <= BEHIND_STOCK_MAX, (
        f"top-1 {ours}/{len(dev)}; stock faster-whisper on the same backend is right on {len(lost)} clips we get "
        f"wrong ({', '.join(lost)}) and wrong on {len(gained)} we get right, of {checked} it was run on"
    )


def test_top1_over_both_sets(results):
    rows = speech_rows(results)
    rate = sum(r.right for r in rows) / len(rows)
    wrong = [f"{r.clip.file}->{r.codes[0] if r.codes else 'none'}" for r in rows if not r.right]
    assert rate >= POOLED_TOP1_FLOOR, f"top-1 {rate:.1%} < {POOLED_TOP1_FLOOR:.0%} on {len(rows)} clips; wrong: {', '.join(wrong)}"


def test_dev_top3(results):
    dev = speech_rows(results, "eval")
    rate = sum(r.clip.lang in r.codes[:3] for r in dev) / len(dev)
    assert rate >= TOP3_FLOOR, f"top-3 {rate:.1%} < {TOP3_FLOOR:.0%}"


def test_dev_accuracy_among_five_candidates(results):
    dev = speech_rows(results, "eval")
    wrong = [f"{r.clip.file}->{r.among_candidates[0]}" for r in dev if r.among_candidates[0] != r.clip.lang]
    rate = 1 - len(wrong) / len(dev)
    assert rate >= CANDIDATES5_FLOOR, (
        f"top-1 among {N_CANDIDATES} candidates {rate:.1%} < {CANDIDATES5_FLOOR:.0%}; wrong: {', '.join(wrong)}"
    )


@pytest.mark.parametrize("which", ["eval", "eval-more"])
def test_confident_answers_are_right(results, which):
    rows = speech_rows(results, which)
    sure = [r for r in rows if confident(r.result)]
    wrong = [f"{r.clip.file}->{r.codes[0]}" for r in sure if not r.right]
    assert len(sure) >= CONFIDENT_SHARE_FLOOR * len(rows), f"only {len(sure)}/{len(rows)} answers confident"
    assert 1 - len(wrong) / len(sure) >= CONFIDENT_PRECISION_FLOOR, (
        f"{len(wrong)} of {len(sure)} confident answers wrong: {', '.join(wrong)}"
    )


def test_non_speech_is_never_named(results):
    noise = [r for r in results if r.clip.kind == "non_speech"]
    assert noise, "eval-more has no non_speech clips"
    assert not [r.clip.file for r in noise if named(r.result)], "a language was named for non-speech"


def test_a_language_the_model_does_not_know_is_not_confident(results):
    unknown = [r for r in results if r.clip.lang == "rw"]  # Kinyarwanda: not among Whisper's languages
    assert unknown, "eval-more has no Kinyarwanda clips"
    assert not [r.clip.file for r in unknown if confident(r.result)]


# The likely set where it is not empty, per set, in-sample (the thresholds were calibrated on these sets and
# eval-extra): measured 100 % / 98.7 % (eval / eval-more speech) on oneDNN and MKL alike, one miss in 76
# sets on eval-more. The floor leaves one more miss per set: held out, the folds measured 97-100 %.
LIKELY_COVERAGE_FLOOR = 0.95


@pytest.mark.parametrize("which", ["eval", "eval-more"])
def test_likely_sets_hold_the_spoken_language(results, which):
    rows = [r for r in speech_rows(results, which) if r.result.likely]
    held = [r for r in rows if set(r.result.likely) & set(r.clip.lang.split("+"))]
    assert rows and len(held) >= LIKELY_COVERAGE_FLOOR * len(rows) - 1, (
        f"{len(held)}/{len(rows)} likely sets hold the language; missed: "
        + ", ".join(f"{r.clip.file}->{r.result.likely}" for r in rows if r not in held))
    assert all(len(r.result.likely) <= 3 for r in rows)
    assert all(r.result.likely == [r.codes[0]] for r in speech_rows(results, which) if r.result.confident)
    assert not [r.clip.file for r in results if r.clip.kind == "non_speech" and r.result.likely]
