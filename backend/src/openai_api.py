"""OpenAI-compatible audio API under /v1: code written against OpenAI's SDK can point its `base_url` here.

    POST /v1/audio/transcriptions   multipart: file, model, language, prompt, temperature, response_format,
                                    timestamp_granularities[]
    GET  /v1/models, /v1/models/{id}

Transcription goes through the AudioProcessor (same inference slots, queue limit and metrics as detection).
Errors on /v1 have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with OpenAI's status
codes; the rest of the API keeps LangShazam's own shape. The response models are the OpenAI SDK's own types,
so the schema in /docs is OpenAI's; verbose_json adds LangShazam's fields, which OpenAI clients ignore.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from dataclasses import replace
from typing import Annotated, Any, Callable, Coroutine, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from openai.types import Model
from openai.types.audio import Transcription, TranscriptionVerbose
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from .access import require_api_key
from .audio import SAMPLE_RATE, AudioDecodeError, decode_head
from .audio_processor import AudioProcessor, Busy
from .audio_processor import Transcription as AudioTranscription
from .engines.base import EngineError, Segment, TranscribeOptions, Word
from .http_api import Candidate, get_processor
from .languages import WHISPER_LANGUAGES, language_name, to_code
from .metrics import ServerMetrics
from .timeline import Timeline

logger = logging.getLogger(__name__)

OPENAI_MODEL_ID = "whisper-1"  # what OpenAI clients ask for; served by whatever engine this server runs
_STARTED = int(time.time())
ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]


# --- errors ------------------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, server_error, ...")
    param: str | None = Field(None, description="the request parameter at fault, if one is")
    code: str | None = Field(None, description="e.g. invalid_api_key, model_not_found, server_busy")


class ErrorResponse(BaseModel):
    """OpenAI's error shape, as /v1 answers every error."""

    error: ErrorDetail


class OpenAIError(Exception):
    """An error answered in OpenAI's shape; `kind` is how /metrics counts it."""

    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
        code: str | None = None, kind: str = "bad_message", headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.kind, self.headers = kind, headers

    def response(self) -> JSONResponse:
        body = ErrorResponse(error=ErrorDetail(message=self.message, type=self.type, param=self.param, code=self.code))
        return JSONResponse(body.model_dump(), status_code=self.status, headers=self.headers)


def _from_http(exc: HTTPException) -> OpenAIError:
    if exc.status_code == 401:
        return OpenAIError(401, str(exc.detail), code="invalid_api_key", kind="unauthorized", headers=exc.headers)
    kind = "too_large" if exc.status_code == 413 else "bad_message"
    return OpenAIError(exc.status_code, str(exc.detail), kind=kind, headers=exc.headers)


def _from_validation(exc: RequestValidationError) -> OpenAIError:
    first = exc.errors()[0]
    param = str(first["loc"][1]) if len(first["loc"]) > 1 else None
    if param == "timestamp_granularities[]":
        param = "timestamp_granularities"
    message = "; ".join(
        f"{'.'.join(str(p) for p in error['loc'][1:]) or 'request'}: {error['msg']}" for error in exc.errors()
    )
    return OpenAIError(400, f"invalid request: {message}", param=param)


