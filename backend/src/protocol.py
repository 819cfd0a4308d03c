"""LangShazam's WebSocket/HTTP messages, in one place (docs/protocol.md documents them).

Server to client, all JSON objects:
- `{"status": "success", "data": {...}, "timestamp": ISO-8601, "connection_id": id}`: the answer.
- `{"status": "error", "message": str, "timestamp": ..., "connection_id": id}`: what went wrong.

Stream mode adds `{"status": "partial", "data": {...}, ...}` answers before the final success; continuous
mode adds `{"status": "segment", "data": {...}, ...}`, one per utterance, and ends with a summary.

Client to server: binary frames of audio; text frames of JSON: `{"type": "start", "mode": "stream", ...}`
first (optional, see ConnectionOptions), `{"type": "stop"}` to ask for the (final) answer now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from .audio import PCM_FORMATS
from .confidence import Strictness
from .languages import language_name, parse_language_list


class ProtocolError(ValueError):
    """A client message LangShazam cannot act on; the message is meant for the client."""


@dataclass
class Identification:
    """The outcome of one detection, before it becomes the `data` of an answer."""

    probabilities: list[tuple[str, float | None]]  # most likely first
    processing_time: float
    audio_duration: float
    engine: str
    reason: str | None = None  # why there is no language: "no_speech", "too_short", "uncertain"
    extra: dict[str, Any] = field(default_factory=dict)
    confident: bool = False  # the honesty rule's verdict (src/confidence.py)
    raw_probabilities: list[tuple[str, float | None]] | None = None  # the engine's, before calibration
    likely: list[str] = field(default_factory=list)  # the likely set (src/confidence.py), most likely first
    fallback: str | None = None  # the request's fallback_language, named because the answer was uncertain

    @property
    def language(self) -> str | None:
        """The language the answer names: None when there is a reason not to name one."""
        if self.fallback is not None:
            return self.fallback
        if self.reason is not None or not self.probabilities:
            return None
        return self.probabilities[0][0]

    @property
    def top_language(self) -> str | None:
        """The most likely candidate, named or not (for evaluation)."""
        return self.probabilities[0][0] if self.probabilities else None


def timestamp() -> str:
    return datetime.now(timezone.utc).isoformat()


def answer_data(result: Identification, connection_id: str, top_k: int) -> dict[str, Any]:
    language = result.language
    data: dict[str, Any] = {
        "language": language,
        "language_name": language_name(language) if language else None,
        "confidence": _round(dict(result.probabilities).get(language)) if language else None,
        "confident": bool(result.confident and language and result.fallback is None),
        "likely": list(result.likely),
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
    if result.fallback is not None:
        data["fallback"] = True
    data.update(result.extra)
    return data


def success(data: dict[str, Any], connection_id: str) -> dict[str, Any]:
    return {"status": "success", "data": data, "timestamp": timestamp(), "connection_id": connection_id}


def segment(data: dict[str, Any], connection_id: str) -> dict[str, Any]:
    """Continuous mode: one utterance's language and times in the stream."""
    return {"status": "segment", "data": data, "timestamp": timestamp(), "connection_id": connection_id}


def partial(data: dict[str, Any], connection_id: str) -> dict[str, Any]:
    return {"status": "partial", "data": data, "timestamp": timestamp(), "connection_id": connection_id}


def error(message: str, connection_id: str, retry_after: float | None = None) -> dict[str, Any]:
    """An error; `retry_after`: seconds after which a refused client may try again."""
    out = {"status": "error", "message": message, "timestamp": timestamp(), "connection_id": connection_id}
    if retry_after is not None:
        out["retry_after"] = retry_after
    return out


@dataclass(frozen=True)
class ClientMessage:
    type: str
    body: dict[str, Any]


CLIENT_MESSAGE_TYPES = ("start", "stop")
MODES = ("once", "stream", "continuous")


