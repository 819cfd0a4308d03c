"""Hostile clients, the access part: Host names a key-less server answers (DNS rebinding), keys kept out of
the logs however `token` is spelled (the server's and nginx's), the page connecting only to the servers its
server lists, and the per-client cap on WebSocket connections (X-Forwarded-For only from TRUSTED_PROXIES).

Every probe is on 127.0.0.1 (a Host header naming another site is only a header), bounded in count and time.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import yaml
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import serve

from audio_tools import REPO_ROOT, clip, encode
from conftest import exchange, free_port, start_server

sys.path.insert(0, str(REPO_ROOT / "scripts"))

import nginx_config  # noqa: E402
from src.config.settings import Settings  # noqa: E402

KEY = "k3y-for-the-log-checks"
REBIND = "rebind.example"
COMPOSE = REPO_ROOT / "deploy" / "compose"
K8S = REPO_ROOT / "deploy" / "kubernetes"
LISTED_PORT = free_port()  # a WebSocket server `proxied` lists in UI_SERVERS (the page may go there)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory, model_cache):
    """Two connections per client; 127.0.0.1 is a trusted proxy (its X-Forwarded-For names the client)."""
    srv = start_server(tmp_path_factory.mktemp("proxied"), model_cache, {
        "MAX_CONNECTIONS_PER_CLIENT": "2", "TRUSTED_PROXIES": "127.0.0.1", "IDLE_TIMEOUT_SECONDS": "120",
        "UI_SERVERS": f"ws://127.0.0.1:{LISTED_PORT}/ws"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def named(tmp_path_factory, model_cache):
    """No key, two more host names, one connection per client, no trusted proxy."""
    srv = start_server(tmp_path_factory.mktemp("named"), model_cache, {
        "ALLOWED_HOSTS": f"{REBIND},*.corp.example", "MAX_CONNECTIONS_PER_CLIENT": "1"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, model_cache):
    srv = start_server(tmp_path_factory.mktemp("keyed"), model_cache, {"API_KEY": KEY})
    yield srv
    srv.stop()


def ws_as(srv, host: str, path: str = "/ws", headers: dict | None = None):
    """A WebSocket to `srv` (on 127.0.0.1) whose handshake names `host` in its Host header."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    return connect(f"ws://{host}{path}", sock=sock, open_timeout=10, close_timeout=5, additional_headers=headers)


def first_and_close(ws) -> tuple[dict, int | None]:
    """The first message on `ws`, and the close code once the server closes."""
    message = json.loads(ws.recv(timeout=15))
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        while True:
            ws.recv(timeout=15)
    return message, ws.close_code


def answer(srv, host: str, headers: dict | None = None) -> dict:
    """A once-mode answer on a clip, through a handshake naming `host`."""
    audio = encode(clip("en_cv_5.mp3").samples(), "webm")
    with ws_as(srv, host, headers=headers) as ws:
        ws.send(audio)
        return first_and_close(ws)[0]


# --- row 11: Host names -------------------------------------------------------------------------------

