"""LangShazam's WebSocket/HTTP messages, in one place (the README documents them).

Server to client, all JSON objects:
- `{"status": "success", "data": {...}, "timestamp": ISO-8601, "connection_id": id}`: the answer.
- `{"status": "error", "message": str, "timestamp": ..., "connection_id": id}`: what went wrong.

Client to server: binary frames of audio; text frames of JSON, `{"type": "stop"}` to ask for the answer now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .languages import language_name


class ProtocolError(ValueError):
    """A client message LangShazam cannot act on; the message is meant for the client."""


@dataclass
class Identification:
    """The outcome of one detection, before it becomes the `data` of an answer."""

    probabilities: list[tuple[str, float | None]]  # most likely first
    processing_time: float
    audio_duration: float
    engine: str
    reason: str | None = None  # why there is no language: "too_short", "uncertain", ...
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def language(self) -> str | None:
        if self.reason is not None or not self.probabilities:
            return None
        return self.probabilities[0][0]


def timestamp() -> str:
    return datetime.now(timezone.utc).isoformat()


def answer_data(result: Identification, connection_id: str, top_k: int) -> dict[str, Any]:
    language = result.language
    data: dict[str, Any] = {
        "language": language,
        "language_name": language_name(language) if language else None,
        "confidence": _round(result.probabilities[0][1]) if language else None,
        "top": [
            {"language": code, "language_name": language_name(code), "probability": _round(prob)}
            for code, prob in result.probabilities[:top_k]
        ],
        "processing_time": round(result.processing_time, 4),
        "audio_duration": round(result.audio_duration, 3),
        "engine": result.engine,
        "connection_id": connection_id,
    }
    if result.reason is not None:
        data["reason"] = result.reason
    data.update(result.extra)
    return data


def success(data: dict[str, Any], connection_id: str) -> dict[str, Any]:
    return {"status": "success", "data": data, "timestamp": timestamp(), "connection_id": connection_id}


def error(message: str, connection_id: str) -> dict[str, Any]:
    return {"status": "error", "message": message, "timestamp": timestamp(), "connection_id": connection_id}


@dataclass(frozen=True)
class ClientMessage:
    type: str
    body: dict[str, Any]


CLIENT_MESSAGE_TYPES = ("stop",)


def parse_client_message(text: str) -> ClientMessage:
    """A text frame from the client, checked."""
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError("text frames must be JSON objects such as {\"type\": \"stop\"}") from None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise ProtocolError("text frames must be JSON objects with a string \"type\"")
    if body["type"] not in CLIENT_MESSAGE_TYPES:
        raise ProtocolError(
            f"unknown message type {body['type'][:40]!r}; expected one of: {', '.join(CLIENT_MESSAGE_TYPES)}"
        )
    return ClientMessage(type=body["type"], body=body)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
