#!/usr/bin/env bash
# Install what the tests need (a virtualenv in .venv, the Python requirements, the Debian packages the
# browser tests use when they are missing and we are root, the React example's npm packages into
# client/examples/react/node_modules and the AsyncAPI parser into backend/tests/asyncapi_parser), then run
# the test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f scripts/system-deps.txt ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=()
    while read -r pkg; do
        [ -z "$pkg" ] || [ "${pkg#\#}" != "$pkg" ] && continue
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done < scripts/system-deps.txt
    command -v npm >/dev/null || missing+=(npm)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "Installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
# The React example's packages and the AsyncAPI parser the contract tests use (each pinned in its
# package-lock.json), once: again only when a lock changes.
for folder in client/examples/react backend/tests/asyncapi_parser; do
    if command -v npm >/dev/null && ! [ "$folder/node_modules/.package-lock.json" -nt "$folder/package-lock.json" ]; then
        (cd "$folder" && npm ci --no-audit --no-fund --loglevel=error)
    fi
done
# Three workers by default (TEST_WORKERS=0 runs in one process): much of the suite waits on streams paced in
# real time, browsers and servers starting, so three processes share 2 cores well (on 2 cores, oneDNN: 6:21
# for the whole CI run with 2 workers, 5:43 with 3). Tests of one file stay on one worker (--dist loadfile),
# with its module fixtures; each worker starts its own shared servers.
WORKERS=${TEST_WORKERS:-3}
if [ "$WORKERS" = 0 ]; then
    exec .venv/bin/python -m pytest backend/tests "$@"
fi
exec .venv/bin/python -m pytest backend/tests -n "$WORKERS" --dist loadfile "$@"
