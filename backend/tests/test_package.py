"""The package: `pip install .` from the clone into a fresh virtualenv gives the `langshazam` command
(--version, detect, serve) and `import langshazam` (langshazam.detect), with its data files; and the
configuration imports nothing of the app it configures (no import circle)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from audio_tools import SPANISH_CLIP, clip
from conftest import BACKEND_DIR, free_port

REPO_DIR = BACKEND_DIR.parent
SRC_DIR = BACKEND_DIR / "src"


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtualenv with the package installed from the clone's files (no dependencies fetched: the test
    virtualenv's site-packages are on its path through a .pth file; built without isolation, offline)."""
    root = tmp_path_factory.mktemp("venv")
    clone = tmp_path_factory.mktemp("clone")  # what the package is built from (setuptools writes build/ there)
    for name in ("pyproject.toml", "README.md", "client/langshazam.js", "client/langshazam.d.ts"):
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_DIR / name, clone / name)
    shutil.copytree(SRC_DIR, clone / "backend" / "src", ignore=shutil.ignore_patterns("__pycache__"))
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    site = Path(subprocess.run([str(root / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True, timeout=60).stdout.strip())
    (site / "_test_venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install", "--no-deps",
         "--no-build-isolation", "--no-index", "-q", str(clone)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def run(venv: Path, args: list[str], model_cache: Path, cwd: Path, env: dict | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ENGINE", "PYTHONPATH"))}
    full_env.update({"MODEL_CACHE_DIR": str(model_cache), **(env or {})})
    return subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def test_the_package_holds_its_code_and_data_files(venv):
    installed = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import langshazam; print(langshazam.__file__)"],
                                    cwd=venv, capture_output=True, text=True, timeout=60).stdout.strip()).parent
    assert installed.is_relative_to(venv), installed  # the venv's copy, not the source tree
    expected = ["asyncapi.yaml", "web/index.html", "web/app.js", "client_lib/langshazam.js",
                "client_lib/langshazam.d.ts", "calibrations/whisper-base.json", "engines/local_whisper.py",
                "config/settings.py"]
    assert [name for name in expected if not (installed / name).is_file()] == []
    source = {p.relative_to(SRC_DIR) for p in SRC_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    assert source <= {p.relative_to(installed) for p in installed.rglob("*.py")}


def test_version(venv, tmp_path):
    result = subprocess.run([str(venv / "bin" / "langshazam"), "--version"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    from src import __version__

    assert result.returncode == 0 and result.stdout.strip() == f"langshazam {__version__}", result


def test_detect_command_answers_as_the_source_tree_cli(venv, model_cache, tmp_path):
    path = str(clip(SPANISH_CLIP).path)
    installed = run(venv, [str(venv / "bin" / "langshazam"), "detect", path, "--json", "--top-k", "3"], model_cache, tmp_path)
    source = run(venv, [sys.executable, "-m", "src.cli", path, "--json", "--top-k", "3"], model_cache, BACKEND_DIR)
    assert installed.returncode == 0 == source.returncode, installed.stderr + source.stderr
    ours, theirs = json.loads(installed.stdout), json.loads(source.stdout)
    assert ours["language"] == "es" and len(ours["top"]) == 3
    for key in ("language", "confident", "likely", "top", "speech_duration", "audio_duration", "engine"):
        assert ours[key] == theirs[key], key
    missing = run(venv, [str(venv / "bin" / "langshazam"), "detect", str(tmp_path / "nothing.mp3")], model_cache, tmp_path)
    assert missing.returncode == 2 and "no such file" in missing.stderr  # today's exit codes


def test_library_detect_on_a_path_bytes_and_samples(venv, model_cache, tmp_path):
    item = clip(SPANISH_CLIP)
    script = f"""
import json, sys, time
import numpy as np
import langshazam
from langshazam.audio import decode
path = {str(item.path)!r}
started = time.perf_counter()
first = langshazam.detect(path)
print(json.dumps({{"seconds": time.perf_counter() - started, "file": langshazam.__file__}}), file=sys.stderr)
data = open(path, "rb").read()
answers = [first, langshazam.detect(data, languages=["es", "pt"], top_k=2),
           langshazam.detect(decode(data), languages="es,pt,it")]
print(json.dumps([answer.to_dict() for answer in answers]))
print(json.dumps([[a.language, a.confident, a.likely, a.engine, a.candidates] for a in answers]))
try:
    langshazam.detect(np.zeros((2, 16000), dtype=np.float32))
except ValueError as exc:
    print("refused:", exc)
"""
    result = run(venv, [str(venv / "bin" / "python"), "-c", script], model_cache, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    dicts, attributes = json.loads(lines[0]), json.loads(lines[1])
    from src.http_api import AnswerData

    for data, (language, confident, likely, engine, candidates) in zip(dicts, attributes):
        assert data["language"] == language == "es"
        assert (data["confident"], data["likely"], data["engine"]) == (confident, likely, engine)
        assert set(data) <= set(AnswerData.model_fields), set(data) - set(AnswerData.model_fields)
        assert data["final"] is True and data.get("candidates") == candidates
    assert [len(data["top"]) for data in dicts] == [5, 2, 3]  # TOP_K, then each call's
    assert dicts[1]["candidates"] == ["es", "pt"] and dicts[2]["candidates"] == ["es", "pt", "it"]
    assert lines[2].startswith("refused:") and "1-D" in lines[2]
    assert Path(json.loads(result.stderr.strip().splitlines()[-1])["file"]).is_relative_to(venv)


def test_serve_command(venv, model_cache, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ENGINE", "PYTHONPATH", "HOST", "PORT"))}
    env.update({"MODEL_CACHE_DIR": str(model_cache), "PYTHONUNBUFFERED": "1"})
    process = subprocess.Popen([str(venv / "bin" / "langshazam"), "serve", "--host", "127.0.0.1", "--port", str(port)],
                               cwd=tmp_path, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert process.poll() is None, log.read_text()
        assert httpx.get(url + "/client/langshazam.js", timeout=10).status_code == 200  # package data served
        assert "<html" in httpx.get(url + "/ui/", timeout=10).text.lower()
        assert httpx.get(url + "/asyncapi.yaml", timeout=10).status_code == 200
        answer = httpx.post(url + "/detect", content=clip(SPANISH_CLIP).path.read_bytes(), timeout=60).json()
        assert answer["data"]["language"] == "es"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_configuration_imports_nothing_of_the_app():
    # Imported alone, config.settings loads no module of the app (the package's __init__ and its lazy
    # library surface aside) ...
    code = "import sys, src.config.settings; print(sorted(m for m in sys.modules if m.split('.')[0] == 'src'))"
    result = subprocess.run([sys.executable, "-c", code], cwd=BACKEND_DIR, capture_output=True, text=True, timeout=60)
    loaded = set(json.loads(result.stdout.replace("'", '"')))
    assert loaded <= {"src", "src.library", "src.config", "src.config.settings"}, loaded
    # ... and no import in config/, at the top or inside a function, reaches beyond config/.
    for path in (SRC_DIR / "config").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1 and not (node.module or "").startswith("src"), (path.name, ast.unparse(node))