@dataclass(frozen=True)
class ConnectionOptions:
    """How a client wants its connection served: from the query string and/or a first "start" frame."""

    mode: str = "once"  # "once": the original one answer at 20 KB; "stream": partial answers, then a final one
    languages: list[str] | None = None  # candidate languages; probabilities renormalised over them
    top_k: int | None = None  # how many candidates each answer lists (default: the TOP_K setting)
    format: str | None = None  # None: a compressed container (webm, mp4, ogg, ...); or pcm_s16le / pcm_f32le
    sample_rate: int | None = None  # of raw PCM
    min_confidence: float | None = None  # this connection's confident threshold (default: FINAL_PROBABILITY)
    fallback_language: str | None = None  # named, with fallback: true, when an answer would be uncertain

    @property
    def strictness(self) -> Strictness:
        return Strictness(self.min_confidence, self.fallback_language)

    def merged(self, values: dict[str, Any]) -> "ConnectionOptions":
        """These options updated from a query string or a start frame (checked; ProtocolError if bad)."""
        changes: dict[str, Any] = {}
        if values.get("mode") is not None:
            mode = str(values["mode"]).strip().lower()
            if mode not in MODES:
                raise ProtocolError(f"unknown mode {mode[:20]!r}; expected one of: {', '.join(MODES)}")
            changes["mode"] = mode
        if values.get("languages") is not None:
            raw = values["languages"]
            if not isinstance(raw, (str, list)) or not all(isinstance(item, str) for item in (raw if isinstance(raw, list) else [raw])):
                raise ProtocolError("languages must be a list of language codes or a comma-separated string")
            try:
                changes["languages"] = parse_language_list(raw)
            except ValueError as exc:
                raise ProtocolError(str(exc)) from None
        if values.get("top_k") is not None:
            changes["top_k"] = _int_in(values["top_k"], "top_k", 1, 100)
        if values.get("format") is not None:
            fmt = str(values["format"]).strip().lower()
            if fmt in ("", "auto", "container"):
                fmt = None
            elif fmt not in PCM_FORMATS:
                raise ProtocolError(
                    f"unknown format {fmt[:20]!r}: send a container (webm, mp4, ogg, wav, mp3, flac; detected "
                    f"by itself) or declare raw audio as one of {', '.join(PCM_FORMATS)}"
                )
            changes["format"] = fmt
        if values.get("sample_rate") is not None:
            changes["sample_rate"] = _int_in(values["sample_rate"], "sample_rate", 8000, 192000)
        if values.get("min_confidence") is not None:
            changes["min_confidence"] = parse_min_confidence(values["min_confidence"])
        if values.get("fallback_language") is not None:
            changes["fallback_language"] = parse_fallback_language(values["fallback_language"])
        options = replace(self, **changes)
        if options.format is not None and options.sample_rate is None:
            raise ProtocolError(f"format {options.format} needs a sample_rate (e.g. 16000)")
        return options


def parse_min_confidence(value: Any) -> float:
    """A request's min_confidence: a number from 0 to 1 (ProtocolError otherwise)."""
    if isinstance(value, bool):
        raise ProtocolError("min_confidence must be a number from 0 to 1")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ProtocolError("min_confidence must be a number from 0 to 1") from None
    if not 0.0 <= number <= 1.0:  # also refuses nan
        raise ProtocolError("min_confidence must be between 0 and 1")
    return number


def parse_fallback_language(value: Any) -> str:
    """A request's fallback_language: one language code the engine knows (ProtocolError otherwise)."""
    if not isinstance(value, str):
        raise ProtocolError("fallback_language must be one language code, e.g. en")
    try:
        codes = parse_language_list(value)
    except ValueError as exc:
        raise ProtocolError(f"fallback_language: {exc}") from None
    if not codes or len(codes) != 1:
        raise ProtocolError("fallback_language must be one language code, e.g. en")
    return codes[0]


def _int_in(value: Any, name: str, low: int, high: int) -> int:
    try:
        number = int(value)
        if isinstance(value, float) and value != number:
            raise ValueError
    except (TypeError, ValueError):
        raise ProtocolError(f"{name} must be a whole number") from None
    if not low <= number <= high:
        raise ProtocolError(f"{name} must be between {low} and {high}")
    return number


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
