"""The page at /ui/ in a real browser: headless Chromium (Debian's, through Selenium and chromedriver) with
a fake microphone playing real recordings, talking to a real LangShazam server."""

from __future__ import annotations

import re
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from audio_tools import REPO_ROOT, clip
from browser_tools import chromium, console_log, require_chromium, write_wav
from conftest import free_port

WEB_DIR = Path(__file__).resolve().parents[1] / "src" / "web"
ARTIFACTS = REPO_ROOT / "artifacts"
ANSWER_TIMEOUT = 40  # seconds from Listen to the final answer

# Clips the server identifies confidently in stream mode, through Chromium's Opus encoder.
CLIPS = ["en_cv_5.mp3", "es_cv_5.mp3", "de_cv_5.mp3", "ja_cv_1.mp3"]


@pytest.fixture
def browser(tmp_path):
    """browser(fake_audio=..., allow_microphone=..., size=...) -> a Selenium driver, quit after the test."""
    require_chromium()
    with ExitStack() as stack:
        count = iter(range(100))

        def _open(**kwargs):
            return stack.enter_context(chromium(tmp_path / f"profile-{next(count)}", **kwargs))

        yield _open


def speech_wav(tmp_path: Path, file: str) -> Path:
    return write_wav(clip(file).samples(), tmp_path / f"{Path(file).stem}.wav")


def page_state(driver) -> dict:
    return driver.execute_script(
        """
        const $ = (id) => document.getElementById(id);
        return {
          state: document.body.dataset.state,
          status: $("status").textContent,
          language: $("guess").hidden ? null : ($("guess").dataset.language ?? null),
          name: $("guess-name").textContent,
          confidence: $("guess-confidence").textContent,
          bars: [...$("bars").children].map((li) => li.dataset.language),
          updates: Number($("bars").dataset.updates || 0),
          listen: $("listen").textContent,
          confident: $("guess").dataset.confident ?? null,
          ended_by: document.body.dataset.endedBy ?? null,
          tentative: $("tentative").hidden ? null : $("tentative").textContent,
          autostop: getComputedStyle($("autostop")).display !== "none",
          maybe: !$("maybe").hidden,
          chips: [...$("chips").children].map((b) => [b.dataset.language, b.getAttribute("aria-pressed")]),
          langs_error: $("langs-error").textContent,
        };
        """
    )


