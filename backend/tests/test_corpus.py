"""The corpus mode (src/corpus): inputs of each kind, a row per input in jsonl and parquet, broken files,
resume after SIGKILL, fsspec over HTTP on 127.0.0.1, and the Ray pipeline on a two-node local cluster in
namespaces of its own. Each run is a real `python -m src.corpus` on real clips, bounded in time."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audio_tools import clip, encode
from conftest import BACKEND_DIR, free_port

CLIPS = ("es_cv_5.mp3", "de_cv_1.mp3", "it_cv_1.mp3", "cy_cv_3.mp3")
RUN_TIMEOUT = 300  # s for one corpus run of a few files on a loaded machine


def corpus(model_cache: Path, *args: str, timeout: float = RUN_TIMEOUT, **popen) -> subprocess.CompletedProcess:
    env = os.environ | {"MODEL_CACHE_DIR": str(model_cache), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "src.corpus", *args], cwd=BACKEND_DIR, env=env,
                          capture_output=True, text=True, timeout=timeout, **popen)


def read_rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {row["id"]: row for row in rows}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Four real clips and broken files of each kind: empty, truncated, not audio."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "nested").mkdir()
    for name in CLIPS[:2]:
        shutil.copy(clip(name).path, root / name)
    for name in CLIPS[2:]:
        shutil.copy(clip(name).path, root / "nested" / name)
    (root / "empty.mp3").write_bytes(b"")
    whole = encode(clip("es_cv_5.mp3").samples(), "mp4-file")  # an ordinary mp4: its index at the end
    (root / "truncated.m4a").write_bytes(whole[: len(whole) // 2])
    (root / "notes.wav").write_bytes(b"these are not the sounds you are looking for\n" * 20)
    (root / "readme.txt").write_text("not listed: not an audio suffix")
    return root


BROKEN = {"empty.mp3": "empty", "truncated.m4a": "could not decode", "notes.wav": "not in a known audio format"}


def test_folder_and_broken_files_as_jsonl_with_detect_fields(folder, tmp_path, model_cache, server):
    out = tmp_path / "rows.jsonl"
    missing = str(folder / "gone.mp3")
    result = corpus(model_cache, str(folder), missing, "--out", str(out), "--workers", "1",
                    "--summary-json", str(tmp_path / "summary.json"))
    assert result.returncode == 0, result.stderr
    rows = by_id(read_rows(out))
    assert len(rows) == len(CLIPS) + len(BROKEN) + 1 == len(read_rows(out))
    for name, words in BROKEN.items():
        row = rows[str(folder / name)]
        assert row["status"] == "error" and words in row["error"] and row["language"] is None, row
    assert rows[missing]["status"] == "error" and "no such file" in rows[missing]["error"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["files"] == len(rows) and summary["errors"] == len(BROKEN) + 1
    # Each clip's row says what POST /detect answers for the same file (fields and honesty rule).
    for name in CLIPS:
        path = folder / name if name in CLIPS[:2] else folder / "nested" / name
        row = rows[str(path)]
        answer = httpx.post(server.http + "/detect", content=path.read_bytes(), timeout=120).json()["data"]
        assert row["status"] == "ok" and "error" not in row
        assert row["language"] == answer["language"] and row["confident"] == answer["confident"]
        assert row["likely"] == answer["likely"] and len(row["top"]) == len(answer["top"])
        assert [t["language"] for t in row["top"][:2]] == [t["language"] for t in answer["top"][:2]]
        assert row["confidence"] == pytest.approx(answer["confidence"], abs=0.02)
        assert row["speech_seconds"] == pytest.approx(answer["speech_duration"], abs=0.05)
        assert row["duration"] == pytest.approx(answer["audio_duration"], abs=0.01)
        assert row["model"] == answer["engine"]
    named = [r["language"] or "uncertain" for r in rows.values() if r["status"] == "ok"]
    assert summary["languages"] == {lang: named.count(lang) for lang in set(named)}


def _manifests(root: Path) -> list[Path]:
    """One manifest of each kind: jsonl (relative paths, ids, labels, one wrong), csv (an offset and a
    duration), parquet (a missing file)."""
    for name in CLIPS:
        shutil.copy(clip(name).path, root / name)
    jsonl = root / "part1.jsonl"
    jsonl.write_text(json.dumps({"id": "a", "path": "es_cv_5.mp3", "label": "es"}) + "\n"
                     + json.dumps({"id": "b", "path": "de_cv_1.mp3", "label": "fr"}) + "\n")
    with open(root / "part2.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["id", "path", "label", "offset", "duration"])
        writer.writeheader()
        writer.writerow({"id": "c", "path": str(root / "it_cv_1.mp3"), "label": "it", "offset": "0.5", "duration": "2"})
    pq.write_table(pa.Table.from_pylist([{"id": "d", "path": "cy_cv_3.mp3", "label": "CY"},
                                         {"id": "e", "path": "nowhere.wav", "label": "en"}]), root / "part3.parquet")
    return [jsonl, root / "part2.csv", root / "part3.parquet"]


def test_manifests_of_each_kind_with_labels_to_parquet_audit_and_keep(tmp_path, model_cache):
    manifests = _manifests(tmp_path)
    out = tmp_path / "out" / "rows.parquet"
    keep = tmp_path / "keep.csv"
    result = corpus(model_cache, *map(str, manifests), "--out", str(out), "--workers", "1",
                    "--keep", "agrees", "--keep-out", str(keep), "--summary-json", "-")
    assert result.returncode == 0, result.stderr
    assert not (out.parent / "rows.parquet.partial.jsonl").exists()
    rows = by_id(read_rows(out))
    assert sorted(rows) == ["a", "b", "c", "d", "e"]
    assert pq.read_schema(out).field("top").type.value_type.num_fields == 3
    assert rows["a"]["label"] == "es" and rows["a"]["agrees"] == (rows["a"]["language"] == "es")
    assert rows["b"]["label"] == "fr" and rows["b"]["language"] == "de" and rows["b"]["agrees"] is False
    assert rows["d"]["label"] == "cy"  # labels compared lower-case
    assert rows["c"]["offset"] == 0.5 and rows["c"]["duration"] == pytest.approx(2.0, abs=0.01)
    assert rows["e"]["status"] == "error" and "no such file" in rows["e"]["error"]
    summary = json.loads(result.stdout)
    assert summary["labelled"] == 5 and summary["disagree"] >= 1
    assert summary["disagreements"][0]["id"] == "b"  # de heard, fr on the label
    confidences = [d["confidence"] or 0 for d in summary["disagreements"]]
    assert confidences == sorted(confidences, reverse=True)
    kept = list(csv.DictReader(open(keep)))
    assert {r["id"] for r in kept} == {i for i, r in rows.items() if r["agrees"]}
    assert "b" not in {r["id"] for r in kept} and kept and all(r["label"] == r["language"] for r in kept)


def _wait_rows(path: Path, count: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} rows in {path} after {timeout} s")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_resume_after_sigkill_gives_every_input_exactly_once(suffix, tmp_path, model_cache):
    names = [clip(name).path for name in CLIPS] * 3  # twelve files (copies under their own names)
    for index, path in enumerate(names):
        shutil.copy(path, tmp_path / f"{index:02d}_{path.name}")
    out = tmp_path / f"rows{suffix}"
    journal = out if suffix == ".jsonl" else out.with_name(out.name + ".partial.jsonl")
    env = os.environ | {"MODEL_CACHE_DIR": str(model_cache)}
    args = [sys.executable, "-m", "src.corpus", str(tmp_path), "--out", str(out), "--workers", "2",
            "--batch-size", "2"]
    process = subprocess.Popen(args, cwd=BACKEND_DIR, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait_rows(journal, 4, process, RUN_TIMEOUT)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the whole run at once, workers too: a crash
        process.wait(timeout=30)
    before = journal.read_bytes().count(b"\n")
    assert before < len(names) and not (suffix == ".parquet" and out.exists())
    with open(journal, "ab") as handle:
        handle.write(b'{"id": "half a line')  # as a kill in the middle of a write leaves it
    result = corpus(model_cache, str(tmp_path), "--out", str(out), "--workers", "2", "--summary-json", "-")
    assert result.returncode == 0, result.stderr
    ids = [row["id"] for row in read_rows(out)]
    assert len(ids) == len(set(ids)) == len(names)
    assert json.loads(result.stdout)["new"] == len(names) - before
    assert all(row["status"] == "ok" for row in read_rows(out))
    again = corpus(model_cache, str(tmp_path), "--out", str(out), "--workers", "1", "--summary-json", "-")
    assert again.returncode == 0 and json.loads(again.stdout)["new"] == 0
    assert len(read_rows(out)) == len(names)
    fresh = corpus(model_cache, str(tmp_path / "00_es_cv_5.mp3"), "--out", str(out), "--overwrite", "--workers", "1")
    assert fresh.returncode == 0 and len(read_rows(out)) == 1


@pytest.fixture
def http_files(tmp_path):
    """Clips and a manifest served over HTTP on 127.0.0.1 by Python's own server."""
    for name in CLIPS[:2]:
        shutil.copy(clip(name).path, tmp_path / name)
    (tmp_path / "list.jsonl").write_text("".join(json.dumps({"path": p, "label": p[:2]}) + "\n"
                                                 for p in (*CLIPS[:2], "absent.mp3")))
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(base + "/list.jsonl", timeout=2)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield base
    process.terminate()
    process.wait(timeout=10)


