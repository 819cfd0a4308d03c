"""The page's "Follow language changes" toggle in a real browser: a fake microphone plays a real
3-language join; the page draws one coloured span per utterance, then the summary on Stop."""

from __future__ import annotations

from audio_tools import join_clips
from browser_tools import write_wav
from test_browser import browser, screenshot, wait_for  # noqa: F401 (browser is a fixture)

JOIN = [("es_cv_5.mp3", "es"), ("de_cv_5.mp3", "de"), ("fr_cv_3.mp3", "fr")]


def spans(driver) -> list[dict]:
    return driver.execute_script(
        """
        return [...document.getElementById("timeline").children].map((li) => ({
          language: li.dataset.language, hue: li.style.getPropertyValue("--hue"), text: li.textContent,
          width: li.getBoundingClientRect().width,
        }));
        """
    )


def test_continuous_toggle_draws_the_timeline(server, browser, tmp_path):  # noqa: F811
    samples, _ = join_clips(JOIN, pause=1.6)
    driver = browser(fake_audio=write_wav(samples, tmp_path / "join.wav"))
    driver.get(f"{server.http}/ui/")
    driver.find_element("id", "continuous").click()
    driver.find_element("id", "listen").click()
    wait_for(driver, lambda state: len(spans(driver)) >= 3, what="three spans in the timeline")
    live = spans(driver)
    assert [s["language"] for s in live] == ["es", "de", "fr"], live
    assert len({s["hue"] for s in live}) == 3 and all(s["width"] > 0 for s in live), live
    assert driver.find_element("id", "listen").text == "Stop"  # still listening after three utterances
    driver.find_element("id", "listen").click()
    state = wait_for(driver, lambda state: state["state"] in ("done", "error"), what="the summary")
    assert state["state"] == "done", state
    assert all(name in state["status"] for name in ("Spanish", "German", "French")), state
    assert [s["language"] for s in spans(driver)] == ["es", "de", "fr"]
    screenshot(driver, "ui-timeline.png")