def wait_for(driver, condition, timeout: float = ANSWER_TIMEOUT, what: str = "the page") -> dict:
    """Poll the page until condition(state) holds; fail with the page's state and console on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        state = page_state(driver)
        if condition(state):
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached in {timeout}s; page: {state}\nconsole:\n{console_log(driver)}")
        time.sleep(0.1)


def finished(state: dict) -> bool:
    return state["state"] in ("done", "error")


def listen(driver, url: str) -> None:
    driver.get(url)
    driver.find_element("id", "listen").click()


def screenshot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / name))


@pytest.mark.parametrize("file", CLIPS)
def test_names_the_language_spoken(server, browser, tmp_path, file):
    from src.languages import language_name

    expected = clip(file).lang
    driver = browser(fake_audio=speech_wav(tmp_path, file))
    listen(driver, f"{server.http}/ui/")
    state = wait_for(driver, finished, what="a final answer")

    assert state["state"] == "done", state
    assert state["language"] == expected, state
    assert state["name"] == language_name(expected)
    if state["confident"] == "true":
        assert re.fullmatch(r"\d+% sure", state["confidence"]), state
    else:
        assert state["confident"] == "false" and state["confidence"].startswith("probably"), state
    assert state["ended_by"] in ("confident", "end_of_speech"), state  # it stopped by itself
    assert state["status"] in ("Sure enough: it stopped early.", "Stopped by itself when you paused."), state
    assert state["tentative"] is None, "the final answer replaces the tentative partial one"
    assert len(state["bars"]) >= 2 and state["bars"][0] == expected, state
    assert state["updates"] >= 2, "the candidate bars were not drawn while listening (no partial answer shown)"
    assert state["listen"] == "Listen"
    if file == "es_cv_5.mp3":
        screenshot(driver, "ui-result.png")


def test_candidate_languages_are_sent(server, browser, tmp_path):
    driver = browser(fake_audio=speech_wav(tmp_path, "es_cv_5.mp3"))
    driver.get(f"{server.http}/ui/")
    driver.find_element("css selector", ".picker summary").click()
    driver.find_element("id", "limit").click()
    field = driver.find_element("id", "langs")
    assert field.get_attribute("value"), "the picker is not prefilled from navigator.languages"
    field.clear()
    field.send_keys("it, ES")
    driver.find_element("id", "listen").click()
    state = wait_for(driver, finished, what="a final answer")

    assert state["language"] == "es", state
    assert set(state["bars"]) <= {"es", "it"} and len(state["bars"]) == 2, state


def test_stop_with_no_speech(server, browser, tmp_path):
    silence = write_wav(np.zeros(16000 * 2, np.float32), tmp_path / "silence.wav")
    driver = browser(fake_audio=silence)
    listen(driver, f"{server.http}/ui/")
    wait_for(driver, lambda s: s["state"] == "listening", timeout=15, what="listening")
    time.sleep(2)
    driver.find_element("id", "listen").click()  # Stop
    stopped = time.monotonic()
    state = wait_for(driver, finished, timeout=15, what="an answer after Stop")

    assert time.monotonic() - stopped < 10, "the answer came from the server's time limit, not from Stop"
    assert state["state"] == "done" and state["language"] == "", state
    assert state["name"] == "No speech heard"
    assert state["ended_by"] == "stop" and state["status"] == "Stopped.", state


def test_refused_microphone(server, browser):
    driver = browser(allow_microphone=False)
    listen(driver, f"{server.http}/ui/")
    state = wait_for(driver, finished, timeout=15, what="an error")

    assert state["state"] == "error", state
    assert "Microphone access was refused" in state["status"], state
    assert state["listen"] == "Listen"


def test_server_unreachable(make_server, browser, tmp_path):
    closed = f"ws://127.0.0.1:{free_port()}/ws"
    server = make_server({"UI_SERVERS": closed})  # the page goes only where its server lists
    driver = browser(fake_audio=speech_wav(tmp_path, "en_cv_5.mp3"))
    listen(driver, f"{server.http}/ui/?server={closed}")
    state = wait_for(driver, finished, timeout=15, what="an error")

    assert state["state"] == "error", state
    assert f"Cannot reach the LangShazam server at {closed}" in state["status"], state
    assert driver.find_element("id", "server").text == closed


def test_unknown_expected_languages_are_refused(server, browser, tmp_path):
    driver = browser(fake_audio=speech_wav(tmp_path, "en_cv_5.mp3"))
    driver.get(f"{server.http}/ui/")
    driver.find_element("css selector", ".picker summary").click()
    driver.find_element("id", "limit").click()
    driver.find_element("id", "langs").clear()
    driver.find_element("id", "langs").send_keys("en, xx, Klingon")
    before = server.metrics()["total_requests"]
    driver.find_element("id", "listen").click()
    state = wait_for(driver, lambda s: s["state"] == "error", timeout=15, what="a refusal")

    assert state["langs_error"] == "Unknown language codes: xx, klingon. Use ISO 639-1 codes such as en, es, fr.", state
    assert state["status"] == state["langs_error"] and state["listen"] == "Listen"
    assert server.metrics()["total_requests"] == before


def test_server_error_message_is_shown(make_server, browser, tmp_path):
    srv = make_server({"API_KEY": "not-in-the-page"})
    driver = browser(fake_audio=speech_wav(tmp_path, "en_cv_5.mp3"))
    listen(driver, f"{srv.http}/ui/")
    state = wait_for(driver, finished, timeout=20, what="an error")

    assert state["state"] == "error", state
    assert state["status"].startswith("This server needs an API key, which this page does not send"), state


def test_phone_screen(server, browser, tmp_path):
    driver = browser(fake_audio=speech_wav(tmp_path, "fr_cv_3.mp3"), size=(390, 844))
    listen(driver, f"{server.http}/ui/")
    state = wait_for(driver, finished, what="a final answer")
    assert state["language"] == "fr", state

    width, scroll_width = driver.execute_script(
        "return [window.innerWidth, document.documentElement.scrollWidth]"
    )
    assert width <= 390, f"the window is {width}px wide, not a phone's 390"
    assert scroll_width <= 390, f"horizontal scrolling on a phone: content is {scroll_width}px wide"
    button = driver.find_element("id", "listen")
    assert button.rect["x"] >= 0 and button.rect["x"] + button.rect["width"] <= 390
    screenshot(driver, "ui-phone.png")


def test_page_is_self_contained_and_accessible():
    html = (WEB_DIR / "index.html").read_text()
    script = (WEB_DIR / "app.js").read_text()
    css = (WEB_DIR / "style.css").read_text()
    for text in (html, script, css):
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?https?:""", text)
    assert re.search(r'<button id="listen"[^>]*type="button"', html)
    assert re.search(r'id="status"[^>]*aria-live="polite"', html)
    assert '<label for="langs">' in html and '<label for="limit">' in html
    assert ":focus-visible" in css
    assert '<script type="module" src="app.js">' in html


