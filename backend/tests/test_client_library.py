"""client/langshazam.js, the browser client library, in a real Chromium (headless, fake microphone) on
pages served from other origins than the LangShazam server's (other ports on 127.0.0.1): the plain
example, the React example (built with esbuild from npm), a test page driving the module with given
MediaStreams, and the /ui page's wording; its TypeScript declaration checked against both examples.

One Chromium and two servers for the whole module: `lib_server` lists the pages' origin in CORS_ORIGINS;
`guarded` also has an API key and takes one live stream at a time (the error cases)."""

from __future__ import annotations

import functools
import http.server
import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from audio_tools import REPO_ROOT, clip, join_clips
from browser_tools import chromium, console_log, require_chromium, write_wav
from conftest import free_port, start_server

CLIENT_DIR = REPO_ROOT / "client"
REACT_DIR = CLIENT_DIR / "examples" / "react"
EXAMPLE_SERVER = "http://localhost:10000"  # the examples' server address, replaced by the test server's
KEY = "test-key-21"
TIMEOUT = 40  # seconds for one listening session to end
SCRIPTED_PORT = free_port()  # the scripted /ws server the /ui page is pointed at (lib_server lists it)

# What the test pages record, installed in every page before its own scripts: each MediaRecorder made,
# the WebSocket messages received and text frames sent, the page's text as it changes. Setting
# window.__onlyType makes MediaRecorder.isTypeSupported answer true for that type only (as on a browser
# that records nothing else).
INSTRUMENT = """
(() => {
  const NativeRecorder = window.MediaRecorder;
  window.__recorders = [];
  window.MediaRecorder = class extends NativeRecorder {
    constructor(...args) { super(...args); window.__recorders.push(this); }
    static isTypeSupported(type) {
      return (!window.__onlyType || type.startsWith(window.__onlyType)) && NativeRecorder.isTypeSupported(type);
    }
  };
  const NativeSocket = window.WebSocket;
  window.__received = []; window.__sent = [];
  window.WebSocket = class extends NativeSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => window.__received.push(JSON.parse(event.data)));
    }
    send(data) { if (typeof data === "string") window.__sent.push(data); return super.send(data); }
  };
  window.__texts = [];
  addEventListener("DOMContentLoaded", () => new MutationObserver(() => {
    const text = document.body.innerText;
    if (window.__texts[window.__texts.length - 1] !== text) window.__texts.push(text);
  }).observe(document.body, { subtree: true, childList: true, characterData: true }));
})();
"""

# Drives the module (imported from ?module=) with a MediaStream playing a WAV once (the `stream`
# option), or the microphone; window.report collects what happened.
HARNESS = """<!doctype html><meta charset="utf-8"><title>harness</title><script type="module">
const lib = await import(new URLSearchParams(location.search).get("module"));
async function clipStream(url) {
  const context = new AudioContext();
  await context.resume();
  const buffer = await context.decodeAudioData(await (await fetch(url)).arrayBuffer());
  const source = context.createBufferSource();
  const destination = context.createMediaStreamDestination();
  source.buffer = buffer;
  source.connect(destination);
  source.start();
  const hold = context.createConstantSource(); // zeros, so the track goes on (as a microphone's) after the clip
  hold.offset.value = 0;
  hold.connect(destination);
  hold.start();
  return destination.stream;
}
window.runListen = (options, { clip, stopAfterSegments } = {}) => {
  const report = (window.report = { partials: [], segments: [], results: [], errors: [], levels: 0, done: false });
  (async () => {
    let session;
    try {
      const stream = clip ? await clipStream(clip) : undefined;
      session = await lib.listen({
        ...options, stream,
        onPartial: (data) => report.partials.push(data),
        onSegment: (data) => {
          report.segments.push(data);
          if (report.segments.length === stopAfterSegments) session.stop();
        },
        onResult: (data) => report.results.push(data),
        onError: (error) => report.errors.push(error.code),
        onLevel: (level) => (report.levels += level > 0 ? 1 : 0),
      });
      report.mimeType = session.mimeType;
      report.result = await session.result;
    } catch (error) {
      report.error = { code: error.code, message: error.message, typed: error instanceof lib.LangShazamError,
                       closeCode: error.closeCode, status: error.status };
    }
    report.done = true;
  })();
};
window.runDetect = (url, clip, options) => {
  const report = (window.report = { done: false });
  fetch(clip).then((response) => response.blob())
    .then((blob) => lib.detectFile(url, blob, options))
    .then((data) => (report.result = data))
    .catch((error) => (report.error = { code: error.code, message: error.message, typed: error instanceof lib.LangShazamError }))
    .finally(() => (report.done = true));
};
window.harnessReady = true;
</script>"""


