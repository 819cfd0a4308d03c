"""Configuration: environment and .env, and start-up refusing bad values with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import BACKEND_DIR, free_port


def _start(env: dict, cwd=BACKEND_DIR) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ENGINE"))}
    full_env.update({"PYTHONPATH": str(BACKEND_DIR), "HOST": "127.0.0.1"}, **env)
    return subprocess.run(
        [sys.executable, "-m", "src.main"], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "env, names",
    [
        ({"PORT": "abc"}, ["PORT", "abc"]),
        ({"PORT": "70000"}, ["PORT"]),
        ({"ENGINE": "magic"}, ["ENGINE", "magic"]),
        ({"ENGINE": "openai"}, ["OPENAI_API_KEY"]),
        ({"MIN_AUDIO_SIZE": "-5"}, ["MIN_AUDIO_SIZE"]),
        ({"WHISPER_MODEL": "/nonexistent/model"}, ["WHISPER_MODEL"]),
    ],
)
def test_bad_settings_stop_start_up_with_a_clear_message(env, names):
    result = _start({**env, "PORT": env.get("PORT", str(free_port()))})
    assert result.returncode == 2, result.stderr
    assert "LangShazam cannot start" in result.stderr
    for name in names:
        assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_dotenv_is_read_and_the_environment_wins(tmp_path):
    (tmp_path / ".env").write_text("PORT=12345\nTOP_K=3\nENGINE=local\n")
    code = "from src.config import load_settings; s = load_settings(); print(s.PORT, s.TOP_K)"
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "TOP_K")}
    env.update(PYTHONPATH=str(BACKEND_DIR), TOP_K="7")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["12345", "7"]


def test_language_names_map_to_codes():
    from src.languages import language_name, parse_language_list, to_code

    assert to_code("english") == "en" and to_code("Spanish") == "es" and to_code("mandarin") == "zh"
    assert to_code("haitian creole") == "ht" and to_code("sinhalese") == "si" and to_code("pt") == "pt"
    assert to_code("klingon") is None
    assert language_name("cy") == "Welsh" and language_name("xx") == "xx"
    assert parse_language_list("en, es,en") == ["en", "es"]
    with pytest.raises(ValueError, match="xx"):
        parse_language_list("en,xx")


def test_env_example_lists_every_setting():
    from pathlib import Path

    from src.config.settings import Settings

    text = (Path(BACKEND_DIR).parent / ".env.example").read_text()
    listed = {line.lstrip("# ").split("=", 1)[0] for line in text.splitlines() if "=" in line}
    assert set(Settings.model_fields) <= listed, set(Settings.model_fields) - listed