def test_fsspec_urls_over_http(http_files, tmp_path, model_cache):
    out = tmp_path / "http.jsonl"
    direct = f"{http_files}/{CLIPS[2]}"  # not served: a row with the error
    result = corpus(model_cache, f"{http_files}/list.jsonl", direct, "--out", str(out), "--workers", "1")
    assert result.returncode == 0, result.stderr
    rows = by_id(read_rows(out))
    assert set(rows) == {f"{http_files}/{name}" for name in (*CLIPS[:2], "absent.mp3", CLIPS[2])}
    for name in CLIPS[:2]:
        row = rows[f"{http_files}/{name}"]
        assert row["status"] == "ok" and row["language"] == row["label"] == name[:2]
    for name in ("absent.mp3", CLIPS[2]):
        assert rows[f"{http_files}/{name}"]["status"] == "error"
        assert "no such file" in rows[f"{http_files}/{name}"]["error"]


def test_bad_arguments_exit_2(tmp_path, model_cache):
    assert corpus(model_cache, str(tmp_path), "--out", str(tmp_path / "x.csv")).returncode == 2
    assert corpus(model_cache, str(tmp_path), "--out", str(tmp_path / "x.jsonl"), "--workers", "0").returncode == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"label": "en"}\n')
    result = corpus(model_cache, str(bad), "--out", str(tmp_path / "x.jsonl"), "--workers", "1")
    assert result.returncode == 2 and "no 'path'" in result.stderr


