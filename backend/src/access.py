"""Who gets in: the Host names a key-less server answers, the browser origins allowed on the WebSocket,
the optional API key, who a client is (for the per-client cap), and keys kept out of the logs."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from urllib.parse import unquote_plus, urlsplit

from fastapi import HTTPException, Request


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")  # always answered, whatever ALLOWED_HOSTS says
_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::[0-9]{1,5})?")


def host_name(host: str | None) -> str | None:
    """The name in a Host header (`name[:port]`, `[v6]:port`), lower-case, an IPv6 address in brackets
    and compressed; None when it is not a host name."""
    match = _HOST.fullmatch(host or "")
    if match is None:
        return None
    if match["ipv6"] is not None:
        try:
            return f"[{ipaddress.IPv6Address(match['ipv6']).compressed}]"
        except ValueError:
            return None
    return match["name"].lower()


class HostPolicy:
    """The Host names the server answers (Starlette's TrustedHost semantics: a name, `*.domain` for its
    subdomains, `*` for any). A server with an API key answers any Host (the key guards it); one without
    answers only the loopback names and ALLOWED_HOSTS, so that DNS rebinding cannot reach it."""

    def __init__(self, allowed: list[str], any_host: bool = False) -> None:
        self.any_host = any_host or "*" in allowed
        self.patterns = [host_name(p) or p.lower() for p in (*LOOPBACK_HOSTS, *allowed)]

    def allows(self, host: str | None) -> bool:
        if self.any_host:
            return True
        name = host_name(host)
        return name is not None and any(
            name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:])) for pattern in self.patterns
        )

    def refusal(self, host: str | None) -> str:
        """What a request with an unanswered Host is told."""
        return (f"this server does not answer to the host {str(host)[:100]!r}: reach it as localhost or "
                "127.0.0.1, or list the name in its ALLOWED_HOSTS setting")


def origin_allowed(origin: str | None, host: str | None, allowed: list[str], hosts: HostPolicy | None = None) -> bool:
    """May a page from `origin` open a WebSocket to this server (reached as `host`)?

    Clients that are not browsers send no Origin and are let in (the API key, when set, guards them).
    Browsers: one of CORS_ORIGINS (`*` there allows all), or the same origin as the server on a host
    name it answers (`hosts`).
    """
    if not origin:
        return True
    if "*" in allowed:
        return True
    normalised = origin.rstrip("/").lower()
    if normalised in {item.rstrip("/").lower() for item in allowed}:
        return True
    parts = urlsplit(normalised)
    same_origin = bool(host) and parts.scheme in ("http", "https") and parts.netloc == host.lower()
    return same_origin and (hosts is None or hosts.allows(parts.netloc))


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


def client_of(client_host: str | None, api_key: str) -> str:
    """Who a connection's client is, for MAX_CONNECTIONS_PER_CLIENT: the API key when the server has one
    (admission has checked that the client presented it), else its address (the proxy's X-Forwarded-For
    when TRUSTED_PROXIES lists the proxy). Never the key itself: a digest of it."""
    if api_key:
        return "key " + hashlib.sha256(api_key.encode()).hexdigest()[:12]
    return "address " + (client_host or "unknown")


# A query parameter in a log line: its name (however encoded) and its value.
_QUERY_PAIR = re.compile(r"(?P<lead>^|[?&;])(?P<name>[^=&;?#\s\"']+)=(?P<value>[^&;#\s\"']*)")


_PLACEHOLDER = re.compile(r"%[-#0 +]?\d*(?:\.\d+)?[sdrifx]")  # a log message's own `%s`, left for its argument


def _is_token(name: str) -> bool:
    """`token` however a client spells it: any case, percent-encoded (`to%6Ben`), even twice."""
    for _ in range(4):
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return name.strip().lower() == "token"


def redact_tokens(text: str) -> str:
    """`text` with the value of every `token` query parameter replaced by `[redacted]`."""
    if "=" not in text:
        return text
    def hide(match: re.Match[str]) -> str:
        if not _is_token(match["name"]) or _PLACEHOLDER.fullmatch(match["value"]):
            return match[0]
        return f"{match['lead']}{match['name']}=[redacted]"

    return _QUERY_PAIR.sub(hide, text)


class RedactTokens(logging.Filter):
    """Hides the value of `?token=...` (however the name is spelled) in log records: uvicorn logs each
    path with its query string; attached to uvicorn's loggers and to the handlers of the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_tokens(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: redact_tokens(arg) if isinstance(arg, str) else arg for key, arg in record.args.items()}
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        return True