# --- it stops by itself, and says what it does not know ------------------------------------------------

def test_stops_by_itself_after_a_pause(patient, browser, tmp_path):
    """A sentence and then silence, and nobody presses Stop: the server ends it on the pause."""
    srv = patient  # no early end on confidence: the pause ends it
    samples = np.concatenate([clip("es_cv_5.mp3").samples(), np.zeros(16000 * 4, np.float32)])
    driver = browser(fake_audio=write_wav(samples, tmp_path / "es-then-silence.wav"))
    listen(driver, f"{srv.http}/ui/")
    listening = wait_for(driver, lambda s: s["state"] == "listening", timeout=15, what="listening")
    assert listening["autostop"], "no visible sign that it stops by itself"
    state = wait_for(driver, finished, what="an answer without Stop")

    assert state["state"] == "done" and state["language"] == "es", state
    assert state["ended_by"] == "end_of_speech" and state["status"] == "Stopped by itself when you paused."
    assert not state["autostop"]


def test_silence_ends_by_itself(server, browser, tmp_path):
    driver = browser(fake_audio=write_wav(np.zeros(16000 * 8, np.float32), tmp_path / "silence.wav"))
    listen(driver, f"{server.http}/ui/")
    state = wait_for(driver, finished, timeout=30, what="an answer without Stop")

    assert state["state"] == "done" and state["language"] == "", state
    assert state["name"] == "No speech heard" and state["ended_by"] == "no_speech", state
    assert state["bars"] == [] and not state["maybe"]


def test_not_sure_offers_the_candidates_to_retry_with(doubtful, browser, tmp_path):
    srv = doubtful  # never sure enough to name a language
    driver = browser(fake_audio=speech_wav(tmp_path, "pt_cv_1.mp3"))
    listen(driver, f"{srv.http}/ui/")
    state = wait_for(driver, finished, what="a final answer")

    assert state["state"] == "done" and state["language"] == "", state
    assert state["confident"] == "false" and len(state["bars"]) >= 3, state
    codes = [code for code, _ in state["chips"]]
    if state["name"] == "Not sure":  # no likely set of two or three: the top three are offered
        assert codes == state["bars"][:3], state
    else:  # a likely set ("Portuguese or English?", which depends on the CPU's kernels): its languages
        assert " or " in state["name"] and state["name"].endswith("?") and 2 <= len(codes) <= 3, state
        assert set(codes) <= set(state["bars"]), state
    assert state["maybe"] and all(pressed == "true" for _, pressed in state["chips"]), state
    screenshot(driver, "ui-not-sure.png")

    chips = driver.find_elements("css selector", "#chips .chip")
    chips[-1].click()  # "it cannot be this one"
    chosen = codes[:-1]
    assert page_state(driver)["chips"][-1][1] == "false"
    driver.find_element("id", "retry").click()  # one tap: try again among the others
    wait_for(driver, lambda s: s["state"] in ("listening", "starting"), timeout=15, what="a new try")
    state = wait_for(driver, finished, what="the second answer")

    assert driver.find_element("id", "limit").is_selected()
    assert driver.find_element("id", "langs").get_attribute("value") == ", ".join(chosen)
    assert f"candidates {','.join(chosen)}" in srv.log(), "the retry did not send the chosen languages"
    assert set(state["bars"]) <= set(chosen), state


def test_busy_server_gets_one_retry(make_server, browser, tmp_path):
    from websockets.sync.client import connect

    srv = make_server({"MAX_CONNECTIONS": "1"})
    driver = browser(fake_audio=speech_wav(tmp_path, "de_cv_5.mp3"))
    with connect(srv.ws) as held:  # noqa: F841 (the only connection the server takes)
        listen(driver, f"{srv.http}/ui/")
        deadline = time.monotonic() + 15
        while not srv.metrics()["rejections"].get("too_many_connections"):
            assert time.monotonic() < deadline, "the page's first try was not refused as busy"
            time.sleep(0.05)
    state = wait_for(driver, finished, what="an answer after the retry")

    assert state["state"] == "done" and state["language"] == "de", state
    assert srv.metrics()["rejections"].get("too_many_connections") == 1


def test_the_page_knows_the_servers_languages():
    from src.languages import WHISPER_LANGUAGES, language_name

    text = (WEB_DIR / "languages.js").read_text()
    pairs = dict(re.findall(r'"([a-z]+)": "([^"]+)"', text))
    assert pairs == {code: language_name(code) for code in WHISPER_LANGUAGES}