class OpenAIRoute(APIRoute):
    """Routes of this router answer every error in OpenAI's shape (also 401 from the API key check and
    the request's validation, which FastAPI raises before the endpoint runs), and refuse an upload larger
    than MAX_UPLOAD_BYTES before reading it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            request_id = request.state.request_id = str(uuid.uuid4())[:8]
            metrics: ServerMetrics = request.app.state.metrics
            try:
                length = request.headers.get("content-length", "")
                limit = request.app.state.settings.MAX_UPLOAD_BYTES
                if length.isdigit() and int(length) > limit + 64 * 1024:  # the file plus the other fields
                    raise _too_large(limit)
                try:
                    return await handler(request)
                except RequestValidationError as exc:
                    raise _from_validation(exc) from None
                except HTTPException as exc:
                    raise _from_http(exc) from None
            except OpenAIError as exc:
                if exc.kind in ("too_large", "busy"):
                    metrics.rejected(exc.kind)
                elif exc.kind != "unauthorized":  # require_api_key counted it already
                    metrics.error(exc.kind)
                logger.warning("[%s] %s %s: %d %s", request_id, request.method, request.url.path, exc.status, exc.message)
                return exc.response()

        return route


def _too_large(limit: int) -> OpenAIError:
    return OpenAIError(413, f"the file is larger than {limit} bytes", param="file", code="file_too_large", kind="too_large")


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "bad file or parameter"},
    401: {"model": ErrorResponse, "description": "missing or wrong API key (when the server has API_KEY set)"},
    404: {"model": ErrorResponse, "description": "unknown model"},
    # every other error, also in OpenAI's shape (invalid parameters are 400 here, never FastAPI's 422)
    "4XX": {"model": ErrorResponse, "description": "another client error"},
    "5XX": {"model": ErrorResponse, "description": "a server error"},
}

router = APIRouter(
    prefix="/v1", route_class=OpenAIRoute, dependencies=[Depends(require_api_key)], tags=["OpenAI-compatible"]
)


# --- models ------------------------------------------------------------------------------------------------


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


def served_models(processor: AudioProcessor) -> list[str]:
    """The model ids accepted: `whisper-1` (as OpenAI clients ask) and the engine's own model name."""
    own = processor.engine.name.split(":", 1)[-1]
    return list(dict.fromkeys([OPENAI_MODEL_ID, own]))


def _model(model_id: str) -> Model:
    return Model(id=model_id, object="model", created=_STARTED, owned_by="langshazam")


def _check_model(processor: AudioProcessor, model_id: str) -> None:
    if model_id not in served_models(processor):
        raise OpenAIError(
            404, f"The model '{model_id[:100]}' does not exist on this server; it serves: "
            f"{', '.join(served_models(processor))}", param="model", code="model_not_found",
        )


@router.get("/models", summary="List the models served", response_model=ModelList, responses=_ERRORS)
async def list_models(processor: Annotated[AudioProcessor, Depends(get_processor)]) -> ModelList:
    return ModelList(data=[_model(model_id) for model_id in served_models(processor)])


@router.get("/models/{model_id}", summary="Describe a model", response_model=Model, responses=_ERRORS)
async def retrieve_model(model_id: str, processor: Annotated[AudioProcessor, Depends(get_processor)]) -> Model:
    _check_model(processor, model_id)
    return _model(model_id)


# --- transcriptions --------------------------------------------------------------------------------------


class VerboseTranscription(TranscriptionVerbose):
    """OpenAI's verbose_json, plus LangShazam's own fields (OpenAI clients ignore them)."""

    task: Literal["transcribe"] = "transcribe"
    language_code: str | None = Field(None, description="LangShazam: ISO 639-1 code of the language detected, or null")
    language_probability: float | None = Field(None, description="LangShazam: the model's probability for it")
    confident: bool = Field(False, description="LangShazam: the detection is confident by the honesty rule")
    top: list[Candidate] = Field(default_factory=list, description="LangShazam: the most likely languages")
    reason: str | None = Field(None, description="LangShazam: why no language was named: no_speech, too_short, uncertain")
    timeline: list[dict[str, Any]] | None = Field(
        None, description="LangShazam, with timeline=true: which language when (as POST /detect?timeline=true); "
        "each segment then carries its own `language`"
    )


