"""A real LangShazam server, started as the README does (`python -m src.main` from backend/, HOST=127.0.0.1,
a free PORT), ready once GET /ready answers 200 (the model loads after the port opens), its log in a file,
always stopped (SIGTERM, then kill), and its memory and CPU read with psutil."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from benchkit.figures import log

BACKEND_DIR = Path(__file__).resolve().parents[2] / "backend"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(base: str, path: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(base + path, timeout=timeout) as response:  # noqa: S310 (loopback only)
        return json.loads(response.read())


def stop_on_sigterm() -> None:
    """SIGTERM (and Ctrl-C, even when started with SIGINT ignored) unwinds as KeyboardInterrupt, so that
    the `finally` blocks stop every server this script started."""

    def on_sigterm(signum, frame):  # noqa: ANN001, ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)


class Server:
    """A server started here (`process` set) or a running one on the loopback (Server.existing).

    Server(env) picks a port and a log file; start() launches it (again, after a stop or a crash: the log
    is appended to); wait_ready() waits for GET /ready. As a context manager it is stopped on exit."""

    def __init__(self, extra_env: dict[str, str] | None = None, *, name: str = "bench", port: int | None = None,
                 log_path: Path | None = None, engine_env: bool = True) -> None:
        self.name = name
        self.port = port or free_port()
        if log_path is None:
            handle, path = tempfile.mkstemp(prefix=f"langshazam-{name}-{self.port}-", suffix=".log")
            os.close(handle)
            log_path = Path(path)
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if engine_env or not k.startswith(("OPENAI_", "ENGINE"))}
        env.update({"HOST": "127.0.0.1", "PORT": str(self.port), "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"})
        # A benchmark's clients all connect from 127.0.0.1: one client to the per-client cap, so no cap.
        env.setdefault("MAX_CONNECTIONS_PER_CLIENT", "0")
        env.update(extra_env or {})  # MODEL_CACHE_DIR: inherited, else the server's default
        env.update({"HOST": "127.0.0.1", "PORT": str(self.port)})  # loopback only, whatever extra_env says
        self.env = env
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.started_at = 0.0
        self._sampling: RssPeak | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @classmethod
    def existing(cls, url: str) -> "Server":
        """A running server given as ws://127.0.0.1:PORT (loopback only); never started nor stopped here."""
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme != "ws" or parsed.hostname not in ("127.0.0.1", "localhost") or not parsed.port:
            raise SystemExit("--url must be ws://127.0.0.1:PORT (loopback only)")
        server = cls(name="existing", port=parsed.port, log_path=Path(os.devnull))
        server.log_path, server.env = None, {}  # nothing to launch, no log of ours
        return server

    def start(self, header: bool = False) -> "Server":
        """Launch `python -m src.main` in its own session (Ctrl-C reaches the script only; it stops the server)."""
        self.starts += 1
        with open(self.log_path, "ab") as out:
            if header:
                out.write(f"\n===== start {self.starts} =====\n".encode())
                out.flush()
            self.process = subprocess.Popen([sys.executable, "-m", "src.main"], cwd=BACKEND_DIR, env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.started_at = time.perf_counter()
        return self

    def ready_status(self, timeout: float = 1.0) -> int | str:
        """GET /ready: the HTTP status, or "refused" when nothing listens."""
        try:
            with urllib.request.urlopen(self.http + "/ready", timeout=timeout) as response:  # noqa: S310
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return "refused"

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"the server exited with {self.process.returncode} (log {self.log_path}):\n"
                               f"{self.log()[-3000:]}")

    def wait_ready(self, timeout: float = 180, sample_rss: bool = False) -> float:
        """Seconds from start() until GET /ready answered 200; with sample_rss, the peak RSS is sampled
        (4/s, in `peak_rss`) from then until stop(). Stops the server if it never gets ready."""
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self._check_alive()
                if self.ready_status(2) == 200:
                    if sample_rss:
                        self._start_rss_sampler()
                    return time.perf_counter() - self.started_at
                time.sleep(0.2)
            raise RuntimeError(f"the server was not ready (GET /ready) within {timeout:g} s (log {self.log_path})")
        except BaseException:  # also Ctrl-C while it starts: never leave it running
            self.stop()
            raise

    async def wait_ready_async(self, timeout: float = 120) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            self._check_alive()
            if await asyncio.to_thread(self.ready_status) == 200:
                return time.monotonic() - started
            await asyncio.sleep(0.1)
        raise RuntimeError(f"not ready within {timeout:g} s (log {self.log_path})")

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.stop()

    # --- what it says about itself --------------------------------------------------------------------

    def metrics(self) -> dict:
        return http_json(self.http, "/metrics")

    @property
    def rss_source(self) -> str:
        return "psutil" if self.process is not None else "/metrics"

    def rss_mb(self) -> float | None:
        """Resident memory: psutil on the pid of a server started here, else /metrics memory_usage_mb."""
        if self.process is not None:
            import psutil

            try:
                return psutil.Process(self.process.pid).memory_info().rss / 2**20
            except psutil.Error:
                return None
        try:
            return float(self.metrics()["memory_usage_mb"])
        except (OSError, ValueError, KeyError):
            return None

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (psutil)."""
        import psutil

        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def _start_rss_sampler(self, every: float = 0.25) -> None:
        self._sampling = RssPeak(self, every).__enter__()

    @property
    def peak_rss(self) -> float:
        """The peak RSS in MB since ready (wait_ready(sample_rss=True)), else 0."""
        return (self._sampling.peak or 0.0) if self._sampling is not None else 0.0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def log_count(self, needle: str) -> int | None:
        if self.log_path is None:
            return None
        try:
            return self.log_path.read_text(errors="replace").count(needle)
        except OSError:
            return None

    # --- stop -----------------------------------------------------------------------------------------

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """SIGTERM (graceful: it drains open connections), then kill after `timeout`; the exit code."""
        if self._sampling is not None:
            self._sampling.__exit__()
        if self.process is None:
            return None
        if self.process.poll() is None:
            try:
                self.process.send_signal(sig)
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


class RssPeak:
    """Samples server.rss_mb() every `every` seconds in a thread, while in a `with` block."""

    def __init__(self, server: Server, every: float = 0.5) -> None:
        self.server, self.every = server, every
        self.values: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self.server.rss_mb()
            if value is not None:
                self.values.append(value)
            self._stop.wait(self.every)

    @property
    def peak(self) -> float | None:
        return max(self.values) if self.values else None

    def __enter__(self) -> "RssPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


class CpuAccount:
    """Cores used, on average since it was made, by the machine, the server (if started here), this script,
    and everything else (other processes on the machine compete with the server for the same cores)."""

    def __init__(self, server: Server) -> None:
        import psutil

        self.psutil = psutil
        self.server_proc = None
        if server.process is not None:
            try:
                self.server_proc = psutil.Process(server.process.pid)
            except psutil.Error:
                pass
        self.me = psutil.Process()
        self.start = self._read()

    def _proc(self, proc) -> float | None:  # noqa: ANN001
        if proc is None:
            return None
        try:
            t = proc.cpu_times()
            return t.user + t.system + t.children_user + t.children_system
        except self.psutil.Error:
            return None

    def _read(self) -> tuple[float, float, float | None, float | None]:
        t = self.psutil.cpu_times()
        idle = t.idle + getattr(t, "iowait", 0.0)
        return time.monotonic(), sum(t) - idle, self._proc(self.server_proc), self._proc(self.me)

    def summary(self) -> dict:
        end = self._read()
        wall = max(1e-6, end[0] - self.start[0])
        busy = (end[1] - self.start[1]) / wall
        out = {"machine_cores_busy": round(busy, 2)}
        server = None if None in (end[2], self.start[2]) else (end[2] - self.start[2]) / wall
        me = (end[3] - self.start[3]) / wall
        out["loadtest_cores"] = round(me, 2)
        if server is not None:
            out["server_cores"] = round(server, 2)
            out["other_processes_cores"] = round(max(0.0, busy - server - me), 2)
        out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        return out


def announce(server: Server) -> None:
    log(f"server pid {server.process.pid} on 127.0.0.1:{server.port}, log {server.log_path}")
