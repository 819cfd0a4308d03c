"""API documentation that works offline: Swagger UI (/docs) and ReDoc (/redoc) served from the files the
fastapi-offline package ships (no CDN), and the WebSocket protocol as an AsyncAPI document (/asyncapi.yaml),
which OpenAPI cannot describe."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
ASYNCAPI_FILE = Path(__file__).resolve().parent / "asyncapi.yaml"

DESCRIPTION = """\
Tells which language someone is speaking, from a file (`POST /detect`) or a live stream of audio over the
WebSocket `/ws` (partial answers while audio arrives, then a final one). `/v1` speaks OpenAI's audio API
(`POST /v1/audio/transcriptions` with `gpt-transcribe`'s `languages` and `stream=true`, `GET /v1/models`,
and the Realtime transcription WebSocket `/v1/realtime?intent=transcription`), so OpenAI's SDKs work with
`base_url` set to this server's `/v1`.

**WebSockets `/ws` and `/v1/realtime`** (not shown below, OpenAPI cannot describe them): their messages,
options and close codes are in the AsyncAPI document [/asyncapi.yaml](/asyncapi.yaml) and in the README's
"WebSocket protocol" and "Realtime transcription" sections.

**API key**: when the server has `API_KEY` set, send `Authorization: Bearer KEY` ("Authorize" below); `/`,
`/docs` and the page at `/ui/` stay open. Errors: `{"status": "error", "message": ...}`, except on `/v1`, which answers OpenAI's
`{"error": {"message", "type", "param", "code"}}`.
"""


def _assets_dir() -> str:
    return str(resources.files("fastapi_offline").joinpath("static"))


def install(app: FastAPI) -> None:
    """Serve /docs, /redoc and /asyncapi.yaml on an app created with docs_url=None, redoc_url=None."""
    app.mount(ASSETS_URL, StaticFiles(directory=_assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API",
            oauth2_redirect_url=oauth2_redirect_url,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

    @app.get("/asyncapi.yaml", include_in_schema=False)
    async def asyncapi() -> FileResponse:
        return FileResponse(ASYNCAPI_FILE, media_type="application/yaml")