@router.post(
    "/audio/transcriptions",
    summary="Transcribe audio (OpenAI's createTranscription)",
    response_model=None,
    responses={
        200: {
            "model": Transcription | VerboseTranscription,
            "description": "json: `{text}`; verbose_json: OpenAI's fields plus LangShazam's; text, srt, vtt: plain text",
            "content": {"text/plain": {"schema": {"type": "string"}}, "text/vtt": {"schema": {"type": "string"}}},
        },
        **_ERRORS,
        413: {"model": ErrorResponse, "description": "file over MAX_UPLOAD_BYTES or audio over MAX_AUDIO_SECONDS"},
        502: {"model": ErrorResponse, "description": "the engine failed (with ENGINE=openai: the upstream API)"},
        503: {"model": ErrorResponse, "description": "busy: MAX_QUEUED_DETECTIONS waiting already; retry later"},
    },
)
async def create_transcription(
    request: Request,
    processor: Annotated[AudioProcessor, Depends(get_processor)],
    file: Annotated[UploadFile, File(description="audio: webm/opus, mp4/m4a, ogg, wav, mp3, flac, ...")],
    model: Annotated[
        str, Form(description="`whisper-1` or the served model's own name (see GET /v1/models)", examples=["whisper-1"])
    ],
    # empty examples: Swagger UI's "Try it out" would otherwise send its placeholder "string"
    language: Annotated[
        str | None,
        Form(description="ISO 639-1 code: transcribe in it (the detected language is still reported)", examples=[""]),
    ] = None,
    prompt: Annotated[
        str | None, Form(description="text to guide the transcript's style and spelling", examples=[""])
    ] = None,
    response_format: Annotated[ResponseFormat, Form()] = "json",
    temperature: Annotated[float, Form(ge=0.0, le=1.0, description="0: with fallback to higher on failure")] = 0.0,
    timestamp_granularities: Annotated[
        list[Literal["segment", "word"]] | None,
        Form(alias="timestamp_granularities[]", description="with verbose_json: segment (always), word"),
    ] = None,
    timeline: Annotated[
        bool, Form(description="LangShazam, with verbose_json: each segment's own language (a language timeline)")
    ] = False,
) -> Response:
    request_id: str = request.state.request_id
    settings = request.app.state.settings
    metrics: ServerMetrics = request.app.state.metrics
    _check_model(processor, model)
    code = None
    if language:
        code = to_code(language)
        if code is None or code not in processor.engine.languages():
            raise OpenAIError(400, f"unsupported language {language[:40]!r}: use an ISO 639-1 code (GET /languages)",
                              param="language", code="unsupported_language")
    data = await file.read()
    if len(data) > settings.MAX_UPLOAD_BYTES:
        raise _too_large(settings.MAX_UPLOAD_BYTES)
    try:  # decoding stops at the limit: a small file of hours of audio costs no more than the limit
        samples, too_long = await asyncio.to_thread(decode_head, data, settings.MAX_AUDIO_SECONDS)
    except AudioDecodeError as exc:
        raise OpenAIError(400, f"Invalid file: {exc}", param="file", code="invalid_file", kind="bad_audio") from None
    if too_long:
        raise OpenAIError(413, f"the audio lasts more than {settings.MAX_AUDIO_SECONDS:g} s, the most this server "
                          "transcribes", param="file", code="audio_too_long", kind="too_large")
    duration = len(samples) / SAMPLE_RATE
    options = TranscribeOptions(
        language=code, prompt=prompt or None, temperature=temperature or None,
        words="word" in (timestamp_granularities or []) and response_format == "verbose_json",
    )
    metrics.detection_started()
    processing_time = None
    try:
        result = await processor.transcribe(samples, request_id, options)
        if result.identification.probabilities:
            processing_time = result.identification.processing_time
        spans = None
        if timeline and response_format == "verbose_json":
            spans = await processor.timeline(samples, request_id)
            result = await transcribe_by_language(processor, samples, request_id, options, spans, result)
    except Busy as exc:
        raise OpenAIError(503, str(exc), type="server_error", code="server_busy", kind="busy",
                          headers={"Retry-After": "1"}) from None
    except EngineError as exc:
        raise OpenAIError(502, str(exc), type="server_error", code="engine_error", kind="engine") from None
    finally:
        metrics.detection_finished(processing_time)
    metrics.transcribed(result.seconds)
    identification, transcript = result.identification, result.transcript
    metrics.answered(identification.language, identification.reason, result.seconds)

    if response_format == "text":
        return PlainTextResponse(transcript.text + "\n")
    if response_format == "srt":
        return PlainTextResponse(srt(transcript.segments))
    if response_format == "vtt":
        return PlainTextResponse(vtt(transcript.segments), media_type="text/vtt")
    usage = {"type": "duration", "seconds": math.ceil(duration)}
    if response_format == "json":
        return JSONResponse({"text": transcript.text, "usage": usage})
    top = identification.probabilities[: settings.TOP_K]
    verbose = VerboseTranscription(
        duration=round(duration, 3),
        language=WHISPER_LANGUAGES.get(transcript.language or "", transcript.language or ""),
        text=transcript.text,
        segments=[vars(segment) for segment in transcript.segments],
        usage=usage,
        words=[vars(word) for word in transcript.words] if transcript.words is not None else None,
        language_code=identification.language,
        language_probability=_round(top[0][1]) if identification.language else None,
        confident=bool(identification.confident and identification.language),
        top=[Candidate(language=c, language_name=language_name(c), probability=_round(p)) for c, p in top],
        reason=identification.reason,
    )
    exclude = {"words"} if transcript.words is None else set()
    if spans is None:
        exclude.add("timeline")
    else:
        verbose.timeline = spans.as_list(settings.TOP_K)
        for segment in verbose.segments or []:
            segment.language = language_at(spans.as_list(1), segment.start, segment.end)  # type: ignore[attr-defined]
    return JSONResponse(verbose.model_dump(mode="json", exclude=exclude))


