"""POST /detect and the command line, on real clips."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import httpx
import pytest

from audio_tools import FORMATS, clip, encode, eval_dir
from conftest import BACKEND_DIR


@pytest.mark.parametrize("fmt", FORMATS)
def test_detect_each_format_as_body(server, fmt):
    item = clip("es_cv_5.mp3")
    response = httpx.post(server.http + "/detect", content=encode(item.samples(), fmt), timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success" and body["data"]["language"] == "es"
    assert body["data"]["audio_duration"] == pytest.approx(item.seconds, abs=0.15)
    assert len(body["data"]["top"]) == 5 and body["data"]["final"] is True


def test_detect_multipart_with_candidates(server):
    audio = encode(clip("cy_cv_3.mp3").samples(), "webm")
    response = httpx.post(
        server.http + "/detect",
        files={"file": ("clip.webm", audio, "audio/webm")},
        data={"languages": "cy,en,fr,de", "top_k": "2"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["language"] == "cy" and data["candidates"] == ["cy", "en", "fr", "de"]
    assert len(data["top"]) == 2 and {t["language"] for t in data["top"]} <= {"cy", "en", "fr", "de"}


def test_detect_query_options(server):
    audio = encode(clip("it_cv_1.mp3").samples(), "mp3")
    response = httpx.post(server.http + "/detect?languages=it,es&top_k=2", content=audio, timeout=60)
    data = response.json()["data"]
    assert data["language"] == "it" and [t["language"] for t in data["top"]] == ["it", "es"]
    assert sum(t["probability"] for t in data["top"]) == pytest.approx(1.0, abs=0.002)


@pytest.mark.parametrize(
    "kwargs, status, expected",
    [
        # Fixed noise bytes: about 1 in 300 draws of os.urandom probes as some container ("no audio stream").
        ({"content": random.Random(5000).randbytes(5000)}, 400, "not in a known audio format"),
        ({"content": b""}, 400, "no audio"),
        ({"files": {"other": ("x.wav", b"abc")}}, 400, "field named 'file'"),
        ({"content": b"RIFF0000WAVEfmt garbage"}, 400, "could not decode wav"),
    ],
)
def test_detect_bad_input(server, kwargs, status, expected):
    before = server.metrics()["errors"]
    response = httpx.post(server.http + "/detect", timeout=30, **kwargs)
    assert response.status_code == status
    body = response.json()
    assert body["status"] == "error" and expected in body["message"], body
    assert server.metrics()["errors"] == before + 1


def test_detect_bad_options(server):
    audio = encode(clip("de_cv_1.mp3").samples(), "wav")
    response = httpx.post(server.http + "/detect?languages=de,zz", content=audio, timeout=30)
    assert response.status_code == 400 and "zz" in response.json()["message"]
    response = httpx.post(server.http + "/detect?top_k=500", content=audio, timeout=30)
    assert response.status_code == 422


def test_detect_too_large(make_server):
    srv = make_server({"MAX_UPLOAD_BYTES": "10000", "ENGINE": "local"})
    audio = encode(clip("de_cv_1.mp3").samples(), "wav")
    response = httpx.post(srv.http + "/detect", content=audio, timeout=30)
    assert response.status_code == 413 and "10000 bytes" in response.json()["message"]
    response = httpx.post(srv.http + "/detect", files={"file": ("a.wav", audio, "audio/wav")}, timeout=30)
    assert response.status_code in (400, 413)


def test_cli_on_a_folder(tmp_path, model_cache):
    folder = tmp_path / "clips"
    folder.mkdir()
    expected = {}
    for file, fmt in [("en_cv_5.mp3", "webm"), ("ja_cv_1.mp3", "mp4"), ("de_cv_3.mp3", "flac")]:
        (folder / f"{file}.{fmt}").write_bytes(encode(clip(file).samples(), fmt))
        expected[f"{file}.{fmt}"] = file[:2]
    (folder / "broken.wav").write_bytes(b"RIFF not really")
    missing = str(tmp_path / "no-such-clip.mp3")
    env = {**os.environ, "MODEL_CACHE_DIR": str(model_cache), "TOP_K": "2"}
    out = subprocess.run([sys.executable, "-m", "src.cli", missing, str(folder)], cwd=BACKEND_DIR,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr  # one file could not be read, one path does not exist
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 4, out.stdout  # one line per file; the summary is on stderr
    for line in lines:
        path, *rest = line.split("\t")
        name = os.path.basename(path)
        if name == "broken.wav":
            assert rest[0].startswith("error: could not decode wav")
        else:
            assert rest[0] == expected[name], line
            assert len(rest[3].split(", ")) == 2, line  # TOP_K candidates by default
    errors = out.stderr.strip().splitlines()
    assert f"error: no such file or folder: {missing}" in errors
    assert errors[-1].startswith("4 files in") and "1 could not be read; 1 not found" in errors[-1], out.stderr
    assert "\r" not in out.stderr and "file/s" not in out.stderr  # no progress bar when stderr is not a terminal


def test_cli_json_and_bad_arguments(model_cache):
    env = {**os.environ, "MODEL_CACHE_DIR": str(model_cache)}
    path = str(eval_dir() / "clips" / "fr_cv_3.mp3")
    out = subprocess.run([sys.executable, "-m", "src.cli", path, "--json", "--languages", "fr,es"],
                         cwd=BACKEND_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout.strip())
    assert record["language"] == "fr" and record["language_name"] == "French"
    assert {t["language"] for t in record["top"]} == {"fr", "es"}
    assert all(t["language_name"] for t in record["top"])
    for number in [record["confidence"], record["processing_time"], record["audio_duration"],
                   *(t["probability"] for t in record["top"])]:
        assert number == round(number, 4), record  # rounded as the API rounds them
    assert out.stderr.strip().splitlines()[-1].startswith("1 files in")
    out = subprocess.run([sys.executable, "-m", "src.cli", path, "--languages", "fr,xx"], cwd=BACKEND_DIR,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "xx" in out.stderr
