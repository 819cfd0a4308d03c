"""LangShazam's server: wires the shared AudioProcessor and ServerMetrics into the WebSocketManager.

Start from backend/: `python -m src.main` (or `uvicorn src.main:app --port 10000`; only the former drains
open connections on SIGTERM, see GracefulServer); installed, `langshazam serve` (serve.py) runs the former.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Literal

import uvicorn
from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from . import api_docs, http_api, openai_api, protocol, realtime_api
from .access import HostPolicy, RedactTokens, require_api_key
from .audio_processor import AudioProcessor
from .client_connections import ClientConnections
from .stream_capacity import StreamCapacity
from .streaming import StreamPolicy
from .client_files import ClientFiles
from .config.settings import Settings, SettingsError, get_settings, logging_config, server_config
from .confidence import ConfidenceRule
from .engines.base import EngineError
from .engines.model_files import ModelFilesError
from .metrics import MetricsSnapshot, ServerMetrics
from .websocket_manager import Limits, WebSocketManager

logger = logging.getLogger("src.main")


class Readiness:
    """What GET /ready answers: `loading` (503) until the engine is loaded, `ready` (200), then `draining`
    (503) from the moment a shutdown signal arrives; `failed` (503) when the engine could not load.

    `refusing` says when new work (WebSocket upgrades, POSTs) gets 503: before the engine is loaded, and once
    draining has begun (after SHUTDOWN_READINESS_DELAY_SECONDS). A proxy retries a 503 on another replica."""

    def __init__(self) -> None:
        self.loaded = False
        self.failed = False
        self.shutting_down = False  # a signal arrived: not ready, though still serving during the delay
        self.draining = False  # new work refused, open connections finishing

    @property
    def state(self) -> str:
        if self.failed:
            return "failed"
        if self.shutting_down:
            return "draining"
        return "ready" if self.loaded else "loading"

    @property
    def refusing(self) -> str | None:
        """Why new work is refused now, if it is."""
        if not self.loaded:
            return "the server is still loading its model: try again shortly"
        if self.draining:
            return "the server is shutting down: try again on another server"
        return None


class ReadyState(BaseModel):
    """GET /ready's answer."""

    status: Literal["ready", "loading", "draining", "failed"]


WEB_DIR = Path(__file__).resolve().parent / "web"  # the browser page served at /ui


def configure_logging(settings: Settings) -> None:
    config = logging_config(settings)
    logging.basicConfig(level=config["level"], format=config["format"], datefmt=config["datefmt"], force=True)
    for name in ("uvicorn.error", "uvicorn.access", "uvicorn"):  # uvicorn's own handlers
        logging.getLogger(name).addFilter(RedactTokens())
    for handler in logging.getLogger().handlers:  # every record that reaches the root: the server's own
        handler.addFilter(RedactTokens())


