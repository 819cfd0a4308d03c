"""HTTP API: POST /detect, the audio of a file in one request; GET /languages."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from . import protocol
from .access import require_api_key
from .audio import AudioDecodeError, decode_head
from .audio_processor import AudioProcessor, Busy
from .engines.base import EngineError
from .languages import language_name, parse_language_list
from .metrics import ServerMetrics
from .confidence import Strictness
from .protocol import ProtocolError, parse_fallback_language, parse_min_confidence

logger = logging.getLogger(__name__)

router = APIRouter(dependencies=[Depends(require_api_key)])


class HTTPProblem(Exception):
    def __init__(self, status: int, message: str, kind: str = "bad_input") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


def get_processor(request: Request) -> AudioProcessor:
    return request.app.state.audio_processor


def get_metrics(request: Request) -> ServerMetrics:
    return request.app.state.metrics


async def _read_audio(request: Request, max_bytes: int) -> tuple[bytes, dict[str, Any]]:
    """The audio from a raw body, or from the multipart field `file` (with its other fields)."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise HTTPProblem(413, f"the audio is larger than {max_bytes} bytes", "too_large")
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=1, max_fields=10, max_part_size=max_bytes)
        except Exception as exc:  # malformed multipart bodies raise various parser errors
            raise HTTPProblem(400, f"could not read the multipart body: {exc}") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPProblem(400, "a multipart request needs the audio in a field named 'file'")
        data = await upload.read()
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
    else:
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > max_bytes:
                raise HTTPProblem(413, f"the audio is larger than {max_bytes} bytes", "too_large")
        data, fields = bytes(data), {}
    if len(data) > max_bytes:
        raise HTTPProblem(413, f"the audio is larger than {max_bytes} bytes", "too_large")
    if not data:
        raise HTTPProblem(400, "no audio: send the file as the request body or as a multipart field 'file'")
    return data, fields


class Candidate(BaseModel):
    language: str
    language_name: str
    probability: float | None


class TimelineSegment(BaseModel):
    """One stretch of speech in one language (see docs/timeline.md)."""

    start: float = Field(description="seconds from the start of the input")
    end: float
    language: str | None = Field(description="ISO 639-1 code, or null with `reason: uncertain`")
    language_name: str | None
    confidence: float | None
    confident: bool
    likely: list[str] = Field(default_factory=list, description="the likely set: see AnswerData.likely")
    top: list[Candidate]
    reason: str | None = None


class AnswerData(BaseModel):
    """The `data` of an answer, as on /ws (docs/protocol.md describes each field)."""

    language: str | None = Field(description="ISO 639-1 code, or null with a `reason`")
    language_name: str | None
    confidence: float | None = Field(description="the model's probability for `language`; null without one")
    confident: bool = Field(description="the honesty rule's verdict (this request's min_confidence when given)")
    likely: list[str] = Field(description="the fewest languages (at most 3, most likely first) holding the spoken "
                              "language with probability >= LIKELY_COVERAGE (split-conformal); [] when more "
                              "would be needed, and without speech")
    fallback: bool | None = Field(None, description="true when `language` is the request's fallback_language, "
                                  "named because the answer would have been uncertain")
    top: list[Candidate]
    reason: str | None = Field(None, description="only when `language` is null: no_speech, too_short, uncertain")
    final: bool
    speech_duration: float
    audio_duration: float
    processing_time: float
    engine: str
    candidates: list[str] | None = Field(None, description="the candidate languages, when given")
    truncated: bool | None = Field(None, description="true when the file lasts more than MAX_UPLOAD_SECONDS: "
                                   "the answer rests on its beginning")
    timeline: list[TimelineSegment] | None = Field(None, description="with `timeline=true`: which language when")
    timeline_processing_time: float | None = None
    connection_id: str


class Answer(BaseModel):
    status: str = "success"
    data: AnswerData
    timestamp: str
    connection_id: str


class ErrorAnswer(BaseModel):
    status: str = "error"
    message: str
    timestamp: str
    connection_id: str


class Language(BaseModel):
    code: str
    name: str


class Languages(BaseModel):
    languages: list[Language]


_AUDIO_BODY = {"type": "string", "format": "binary"}
_DETECT_BODY = {
    "required": True,
    "description": "the audio file (webm/opus, mp4/m4a, ogg, wav, mp3, flac, ...) as the body, or as the "
    "multipart field `file`",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": _AUDIO_BODY,
                    # empty examples: Swagger UI's "Try it out" would otherwise send its placeholder values
                    "languages": {"type": "string", "description": "candidate languages, e.g. en,es,fr", "examples": [""]},
                    "top_k": {"type": "integer", "minimum": 1, "maximum": 100, "examples": [3]},
                    "timeline": {"type": "boolean", "description": "also answer the language timeline", "examples": [False]},
                    "min_confidence": {"type": "number", "minimum": 0, "maximum": 1,
                                       "description": "this request's confident threshold (default FINAL_PROBABILITY)"},
                    "fallback_language": {"type": "string", "description": "named (fallback: true) when the answer "
                                          "would be uncertain", "examples": [""]},
                },
            }
        },
        "application/octet-stream": {"schema": _AUDIO_BODY},
        "audio/*": {"schema": _AUDIO_BODY},
    },
}


