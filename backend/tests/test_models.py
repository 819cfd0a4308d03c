"""Models by name, devices and calibrations: WHISPER_MODEL as a size name answered offline from a
Hugging Face cache, a name that cannot be had failing clearly at start, WHISPER_DEVICE=cuda failing
clearly without a GPU, what /metrics says of the engine, and the honesty rule's numbers per model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from audio_tools import SPANISH_CLIP, clip
from conftest import BACKEND_DIR


def hf_cache(root: Path, model_dir: Path, repo: str = "Systran/faster-whisper-base") -> Path:
    """A Hugging Face hub cache holding `repo` at one revision, its files linked from `model_dir`."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = root / "hub" / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.bin", "tokenizer.json", "vocabulary.json"):
        (snapshot / name).symlink_to(model_dir / name)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(revision)
    return snapshot


@pytest.fixture(scope="module")
def embedded_model(model_cache) -> Path:
    from src.engines.model_files import ensure_model

    return ensure_model(model_cache)


def offline(root: Path, **env: str) -> dict:
    return {"HF_HOME": str(root), "HF_HUB_OFFLINE": "1", **env}


def test_a_model_by_name_answers_offline_from_the_cache(make_server, tmp_path, embedded_model):
    snapshot = hf_cache(tmp_path / "hf", embedded_model)
    srv = make_server(offline(tmp_path / "hf", WHISPER_MODEL="base"))
    answer = httpx.post(srv.http + "/detect", content=clip(SPANISH_CLIP).path.read_bytes(), timeout=60).json()
    assert answer["status"] == "success" and answer["data"]["engine"] == "local:base"
    assert answer["data"]["top"][0]["language"] == "es"
    engine = srv.metrics()["engine"]
    assert Path(engine["model_path"]).resolve() == snapshot.resolve() and engine["model"] == "base"
    # No calibration file for Systran/faster-whisper-base: the server says so, and answers under the
    # conservative rule (the rule the server applies, as its settings build it).
    rule = srv.rule()
    assert engine["calibrated"] is False and rule.calibrated is False and "no calibration" in engine["calibration"]
    assert "no calibration for Systran/faster-whisper-base" in srv.log()
    assert answer["data"]["confident"] is False and rule.final_probability > 1
    if answer["data"]["confidence"] < rule.uncertain_below:
        assert answer["data"]["language"] is None and answer["data"]["reason"] == "uncertain"


@pytest.mark.parametrize("name, expected", [
    ("no-such-size", ["WHISPER_MODEL='no-such-size'", "size name", "large-v3"]),
    ("Systran/faster-whisper-tiny", ["Systran/faster-whisper-tiny", "not in the Hugging Face cache", "HF_HUB_OFFLINE"]),
])
def test_a_model_that_cannot_be_had_stops_start_up_clearly(make_server, tmp_path, name, expected):
    (tmp_path / "hf").mkdir()
    srv = make_server(offline(tmp_path / "hf", WHISPER_MODEL=name), wait=False)
    assert srv.process.wait(timeout=120) == 1, srv.log()
    log = srv.log()
    for text in expected:
        assert text in log, log
    assert "Traceback" not in log


def cuda_devices() -> int:
    import ctranslate2

    return ctranslate2.get_cuda_device_count()


