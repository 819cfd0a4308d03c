#!/usr/bin/env bash
# Build the Docker image with podman, run it on loopback and check it end to end: the health check,
# GET /, GET /ready, GET /metrics, one WebSocket detection of a real clip, and a clean stop on SIGTERM; then
# `podman kube play` of deploy/kubernetes' Deployment (read-only root filesystem, non-root): ready, one detection.
# Prints the build time, the time from `podman run` to healthy, and the image size.
#
#   bash scripts/container-smoke.sh
#
# Environment (all optional):
#   IMAGE           tag to build (langshazam:smoke)
#   SMOKE_PORT      loopback port to publish 10000 on (a free one)
#   EVAL_DIR        clips directory (../shared/eval/clips from the repo root)
#   CLIP            clip to send (en_cv_1.mp3); EXPECT_LANG: its language (the clip name's prefix)
#   HEALTH_TIMEOUT  seconds to wait for the container to turn healthy (180)
#   NO_CACHE=1      build without the layer cache (a cold build; pip still downloads through its config)
#   DEBIAN_MIRROR   apt mirror for the local base image (default: the host's own apt source)
#   BASE_SUITE      Debian release of the local base image (default: the host's, e.g. bookworm)
#   PYTHON          a Python with `websockets` and `yaml` for the client (default: .venv, then python3, else a temp venv)
#   KUBE_PLAY=0     skip step 8 (podman kube play of deploy/kubernetes/deployment.yaml with its ConfigMap)
#
# On a machine with podman and no reachable image registry (root, Debian), it also does the one-off
# set-up: installs podman/runc/buildah/debootstrap if missing, writes a containers.conf if there is none,
# and builds the Dockerfile's base image (python:3.11-slim) from Debian packages with debootstrap when it
# is not in local storage (`podman pull` it first where a registry is reachable, and this step is skipped).
# pip inside the build uses the host's pip configuration (indexes, find-links, constraints, CA bundle),
# discovered at run time from `pip config list` and mounted read-only for the build only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

IMAGE=${IMAGE:-langshazam:smoke}
EVAL_DIR=${EVAL_DIR:-$ROOT/../shared/eval/clips}
CLIP=${CLIP:-en_cv_1.mp3}
EXPECT_LANG=${EXPECT_LANG:-${CLIP%%_*}}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-180}
NAME=langshazam-smoke-$$
WORK=$(mktemp -d)
STARTED_CONTAINER=""
KUBE_YAML=""