def create_app(settings: Settings) -> FastAPI:
    metrics = ServerMetrics()
    hosts = HostPolicy(settings.allowed_hosts, any_host=bool(settings.API_KEY))
    audio_processor = AudioProcessor.from_settings(settings, on_queue_change=metrics.queue_changed)
    ws_manager = WebSocketManager(
        audio_processor,
        metrics,
        min_audio_size=settings.MIN_AUDIO_SIZE,
        top_k=settings.TOP_K,
        stream_policy=StreamPolicy.from_settings(settings),
        limits=Limits(
            max_connections=settings.MAX_CONNECTIONS,
            max_bytes=settings.MAX_BYTES_PER_CONNECTION,
            max_audio_seconds=settings.MAX_AUDIO_SECONDS,
            max_call_seconds=settings.MAX_CALL_SECONDS,
            call_bytes_per_second=settings.MAX_CALL_BYTES_PER_SECOND,
            call_burst_bytes=settings.MAX_CALL_BURST_BYTES,
            max_frame_bytes=settings.MAX_FRAME_BYTES,
            idle_timeout=settings.IDLE_TIMEOUT_SECONDS,
        ),
        allowed_origins=settings.cors_origins,
        api_key=settings.API_KEY,
        once_quiet_seconds=settings.ONCE_QUIET_SECONDS,
        capacity=StreamCapacity(settings.max_streams, audio_processor, settings.STREAM_RETRY_AFTER_SECONDS,
                                on_change=metrics.streams_changed),
        hosts=hosts,
        clients=ClientConnections(settings.MAX_CONNECTIONS_PER_CLIENT, settings.STREAM_RETRY_AFTER_SECONDS),
    )

    readiness = Readiness()

    async def load_engine() -> None:
        started = time.perf_counter()
        try:
            await asyncio.to_thread(audio_processor.load)
        except Exception as exc:
            readiness.failed = True
            if isinstance(exc, (EngineError, ModelFilesError)):  # a message meant for the operator
                logger.error("Engine %s failed to load: %s. Shutting down", audio_processor.engine.name, exc)
            else:
                logger.exception("Engine %s failed to load: shutting down", audio_processor.engine.name)
            signal.raise_signal(signal.SIGTERM)
            return
        readiness.loaded = True
        info = audio_processor.engine_info()
        metrics.engine_loaded(info)
        logger.info(
            "Engine %s ready in %.2fs (%s); listening for audio on /ws and /v1/realtime",
            audio_processor.engine.name, time.perf_counter() - started,
            ", ".join(f"{key} {value}" for key, value in info.items() if key not in ("name", "calibration")),
        )
        if audio_processor.confidence.calibrated:
            logger.info("Honesty rule: %s", audio_processor.confidence.calibration)
        else:
            logger.warning("Honesty rule: %s (README, \"Models and devices\")", audio_processor.confidence.calibration)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The model loads while the server already listens: GET / (liveness) answers at once, GET /ready
        # says 503 until the engine can work, and requests that need it get 503 (see refuse_when_not_ready).
        loading = asyncio.create_task(load_engine())
        yield
        await loading
        audio_processor.close()
        logger.info("Engine %s closed", audio_processor.engine.name)

    app = FastAPI(
        title="LangShazam", summary="Spoken language identification", description=api_docs.DESCRIPTION,
        lifespan=lifespan, docs_url=None, redoc_url=None,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials="*" not in settings.cors_origins,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.audio_processor = audio_processor
    app.state.ws_manager = ws_manager
    app.state.readiness = readiness

    def not_ready_response(reason: str) -> JSONResponse:
        return JSONResponse(protocol.error(reason, "http"), status_code=503, headers={"Retry-After": "2"})

    @app.middleware("http")
    async def refuse_when_not_ready(request: Request, call_next):  # noqa: ANN001, ANN202
        # Every POST route needs the engine; GET routes (health, metrics, the page) always answer.
        reason = readiness.refusing
        if request.method == "POST" and reason is not None:
            metrics.rejected("not_ready")
            if request.url.path.startswith(openai_api.router.prefix + "/"):  # OpenAI's error shape there
                return openai_api.OpenAIError(
                    503, reason, type="server_error", code="not_ready", headers={"Retry-After": "2"}
                ).response()
            return not_ready_response(reason)
        return await call_next(request)

    @app.middleware("http")
    async def refuse_unknown_hosts(request: Request, call_next):  # noqa: ANN001, ANN202
        # Without an API key only the loopback names and ALLOWED_HOSTS are answered (DNS rebinding);
        # WebSocket upgrades are checked in WebSocketManager.admission.
        host = request.headers.get("host")
        if not hosts.allows(host):
            metrics.rejected("host")
            logger.warning("Refused a request for the host %r (ALLOWED_HOSTS)", str(host)[:100])
            if request.url.path.startswith(openai_api.router.prefix + "/"):
                return openai_api.OpenAIError(400, hosts.refusal(host), code="host_not_allowed").response()
            return JSONResponse(protocol.error(hosts.refusal(host), "http"), status_code=400)
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            protocol.error(str(exc.detail), "http"), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'][1:]) or 'request'}: {error['msg']}" for error in exc.errors()
        )
        metrics.error("bad_message")
        return JSONResponse(protocol.error(f"invalid request: {problems}", "http"), status_code=422)

    @app.get("/", summary="Health check")
    async def root() -> dict[str, str]:
        return {"message": "Server is running!"}

    @app.get("/ready", summary="Readiness: 200 when the server accepts work, 503 while loading or draining",
             responses={200: {"model": ReadyState}, 503: {"model": ReadyState, "description": "loading, draining or failed"}})
    async def ready() -> JSONResponse:
        """Readiness: 200 once the engine is loaded and the server accepts work; 503 while it loads and
        from the moment it is asked to shut down."""
        return JSONResponse({"status": readiness.state}, status_code=200 if readiness.state == "ready" else 503)

    @app.get("/metrics", summary="Counters, as JSON", response_model=MetricsSnapshot,
             dependencies=[Depends(require_api_key)])
    async def get_metrics() -> dict:
        return metrics.get_metrics_dict()

    @app.get("/metrics/prometheus", summary="Counters, in Prometheus' text format", dependencies=[Depends(require_api_key)],
             response_class=PlainTextResponse, responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def get_prometheus() -> Response:
        return Response(metrics.prometheus(), media_type="text/plain; version=0.0.4; charset=utf-8")

    app.include_router(http_api.router)
    app.include_router(openai_api.router)
    app.include_router(realtime_api.router)  # the WebSocket /v1/realtime (OpenAI's Realtime transcription)
    api_docs.install(app)

    @app.get("/ui", include_in_schema=False)
    async def ui_redirect() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @app.get("/ui/config.json", include_in_schema=False)
    async def ui_config() -> dict[str, list[str]]:
        """What the page reads before it connects: the servers it may be pointed at besides its own."""
        return {"servers": settings.ui_servers}

    app.mount("/ui/", StaticFiles(directory=WEB_DIR, html=True), name="ui")
    app.mount("/client/", ClientFiles(), name="client")  # langshazam.js and langshazam.d.ts, for pages to import

    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        reason = readiness.refusing
        if reason is not None:
            # An HTTP 503 to the upgrade, not an accepted connection closed with 1013: a proxy (nginx's
            # proxy_next_upstream http_503) then hands the session to another replica.
            metrics.rejected("not_ready")
            logger.info("WebSocket upgrade refused with 503: %s", reason)
            await websocket.send_denial_response(not_ready_response(reason))
            return
        started = time.perf_counter()
        await ws_manager.handle_connection(websocket)
        logger.info("WebSocket connection lasted %.2fs", time.perf_counter() - started)

    if settings.trusted_proxies:  # outermost: every check sees the client the proxy names
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    return app


class GracefulServer(uvicorn.Server):
    """On SIGTERM/SIGINT: GET /ready turns 503 at once while the server goes on serving for
    SHUTDOWN_READINESS_DELAY_SECONDS (so load balancers' health checks stop sending it new sessions), then
    it refuses new WebSocket connections, lets open ones answer on what they have (up to
    SHUTDOWN_GRACE_SECONDS), and lets uvicorn shut down. A second signal exits at once."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app
        self._draining: asyncio.Task | None = None

    def handle_exit(self, sig: int, frame) -> None:  # type: ignore[override]
        if self._draining is not None or self.should_exit:
            return super().handle_exit(sig, frame)
        readiness: Readiness = self._app.state.readiness
        if readiness.failed:  # raised by the engine's loader: nothing to drain; main() exits with 1
            self.should_exit = True
            return
        readiness.shutting_down = True
        logger.info("Signal %s: readiness off (GET /ready answers 503), then draining open connections", sig)
        loop = asyncio.get_event_loop()
        self._draining = loop.create_task(self._drain_then_exit(sig, frame))

    async def _drain_then_exit(self, sig: int, frame) -> None:
        settings: Settings = self._app.state.settings
        if settings.SHUTDOWN_READINESS_DELAY_SECONDS > 0:
            logger.info(
                "Still serving for %.1fs (SHUTDOWN_READINESS_DELAY_SECONDS) before refusing new connections",
                settings.SHUTDOWN_READINESS_DELAY_SECONDS,
            )
            await asyncio.sleep(settings.SHUTDOWN_READINESS_DELAY_SECONDS)
        manager: WebSocketManager = self._app.state.ws_manager
        self._app.state.readiness.draining = True
        logger.info("Draining open connections (up to %.1fs)", settings.SHUTDOWN_GRACE_SECONDS)
        await manager.drain(settings.SHUTDOWN_GRACE_SECONDS)
        super().handle_exit(sig, frame)


def _settings_or_exit() -> Settings:
    try:
        settings = get_settings()
        ConfidenceRule.from_settings(settings)  # the honesty rule's numbers check out (LIKELY_*, calibration)
        return settings
    except SettingsError as exc:
        print(f"LangShazam cannot start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


settings = _settings_or_exit()
configure_logging(settings)
app = create_app(settings)


def main() -> None:
    config = server_config(settings)
    options = dict(
        host=str(config["host"]),
        port=int(config["port"]),
        log_level=logging_config(settings)["level"].lower(),
        ws_max_size=max(16 * 1024 * 1024, settings.MAX_FRAME_BYTES + 1024),
        proxy_headers=False,  # X-Forwarded-For only from TRUSTED_PROXIES (create_app), not uvicorn's default
    )
    if config["debug"]:
        uvicorn.run(f"{__package__}.main:app", reload=True, **options)
        return
    server = GracefulServer(uvicorn.Config(app, **options), app)
    server.run()
    if app.state.readiness.failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
