"""deploy/compose/nginx.conf, rewritten to run outside a container: the replicas and the listening address
on 127.0.0.1, and nginx's pid, logs and temporary files in a directory of ours. Everything else (balancing,
timeouts, retries, the WebSocket upgrade) is the repository's file as it is.

Used by scripts/scale-test and by the tests (`nginx -t`). Each rewrite must match: a change to the file that
breaks one fails loudly here rather than quietly testing something else.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_NGINX_CONF = REPO_ROOT / "deploy" / "compose" / "nginx.conf"
REPLICA_LINE = re.compile(r"^(\s*)server\s+langshazam-\d+:\d+((?:\s+[^;\s]+)*)\s*;\s*$")


def _sub(pattern: str, replacement: str, text: str, flags: int = re.M) -> str:
    new, count = re.subn(pattern, replacement, text, flags=flags)
    if count == 0:
        raise ValueError(f"{COMPOSE_NGINX_CONF.name}: no line matches {pattern!r}")
    return new


def render(replica_ports: list[int], listen_port: int, workdir: Path, source: Path = COMPOSE_NGINX_CONF) -> str:
    """The nginx configuration for replicas on 127.0.0.1:`replica_ports`, listening on 127.0.0.1:`listen_port`,
    with its runtime files under `workdir`."""
    text = source.read_text()
    out, replaced = [], False
    for line in text.splitlines(keepends=True):
        match = REPLICA_LINE.match(line)
        if match is None:
            out.append(line)
        elif not replaced:  # the first replica line becomes ours, the others go
            indent, options = match.groups()
            out.extend(f"{indent}server 127.0.0.1:{port}{options};\n" for port in replica_ports)
            replaced = True
    if not replaced:
        raise ValueError(f"{source.name}: no `server langshazam-N:PORT ...;` line in the upstream")
    text = "".join(out)
    workdir = Path(workdir)
    text = _sub(r"^(\s*)listen\s+\d+\s*;", rf"\1listen 127.0.0.1:{listen_port};", text)
    text = _sub(r"^pid\s+\S+;", f"pid {workdir / 'nginx.pid'};", text)
    text = _sub(r"^error_log\s+\S+", f"error_log {workdir / 'error.log'}", text)
    text = _sub(r"^(\s*)access_log\s+\S+", rf"\1access_log {workdir / 'access.log'}", text)
    temp = "".join(
        f"    {name}_temp_path {workdir / name};\n" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = _sub(r"^http\s*\{\n", "http {\n" + temp, text)
    return text


def write(replica_ports: list[int], listen_port: int, workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "nginx.conf"
    path.write_text(render(replica_ports, listen_port, workdir))
    return path


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if not found:
        raise FileNotFoundError(
            "nginx is not installed: it is listed in scripts/system-deps.txt (Debian: apt-get install nginx)"
        )
    return found


def check(config: Path) -> subprocess.CompletedProcess:
    """`nginx -t` on `config` (its error log and pid go where the config says)."""
    return subprocess.run(
        [nginx_binary(), "-t", "-c", str(config), "-p", str(config.parent), "-e", str(config.parent / "error.log")],
        capture_output=True, text=True, timeout=30,
    )