def test_a_keyless_server_refuses_a_rebound_host(server):
    """DNS rebinding: Host and Origin both name the attacker's site, pointed at 127.0.0.1."""
    rebound = f"{REBIND}:{server.port}"
    for path, shape in (("/ws", "ws"), ("/v1/realtime?intent=transcription", "realtime")):
        with ws_as(server, rebound, path, {"Origin": f"http://{rebound}"}) as ws:
            message, code = first_and_close(ws)
        text = message["message"] if shape == "ws" else message["error"]["message"]
        assert code == 1008 and "ALLOWED_HOSTS" in text, message
        assert message.get("type") != "session.created"
    for method, path in (("GET", "/"), ("GET", "/ui/"), ("GET", "/metrics"), ("POST", "/detect")):
        response = httpx.request(method, server.http + path, headers={"Host": rebound}, content=b"x" * 100, timeout=30)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["status"] == "error" and "ALLOWED_HOSTS" in response.json()["message"]
    response = httpx.get(server.http + "/v1/models", headers={"Host": rebound}, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["code"] == "host_not_allowed", response.text
    for host in (f"localhost:{server.port}", f"[::1]:{server.port}", f"127.0.0.1:{server.port}", "LocalHost"):
        assert httpx.get(server.http + "/", headers={"Host": host}, timeout=30).status_code == 200, host
    assert answer(server, f"localhost:{server.port}", {"Origin": f"http://localhost:{server.port}"})["status"] == "success"
    assert server.metrics()["rejections"]["host"] >= 5


def test_allowed_hosts_are_answered_and_origin_must_be_one(named):
    for host in (f"{REBIND}:{named.port}", "eu.corp.example"):
        assert httpx.get(named.http + "/", headers={"Host": host}, timeout=30).status_code == 200, host
        assert answer(named, host, {"Origin": f"https://{host}"})["status"] == "success", host
    assert httpx.get(named.http + "/", headers={"Host": "corp.example"}, timeout=30).status_code == 400
    # Origin names a host the server does not answer, Host is fine: refused as before.
    with ws_as(named, f"localhost:{named.port}", headers={"Origin": f"http://evil.example:{named.port}"}) as ws:
        message, code = first_and_close(ws)
    assert code == 1008 and "not allowed" in message["message"], message


def test_with_a_key_any_host_is_answered(keyed):
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(keyed.http + "/metrics", headers={"Host": f"{REBIND}:1", **auth}, timeout=30).status_code == 200
    assert answer(keyed, f"{REBIND}:{keyed.port}", auth)["status"] == "success"


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(NAME)` expansion of an env value from the variables defined before it."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), value)


def test_shipped_deployments_answer_their_own_names():
    """Compose and Kubernetes without API_KEY: every name their probes, Prometheus and proxies use is
    answered, and X-Forwarded-For is set by the proxy, not appended to the client's."""
    from src.access import HostPolicy

    replica = yaml.safe_load((COMPOSE / "compose.yaml").read_text())["services"]["langshazam-1"]["environment"]
    compose_env = {name: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)) for name, value in replica.items()}
    compose = Settings(**{**compose_env, "MODEL_CACHE_DIR": "/tmp"})
    hosts = HostPolicy(compose.allowed_hosts, any_host=bool(compose.API_KEY))
    targets = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())["scrape_configs"][0]["static_configs"][0]["targets"]
    for host in (*targets, "127.0.0.1:10000", "localhost:8080"):
        assert hosts.allows(host), host
    assert not hosts.allows(f"{REBIND}:8080") and compose.trusted_proxies
    nginx = (COMPOSE / "nginx.conf").read_text()
    assert re.search(r"proxy_set_header X-Forwarded-For \$remote_addr;", nginx), "the client could name itself"

    config = yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]
    (container,) = yaml.safe_load((K8S / "deployment.yaml").read_text())["spec"]["template"]["spec"]["containers"]
    env = dict(config)
    for item in container["env"]:
        if item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[item["name"]] = "10.42.0.7"
        elif "value" in item:
            env[item["name"]] = _expand(item["value"], env)
    pod = Settings(**{**{k: v for k, v in env.items() if k in Settings.model_fields}, "MODEL_CACHE_DIR": "/tmp"})
    hosts = HostPolicy(pod.allowed_hosts)
    (ingress,) = [doc for doc in yaml.safe_load_all((K8S / "ingress-nginx.example.yaml").read_text()) if doc]
    for host in ("10.42.0.7:10000", ingress["spec"]["rules"][0]["host"], "langshazam:10000"):
        assert hosts.allows(host), host
    assert not hosts.allows(REBIND) and pod.trusted_proxies


# --- row 12: keys out of the logs --------------------------------------------------------------------------

def test_token_is_redacted_however_it_is_spelled(keyed):
    spellings = ["to%6Ben", "TOKEN", "Token", "%74%6F%6B%65%6E", "to%256Ben"]
    for name in spellings:
        exchange(f"{keyed.ws}?mode=stream&{name}={KEY}", b"", timeout=30)
        httpx.get(f"{keyed.http}/metrics?{name}={KEY}", timeout=30)
        httpx.get(f"{keyed.http}/v1/models?a=1&{name}={KEY}", timeout=30)
    # `?to%6Ben=` is a key Starlette reads: it was accepted, and logged, before.
    assert httpx.get(f"{keyed.http}/metrics?to%6Ben={KEY}", timeout=30).status_code == 200
    time.sleep(0.5)
    log = keyed.log()
    assert "to%6Ben=[redacted]" in log and "TOKEN=[redacted]" in log, log[-3000:]
    assert KEY not in log


def test_shipped_nginx_does_not_log_the_token(server, tmp_path):
    binary = nginx_config.nginx_binary()
    port = free_port()
    config = nginx_config.write([server.port], port, tmp_path / "nginx")
    assert nginx_config.check(config).returncode == 0
    nginx = subprocess.Popen([binary, "-c", str(config), "-p", str(config.parent), "-e", str(config.parent / "error.log"),
                              "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(base + "/", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        for path in (f"/ws?token={KEY}", f"/ws?mode=stream&to%6Ben={KEY}", f"/metrics?TOKEN={KEY}"):
            httpx.get(base + path, timeout=30)
        with connect(f"ws://127.0.0.1:{port}/ws?token={KEY}", open_timeout=10) as ws:
            ws.send(b"")
    finally:
        nginx.terminate()
        nginx.wait(timeout=20)
    log = (config.parent / "access.log").read_text()
    assert log.count('"GET /ws ') >= 2 and "/metrics" in log, log
    assert KEY not in log, log


# --- row 13: the page ------------------------------------------------------------------------------------

class Listener:
    """A WebSocket server on 127.0.0.1 that counts the connections it gets and closes each at once."""

    def __init__(self, port: int = 0) -> None:
        self.connections = 0
        self._server = serve(self._handle, "127.0.0.1", port)
        self.port = self._server.socket.getsockname()[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _handle(self, ws) -> None:
        self.connections += 1
        ws.close(1011)

    def close(self) -> None:
        self._server.shutdown()


def test_page_connects_only_to_its_own_server(server, tmp_path):
    from browser_tools import chromium, require_chromium
    from test_browser import finished, listen, speech_wav, wait_for

    require_chromium()
    elsewhere = Listener()
    try:
        with chromium(tmp_path / "profile", fake_audio=speech_wav(tmp_path, "en_cv_5.mp3")) as driver:
            listen(driver, f"{server.http}/ui/?server=ws://127.0.0.1:{elsewhere.port}/ws")
            state = wait_for(driver, finished, timeout=20, what="a refusal")
            time.sleep(1)
    finally:
        elsewhere.close()
    assert state["state"] == "error" and "UI_SERVERS" in state["status"], state
    assert elsewhere.connections == 0


def test_page_connects_to_a_server_its_server_lists(proxied, tmp_path):
    from browser_tools import chromium, require_chromium
    from test_browser import listen, speech_wav, wait_for

    require_chromium()
    listed = Listener(LISTED_PORT)
    try:
        with chromium(tmp_path / "profile", fake_audio=speech_wav(tmp_path, "en_cv_5.mp3")) as driver:
            listen(driver, f"{proxied.http}/ui/?server=ws://127.0.0.1:{LISTED_PORT}/ws")
            wait_for(driver, lambda s: listed.connections > 0 or s["state"] == "error", timeout=20, what="a connection")
    finally:
        listed.close()
    assert listed.connections >= 1
    assert httpx.get(proxied.http + "/ui/config.json", timeout=30).json() == {"servers": [f"ws://127.0.0.1:{LISTED_PORT}/ws"]}


# --- the per-client cap ----------------------------------------------------------------------------------

def hold(srv, path: str, client: str | None):
    """An open WebSocket to `srv`, from `client` as a proxy on 127.0.0.1 names it (X-Forwarded-For)."""
    headers = {"X-Forwarded-For": client} if client else None
    return connect(srv.ws.replace("/ws", path), open_timeout=10, close_timeout=5, additional_headers=headers)


def test_one_client_holds_at_most_its_cap_and_others_are_served(proxied):
    cap = proxied.settings().MAX_CONNECTIONS_PER_CLIENT
    greedy, other = "203.0.113.7", "198.51.100.9"
    with contextlib.ExitStack() as held:
        for _ in range(cap):
            held.enter_context(hold(proxied, "/ws?mode=continuous", greedy))
        with hold(proxied, "/ws?mode=stream", greedy) as ws:
            refusal, code = first_and_close(ws)
        assert code == 1013 and refusal["status"] == "error" and refusal["retry_after"] > 0, refusal
        assert "MAX_CONNECTIONS_PER_CLIENT" in refusal["message"], refusal
        with hold(proxied, "/v1/realtime?intent=transcription", greedy) as ws:
            event, code = first_and_close(ws)
        assert code == 1013 and event["type"] == "error" and event["retry_after"] > 0, event
        assert event["error"]["code"] == "client_limit" and "MAX_CONNECTIONS_PER_CLIENT" in event["error"]["message"]
        # Another client is served meanwhile, on /ws and on Realtime.
        result = exchange(proxied.ws, encode(clip("es_cv_5.mp3").samples(), "webm"), headers={"X-Forwarded-For": other})
        assert result.last["status"] == "success" and result.last["data"]["language"] == "es", result.messages
        with hold(proxied, "/v1/realtime?intent=transcription", other) as ws:
            assert json.loads(ws.recv(timeout=15))["type"] == "session.created"
    # Its connections closed, the client is served again.
    deadline = time.monotonic() + 20
    while proxied.metrics()["active_connections"] and time.monotonic() < deadline:
        time.sleep(0.1)
    again = exchange(proxied.ws, encode(clip("de_cv_5.mp3").samples(), "webm"), headers={"X-Forwarded-For": greedy})
    assert again.last["status"] == "success", again.messages
    assert proxied.metrics()["rejections"]["client_limit"] >= 2


def test_forwarded_for_is_ignored_from_an_untrusted_peer(named):
    """No TRUSTED_PROXIES: whatever X-Forwarded-For says, the client is the address that connected."""
    with hold(named, "/ws?mode=continuous", "203.0.113.7"):
        with hold(named, "/ws?mode=stream", "198.51.100.9") as ws:
            refusal, code = first_and_close(ws)
    assert code == 1013 and "MAX_CONNECTIONS_PER_CLIENT" in refusal["message"], refusal