async def transcribe_by_language(processor: AudioProcessor, samples: Any, request_id: str, options: TranscribeOptions,
                                 spans: Timeline, whole: AudioTranscription) -> AudioTranscription:
    """The transcript made stretch by stretch of the timeline, each in its own language (a language given
    in the request wins); times in seconds of the whole audio. The detection stays the whole file's."""
    texts: list[str] = []
    segments: list[Segment] = []
    words: list[Word] | None = [] if options.words else None
    seconds = whole.seconds
    for span in spans.segments:
        first, last = int(span.start * SAMPLE_RATE), int(span.end * SAMPLE_RATE)
        part = await processor.transcribe(samples[first:last], request_id,
                                          replace(options, language=options.language or span.language))
        seconds += part.seconds
        texts.append(part.transcript.text.strip())
        for segment in part.transcript.segments:
            segments.append(replace(segment, id=len(segments), start=round(segment.start + span.start, 3),
                                    end=round(segment.end + span.start, 3)))
        if words is not None:
            words += [replace(w, start=round(w.start + span.start, 3), end=round(w.end + span.start, 3))
                      for w in part.transcript.words or []]
    transcript = replace(whole.transcript, text=" ".join(text for text in texts if text), segments=segments,
                         words=words)
    return AudioTranscription(whole.identification, transcript, seconds)


def language_at(timeline: list[dict[str, Any]], start: float, end: float) -> str | None:
    """The language of the timeline segment that overlaps [start, end] the most (None: none does, or it
    names no language)."""
    overlap = {i: min(end, t["end"]) - max(start, t["start"]) for i, t in enumerate(timeline)}
    best = max(overlap, key=overlap.__getitem__, default=None)
    return timeline[best]["language"] if best is not None and overlap[best] > 0 else None


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def not_served(path: str) -> Response:
    raise OpenAIError(404, f"LangShazam does not serve /v1/{path[:100]} (see GET /docs)", code="not_found")


# --- subtitles -------------------------------------------------------------------------------------------


def _timestamp(seconds: float, separator: str) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(segments: list[Segment]) -> str:
    return "".join(
        f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text.strip()}\n\n"
        for i, s in enumerate(segments, start=1)
    )


def vtt(segments: list[Segment]) -> str:
    return "WEBVTT\n\n" + "".join(
        f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text.strip()}\n\n" for s in segments
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