@router.get("/languages", summary="Every language the engine can name", response_model=Languages)
async def languages(processor: Annotated[AudioProcessor, Depends(get_processor)]) -> Languages:
    return Languages(languages=[Language(code=code, name=language_name(code)) for code in processor.engine.languages()])


def _flag(value: str | None, default: bool) -> bool:
    """A true/false multipart field (the query parameter when absent)."""
    if value is None:
        return default
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise HTTPProblem(400, "timeline must be true or false")


def _strictness(min_confidence: Any, fallback_language: Any) -> Strictness:
    """A request's min_confidence and fallback_language (query or form), checked (400 when bad)."""
    try:
        return Strictness(
            None if min_confidence in (None, "") else parse_min_confidence(min_confidence),
            None if fallback_language in (None, "") else parse_fallback_language(fallback_language),
        )
    except ProtocolError as exc:
        raise HTTPProblem(400, str(exc), "bad_message") from None


async def decode_upload(data: bytes, max_seconds: float, request_id: str) -> tuple[Any, bool]:
    """The first `max_seconds` of an uploaded file, decoded in a worker thread (decoding stops there, so
    a small file of hours of audio costs no more than `max_seconds` of it), and whether it went on."""
    try:
        samples, truncated = await asyncio.to_thread(decode_head, data, max_seconds)
    except AudioDecodeError as exc:
        raise HTTPProblem(400, str(exc), "bad_audio") from None
    if truncated:
        logger.info("[%s] The audio lasts more than %g s: answering on its first %g s", request_id, max_seconds, max_seconds)
    return samples, truncated


@router.post(
    "/detect",
    summary="Identify the language of an audio file",
    response_model=Answer,
    responses={
        400: {"model": ErrorAnswer, "description": "bad audio or options"},
        401: {"model": ErrorAnswer, "description": "missing or wrong API key (when the server has API_KEY set)"},
        413: {"model": ErrorAnswer, "description": "audio larger than MAX_UPLOAD_BYTES"},
        422: {"model": ErrorAnswer, "description": "a query parameter out of range"},
        502: {"model": ErrorAnswer, "description": "the engine failed"},
        503: {"model": ErrorAnswer, "description": "busy: MAX_QUEUED_DETECTIONS waiting already"},
    },
    openapi_extra={"requestBody": _DETECT_BODY},
)
async def detect(
    request: Request,
    processor: Annotated[AudioProcessor, Depends(get_processor)],
    metrics: Annotated[ServerMetrics, Depends(get_metrics)],
    languages: Annotated[str | None, Query(description="candidate languages, e.g. en,es,fr")] = None,
    top_k: Annotated[int | None, Query(ge=1, le=100, description="how many candidates to list")] = None,
    timeline: Annotated[bool, Query(description="also answer the language timeline: which language when")] = False,
    min_confidence: Annotated[float | None, Query(ge=0.0, le=1.0, description=(
        "this request's confident threshold, stricter or looser than the server's FINAL_PROBABILITY"))] = None,
    fallback_language: Annotated[str | None, Query(description=(
        "a language code named (with `fallback: true`, never confident) when the answer would be uncertain; "
        "no speech stays no_speech"))] = None,
) -> JSONResponse:
    request_id = str(uuid.uuid4())[:8]
    settings = request.app.state.settings
    try:
        data, fields = await _read_audio(request, settings.MAX_UPLOAD_BYTES)
        try:
            candidates = parse_language_list(fields.get("languages", languages))
        except ValueError as exc:
            raise HTTPProblem(400, str(exc), "bad_message") from None
        k = top_k
        if "top_k" in fields:
            try:
                k = int(fields["top_k"])
            except ValueError:
                raise HTTPProblem(400, "top_k must be a whole number") from None
            if not 1 <= k <= 100:
                raise HTTPProblem(400, "top_k must be between 1 and 100")
        want_timeline = _flag(fields.get("timeline"), timeline)
        strictness = _strictness(fields.get("min_confidence", min_confidence),
                                 fields.get("fallback_language", fallback_language))
        samples, truncated = await decode_upload(data, settings.MAX_UPLOAD_SECONDS, request_id)
        asked_at = time.perf_counter()
        metrics.detection_started()
        processing_time = None
        try:
            result = await processor.process_file(samples, request_id, candidates, strictness=strictness)
            processing_time = result.processing_time if result.probabilities else None
            spans = await processor.timeline(samples, request_id, candidates) if want_timeline else None
        except Busy as exc:
            raise HTTPProblem(503, str(exc), "busy") from None
        except EngineError as exc:
            raise HTTPProblem(502, str(exc), "engine") from None
        finally:
            metrics.detection_finished(processing_time)
        answer = protocol.answer_data(result, request_id, k or settings.TOP_K)
        answer["final"] = True
        if truncated:
            answer["truncated"] = True
        if candidates:
            answer["candidates"] = candidates
        if spans is not None:
            answer["timeline"] = spans.as_list(k or settings.TOP_K)
            answer["timeline_processing_time"] = round(spans.processing_time, 4)
        metrics.answered(result.language, result.reason, time.perf_counter() - asked_at)
        return JSONResponse(protocol.success(answer, request_id))
    except HTTPProblem as exc:
        if exc.kind in ("too_large", "busy"):
            metrics.rejected(exc.kind)
        else:
            metrics.error(exc.kind)
        logger.warning("[%s] POST /detect: %s", request_id, exc.message)
        return JSONResponse(protocol.error(exc.message, request_id), status_code=exc.status)