log() { printf '== %s\n' "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
quiet_systemd() { grep -v 'unable to get systemd connection' || true; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

cleanup() {
    local rc=$?
    if [ -n "$STARTED_CONTAINER" ] && podman container exists "$NAME" 2>/dev/null; then
        if [ "$rc" != 0 ]; then
            echo "--- container log (last 40 lines) ---" >&2
            podman logs --tail 40 "$NAME" >&2 2>&1 || true
        fi
        podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
    fi
    if [ -n "$KUBE_YAML" ]; then
        podman kube down "$KUBE_YAML" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    [ "$rc" = 0 ] || echo "container smoke test FAILED" >&2
}
trap cleanup EXIT

clip_path="$EVAL_DIR/$CLIP"
[ -f "$clip_path" ] || die "no clip $clip_path (set EVAL_DIR or CLIP)"

# --- 1. podman itself ----------------------------------------------------------------------------------
if ! command -v podman >/dev/null; then
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "podman is not installed"
    log "installing podman"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc buildah debootstrap >/dev/null
fi
if [ "$(id -u)" = 0 ]; then
    containers_conf=/etc/containers/containers.conf
else
    containers_conf=${XDG_CONFIG_HOME:-$HOME/.config}/containers/containers.conf
fi
if [ ! -f "$containers_conf" ]; then
    # runc (what Debian's podman ships with here) and explicit ulimits: a container otherwise inherits
    # limits from the host that the runtime cannot always set inside a sandbox.
    log "writing $containers_conf"
    mkdir -p "$(dirname "$containers_conf")"
    cat >"$containers_conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
EOF
fi

# --- 2. the base image ---------------------------------------------------------------------------------
base_image=$(awk 'toupper($1) == "FROM" { for (i = 2; i <= NF; i++) if ($i !~ /^--/) { print $i; exit } }' Dockerfile)
[ -n "$base_image" ] || die "no FROM in Dockerfile"
if ! podman image exists "$base_image"; then
    [ "$(id -u)" = 0 ] || die "$base_image is not in local storage: podman pull it (or run as root to build it)"
    command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    # The mirror and release the host's apt uses (deb822 .sources or one-line .list files).
    read -r mirror suite < <(python3 - "${DEBIAN_MIRROR:-}" "${BASE_SUITE:-}" <<'EOF'
import glob, re, sys
codename = sys.argv[2]
for line in open("/etc/os-release"):
    if line.startswith("VERSION_CODENAME=") and not codename:
        codename = line.split("=", 1)[1].strip().strip('"')
found = []
for path in glob.glob("/etc/apt/sources.list") + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    for line in open(path):
        m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
        if m:
            found.append((m.group(1), [m.group(2)]))
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        fields = dict(re.findall(r"(?m)^(\w[\w-]*):\s*(.*)$", stanza))
        if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
            found.extend((uri, fields.get("Suites", "").split()) for uri in fields.get("URIs", "").split())
mirror = sys.argv[1] or next((uri for uri, suites in found if codename in suites), "")
print(mirror or "-", codename or "-")
EOF
    )
    [ "$mirror" != - ] && [ "$suite" != - ] || die "no Debian mirror found in the host's apt sources: set DEBIAN_MIRROR"
    log "building $base_image from Debian $suite packages ($mirror)"
    rootfs=$WORK/rootfs
    t0=$(now)
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        "$suite" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    # Like the official image: `python` and `pip` on PATH, an empty apt cache.
    ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
    ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log
    tar --numeric-owner -C "$rootfs" -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$base_image" >/dev/null
    rm -rf "$rootfs"
    log "base image $base_image built in $(elapsed "$t0" "$(now)") s"
fi

# --- 3. pip's configuration for the build --------------------------------------------------------------
# The build runs as root with HOME=/root, so pip reads ~/.config/pip/pip.conf: a host directory is mounted
# over /root (which every image has, so no mount point is left in a layer) holding one pip.conf merged from
# the host's effective settings (files and PIP_* variables), and every local file or directory those
# settings name (CA bundle, constraints, find-links, file:// indexes) mounted read-only beneath it.
build_volumes=()
home=$WORK/build-home
mkdir -p "$home/.config/pip"
if python3 -m pip --version >/dev/null 2>&1; then
    python3 -m pip config list >"$WORK/pip-config.txt" 2>/dev/null || true
else
    : >"$WORK/pip-config.txt"
fi
while IFS= read -r spec; do
    [ -n "$spec" ] && build_volumes+=(--volume "$spec")
done < <(python3 - "$WORK/pip-config.txt" "$home" <<'EOF'
import ast, configparser, os, sys, urllib.parse, urllib.request

listing, home = sys.argv[1], sys.argv[2]
settings, env = {}, {}
for line in open(listing):
    key, sep, value = line.rstrip("\n").partition("=")
    if not sep or "." not in key:
        continue
    section, name = key.rsplit(".", 1)
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        continue
    if section == ":env:":
        env[name] = value
    else:
        settings.setdefault(section, {})[name] = value
for name, value in env.items():  # PIP_* variables win over every file section
    for section in settings.values():
        section.pop(name, None)
    settings.setdefault("global", {})[name] = value

mounts = {}  # host path -> path in the build
def inside(host_path):
    # pip's file:// indexes link to ../../files, so a ".../simple" index brings its parent along.
    base = os.path.dirname(host_path) if os.path.basename(host_path) == "simple" else host_path
    for known, target in mounts.items():
        if base == known or base.startswith(known + "/"):
            return target + host_path[len(known):]
    target = f"/root/.host/{len(mounts)}-{os.path.basename(base) or 'root'}"
    mounts[base] = target
    return target + host_path[len(base):]

def rewrite(token):
    if token.startswith("file:"):
        path = urllib.parse.unquote(urllib.parse.urlparse(token).path).rstrip("/")
        if path and os.path.exists(path) and not set(",:") & set(path):
            return "file://" + urllib.request.pathname2url(inside(path))
    elif token.startswith("/"):
        path = token.rstrip("/") or "/"
        if os.path.exists(path) and not set(",:") & set(path):
            return inside(path)
    return token

config = configparser.RawConfigParser()
for section, values in settings.items():
    config.add_section(section)
    for name, value in values.items():
        config.set(section, name, " ".join(rewrite(token) for token in str(value).split()))
with open(os.path.join(home, ".config", "pip", "pip.conf"), "w") as out:
    config.write(out)
print(f"{home}:/root")
for host_path, target in mounts.items():
    placeholder = home + target[len("/root"):]
    if os.path.isdir(host_path):
        os.makedirs(placeholder, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(placeholder), exist_ok=True)
        open(placeholder, "w").close()
    print(f"{os.path.realpath(host_path)}:{target}:ro")
EOF
)
log "pip in the build: $(( ${#build_volumes[@]} / 2 - 1 )) host path(s) mounted beside the merged pip.conf"

# --- 4. build ------------------------------------------------------------------------------------------
build_flags=(--format docker --pull=never --layers -t "$IMAGE")
[ "${NO_CACHE:-0}" = 1 ] && build_flags+=(--no-cache)
log "podman build ${build_flags[*]} ."
t0=$(now)
podman build "${build_flags[@]}" "${build_volumes[@]}" -f Dockerfile . 2>&1 \
    | sed -u -e '/is ignored: it is neither a file nor a directory/d' -e '/^ *━/d'
build_seconds=$(elapsed "$t0" "$(now)")
image_bytes=$(podman image inspect --format '{{.Size}}' "$IMAGE")

# --- 5. run --------------------------------------------------------------------------------------------
PORT=${SMOKE_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
run_flags=(-d --name "$NAME" -p "127.0.0.1:$PORT:10000")
log "podman run ${run_flags[*]} $IMAGE"
t0=$(now)
STARTED_CONTAINER=1
# Without systemd podman cannot schedule the health check's timer (and says so); the loop below runs it.
podman run "${run_flags[@]}" "$IMAGE" 2> >(quiet_systemd >&2) >/dev/null
deadline=$(( $(date +%s) + HEALTH_TIMEOUT ))
until podman healthcheck run "$NAME" >/dev/null 2>&1; do
    [ "$(podman inspect --format '{{.State.Running}}' "$NAME")" = true ] || die "the container exited"
    [ "$(date +%s)" -lt "$deadline" ] || die "not healthy after ${HEALTH_TIMEOUT}s"
    sleep 1
done
healthy_seconds=$(elapsed "$t0" "$(now)")
log "healthy after ${healthy_seconds}s"

# --- 6. HTTP and WebSocket checks from the host ----------------------------------------------------------
if [ -z "${PYTHON:-}" ]; then
    for candidate in "$ROOT/.venv/bin/python" python3; do
        if command -v "$candidate" >/dev/null && "$candidate" -c 'import websockets, yaml' 2>/dev/null; then
            PYTHON=$candidate
            break
        fi
    done
fi
if [ -z "${PYTHON:-}" ]; then
    log "no Python with websockets: making a temporary venv"
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/python" -m pip install -q websockets pyyaml 2> >(grep -v "is ignored: it is neither" >&2)
    PYTHON=$WORK/venv/bin/python
fi
cat >"$WORK/check.py" <<'EOF'
import asyncio, json, sys, time, urllib.request
from pathlib import Path

import websockets

base, clip, expect = sys.argv[1], Path(sys.argv[2]), sys.argv[3]

def get(path):
    with urllib.request.urlopen(base + path, timeout=10) as response:
        assert response.status == 200, (path, response.status)
        return json.load(response)

root = get("/")
assert root == {"message": "Server is running!"}, f"GET / answered {root!r}"
print(f"GET / -> {json.dumps(root)}")
deadline = time.monotonic() + 60  # healthy (GET /) can come before the model is loaded (GET /ready)
while True:
    try:
        ready = get("/ready")
        break
    except OSError:
        assert time.monotonic() < deadline, "GET /ready not 200 within 60 s"
        time.sleep(0.2)
print(f"GET /ready -> {json.dumps(ready)}")
metrics = get("/metrics")
assert isinstance(metrics, dict) and "total_requests" in metrics, f"GET /metrics answered {metrics!r}"
print(f"GET /metrics -> total_requests={metrics['total_requests']}")

async def detect():
    audio = clip.read_bytes()
    started = time.perf_counter()
    async with websockets.connect(base.replace("http", "ws", 1) + "/ws", open_timeout=10) as ws:
        try:
            for i in range(0, len(audio), 4096):
                await ws.send(audio[i:i + 4096])
            await ws.send(json.dumps({"type": "stop"}))
        except websockets.ConnectionClosed:
            pass  # mode `once` answers at 20 KB and closes: the answer is already waiting
        async for message in ws:
            answer = json.loads(message)
            if answer.get("status") in ("success", "error"):
                return answer, time.perf_counter() - started
    raise AssertionError("the connection closed without an answer")

answer, seconds = asyncio.run(asyncio.wait_for(detect(), 120))
data = answer.get("data") or {}
assert answer.get("status") == "success", f"WebSocket answered {answer!r}"
assert data.get("language") == expect, f"expected {expect}, got {data!r}"
print(f"WebSocket /ws {clip.name} ({clip.stat().st_size} bytes in 4 KB frames, then stop) -> "
      f"language={data['language']} confidence={data.get('confidence')} "
      f"processing_time={data.get('processing_time')} round trip={seconds:.2f}s")
after = get("/metrics")
print(f"GET /metrics -> total_requests={after['total_requests']}")
EOF

"$PYTHON" "$WORK/check.py" "http://127.0.0.1:$PORT" "$clip_path" "$EXPECT_LANG"

# --- 7. stop: SIGTERM reaches python, which drains and exits 0 -------------------------------------------
t0=$(now)
podman stop -t 30 "$NAME" 2> >(quiet_systemd >&2) >/dev/null
stop_seconds=$(elapsed "$t0" "$(now)")
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
[ "$exit_code" = 0 ] || die "the container exited with $exit_code on SIGTERM"
log "stopped by SIGTERM in ${stop_seconds}s, exit code 0"

# --- 8. podman kube play: deploy/kubernetes' Deployment and ConfigMap as written (one replica, this image,
# a host port on loopback): non-root, read-only root filesystem, the baked model, ready, one detection -----
kube_seconds=skipped
if [ "${KUBE_PLAY:-1}" = 1 ]; then
    KUBE_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$PYTHON" - deploy/kubernetes/deployment.yaml "$IMAGE" "$KUBE_PORT" >"$WORK/deployment.yaml" <<'EOF'
import sys, yaml
deployment = yaml.safe_load(open(sys.argv[1]))
deployment["spec"]["replicas"] = 1
container = deployment["spec"]["template"]["spec"]["containers"][0]
container["image"] = sys.argv[2] if "/" in sys.argv[2] else "localhost/" + sys.argv[2]
container["ports"][0].update(hostPort=int(sys.argv[3]), hostIP="127.0.0.1")
print(yaml.safe_dump(deployment))
EOF
    log "podman kube play --configmap deploy/kubernetes/configmap.yaml deployment.yaml (port $KUBE_PORT)"
    t0=$(now)
    KUBE_YAML=$WORK/deployment.yaml
    podman kube play --configmap deploy/kubernetes/configmap.yaml "$KUBE_YAML" >"$WORK/kube-play.txt" 2> >(quiet_systemd >&2)
    kube_container=$(awk '/^Container:/ { getline; print; exit }' "$WORK/kube-play.txt")
    [ -n "$kube_container" ] || die "podman kube play started no container: $(cat "$WORK/kube-play.txt")"
    deadline=$(( $(date +%s) + HEALTH_TIMEOUT ))
    until python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
            "http://127.0.0.1:$KUBE_PORT/ready" 2>/dev/null; do
        [ "$(podman inspect --format '{{.State.Running}}' "$kube_container")" = true ] \
            || { podman logs --tail 40 "$kube_container" >&2; die "the pod's container exited"; }
        [ "$(date +%s)" -lt "$deadline" ] || die "the pod was not ready after ${HEALTH_TIMEOUT}s"
        sleep 0.5
    done
    kube_seconds=$(elapsed "$t0" "$(now)")
    log "pod ready (GET /ready 200) after ${kube_seconds}s"
    [ "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$kube_container")" = true ] \
        || die "the pod's root filesystem is not read-only"
    [ "$(podman exec "$kube_container" id -u)" = 10001 ] || die "the pod does not run as uid 10001"
    if podman exec "$kube_container" touch /app/probe 2>/dev/null; then
        die "the pod could write to its root filesystem"
    fi
    podman exec "$kube_container" touch /tmp/probe || die "the pod cannot write to /tmp (its emptyDir)"
    log "pod: uid 10001, read-only root filesystem, /tmp writable"
    "$PYTHON" "$WORK/check.py" "http://127.0.0.1:$KUBE_PORT" "$clip_path" "$EXPECT_LANG"
    podman kube down "$KUBE_YAML" >/dev/null 2> >(quiet_systemd >&2)
    KUBE_YAML=""
    log "podman kube down: pod removed"
fi

echo
echo "container smoke test passed"
printf '  build time:        %ss%s\n' "$build_seconds" "$([ "${NO_CACHE:-0}" = 1 ] && echo ' (no cache)')"
printf '  run to healthy:    %ss\n' "$healthy_seconds"
printf '  SIGTERM to exit:   %ss\n' "$stop_seconds"
printf '  image size:        %s MB (%s)\n' "$(( image_bytes / 1000000 ))" "$IMAGE"
printf '  kube play to ready: %ss\n' "$kube_seconds"