@pytest.mark.skipif(cuda_devices() > 0, reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_fails_clearly(make_server, model_cache, tmp_path):
    srv = make_server({"WHISPER_DEVICE": "cuda"}, wait=False)
    assert srv.process.wait(timeout=60) == 1, srv.log()  # the model is not even looked for
    assert "WHISPER_DEVICE=cuda" in srv.log() and "no CUDA device" in srv.log() and "Traceback" not in srv.log()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ENGINE"))}
    result = subprocess.run([sys.executable, "-m", "src.cli", str(clip(SPANISH_CLIP).path)], cwd=BACKEND_DIR,
                            env=env | {"WHISPER_DEVICE": "cuda", "MODEL_CACHE_DIR": str(model_cache)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no CUDA device" in result.stderr, result.stderr


def test_metrics_say_model_device_compute_type_backend_threads_and_workers(server, embedded_model):
    engine = server.metrics()["engine"]
    from src.engines.device import CPU_COMPUTE_TYPE

    expected_device = "cuda" if cuda_devices() > 0 else "cpu"
    assert engine["name"] == "local:whisper-base" and engine["model"] == "whisper-base"
    assert engine["device"] == expected_device
    if expected_device == "cpu":
        assert engine["compute_type"] == CPU_COMPUTE_TYPE
    assert engine["workers"] >= 1 and engine["cpu_threads"] >= 1 and engine["max_batch"] >= 1
    assert engine["inference_slots"] == server.settings().MAX_CONCURRENT_CALLS or expected_device == "cuda"
    assert engine["calibrated"] is True and "whisper-base" in engine["calibration"]
    # The CPU backend named is the one CTranslate2 itself reports choosing for this model on this machine.
    code = "import ctranslate2, sys; ctranslate2.models.Whisper(sys.argv[1], device='cpu', compute_type='int8')"
    log = subprocess.run([sys.executable, "-c", code, str(embedded_model)], env=dict(os.environ, CT2_VERBOSE="1"),
                         capture_output=True, text=True, timeout=120).stderr
    reported = re.search(r"GEMM_S8 backend: (\S+)", log)
    assert reported, log
    assert engine["cpu_backend"] == {"DNNL": "oneDNN"}.get(reported.group(1), reported.group(1))
    for key in ("device", "compute_type", "cpu_backend", "workers", "cpu_threads"):
        assert f"{key} {engine[key]}" in server.log()
    assert 'langshazam_engine_info{' in server.get("/metrics/prometheus").text


def test_the_embedded_models_calibration_file_holds_the_settings_defaults():
    from src.calibration import FIELDS, PACKAGE_DIR, load
    from src.config.settings import Settings

    found = load(PACKAGE_DIR / "whisper-base.json")
    for field, setting in FIELDS.items():
        assert getattr(found, field) == Settings.model_fields[setting].default, setting


def test_a_model_carries_its_calibration_and_settings_override_it(tmp_path):
    from src.calibration import MODEL_DIR_FILE, Calibration, write
    from src.confidence import ConfidenceRule
    from src.config.settings import Settings

    model = tmp_path / "my-model"
    model.mkdir()
    write(model / MODEL_DIR_FILE, Calibration("my-model", 1.2, 0.9, 0.4, 0.45, "0.9:0.8,0.95:0.91", ""))
    rule = ConfidenceRule.from_settings(Settings(WHISPER_MODEL=str(model)))
    assert (rule.temperature, rule.final_probability, rule.final_margin, rule.uncertain_below, rule.likely_threshold) == (
        1.2, 0.9, 0.4, 0.45, 0.91)
    assert rule.calibrated and str(model) in rule.calibration
    explicit = ConfidenceRule.from_settings(Settings(WHISPER_MODEL=str(model), FINAL_PROBABILITY=0.7))
    assert explicit.final_probability == 0.7 and explicit.temperature == 1.2

    # CALIBRATION_DIR: files keyed by the model (a repo id's `/` as `--`).
    (tmp_path / "cal").mkdir()
    write(tmp_path / "cal" / "Systran--faster-whisper-small.json",
          Calibration("Systran/faster-whisper-small", 1.0, 0.8, 0.5, 0.5, "0.95:0.9", ""))
    by_name = ConfidenceRule.from_settings(Settings(WHISPER_MODEL="small", CALIBRATION_DIR=str(tmp_path / "cal")))
    assert by_name.calibrated and by_name.final_probability == 0.8


def test_a_model_without_calibration_is_never_confident(tmp_path):
    from src.confidence import ConfidenceRule
    from src.config.settings import Settings

    rule = ConfidenceRule.from_settings(Settings(WHISPER_MODEL="medium"))
    assert not rule.calibrated
    sure = [("es", 0.999), ("pt", 0.001)]
    _, verdict = rule.apply(sure)
    assert verdict.confident is False and verdict.reason is None and verdict.likely == ("es",)
    _, doubtful = rule.apply([("es", 0.7), ("pt", 0.3)])
    base = ConfidenceRule.from_settings(Settings())
    assert base.apply([("es", 0.7), ("pt", 0.3)])[1].reason is None  # Whisper base's rule names it ...
    assert doubtful.reason == "uncertain"  # ... the conservative one does not


def test_a_bad_calibration_stops_start_up_with_a_clear_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ENGINE"))}
    result = subprocess.run([sys.executable, "-m", "src.main"], cwd=BACKEND_DIR, capture_output=True, text=True,
                            env=env | {"LIKELY_COVERAGE": "0.99", "HOST": "127.0.0.1", "PORT": "1"}, timeout=60)
    assert result.returncode == 2 and "LIKELY_COVERAGE" in result.stderr and "Traceback" not in result.stderr
    model = tmp_path / "model"
    model.mkdir()
    (model / "langshazam-calibration.json").write_text(json.dumps({"model": "x"}))
    result = subprocess.run([sys.executable, "-m", "src.main"], cwd=BACKEND_DIR, capture_output=True, text=True,
                            env=env | {"WHISPER_MODEL": str(model), "HOST": "127.0.0.1", "PORT": "1"}, timeout=60)
    assert result.returncode == 2 and "langshazam-calibration.json" in result.stderr, result.stderr


def test_evaluate_writes_a_calibration_the_rule_reads(tmp_path):
    sys.path.insert(0, str(BACKEND_DIR.parent / "scripts"))
    from benchkit.calibrate import fit
    from src.calibration import MODEL_DIR_FILE, write
    from src.confidence import ConfidenceRule
    from src.config.settings import Settings

    rows = []
    for name in ("a", "b"):
        rows += [{"set": name, "kind": "speech", "lang": "es", "_raw": [("es", 0.95), ("pt", 0.05)]}] * 20
        rows += [{"set": name, "kind": "speech", "lang": "pt", "_raw": [("es", 0.7), ("pt", 0.3)]}] * 3
        rows += [{"set": name, "kind": "non_speech", "lang": "zxx", "_raw": [("en", 0.62), ("es", 0.38)]}]
    found = fit(rows, "my-model", margin=0.5, precision=0.98)
    model = tmp_path / "my-model"
    model.mkdir()
    write(model / MODEL_DIR_FILE, found)
    rule = ConfidenceRule.from_settings(Settings(WHISPER_MODEL=str(model)))
    assert rule.calibrated and rule.temperature == found.temperature
    for row in rows:
        probabilities, verdict = rule.apply(row["_raw"])
        if verdict.confident:  # the confident answers of these sets are right
            assert probabilities[0][0] == row["lang"]
        if row["kind"] == "non_speech":  # and the non-speech is not named
            assert verdict.reason == "uncertain"
    # Coverage: the likely sets hold the right language of at least LIKELY_COVERAGE of the speech clips.
    speech = [row for row in rows if row["kind"] == "speech"]
    held = sum(row["lang"] in rule.apply(row["_raw"])[1].likely for row in speech)
    assert held >= Settings().LIKELY_COVERAGE * len(speech)