def wait_until(driver, script: str, timeout: float, what: str):
    """Poll `return <script>` in the page until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return {script}")
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached in {timeout}s\nconsole:\n{console_log(driver)}")
        time.sleep(0.05)


class Pages:
    """A folder of test pages served on two origins: `listed` (in the servers' CORS_ORIGINS) and `foreign`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_QuietHandler, directory=str(root))
        self._servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) for _ in range(2)]
        for srv in self._servers:
            threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.listed, self.foreign = (f"http://127.0.0.1:{srv.server_port}" for srv in self._servers)

    def close(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002
        pass


def wait_ready(server, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.process.poll() is None, f"server exited:\n{server.log()}"
        try:
            if httpx.get(server.http + "/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"server not ready in {timeout}s:\n{server.log()}")


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    root = tmp_path_factory.mktemp("pages")
    shutil.copy(CLIENT_DIR / "langshazam.js", root / "langshazam.js")  # a copy, as a bundler would ship it
    (root / "harness.html").write_text(HARNESS)
    silence = np.zeros(16000 // 2, np.float32)
    write_wav(silence, root / "silence.wav", lead_silence=0)
    write_wav(clip("en_cv_5.mp3").samples(), root / "en.wav")
    write_wav(join_clips([("es_cv_5.mp3", "es"), ("de_cv_5.mp3", "de")], pause=1.6)[0], root / "es-de.wav")
    served = Pages(root)
    yield served
    served.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory, model_cache, pages):
    """(lib_server, guarded): both list the pages' `listed` origin in CORS_ORIGINS; `guarded` has an
    API key and takes one live stream at a time (refused with retry_after RETRY_AFTER)."""
    tmp = tmp_path_factory.mktemp("client-servers")
    guarded = start_server(tmp, model_cache, {"CORS_ORIGINS": pages.listed, "API_KEY": KEY, "MAX_CONNECTIONS": "2",
                                              "MAX_STREAMS": "1", "STREAM_RETRY_AFTER_SECONDS": str(RETRY_AFTER)},
                           wait=False)
    try:
        lib_server = start_server(tmp, model_cache, {"CORS_ORIGINS": pages.listed,
                                                     "UI_SERVERS": f"ws://127.0.0.1:{SCRIPTED_PORT}/ws"})
        wait_ready(guarded)
        yield lib_server, guarded
        lib_server.stop()
    finally:
        guarded.stop()


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """One Chromium for the module; its microphone plays a Spanish sentence then silence, from the start
    at each getUserMedia."""
    require_chromium()
    tmp = tmp_path_factory.mktemp("chromium")
    samples = np.concatenate([clip("es_cv_5.mp3").samples(), np.zeros(16000 * 3, np.float32)])
    with chromium(tmp / "profile", fake_audio=write_wav(samples, tmp / "es-then-silence.wav")) as drv:
        drv.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": INSTRUMENT})
        yield drv


def open_harness(driver, origin: str, module: str) -> None:
    driver.get(f"{origin}/harness.html?module={module}")
    wait_until(driver, "window.harnessReady", 15, "the test page")


RETRY_AFTER = 2.5  # seconds: the guarded server's hint, longer than the library's own 1 s retry delay


def run(driver, options: dict, timeout: float = TIMEOUT, **extra) -> dict:
    driver.execute_script("window.runListen(arguments[0], arguments[1])", options, extra)
    return wait_until(driver, "window.report.done && window.report", timeout, "the end of the session")


# --- the plain example ----------------------------------------------------------------------------------

def test_plain_example_on_another_origin(servers, pages, driver):
    """Served from another origin than the server's, listed in CORS_ORIGINS, and importing the module from
    the server: partial answers while listening, then the final one when the server ends the stream by
    itself (nobody stops it), and the recorder stops then."""
    from src.languages import language_name

    lib_server, _ = servers
    html = (CLIENT_DIR / "examples" / "plain.html").read_text()
    script = html.split('<script type="module">')[1].split("</script>")[0]
    assert len(script.strip("\n").splitlines()) <= 15, "the plain example has more than 15 lines of script"
    (pages.root / "plain.html").write_text(html.replace(EXAMPLE_SERVER, lib_server.http))
    driver.get(f"{pages.listed}/plain.html")
    driver.find_element("id", "listen").click()
    received = wait_until(driver, "window.__received.some((m) => m.status !== 'partial') && window.__received", TIMEOUT,
                          "the final answer")
    final = received[-1]
    assert final["status"] == "success", received
    data = final["data"]
    assert data["language"] == "es" and data["ended_by"] in ("confident", "end_of_speech"), data
    assert [m["status"] for m in received[:-1]] and all(m["status"] == "partial" for m in received[:-1]), received
    assert driver.execute_script("return window.__sent") == [], "the page sent a stop: it did not end by itself"
    recorders = driver.execute_script("return window.__recorders.map((r) => [r.state, r.mimeType])")
    assert len(recorders) == 1 and recorders[0][1].startswith("audio/webm"), recorders
    wait_until(driver, "window.__recorders[0].state === 'inactive'", 5, "the recorder stopping")
    answer = driver.find_element("id", "answer").text
    name = language_name("es")
    assert answer in (name, f"probably {name}"), answer
    shown = driver.execute_script("return window.__texts")
    assert any(name in text and not text.endswith(answer) for text in shown), f"no partial answer shown: {shown}"


def test_silence_ends_with_no_speech(servers, pages, driver):
    lib_server, _ = servers
    open_harness(driver, pages.listed, f"{lib_server.http}/client/langshazam.js")
    report = run(driver, {"url": lib_server.http}, clip="silence.wav")

    assert "error" not in report, report
    result = report["result"]
    assert result["language"] is None and result["reason"] == "no_speech" and result["ended_by"] == "no_speech", result
    assert report["results"] == [result] and report["errors"] == []
    assert driver.execute_script("return window.__recorders.every((r) => r.state === 'inactive')")


def test_continuous_mode_segments_then_summary(servers, pages, driver):
    lib_server, _ = servers
    open_harness(driver, pages.listed, f"{lib_server.http}/client/langshazam.js")
    report = run(driver, {"url": lib_server.http, "mode": "continuous"}, clip="es-de.wav", stopAfterSegments=2)

    assert "error" not in report, report
    segments, summary = report["segments"], report["result"]
    assert [s["language"] for s in segments] == ["es", "de"], segments
    assert summary["mode"] == "continuous" and summary["ended_by"] == "stop", summary
    assert [s["index"] for s in summary["segments"]] == [s["index"] for s in segments], summary
    assert {item["language"] for item in summary["languages"]} == {"es", "de"}, summary
    assert json.loads(driver.execute_script("return window.__sent.at(-1)")) == {"type": "stop"}


def test_mp4_recorder(servers, pages, driver):
    """Where only audio/mp4 records (Safari), the module records mp4 and the server answers on it."""
    lib_server, _ = servers
    open_harness(driver, pages.listed, f"{lib_server.http}/client/langshazam.js")
    driver.execute_script("window.__onlyType = 'audio/mp4'")
    report = run(driver, {"url": lib_server.http, "languages": ["en", "es", "de"]}, clip="en.wav")

    assert "error" not in report, report
    assert report["mimeType"] == "audio/mp4", report
    assert driver.execute_script("return window.__recorders[0].mimeType").startswith("audio/mp4")
    assert report["result"]["language"] == "en", report["result"]


def test_detect_file(servers, pages, driver):
    lib_server, _ = servers
    open_harness(driver, pages.listed, f"{lib_server.http}/client/langshazam.js")
    driver.execute_script("window.runDetect(arguments[0], 'en.wav', { topK: 2 })", lib_server.http)
    report = wait_until(driver, "window.report.done && window.report", TIMEOUT, "the answer of /detect")

    assert "error" not in report, report
    assert report["result"]["language"] == "en" and len(report["result"]["top"]) == 2, report


# --- typed errors -----------------------------------------------------------------------------------------

def test_typed_errors(servers, pages, driver):
    from websockets.sync.client import connect

    _, guarded = servers
    module = f"{guarded.http}/client/langshazam.js"
    open_harness(driver, pages.listed, module)

    wrong_key = run(driver, {"url": guarded.http, "apiKey": "not-the-key"}, timeout=15)["error"]
    assert wrong_key["typed"] and wrong_key["code"] == "key" and "apiKey" in wrong_key["message"], wrong_key
    no_key = run(driver, {"url": guarded.http}, timeout=15)["error"]
    assert no_key["code"] == "key" and "needs an API key" in no_key["message"], no_key

    driver.execute_script("window.runDetect(arguments[0], 'silence.wav', {})", guarded.http)
    detect = wait_until(driver, "window.report.done && window.report", 15, "the refusal of /detect")["error"]
    assert detect["typed"] and detect["code"] == "key", detect

    unreachable = run(driver, {"url": f"http://127.0.0.1:{free_port()}"}, timeout=15)["error"]
    assert unreachable["code"] == "network" and "Cannot reach" in unreachable["message"], unreachable

    auth = {"Authorization": f"Bearer {KEY}"}
    with connect(guarded.ws + "?mode=stream", additional_headers=auth):  # the one live stream the server takes
        deadline = time.monotonic() + 10
        while guarded.get("/metrics", headers=auth).json()["live_streams"] < 1:
            assert time.monotonic() < deadline, "the held stream was not counted"
            time.sleep(0.05)
        started = time.monotonic()
        busy = run(driver, {"url": guarded.http, "apiKey": KEY}, timeout=15)["error"]
        took = time.monotonic() - started
    assert busy["typed"] and busy["code"] == "busy" and busy["closeCode"] == 1013, busy
    rejections = guarded.get("/metrics", headers=auth).json()["rejections"]
    assert rejections.get("streams_full") == 2, f"not one retry, then busy: {rejections}"
    assert took >= RETRY_AFTER, f"the retry did not wait for the server's retry_after: {took:.2f} s"

    # A page on an origin the server does not list (its own copy of the module: the server's copy
    # would not load there either, being refused by CORS).
    open_harness(driver, pages.foreign, "/langshazam.js")
    origin = run(driver, {"url": guarded.http, "apiKey": KEY}, timeout=15)["error"]
    assert origin["typed"] and origin["code"] == "origin", origin
    assert pages.foreign in origin["message"] and "CORS_ORIGINS" in origin["message"], origin


def test_the_module_is_served_for_listed_origins_only(servers, pages):
    lib_server, _ = servers
    script = lib_server.get("/client/langshazam.js", headers={"Origin": pages.listed})
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert script.headers["access-control-allow-origin"] == pages.listed
    assert script.text == (CLIENT_DIR / "langshazam.js").read_text()
    types = lib_server.get("/client/langshazam.d.ts")
    assert types.status_code == 200 and types.headers["content-type"].startswith("application/typescript")
    assert "access-control-allow-origin" not in lib_server.get("/client/langshazam.js", headers={"Origin": pages.foreign}).headers
    assert lib_server.get("/client/package.json").status_code == 404


# --- the page's words -------------------------------------------------------------------------------------

def test_the_page_words_each_verdict(servers, driver):
    """The /ui page says a confident partial as "German…", a guess as "maybe German?", a likely set as
    "Croatian or Serbian?", and offers that set to retry with (a scripted /ws server sends the answers)."""
    from websockets.sync.server import serve

    from test_browser import page_state

    def answer(language, confident, likely=None, **extra):
        top = [{"language": code, "language_name": name, "probability": p}
               for code, name, p in (("de", "German", 0.6), ("hr", "Croatian", 0.3), ("sr", "Serbian", 0.1))]
        if likely:
            top = sorted(top, key=lambda item: item["language"] not in likely)
        names = {item["language"]: item["language_name"] for item in top}
        return {"language": language, "language_name": names[language], "confidence": top[0]["probability"],
                "confident": confident, "top": top, "final": False, "audio_duration": 1.0,
                "connection_id": "scripted", **({"likely": likely} if likely else {}), **extra}

    steps: queue.Queue = queue.Queue()

    def scripted(ws) -> None:
        threading.Thread(target=lambda: [None for _ in ws], daemon=True).start()  # read the audio sent
        while (message := steps.get(timeout=20)) is not None:
            ws.send(json.dumps(message))
        ws.close(1000)

    with serve(scripted, "127.0.0.1", SCRIPTED_PORT) as fake:  # listed in the page's server's UI_SERVERS
        threading.Thread(target=fake.serve_forever, daemon=True).start()
        driver.get(f"{servers[0].http}/ui/?server=ws://127.0.0.1:{SCRIPTED_PORT}/ws")
        driver.find_element("id", "listen").click()
        for data, words in (
            (answer("de", True), "German…"),
            (answer("de", False), "maybe German?"),
            (answer("hr", False, ["hr", "sr"]), "Croatian or Serbian?"),
        ):
            steps.put({"status": "partial", "data": data})
            wait_until(driver, f"document.getElementById('tentative').textContent === {json.dumps(words)}", 10, words)
        final = answer("hr", False, ["hr", "sr"], final=True, ended_by="end_of_speech")
        steps.put({"status": "success", "data": final})
        steps.put(None)
        wait_until(driver, "document.body.dataset.state === 'done'", 10, "the final answer")
        state = page_state(driver)
        fake.shutdown()
    assert state["name"] == "Croatian or Serbian?" and state["confident"] == "false", state
    assert [code for code, _ in state["chips"]] == ["hr", "sr"] and state["tentative"] is None, state


# --- the React example and the types ---------------------------------------------------------------------

def react_tools() -> Path:
    """The React example's node_modules (installed by scripts/test.sh); fail saying what is missing."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.fail("npm is missing: install Node.js and npm (apt-get install npm), then run scripts/test.sh, which "
                    "installs the React example's packages (React, ReactDOM, TypeScript, esbuild)", pytrace=False)
    modules = REACT_DIR / "node_modules"
    if not (modules / ".bin" / "esbuild").exists() or not (modules / ".bin" / "tsc").exists():
        pytest.fail(f"{modules} is missing: run scripts/test.sh (or `npm ci` in {REACT_DIR})", pytrace=False)
    return modules / ".bin"


def test_react_example(servers, pages, driver):
    from src.languages import language_name

    lib_server, _ = servers
    out = pages.root / "react"
    out.mkdir(exist_ok=True)
    shutil.copy(REACT_DIR / "index.html", out / "index.html")
    built = subprocess.run(
        [str(react_tools() / "esbuild"), "main.jsx", "--bundle", "--jsx=automatic", "--format=esm",
         f"--outfile={out / 'dist' / 'app.js'}", "--log-level=warning"],
        cwd=REACT_DIR, capture_output=True, text=True, timeout=60,
    )
    assert built.returncode == 0, built.stderr
    driver.get(f"{pages.listed}/react/index.html?server={lib_server.http}")
    wait_until(driver, "document.querySelector('.langshazam button')", 15, "the component").click()
    levels = []
    deadline = time.monotonic() + TIMEOUT
    while (state := driver.execute_script("return document.querySelector('.langshazam').dataset.state")) not in ("done", "error"):
        levels.append(driver.execute_script("return document.querySelector('.langshazam meter').value"))
        assert time.monotonic() < deadline, f"no answer in {TIMEOUT}s (state {state})\n{console_log(driver)}"
        time.sleep(0.05)
    text = driver.find_element("css selector", ".langshazam p")
    assert state == "done", text.text
    assert text.get_attribute("data-language") == "es", text.text
    assert language_name("es") in text.text
    assert max(levels) > 0, "the level meter never moved"
    assert driver.find_element("css selector", ".langshazam button").text == "Listen"


def test_types_check_the_examples(tmp_path):
    """tsc --noEmit: the React example (strict) and the plain example's script against langshazam.d.ts."""
    tsc = str(react_tools() / "tsc")
    react = subprocess.run([tsc, "--noEmit", "-p", str(REACT_DIR)], capture_output=True, text=True, timeout=120)
    assert react.returncode == 0, react.stdout + react.stderr

    html = (CLIENT_DIR / "examples" / "plain.html").read_text()
    (tmp_path / "plain.js").write_text(html.split('<script type="module">')[1].split("</script>")[0])
    (tmp_path / "wrong.js").write_text(
        'import { listen } from "http://localhost:10000/client/langshazam.js";\n'
        'listen({ url: "x", onResult: (data) => data.langauge });\n'
    )
    config = {
        "compilerOptions": {
            "target": "ES2022", "lib": ["ES2022", "DOM"], "module": "ESNext", "moduleResolution": "Bundler",
            "allowJs": True, "checkJs": True, "noEmit": True, "noImplicitAny": True,
            "paths": {f"{EXAMPLE_SERVER}/client/langshazam.js": [str(CLIENT_DIR / "langshazam.d.ts")]},
        },
        "files": ["plain.js", "wrong.js"],
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    checked = subprocess.run([tsc, "-p", "."], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    errors = [line for line in checked.stdout.splitlines() if "error TS" in line]
    assert not [line for line in errors if line.startswith("plain.js")], checked.stdout
    # ...and the declaration does catch a misspelt field
    assert checked.returncode != 0 and any(line.startswith("wrong.js") and "langauge" in line for line in errors), checked.stdout
