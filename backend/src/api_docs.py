"""API documentation that works offline: Swagger UI (/docs) and ReDoc (/redoc) served from the files the
fastapi-offline package ships (no CDN), the WebSocket protocol as an AsyncAPI document (/asyncapi.yaml),
which OpenAPI cannot describe, and the OpenAPI document made true to the server: the API key declared
(bearer security and 401) only when the server has one, and multipart fields without FastAPI's `null`
(a form cannot send one)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from .access import require_api_key
from .openai_api import router as openai_router

ASSETS_URL = "/docs-assets"
ASYNCAPI_FILE = Path(__file__).resolve().parent / "asyncapi.yaml"

DESCRIPTION = """\
Tells which language someone is speaking, from a file (`POST /detect`) or a live stream of audio over the
WebSocket `/ws` (partial answers while audio arrives, then a final one). `/v1` speaks OpenAI's audio API
(`POST /v1/audio/transcriptions` with `gpt-transcribe`'s `languages` and `stream=true`, `GET /v1/models`,
and the Realtime transcription WebSocket `/v1/realtime?intent=transcription`), so OpenAI's SDKs work with
`base_url` set to this server's `/v1`.

**WebSockets `/ws` and `/v1/realtime`** (not shown below, OpenAPI cannot describe them): their messages,
options and close codes are in the AsyncAPI document [/asyncapi.yaml](/asyncapi.yaml) and in the
documentation's pages `docs/protocol.md` and `docs/openai.md` ("Realtime transcription").

**API key**: when the server has `API_KEY` set, send `Authorization: Bearer KEY` ("Authorize" below, and the routes that need it say so: this
document declares the key only on a server that has one); `/`,
`/docs` and the page at `/ui/` stay open. Errors: `{"status": "error", "message": ...}`, except on `/v1`, which answers OpenAI's
`{"error": {"message", "type", "param", "code"}}`.
"""


BEARER = "apiKey"  # the security scheme's name in the document
SCHEMAS = "#/components/schemas/"


def _needs_key(dependant: Dependant) -> bool:
    return any(dep.call is require_api_key or _needs_key(dep) for dep in dependant.dependencies)


def guarded_operations(app: FastAPI) -> set[tuple[str, str]]:
    """(path, method) of every documented operation that asks for the API key when the server has one."""
    return {  # route contexts: the routes of included routers with the routers' dependencies
        (route.path_format, method.lower())
        for route in iter_route_contexts(app.routes)
        if getattr(route, "include_in_schema", False) and _needs_key(route.dependant)
        for method in route.methods or ()
    }


def declare_access(schema: dict[str, Any], guarded: set[tuple[str, str]], api_key: bool,
                   error_schema: Callable[[str], str]) -> None:
    """With a key: bearer security and a 401 (in the error shape `error_schema(path)` names) on the guarded
    operations. Without one: neither (a server without a key never answers 401)."""
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if (path, method) not in guarded:
                continue
            responses = operation.setdefault("responses", {})
            if not api_key:
                responses.pop("401", None)
                continue
            operation["security"] = [{BEARER: []}]
            responses.setdefault("401", {
                "description": "missing or wrong API key",
                "content": {"application/json": {"schema": {"$ref": SCHEMAS + error_schema(path)}}},
            })
    if api_key:
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[BEARER] = {"type": "http", "scheme": "bearer", "description": "the server's API_KEY "
                           "(`Authorization: Bearer KEY`)"}


def forms_without_null(schema: dict[str, Any]) -> None:
    """Optional multipart fields as a form sends them: FastAPI declares `anyOf: [..., {type: null}]` for a
    field that may be left out, but a form has no null (it leaves the field out)."""
    components = schema.get("components", {}).get("schemas", {})
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data", {})
            ref = form.get("schema", {}).get("$ref", "")
            body = components.get(ref.removeprefix(SCHEMAS)) if ref else form.get("schema")
            for field in (body or {}).get("properties", {}).values():
                options = [option for option in field.get("anyOf", []) if option.get("type") != "null"]
                if "anyOf" in field and len(options) == 1:
                    del field["anyOf"]
                    field.update(options[0])
                    if field.get("default", "") is None:
                        del field["default"]


def install_openapi(app: FastAPI, api_key: bool, error_schema: Callable[[str], str]) -> None:
    """GET /openapi.json: FastAPI's document, then `declare_access` and `forms_without_null` (once per
    document FastAPI makes)."""
    generate = app.openapi
    made: list[int] = []  # the id of the last document made true (FastAPI makes a new one if routes change)

    def openapi() -> dict[str, Any]:
        schema = generate()
        if made != [id(schema)]:
            declare_access(schema, guarded_operations(app), api_key, error_schema)
            forms_without_null(schema)
            made[:] = [id(schema)]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _assets_dir() -> str:
    return str(resources.files("fastapi_offline").joinpath("static"))


def error_schema(path: str) -> str:
    """The error shape a path answers: OpenAI's under /v1, LangShazam's elsewhere."""
    return "ErrorResponse" if path.startswith(openai_router.prefix + "/") else "ErrorAnswer"


def install(app: FastAPI) -> None:
    """Serve /docs, /redoc and /asyncapi.yaml on an app created with docs_url=None, redoc_url=None, and
    /openapi.json as install_openapi makes it (after the routes are included)."""
    install_openapi(app, bool(app.state.settings.API_KEY), error_schema)
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
