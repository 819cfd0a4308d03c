"""LangShazam's server: wires the shared AudioProcessor and ServerMetrics into the WebSocketManager.

Start from backend/: `python -m src.main` (or `uvicorn src.main:app --port 10000`; only the former drains
open connections on SIGTERM, see GracefulServer).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import uvicorn
from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import http_api, protocol
from .access import RedactTokens, require_api_key
from .audio_processor import AudioProcessor
from .config.settings import Settings, SettingsError, get_settings, logging_config, server_config
from .metrics import ServerMetrics
from .websocket_manager import Limits, WebSocketManager

logger = logging.getLogger("src.main")

WEB_DIR = Path(__file__).resolve().parent / "web"  # the browser page served at /ui


def configure_logging(settings: Settings) -> None:
    config = logging_config(settings)
    logging.basicConfig(level=config["level"], format=config["format"], datefmt=config["datefmt"], force=True)
    for name in ("uvicorn.error", "uvicorn.access", "uvicorn"):
        logging.getLogger(name).addFilter(RedactTokens())


def create_app(settings: Settings) -> FastAPI:
    metrics = ServerMetrics()
    audio_processor = AudioProcessor.from_settings(settings, on_queue_change=metrics.queue_changed)
    ws_manager = WebSocketManager(
        audio_processor,
        metrics,
        min_audio_size=settings.MIN_AUDIO_SIZE,
        top_k=settings.TOP_K,
        stream_policy=settings.stream_policy(),
        limits=Limits(
            max_connections=settings.MAX_CONNECTIONS,
            max_bytes=settings.MAX_BYTES_PER_CONNECTION,
            max_audio_seconds=settings.MAX_AUDIO_SECONDS,
            max_frame_bytes=settings.MAX_FRAME_BYTES,
            idle_timeout=settings.IDLE_TIMEOUT_SECONDS,
        ),
        allowed_origins=settings.cors_origins,
        api_key=settings.API_KEY,
        once_quiet_seconds=settings.ONCE_QUIET_SECONDS,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = time.perf_counter()
        await asyncio.to_thread(audio_processor.load)
        logger.info(
            "Engine %s ready in %.2fs; listening for audio on /ws",
            audio_processor.engine.name, time.perf_counter() - started,
        )
        yield
        audio_processor.close()
        logger.info("Engine %s closed", audio_processor.engine.name)

    app = FastAPI(title="LangShazam", summary="Spoken language identification", lifespan=lifespan)
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

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"message": "Server is running!"}

    @app.get("/metrics", dependencies=[Depends(require_api_key)])
    async def get_metrics() -> dict:
        return metrics.get_metrics_dict()

    @app.get("/metrics/prometheus", dependencies=[Depends(require_api_key)])
    async def get_prometheus() -> Response:
        return Response(metrics.prometheus(), media_type="text/plain; version=0.0.4; charset=utf-8")

    app.include_router(http_api.router)

    @app.get("/ui", include_in_schema=False)
    async def ui_redirect() -> RedirectResponse:
        return RedirectResponse("/ui/")

    app.mount("/ui/", StaticFiles(directory=WEB_DIR, html=True), name="ui")

    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        started = time.perf_counter()
        await ws_manager.handle_connection(websocket)
        logger.info("WebSocket connection lasted %.2fs", time.perf_counter() - started)

    return app


class GracefulServer(uvicorn.Server):
    """On SIGTERM/SIGINT: refuse new WebSocket connections, let open ones answer on what they have (up to
    SHUTDOWN_GRACE_SECONDS), then let uvicorn shut down. A second signal exits at once."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app
        self._draining: asyncio.Task | None = None

    def handle_exit(self, sig: int, frame) -> None:  # type: ignore[override]
        if self._draining is not None or self.should_exit:
            return super().handle_exit(sig, frame)
        logger.info("Signal %s: draining open connections before shutting down", sig)
        loop = asyncio.get_event_loop()
        self._draining = loop.create_task(self._drain_then_exit(sig, frame))

    async def _drain_then_exit(self, sig: int, frame) -> None:
        manager: WebSocketManager = self._app.state.ws_manager
        await manager.drain(self._app.state.settings.SHUTDOWN_GRACE_SECONDS)
        super().handle_exit(sig, frame)


def _settings_or_exit() -> Settings:
    try:
        return get_settings()
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
    )
    if config["debug"]:
        uvicorn.run("src.main:app", reload=True, **options)
        return
    server = GracefulServer(uvicorn.Config(app, **options), app)
    server.run()


if __name__ == "__main__":
    main()
