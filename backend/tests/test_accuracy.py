"""Accuracy guard: the embedded engine, through the AudioProcessor (VAD + engine, as the server runs it), on
every clip of the dev set (66 clips, 22 languages; ~10 s).

Floors are a few points under what was measured (scripts/evaluate.py, the same procedure): top-1 77.3 %
(51/66), top-3 87.9 % (58/66), top-1 among 5 candidates including the right one 97.0 % (64/66). Stock
faster-whisper `detect_language` gets 69.7 % / 86.4 % here. If a change to the detection raises these,
raise the floors with it.
"""

from __future__ import annotations

import random

import pytest

from audio_tools import manifest

TOP1_FLOOR = 0.73
TOP3_FLOOR = 0.83
CANDIDATES5_FLOOR = 0.93
N_CANDIDATES = 5
SEED = 0  # the candidate draw, as scripts/evaluate.py --seed 0


def candidates_for(file: str, lang: str, languages: list[str]) -> list[str]:
    """The right language plus 4 others, drawn deterministically per clip (same draw as evaluate.py)."""
    others = sorted(set(languages) - {lang})
    picked = random.Random(f"{SEED}:{file}").sample(others, min(N_CANDIDATES - 1, len(others)))
    return sorted([lang, *picked])


@pytest.fixture(scope="module")
def results(model_cache):
    from src.audio_processor import AudioProcessor
    from src.config.settings import load_settings

    settings = load_settings(MODEL_CACHE_DIR=str(model_cache), ENGINE="local", WHISPER_MODEL="")
    processor = AudioProcessor.from_settings(settings)
    processor.load()
    clips = manifest()
    languages = sorted({item.lang for item in clips})
    rows = []
    try:
        for item in clips:
            samples = item.samples()
            full = processor.identify(samples)
            with_candidates = processor.identify(samples, languages=candidates_for(item.file, item.lang, languages))
            rows.append((item, [code for code, _ in full.probabilities],
                         [code for code, _ in with_candidates.probabilities]))
    finally:
        processor.close()
    return rows


def _report(rows, k: int, with_candidates: bool = False) -> tuple[float, list[str]]:
    """Share of clips whose language is in the top k answers, and the clips where it is not."""
    right, wrong = 0, []
    for item, full, among_candidates in rows:
        codes = among_candidates if with_candidates else full
        if item.lang in codes[:k]:
            right += 1
        else:
            wrong.append(f"{item.file}->{codes[0] if codes else 'none'}")
    return right / len(rows), wrong


def test_dev_set_is_complete(results):
    assert len(results) >= 60, f"only {len(results)} clips in the dev set"


def test_top1_accuracy(results):
    rate, wrong = _report(results, 1)
    assert rate >= TOP1_FLOOR, f"top-1 {rate:.1%} < {TOP1_FLOOR:.0%}; wrong: {', '.join(wrong)}"


def test_top3_accuracy(results):
    rate, wrong = _report(results, 3)
    assert rate >= TOP3_FLOOR, f"top-3 {rate:.1%} < {TOP3_FLOOR:.0%}; not in top 3: {', '.join(wrong)}"


def test_accuracy_among_five_candidates(results):
    rate, wrong = _report(results, 1, with_candidates=True)
    assert rate >= CANDIDATES5_FLOOR, (
        f"top-1 among {N_CANDIDATES} candidates {rate:.1%} < {CANDIDATES5_FLOOR:.0%}; wrong: {', '.join(wrong)}"
    )
