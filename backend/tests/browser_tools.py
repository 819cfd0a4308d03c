"""Real-browser helpers: Debian's Chromium, headless, driven by Selenium through Debian's chromedriver, with
a fake microphone that plays a WAV file once."""

from __future__ import annotations

import shutil
import wave
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
RATE = 16000


def require_chromium() -> None:
    """Fail (not skip) with a clear message when the browser or Selenium is missing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: install the Debian packages in scripts/system-deps.txt "
            "(apt-get install chromium chromium-driver), or run scripts/test.sh as root",
            pytrace=False,
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("selenium is missing: pip install -r requirements-dev.txt", pytrace=False)


def write_wav(samples: np.ndarray, path: Path, lead_silence: float = 1.0, rate: int = RATE) -> Path:
    """16 kHz float32 samples -> 16-bit PCM mono WAV, after `lead_silence` seconds of silence (the fake
    microphone starts playing when getUserMedia opens it, before the page has connected)."""
    audio = np.concatenate([np.zeros(int(lead_silence * rate), np.float32), samples.astype(np.float32)])
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


@contextmanager
def chromium(
    profile_dir: Path,
    *,
    fake_audio: Path | None = None,
    allow_microphone: bool = True,
    size: tuple[int, int] = (1000, 900),
    extra_args: tuple[str, ...] = (),
) -> Iterator:
    """A headless Chromium. With `fake_audio`, the microphone plays that WAV once (%noloop); without
    `allow_microphone`, the permission prompt is answered "block" (as a user refusing). `extra_args`: more
    command-line switches."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        f"--user-data-dir={profile_dir}", f"--window-size={size[0]},{size[1]}",
        "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(flag)
    for flag in extra_args:
        options.add_argument(flag)
    if fake_audio is not None:
        options.add_argument(f"--use-file-for-fake-audio-capture={fake_audio}%noloop")
    if allow_microphone:
        options.add_argument("--use-fake-ui-for-media-stream")
    else:
        options.add_argument("--deny-permission-prompts")
        options.add_experimental_option("prefs", {"profile.default_content_setting_values.media_stream_mic": 2})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        driver.set_window_size(*size)  # --window-size alone stops at 500 px wide
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)


def console_log(driver) -> str:
    try:
        return "\n".join(entry["message"] for entry in driver.get_log("browser"))
    except Exception as exc:  # the log is only for failure messages
        return f"(no browser log: {exc})"
