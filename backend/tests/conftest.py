"""Fixtures: real LangShazam servers (uvicorn subprocesses on 127.0.0.1) and WebSocket helpers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from websockets.sync.client import connect

BACKEND_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BACKEND_DIR))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from audio_tools import chunks  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    port: int
    process: subprocess.Popen
    log_path: Path
    env: dict = field(default_factory=dict)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.http + path, timeout=30, **kwargs)

    def settings(self):
        """The settings this server runs with (its environment, as the server reads it), so that tests take
        thresholds and policies from the code under test rather than from a copy."""
        from src.config.settings import Settings

        return Settings(**{name: value for name, value in self.env.items() if name in Settings.model_fields})

    def rule(self):
        """The honesty rule this server applies."""
        from src.confidence import ConfidenceRule

        return ConfidenceRule.from_settings(self.settings())

    def metrics(self) -> dict:
        response = self.get("/metrics")
        response.raise_for_status()
        return response.json()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def start_server(tmp_dir: Path, model_cache: Path, extra_env: dict | None = None, wait: bool = True) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ENGINE"))}
    env.update(
        {"HOST": "127.0.0.1", "PORT": str(port), "MODEL_CACHE_DIR": str(model_cache), "LOG_LEVEL": "INFO",
         "PYTHONUNBUFFERED": "1"}
    )
    env.update(extra_env or {})
    log_path = tmp_dir / f"server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "src.main"], cwd=BACKEND_DIR, env=env,
        stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
    )
    server = Server(port, process, log_path, env)
    if wait:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
            try:  # GET /ready: 503 while the model loads, 200 once the server takes work
                if httpx.get(server.http + "/ready", timeout=2).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        server.stop()
        raise RuntimeError(f"server did not start in 120 s:\n{server.log()}")
    return server


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def server(tmp_path_factory, model_cache) -> Iterator[Server]:
    """The default server: embedded Whisper engine, default settings."""
    srv = start_server(tmp_path_factory.mktemp("server"), model_cache)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def patient(tmp_path_factory, model_cache) -> Iterator[Server]:
    """A server whose streams never end early on confidence: they end on a pause, stop or max duration."""
    srv = start_server(tmp_path_factory.mktemp("patient"), model_cache, {"FINAL_STABLE_UPDATES": "50"})
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def doubtful(tmp_path_factory, model_cache) -> Iterator[Server]:
    """A server that is never sure enough to name a language (nor to end a stream on confidence)."""
    srv = start_server(tmp_path_factory.mktemp("doubtful"), model_cache,
                       {"UNCERTAIN_BELOW": "0.999", "FINAL_PROBABILITY": "1.0"})
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path, model_cache):
    """Start extra servers with their own settings; all stopped after the test."""
    started: list[Server] = []

    def _make(env: dict | None = None, wait: bool = True) -> Server:
        srv = start_server(tmp_path, model_cache, env, wait)
        started.append(srv)
        return srv

    yield _make
    for srv in started:
        srv.stop()


@dataclass
class Exchange:
    """What a client received on one connection."""

    messages: list[dict]
    close_code: int | None
    close_reason: str

    @property
    def last(self) -> dict:
        assert self.messages, f"no message received (close code {self.close_code})"
        return self.messages[-1]


def exchange(
    url: str,
    audio: bytes = b"",
    *,
    frame_size: int = 4096,
    stop: bool = True,
    texts_before: list[str] | None = None,
    timeout: float = 60,
    headers: dict | None = None,
) -> Exchange:
    """Send audio in binary frames (then {"type": "stop"}) and collect every message until the server closes."""
    from websockets.exceptions import ConnectionClosed

    messages: list[dict] = []
    with connect(url, open_timeout=10, close_timeout=5, max_size=None, additional_headers=headers) as ws:
        try:
            for text in texts_before or []:
                ws.send(text)
            for frame in chunks(audio, frame_size):
                ws.send(frame)
            if stop:
                ws.send(json.dumps({"type": "stop"}))
        except ConnectionClosed:
            pass  # the server answered early (one-shot mode) and closed: read what it sent
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                messages.append(json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic()))))
        except ConnectionClosed:
            pass
        except TimeoutError:
            pytest.fail(f"no close from the server within {timeout}s; got {messages}")
        return Exchange(messages, ws.close_code, ws.close_reason or "")


class BackgroundStream:
    """A clip streamed to a server in stream mode from a thread, slower than real time so that it is still
    open when the test acts on the server; `result()` is what stream_exchange returned."""

    def __init__(self, srv: "Server", audio: bytes, seconds: float, *, speed: float = 0.5, timeout: float = 30) -> None:
        self._result: dict = {}
        self._thread = threading.Thread(target=lambda: self._result.update(
            stream=stream_exchange(srv.ws + "?mode=stream", audio, seconds, speed=speed, timeout=timeout)))
        self._thread.start()
        deadline = time.monotonic() + 20
        while srv.metrics()["total_requests"] < 1 and time.monotonic() < deadline:  # mid-stream, after a partial
            time.sleep(0.05)

    def result(self, timeout: float = 40) -> tuple[list[dict], list[float], int | None]:
        self._thread.join(timeout)
        return self._result["stream"]


def stream_exchange(
    url: str,
    audio: bytes | list[bytes],
    seconds: float,
    *,
    chunk_seconds: float = 0.25,
    speed: float = 1.0,
    start: dict | None = None,
    stop: bool = True,
    timeout: float = 60,
) -> tuple[list[dict], list[float], int | None]:
    """Stream audio (`seconds` long) in chunks of `chunk_seconds`, paced at `speed` x real time, reading
    answers as they come. Returns the messages, their arrival times (s since the first frame) and the
    close code. Bytes are cut in chunks of equal size; a list (audio_tools.encode_chunks) is sent as is,
    one chunk per `chunk_seconds`."""
    from websockets.exceptions import ConnectionClosed

    if isinstance(audio, list):
        frames = audio
    else:
        per_chunk = max(1, int(len(audio) * chunk_seconds / seconds))
        frames = [audio[i : i + per_chunk] for i in range(0, len(audio), per_chunk)]
    messages: list[dict] = []
    times: list[float] = []
    with connect(url, open_timeout=10, close_timeout=5, max_size=None) as ws:
        if start is not None:
            ws.send(json.dumps(start))
        t0 = time.monotonic()

        def drain(until: float) -> bool:
            while True:
                left = until - time.monotonic()
                try:
                    message = ws.recv(timeout=max(0.0, left))
                except TimeoutError:
                    return True
                except ConnectionClosed:
                    return False
                messages.append(json.loads(message))
                times.append(time.monotonic() - t0)

        open_ = True
        for index, frame in enumerate(frames):
            try:
                ws.send(frame)
            except ConnectionClosed:
                open_ = False
                break
            if not drain(t0 + (index + 1) * chunk_seconds / speed):
                open_ = False
                break
        if open_ and stop:
            try:
                ws.send(json.dumps({"type": "stop"}))
            except ConnectionClosed:
                pass
        if open_ and drain(time.monotonic() + timeout):
            pytest.fail(f"the server did not close within {timeout}s; got {messages}")
        return messages, times, ws.close_code
