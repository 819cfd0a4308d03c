"""The likely set (`likely`: at most 3 languages holding the spoken one with probability >= LIKELY_COVERAGE,
split-conformal) and strictness per request (`min_confidence`, `fallback_language`) on /ws, POST /detect and
the command line. Real servers, real clips; expectations come from each answer's own probabilities and the
rule the server runs (server.rule()), never from numbers copied here."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest

from audio_tools import clip, encode
from conftest import BACKEND_DIR, exchange

RATE = 16000


def _expected_likely(data: dict, rule) -> list[str]:
    from src import conformal

    probabilities = [(c["language"], c["probability"]) for c in data["top"]]
    return conformal.likely_set(probabilities, rule.likely_threshold, data["confident"], rule.likely_max)


def _detect(srv, audio: bytes, **params) -> httpx.Response:
    return httpx.post(srv.http + "/detect", content=audio, params=params, timeout=60)


# --- the conformal calibration, on synthetic numbers ----------------------------------------------

def test_conformal_threshold_covers_held_out_data():
    """A model whose probabilities are right (the label is drawn from them): the threshold calibrated on
    one sample covers a second one at the target, within sampling error."""
    from src import conformal

    rng = np.random.default_rng(7)
    codes = [f"l{i}" for i in range(8)]

    def draw(n):
        out = []
        for _ in range(n):
            p = rng.dirichlet(np.full(len(codes), 0.3))
            label = codes[rng.choice(len(codes), p=p)]
            ranked = sorted(zip(codes, p.tolist()), key=lambda item: -item[1])
            out.append((ranked, [label], False))
        return out

    calibration, held_out = draw(1000), draw(4000)
    for coverage in (0.8, 0.9, 0.95):
        limit = conformal.calibrate(calibration, [coverage])[coverage]
        hits = sum(any(c in truth for c in conformal.likely_set(p, limit, False, len(codes)))
                   for p, truth, _ in held_out)
        # sd of a 4000-draw share near 0.9 is 0.005; the calibration draw adds about as much: 0.02 is 3 sd
        assert hits / len(held_out) >= coverage - 0.02, (coverage, limit, hits)
    # the finite-sample rank: ceil((n+1)(1-alpha)) of n, +inf beyond n
    assert conformal.threshold([0.1, 0.2, 0.3, 0.4], 0.5) == 0.3
    assert math.isinf(conformal.threshold([0.1, 0.2, 0.3, 0.4], 0.9))


def test_likely_set_rules():
    from src import conformal

    assert conformal.likely_set([("hr", 0.6), ("sr", 0.38), ("bs", 0.02)], 0.95, False, 3) == ["hr", "sr"]
    assert conformal.likely_set([("a", 0.4), ("b", 0.3), ("c", 0.2), ("d", 0.1)], 0.95, False, 3) == []
    assert conformal.likely_set([("a", 0.9), ("b", 0.1)], 0.95, True, 3) == ["a"]
    assert conformal.score([("a", 0.5), ("b", 0.3), ("c", 0.2)], ["c"], False) == pytest.approx(0.8)
    assert math.isinf(conformal.score([("a", 0.9), ("b", 0.1)], ["b"], True))
    with pytest.raises(ValueError):
        conformal.parse_table("0.9:0.8,0.95:0.5")  # thresholds must not fall as coverage rises


# --- likely on real answers -----------------------------------------------------------------------

def test_likely_on_real_answers(server):
    """A confident clip: [its language]; a close-language clip (Welsh heard as Latin or Welsh): 2-3 or [];
    a spread answer: []; no speech: []. Each recomputed from the answer's own probabilities."""
    rule = server.rule()
    seen = {}
    for file in ("es_cv_5.mp3", "cy_cv_3.mp3", "ta_cv_3.mp3"):
        data = _detect(server, clip(file).path.read_bytes()).json()["data"]
        assert data["likely"] == _expected_likely(data, rule), data
        assert len(data["likely"]) <= 3
        if data["confident"]:
            assert data["likely"] == [data["language"]], data
        seen[file] = data
    assert seen["es_cv_5.mp3"]["confident"] and seen["es_cv_5.mp3"]["likely"] == ["es"]
    assert len(seen["cy_cv_3.mp3"]["likely"]) in (0, 2, 3)  # la 0.48-0.60 / cy 0.35-0.46 on the two backends
    assert seen["ta_cv_3.mp3"]["likely"] == []  # top 0.33-0.35: no three hold 0.95 on either backend
    silence = encode(np.zeros(RATE * 2, np.float32), "wav")
    quiet = _detect(server, silence).json()["data"]
    assert quiet["reason"] == "no_speech" and quiet["likely"] == []
    # /ws gives the same set as /detect
    mp3 = clip("cy_cv_3.mp3").path.read_bytes()
    once = exchange(server.ws, mp3, frame_size=len(mp3)).last["data"]
    assert once["likely"] == seen["cy_cv_3.mp3"]["likely"]


def test_candidates_apply_before_the_set(server):
    rule = server.rule()
    data = _detect(server, clip("cy_cv_3.mp3").path.read_bytes(), languages="cy,en").json()["data"]
    assert data["likely"] == _expected_likely(data, rule), data
    assert data["likely"] and set(data["likely"]) <= {"cy", "en"}, data


