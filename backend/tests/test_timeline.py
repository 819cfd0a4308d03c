"""The language timeline: POST /detect?timeline=true and the CLI's --timeline on a real 3-language join,
and the smoothing rule on its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest

from audio_tools import clip, encode, join_clips, reads_as, share_heard
from conftest import BACKEND_DIR

RATE = 16000
# Clips the model names confidently (p >= 0.99 on the whole clip), three languages.
JOIN = (("es_cv_5.mp3", "es"), ("de_cv_5.mp3", "de"), ("fr_cv_3.mp3", "fr"))
PAUSE_SECONDS = 0.8


def joined() -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    return join_clips(list(JOIN), PAUSE_SECONDS)


def check_timeline(timeline: list[dict], spans: list[tuple[str, float, float]]) -> None:
    named = [segment for segment in timeline if segment["language"]]
    order = [segment["language"] for segment in named]
    collapsed = [lang for i, lang in enumerate(order) if i == 0 or order[i - 1] != lang]
    assert collapsed == [lang for lang, _, _ in spans], timeline
    for language, start, end in spans:
        mine = [s for s in named if s["language"] == language]
        # Each language's segments cover its turn, give or take half a second, and stay out of the others.
        assert mine[0]["start"] == pytest.approx(start, abs=0.5), timeline
        assert mine[-1]["end"] == pytest.approx(end, abs=0.5), timeline
        assert all(s["confident"] for s in mine), timeline
    for segment in timeline:
        assert segment["end"] > segment["start"]
        assert segment["top"][0]["language"] == segment["language"] or segment["language"] is None
    for before, after in zip(timeline, timeline[1:]):
        assert after["start"] >= before["end"] - 1e-6  # in order, no overlap


def test_detect_timeline_of_three_languages(server):
    samples, spans = joined()
    response = httpx.post(server.http + "/detect?timeline=true", content=encode(samples, "flac"), timeout=120)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    check_timeline(data["timeline"], spans)
    assert data["timeline_processing_time"] > 0
    # Pauses between turns are not segments.
    for (_, _, end), (_, start, _) in zip(spans, spans[1:]):
        middle = (end + start) / 2
        assert not any(s["start"] < middle - 0.15 and s["end"] > middle + 0.15 for s in data["timeline"])


def test_detect_timeline_multipart_and_bad_flag(server):
    samples, spans = joined()
    audio = encode(samples, "webm")
    response = httpx.post(server.http + "/detect", files={"file": ("join.webm", audio, "audio/webm")},
                          data={"timeline": "true", "languages": "es,de,fr,it"}, timeout=120)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    check_timeline(data["timeline"], spans)
    assert all(t["language"] in {"es", "de", "fr", "it"} for s in data["timeline"] for t in s["top"])
    response = httpx.post(server.http + "/detect", files={"file": ("join.webm", audio, "audio/webm")},
                          data={"timeline": "maybe"}, timeout=60)
    assert response.status_code == 400 and "timeline" in response.json()["message"]
    # Without the flag, no timeline.
    response = httpx.post(server.http + "/detect", content=encode(clip("de_cv_1.mp3").samples(), "wav"), timeout=60)
    assert "timeline" not in response.json()["data"]


def test_cli_timeline(tmp_path, model_cache):
    samples, spans = joined()
    path = tmp_path / "join.wav"
    path.write_bytes(encode(samples, "wav"))
    env = {**os.environ, "MODEL_CACHE_DIR": str(model_cache)}
    out = subprocess.run([sys.executable, "-m", "src.cli", str(path), "--json", "--timeline"], cwd=BACKEND_DIR,
                         env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    check_timeline(json.loads(out.stdout.strip())["timeline"], spans)


def _window(start: float, end: float, probabilities):
    from src.timeline import Window

    return Window(int(start * RATE), int(end * RATE), 0, probabilities)


def test_one_doubtful_window_makes_no_switch():
    from src.confidence import ConfidenceRule
    from src.timeline import TimelineOptions, build

    sure_en = [("en", 0.95), ("de", 0.03)]
    doubt_de = [("de", 0.55), ("en", 0.35)]
    sure_de = [("de", 0.96), ("en", 0.02)]
    rule = ConfidenceRule(final_probability=0.85, uncertain_below=0.5)
    options = TimelineOptions(switch_penalty=2.0, confidence=rule)
    windows = [_window(0, 3, sure_en), _window(3, 6, sure_en), _window(6, 9, doubt_de), _window(9, 12, sure_en)]
    segments = build(windows, options)
    assert [(s.language, s.start, s.end) for s in segments] == [("en", 0.0, 12.0)]
    # Two sure windows of another language are a switch, at the window edge.
    windows = [_window(0, 3, sure_en), _window(3, 6, sure_en), _window(6, 9, sure_de), _window(9, 12, sure_de)]
    segments = build(windows, options)
    assert [(s.language, s.start, s.end) for s in segments] == [("en", 0.0, 6.0), ("de", 6.0, 12.0)]
    assert all(s.confident for s in segments)
    # Without a penalty, the doubtful window is its own segment.
    segments = build([_window(0, 3, sure_en), _window(3, 6, doubt_de), _window(6, 9, sure_en)],
                     TimelineOptions(switch_penalty=0.0))
    assert [s.language for s in segments] == ["en", "de", "en"] and not segments[1].confident


def test_uncertain_segment_names_no_language():
    from src.confidence import ConfidenceRule
    from src.timeline import TimelineOptions, build

    flat = [("it", 0.3), ("es", 0.28), ("pt", 0.25)]
    segments = build([_window(0, 2, flat)], TimelineOptions(confidence=ConfidenceRule(uncertain_below=0.4)))
    data = segments[0].as_dict(3)
    assert data["language"] is None and data["reason"] == "uncertain" and data["confident"] is False
    assert [t["language"] for t in data["top"]] == ["it", "es", "pt"]


def test_v1_verbose_json_segments_carry_their_language(server):
    """POST /v1/audio/transcriptions, verbose_json, timeline=true: each stretch of the timeline is
    transcribed in its own language and each segment names it."""
    samples, spans = joined()
    audio = encode(samples, "wav")
    form = {"model": "whisper-1", "response_format": "verbose_json", "timeline": "true"}
    response = httpx.post(server.http + "/v1/audio/transcriptions", files={"file": ("join.wav", audio, "audio/wav")},
                          data=form, timeout=180)
    assert response.status_code == 200, response.text
    body = response.json()
    check_timeline(body["timeline"], spans)
    segments = body["segments"]
    assert segments and all("language" in s for s in segments), segments
    for segment in segments:  # the language of the timeline segment it overlaps most
        overlaps = {t["language"]: min(segment["end"], t["end"]) - max(segment["start"], t["start"])
                    for t in body["timeline"]}
        assert segment["language"] == max(overlaps, key=overlaps.get), (segment, body["timeline"])
    # Transcribed stretch by stretch, each in its own language: every language has its segments, in order.
    order = [s["language"] for s in segments]
    assert [lang for i, lang in enumerate(order) if i == 0 or order[i - 1] != lang] == ["es", "de", "fr"], segments
    spanish = " ".join(s["text"] for s in segments if s["language"] == "es")
    assert reads_as(spanish, "es") and share_heard(spanish) >= 0.5, spanish  # the Spanish clip, in Spanish
    # Without the flag: OpenAI's verbose_json as it was (on a short clip: the flag, not the audio, decides).
    short = encode(clip("de_cv_1.mp3").samples(), "wav")
    response = httpx.post(server.http + "/v1/audio/transcriptions", files={"file": ("de.wav", short, "audio/wav")},
                          data={"model": "whisper-1", "response_format": "verbose_json"}, timeout=180)
    assert response.status_code == 200 and response.json()["segments"], response.text
    assert "timeline" not in response.json() and all("language" not in s for s in response.json()["segments"])
