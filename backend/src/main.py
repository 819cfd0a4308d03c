"""LangShazam's server: wires the shared AudioProcessor and ServerMetrics into the WebSocketManager.

Start from backend/: `python -m src.main` (or `uvicorn src.main:app --port 10000`).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from contextlib import asynccontextmanager
from typing import AsyncIterator

import uvicorn
from fastapi import FastAPI, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from . import http_api
from .audio_processor import AudioProcessor
from .config.settings import Settings, SettingsError, get_settings, logging_config, server_config
from .engines import create_engine
from .metrics import ServerMetrics
from .vad import VoiceActivityDetector
from .websocket_manager import WebSocketManager

logger = logging.getLogger("src.main")

WEB_DIR = Path(__file__).resolve().parent / "web"  # the browser page served at /ui


def configure_logging(settings: Settings) -> None:
    config = logging_config(settings)
    logging.basicConfig(level=config["level"], format=config["format"], datefmt=config["datefmt"], force=True)


def create_app(settings: Settings) -> FastAPI:
    metrics = ServerMetrics()
    audio_processor = AudioProcessor(
        create_engine(settings),
        max_concurrent_calls=settings.MAX_CONCURRENT_CALLS,
        vad=VoiceActivityDetector(threshold=settings.VAD_THRESHOLD),
        min_speech_seconds=settings.MIN_SPEECH_SECONDS,
        gc_after_processing=settings.GC_AFTER_PROCESSING,
    )
    ws_manager = WebSocketManager(
        audio_processor,
        metrics,
        min_audio_size=settings.MIN_AUDIO_SIZE,
        top_k=settings.TOP_K,
        stream_policy=settings.stream_policy(),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = time.perf_counter()
        audio_processor.load()
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

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"message": "Server is running!"}

    @app.get("/metrics")
    async def get_metrics() -> dict:
        return metrics.get_metrics_dict()

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
    uvicorn.run(
        "src.main:app" if config["debug"] else app,
        host=str(config["host"]),
        port=int(config["port"]),
        reload=bool(config["debug"]),
        log_level=logging_config(settings)["level"].lower(),
        ws_max_size=16 * 1024 * 1024,
    )


if __name__ == "__main__":
    main()
