"""OpenAI's Realtime API for transcription: the WebSocket `/v1/realtime?intent=transcription`.

Code written against OpenAI's SDK connects with `client.realtime.connect(extra_query={"intent":
"transcription"})` and its `base_url` pointed here. Admission is /ws's (WebSocketManager.admission: Host,
Origin, `Authorization: Bearer` API key, MAX_CONNECTIONS and MAX_CONNECTIONS_PER_CLIENT, shutdown, refused
with an `error` event and close 1008 / 1013), as are the limits (idle timeout, frame size, MAX_AUDIO_SECONDS per input audio buffer), the
inference slots and the metrics. Conversation sessions (`type: "realtime"`, responses, items) are not served.

This module checks what a client asks of a session (`session.update`, read with the SDK's own types);
realtime_session.py runs it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from openai.types.realtime.realtime_transcription_session_audio_input_turn_detection import SemanticVad
from openai.types.realtime.realtime_transcription_session_create_request import (
    RealtimeTranscriptionSessionCreateRequest,
)
from pydantic import ValidationError

from .audio_processor import AudioProcessor
from .openai_api import OpenAIError, check_keywords, check_language, served_models
from .realtime_session import EventError, RealtimeConfig, RealtimeSession
from .session import CLOSE_POLICY_VIOLATION, CLOSE_TRY_AGAIN_LATER, ClientError
from .stream_capacity import StreamsFull

logger = logging.getLogger(__name__)

router = APIRouter()


def session_updater(processor: AudioProcessor) -> Any:
    """The check of a `session.update`'s `session` against the current RealtimeConfig: the new config,
    or an EventError naming the field at fault (nothing changes then)."""

    def update(config: RealtimeConfig, session: Any) -> RealtimeConfig:
        if not isinstance(session, dict):
            raise EventError("session.update needs a `session` object", param="session")
        if session.get("type") != "transcription":
            raise EventError(f"LangShazam serves transcription sessions only: session.type must be "
                             f"'transcription', not {str(session.get('type'))[:40]!r}", param="session.type")
        try:
            request = RealtimeTranscriptionSessionCreateRequest.model_validate(session)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
            raise EventError(f"session.{where}: {error['msg']}", param=f"session.{where}") from None
        if request.include:
            raise EventError("logprobs are not served", param="session.include", code="unsupported_value")
        changes: dict[str, Any] = {}
        given = request.audio.input if request.audio is not None else None
        if given is not None:
            fields = given.model_fields_set
            if "format" in fields and given.format is not None:
                changes["format"] = given.format.type or "audio/pcm"
            if "turn_detection" in fields:
                turn = given.turn_detection
                if isinstance(turn, SemanticVad):
                    raise EventError("semantic_vad is not served: use server_vad, or null and commit the buffer",
                                     param="session.audio.input.turn_detection.type", code="unsupported_value")
                changes["server_vad"] = turn is not None
                if turn is not None:
                    if turn.threshold is not None:
                        if not 0.0 < turn.threshold < 1.0:
                            raise EventError("turn_detection.threshold must be between 0 and 1 (exclusive)",
                                             param="session.audio.input.turn_detection.threshold")
                        changes["threshold"] = float(turn.threshold)
                    for name in ("prefix_padding_ms", "silence_duration_ms"):
                        value = getattr(turn, name)
                        if value is not None:
                            if not 0 <= value <= 10_000:
                                raise EventError(f"turn_detection.{name} must be between 0 and 10000",
                                                 param=f"session.audio.input.turn_detection.{name}")
                            changes[name] = int(value)
            if given.noise_reduction is not None:
                logger.info("noise_reduction asked: not served (session.updated shows it off)")
            transcription = given.transcription
            if transcription is not None:
                changes |= _transcription_changes(processor, transcription)
        return replace(config, **changes)

    return update


def _transcription_changes(processor: AudioProcessor, transcription: Any) -> dict[str, Any]:
    fields, changes = transcription.model_fields_set, {}
    prefix = "session.audio.input.transcription."
    try:
        if "model" in fields and transcription.model is not None:
            if transcription.model not in served_models(processor):
                raise EventError(f"the model {transcription.model[:100]!r} does not exist on this server; it serves: "
                                 f"{', '.join(served_models(processor))}", param=prefix + "model", code="model_not_found")
            changes["model"] = transcription.model
        if "language" in fields:
            changes["language"] = check_language(processor, transcription.language, "language") \
                if transcription.language else None
        if "languages" in fields:
            changes["languages"] = [check_language(processor, code, "languages")
                                    for code in transcription.languages or [] if code] or None
        if "prompt" in fields:
            changes["prompt"] = transcription.prompt or None
        if "keywords" in fields:
            changes["keywords"] = check_keywords(transcription.keywords)
    except OpenAIError as exc:
        raise EventError(exc.message, param=prefix + (exc.param or ""), code=exc.code or "invalid_value") from None
    return changes


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    app = websocket.app
    readiness, manager, metrics = app.state.readiness, app.state.ws_manager, app.state.metrics
    reason = readiness.refusing
    if reason is not None:  # as /ws: an HTTP 503 to the upgrade, which a proxy retries elsewhere
        metrics.rejected("not_ready")
        error = OpenAIError(503, reason, type="server_error", code="not_ready")
        await websocket.send_denial_response(JSONResponse(error.body(), status_code=503, headers={"Retry-After": "2"}))
        return
    connection_id = str(uuid.uuid4())[:8]
    refusal = manager.admission(websocket)
    held = manager.hold(websocket) if refusal is None else None  # counted for its client until it closes
    try:
        await _session(websocket, connection_id, refusal)
    finally:
        if held is not None:
            held.release()


async def _session(websocket: WebSocket, connection_id: str, refusal: ClientError | None) -> None:
    """A connection past the readiness check: refused (admission's `refusal`, the intent, the door for
    live streams) or served."""
    app = websocket.app
    manager, metrics, settings = app.state.ws_manager, app.state.metrics, app.state.settings
    intent = websocket.query_params.get("intent")
    await websocket.accept()
    if refusal is not None:
        metrics.rejected(refusal.kind)
        logger.warning("[%s] Realtime refused: %s", connection_id, refusal.message)
        code = "invalid_api_key" if refusal.kind == "unauthorized" else refusal.kind
        await _refuse(websocket, refusal.message, code, refusal.close_code, refusal.retry_after)
        return
    if intent != "transcription":
        metrics.error("bad_message")
        message = (f"LangShazam serves Realtime transcription sessions only: connect with ?intent=transcription "
                   f"(got intent {str(intent)[:40]!r})")
        logger.warning("[%s] Realtime refused: %s", connection_id, message)
        await _refuse(websocket, message, "unsupported_intent", CLOSE_POLICY_VIOLATION)
        return
    try:
        ticket = manager.capacity.admit()
    except StreamsFull as exc:
        metrics.rejected("streams_full")
        logger.warning("[%s] Realtime refused: %s", connection_id, exc.message)
        await _refuse(websocket, exc.message, "server_busy", CLOSE_TRY_AGAIN_LATER, exc.retry_after)
        return
    context = manager.context
    session = RealtimeSession(context, websocket, connection_id, RealtimeConfig(threshold=settings.VAD_THRESHOLD),
                              manager.stream_policy, session_updater(context.audio_processor))
    metrics.connection_opened()
    started = time.perf_counter()
    logger.info("[%s] Realtime transcription session opened", connection_id)
    try:
        await session.run()
    except Exception:
        metrics.error("internal")
        logger.exception("[%s] Unexpected error in a Realtime session", connection_id)
        await _refuse(websocket, "internal error", "internal_error", 1011)
    finally:
        ticket.release()
        metrics.connection_closed()
        logger.info("[%s] Realtime session lasted %.2fs", connection_id, time.perf_counter() - started)


async def _refuse(websocket: WebSocket, message: str, code: str, close_code: int,
                  retry_after: float | None = None) -> None:
    """An `error` event in OpenAI's shape (plus `retry_after` seconds when given), then the close code."""
    event = {"type": "error", "event_id": f"event_{uuid.uuid4().hex[:20]}",
             "error": {"type": "invalid_request_error", "code": code, "message": message, "param": None,
                       "event_id": None}}
    if retry_after is not None:
        event["retry_after"] = retry_after
    try:
        await websocket.send_text(json.dumps(event))
        await websocket.close(close_code)
    except (RuntimeError, OSError):
        pass
