"""Who gets in: the browser origins allowed on the WebSocket, and the optional API key."""

from __future__ import annotations

import hmac
import logging
import re
from urllib.parse import urlsplit

from fastapi import HTTPException, Request


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """May a page from `origin` open a WebSocket to this server (reached as `host`)?

    Clients that are not browsers send no Origin and are let in (the API key, when set, guards them).
    Browsers: the same origin as the server, or one of CORS_ORIGINS; `*` there allows all.
    """
    if not origin:
        return True
    if "*" in allowed:
        return True
    normalised = origin.rstrip("/").lower()
    if normalised in {item.rstrip("/").lower() for item in allowed}:
        return True
    parts = urlsplit(normalised)
    return bool(host) and parts.scheme in ("http", "https") and parts.netloc == host.lower()


def token_matches(provided: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented key with the configured one."""
    return provided is not None and hmac.compare_digest(provided.encode(), expected.encode())


def presented_key(headers, query_params) -> str | None:
    """The key a client presents: `Authorization: Bearer KEY`, or `?token=KEY` (browsers' WebSockets
    cannot set headers)."""
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return query_params.get("token")


def require_api_key(request: Request) -> None:
    """FastAPI dependency: 401 unless the API key (when one is configured) is presented. The OpenAPI
    document declares the key (bearer security, 401) on the routes that depend on this, and only when the
    server has a key: see api_docs.declare_access."""
    expected = request.app.state.settings.API_KEY
    if expected and not token_matches(presented_key(request.headers, request.query_params), expected):
        request.app.state.metrics.rejected("unauthorized")
        raise HTTPException(
            status_code=401,
            detail="missing or wrong API key: send Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )


_SECRET_IN_QUERY = re.compile(r"((?:^|[?&])token=)[^&\s\"']*", re.IGNORECASE)


class RedactTokens(logging.Filter):
    """Hides `?token=...` in log lines (uvicorn logs each WebSocket path with its query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SECRET_IN_QUERY.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        if isinstance(record.msg, str) and "token=" in record.msg.lower():
            record.msg = _SECRET_IN_QUERY.sub(r"\1[redacted]", record.msg)
        return True