# --- strictness per request -----------------------------------------------------------------------

def test_min_confidence_stricter_and_looser(server):
    """The same clip, a threshold just under and just over its own top probability: confident flips as
    the rule says (the lead is the server's FINAL_MARGIN)."""
    rule = server.rule()
    audio = clip("en_cv_5.mp3").path.read_bytes()  # en 0.93, lead 0.87 on both backends
    base = _detect(server, audio).json()["data"]
    top, runner = base["top"][0]["probability"], base["top"][1]["probability"]
    assert top - runner >= rule.final_margin, base
    for min_confidence in (max(0.0, top - 0.02), min(1.0, top + 0.02)):
        data = _detect(server, audio, min_confidence=min_confidence).json()["data"]
        expected = data["top"][0]["probability"] >= min_confidence and top - runner >= rule.final_margin
        assert data["confident"] is expected, (min_confidence, data)
        assert data["likely"] == _expected_likely(data, rule)
        frame = json.dumps({"type": "start", "min_confidence": min_confidence})
        ws = exchange(server.ws, audio, frame_size=len(audio), texts_before=[frame]).last["data"]
        assert ws["confident"] is expected, (min_confidence, ws)
        query = exchange(f"{server.ws}?min_confidence={min_confidence}", audio, frame_size=len(audio)).last["data"]
        assert query["confident"] is expected


def test_fallback_language_names_it_when_uncertain(doubtful, model_cache):
    audio = clip("en_cv_3.mp3").path.read_bytes()
    plain = _detect(doubtful, audio).json()["data"]
    assert plain["reason"] == "uncertain" and plain["language"] is None
    data = _detect(doubtful, audio, fallback_language="de").json()["data"]
    assert data["language"] == "de" and data["fallback"] is True and data["confident"] is False, data
    assert "reason" not in data
    form = httpx.post(doubtful.http + "/detect", files={"file": ("a.mp3", audio)},
                      data={"fallback_language": "fr"}, timeout=60).json()["data"]
    assert form["language"] == "fr" and form["fallback"] is True
    frame = json.dumps({"type": "start", "fallback_language": "it"})
    ws = exchange(doubtful.ws, audio, frame_size=len(audio), texts_before=[frame]).last["data"]
    assert ws["language"] == "it" and ws["fallback"] is True and ws["confident"] is False
    silence = encode(np.zeros(RATE * 2, np.float32), "wav")
    quiet = _detect(doubtful, silence, fallback_language="de").json()["data"]
    assert quiet["language"] is None and quiet["reason"] == "no_speech" and "fallback" not in quiet
    env = {**os.environ, "MODEL_CACHE_DIR": str(model_cache), "UNCERTAIN_BELOW": doubtful.env["UNCERTAIN_BELOW"]}
    out = subprocess.run([sys.executable, "-m", "src.cli", str(clip("en_cv_3.mp3").path), "--json",
                          "--fallback-language", "de"], cwd=BACKEND_DIR, env=env, capture_output=True, text=True,
                         timeout=120)
    record = json.loads(out.stdout.strip())
    assert record["language"] == "de" and record["fallback"] is True and record["likely"] == plain["likely"]


@pytest.mark.parametrize("params, status", [
    ({"min_confidence": "2"}, 422), ({"min_confidence": "abc"}, 422), ({"fallback_language": "zz"}, 400),
    ({"fallback_language": "en,fr"}, 400),
])
def test_bad_strictness_on_detect(server, params, status):
    response = _detect(server, b"\x00" * 100, **params)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and ("min_confidence" in body["message"] or "fallback_language" in body["message"]), body


def test_bad_strictness_in_a_form_field(server):
    response = httpx.post(server.http + "/detect", files={"file": ("a.mp3", b"\x00" * 100)},
                          data={"min_confidence": "1.5"}, timeout=30)
    assert response.status_code == 400 and "min_confidence" in response.json()["message"]


@pytest.mark.parametrize("query, frame", [
    ("?min_confidence=-0.1", None), ("?fallback_language=xx", None),
    ("", {"type": "start", "min_confidence": "often"}), ("", {"type": "start", "fallback_language": 3}),
])
def test_bad_strictness_on_ws(server, query, frame):
    result = exchange(server.ws + query, b"", stop=False, texts_before=[json.dumps(frame)] if frame else [])
    assert result.close_code == 1003, result
    assert result.last["status"] == "error"
    assert "min_confidence" in result.last["message"] or "fallback_language" in result.last["message"]
    assert httpx.get(server.http + "/").status_code == 200  # still serving


def test_bad_strictness_on_the_command_line(model_cache):
    env = {**os.environ, "MODEL_CACHE_DIR": str(model_cache)}
    for flags in (["--min-confidence", "5"], ["--fallback-language", "qq"]):
        out = subprocess.run([sys.executable, "-m", "src.cli", str(clip("en_cv_5.mp3").path), *flags],
                             cwd=BACKEND_DIR, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and ("min-confidence" in out.stderr or "fallback-language" in out.stderr), out.stderr