def test_batched_answers_are_the_single_answers():
    """AudioProcessor.identify_batch: the answers identify gives, clip by clip (a no-speech one too)."""
    from src.audio_processor import AudioProcessor
    from src.config import load_settings
    import numpy as np

    settings = load_settings().model_copy(update={"WHISPER_WORKERS": 1, "WHISPER_CPU_THREADS": 1,
                                                  "MODEL_CACHE_DIR": tempfile.mkdtemp(prefix="models")})
    processor = AudioProcessor.from_settings(settings, gc_after_processing=False)
    processor.load()
    try:
        clips = [clip(name).samples() for name in CLIPS] + [np.zeros(16000 * 3, dtype=np.float32)]
        batched = processor.identify_batch([(samples, None) for samples in clips])
        single = [processor.identify(samples) for samples in clips]
    finally:
        processor.close()
    assert len(batched) == len(single) == len(clips)
    for one, many in zip(single, batched):
        assert (one.language, one.reason, one.confident, one.likely) == (many.language, many.reason, many.confident, many.likely)
        for (code, prob), (code2, prob2) in zip(one.probabilities[:3], many.probabilities[:3]):
            assert code == code2 and prob == pytest.approx(prob2, abs=0.01)
    assert batched[-1].reason == "no_speech"


RAY_SCRIPT = r"""
set -e
ip link set lo up
export RAY_USAGE_STATS_ENABLED=0
ray start --head --node-ip-address=127.0.0.1 --port=6379 --num-cpus=1 --include-dashboard=false \
    --temp-dir="$RAY_TMP" --object-store-memory=100000000 --disable-usage-stats >"$RAY_TMP/head.log" 2>&1
ray start --address=127.0.0.1:6379 --node-ip-address=127.0.0.1 --num-cpus=1 \
    --object-store-memory=100000000 >"$RAY_TMP/worker.log" 2>&1
python -m src.corpus "$@" --ray 127.0.0.1:6379
"""


def _unshare_works() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip is not installed"
    probe = subprocess.run(["unshare", "-n", "-p", "-f", "--mount-proc", "ip", "link", "set", "lo", "up"],
                           capture_output=True, text=True, timeout=30)
    return None if probe.returncode == 0 else f"network and PID namespaces are not permitted here: {probe.stderr.strip()}"


def test_ray_pipeline_on_a_two_node_cluster_gives_the_local_rows(folder, tmp_path, model_cache):
    reason = _unshare_works()
    if reason:
        pytest.skip(reason)
    local = tmp_path / "local.jsonl"
    assert corpus(model_cache, str(folder), "--out", str(local), "--workers", "1").returncode == 0
    ray_out = tmp_path / "ray.jsonl"
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must be short
    env = os.environ | {"MODEL_CACHE_DIR": str(model_cache), "RAY_TMP": str(ray_tmp),
                        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    try:
        # Everything the cluster starts lives in these namespaces: it ends when the script does.
        result = subprocess.run(
            ["unshare", "-n", "-p", "-f", "--mount-proc", "bash", "-c", RAY_SCRIPT, "ray",
             str(folder), "--out", str(ray_out), "--workers", "2", "--summary-json", "-"],
            cwd=BACKEND_DIR, env=env, capture_output=True, text=True, timeout=170)
        logs = "".join(p.read_text(errors="replace")[-3000:] for p in ray_tmp.glob("*.log"))
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-5000:] + logs
    ray_rows, local_rows = by_id(read_rows(ray_out)), by_id(read_rows(local))
    assert sorted(ray_rows) == sorted(local_rows) and len(read_rows(ray_out)) == len(local_rows)
    for key, row in local_rows.items():
        other = ray_rows[key]
        assert (other["status"], other["language"], other["confident"], other.get("error")) == \
            (row["status"], row["language"], row["confident"], row.get("error"))
        if row["confidence"] is not None:
            assert other["confidence"] == pytest.approx(row["confidence"], abs=0.02)
    assert json.loads(result.stdout.strip().splitlines()[-1])["files"] == len(local_rows)
