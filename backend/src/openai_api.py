"""OpenAI-compatible audio API under /v1: code written against OpenAI's SDK can point its `base_url` here.

    POST /v1/audio/transcriptions   multipart: file, model, language, languages[], prompt, keywords[],
                                    temperature, response_format, timestamp_granularities[],
                                    chunking_strategy, stream (Server-Sent Events)
    GET  /v1/models, /v1/models/{id}

(The Realtime transcription WebSocket, /v1/realtime, is realtime_api.py.)

Transcription goes through the AudioProcessor (same inference slots, queue limit and metrics as detection).
Errors on /v1 have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with OpenAI's status
codes; the rest of the API keeps LangShazam's own shape. The response models are the OpenAI SDK's own types,
so the schema in /docs is OpenAI's; verbose_json adds LangShazam's fields, which OpenAI clients ignore.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from dataclasses import replace
from typing import Annotated, Any, Callable, Coroutine, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi import Path as FastAPIPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from openai.types import Model
from openai.types.audio import (
    Transcription, TranscriptionTextDeltaEvent, TranscriptionTextDoneEvent, TranscriptionVerbose,
)
from openai.types.audio.transcription_language import TranscriptionLanguage
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from .access import require_api_key
from .audio import SAMPLE_RATE, AudioDecodeError, decode_head
from .audio_processor import AudioProcessor, Busy
from .audio_processor import Transcription as AudioTranscription
from .engines.base import EngineError, Segment, TranscribeOptions, VadChunking, Word
from .http_api import Candidate, get_processor
from .languages import WHISPER_LANGUAGES, language_name, to_code
from .metrics import ServerMetrics
from .protocol import Identification
from .timeline import Timeline

logger = logging.getLogger(__name__)

# What OpenAI clients ask for, served by whatever engine this server runs: whisper-1 (deprecated by OpenAI,
# shutdown 2027-02-26) and its successor gpt-transcribe (which takes and answers `languages`).
OPENAI_MODEL_IDS = ("whisper-1", "gpt-transcribe")
MAX_KEYWORDS, MAX_KEYWORD_CHARS = 100, 100
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

    def body(self) -> dict[str, Any]:
        error = ErrorDetail(message=self.message, type=self.type, param=self.param, code=self.code)
        return ErrorResponse(error=error).model_dump()

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def _from_http(exc: HTTPException) -> OpenAIError:
    if exc.status_code == 401:
        return OpenAIError(401, str(exc.detail), code="invalid_api_key", kind="unauthorized", headers=exc.headers)
    kind = "too_large" if exc.status_code == 413 else "bad_message"
    return OpenAIError(exc.status_code, str(exc.detail), kind=kind, headers=exc.headers)


def _from_validation(exc: RequestValidationError) -> OpenAIError:
    first = exc.errors()[0]
    param = str(first["loc"][1]) if len(first["loc"]) > 1 else None
    if param and param.endswith("[]"):  # a list field, as the SDK names it in a form
        param = param[:-2]
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
    """The model ids accepted: `whisper-1` and `gpt-transcribe` (as OpenAI clients ask) and the engine's own
    model name."""
    own = processor.engine.name.split(":", 1)[-1]
    return list(dict.fromkeys([*OPENAI_MODEL_IDS, own]))


def _model(model_id: str) -> Model:
    return Model(id=model_id, object="model", created=_STARTED, owned_by="langshazam")


def check_model(processor: AudioProcessor, model_id: str) -> None:
    if model_id not in served_models(processor):
        raise OpenAIError(
            404, f"The model '{model_id[:100]}' does not exist on this server; it serves: "
            f"{', '.join(served_models(processor))}", param="model", code="model_not_found",
        )


@router.get("/models", summary="List the models served", response_model=ModelList, responses=_ERRORS)
async def list_models(processor: Annotated[AudioProcessor, Depends(get_processor)]) -> ModelList:
    return ModelList(data=[_model(model_id) for model_id in served_models(processor)])


@router.get("/models/{model_id}", summary="Describe a model", response_model=Model, responses=_ERRORS)
async def retrieve_model(model_id: Annotated[str, FastAPIPath(examples=list(OPENAI_MODEL_IDS))],
                         processor: Annotated[AudioProcessor, Depends(get_processor)]) -> Model:
    check_model(processor, model_id)
    return _model(model_id)


# --- transcriptions --------------------------------------------------------------------------------------


class VerboseTranscription(TranscriptionVerbose):
    """OpenAI's verbose_json, plus LangShazam's own fields (OpenAI clients ignore them)."""

    task: Literal["transcribe"] = "transcribe"
    languages: list[TranscriptionLanguage] = Field(
        default_factory=list, description="as gpt-transcribe answers: the languages detected; [] when none could "
        "be reliably detected (the honesty rule) or there is no speech"
    )
    language_code: str | None = Field(None, description="LangShazam: ISO 639-1 code of the language detected, or null")
    language_probability: float | None = Field(None, description="LangShazam: the model's probability for it")
    confident: bool = Field(False, description="LangShazam: the detection is confident by the honesty rule")
    top: list[Candidate] = Field(default_factory=list, description="LangShazam: the most likely languages")
    likely: list[str] = Field(default_factory=list, description="LangShazam: the likely set, as on every answer: "
                              "the fewest languages (at most 3) holding the spoken one with probability >= "
                              "LIKELY_COVERAGE; [] when more than 3 would be needed or there is no speech")
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
            "description": "json: `{text, languages, usage}`; verbose_json: OpenAI's fields plus LangShazam's; text, "
                           "srt, vtt: plain text; with stream=true: Server-Sent Events, `transcript.text.delta` as "
                           "segments are decoded, then `transcript.text.done` (text and languages)",
            "content": {"text/plain": {"schema": {"type": "string"}}, "text/vtt": {"schema": {"type": "string"}},
                        "text/event-stream": {"schema": {"type": "string"}}},
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
        str, Form(description="`gpt-transcribe`, `whisper-1` or the served model's own name (see GET /v1/models)",
                  examples=["gpt-transcribe"])
    ],
    # empty examples: Swagger UI's "Try it out" would otherwise send its placeholder "string"
    language: Annotated[
        str | None,
        Form(description="ISO 639-1 code: transcribe in it (the detected language is still reported)", examples=[""]),
    ] = None,
    languages: Annotated[
        list[str] | None,
        Form(alias="languages[]", description="candidate languages (ISO 639-1), as /detect's: the language is "
             "detected among them", examples=[[]]),
    ] = None,
    prompt: Annotated[
        str | None, Form(description="text to guide the transcript's style and spelling", examples=[""])
    ] = None,
    keywords: Annotated[
        list[str] | None,
        Form(alias="keywords[]", description="words or phrases to expect (faster-whisper's hotwords)",
             examples=[[]]),
    ] = None,
    response_format: Annotated[ResponseFormat, Form()] = "json",
    temperature: Annotated[float, Form(ge=0.0, le=1.0, description="0: with fallback to higher on failure")] = 0.0,
    timestamp_granularities: Annotated[
        list[Literal["segment", "word"]] | None,
        Form(alias="timestamp_granularities[]", description="with verbose_json: segment (always), word"),
    ] = None,
    chunking_strategy: Annotated[
        str | None,
        Form(description="`auto` (the default: Silero VAD skips the silence), or a `server_vad` object (as the SDK "
             "sends it: chunking_strategy[type]=server_vad, [threshold], [prefix_padding_ms], "
             "[silence_duration_ms]; or as JSON)", examples=[""]),
    ] = None,
    stream: Annotated[
        bool, Form(description="Server-Sent Events: transcript.text.delta, then transcript.text.done (json, text)")
    ] = False,
    timeline: Annotated[
        bool, Form(description="LangShazam, with verbose_json: each segment's own language (a language timeline)")
    ] = False,
) -> Response:
    request_id: str = request.state.request_id
    settings = request.app.state.settings
    metrics: ServerMetrics = request.app.state.metrics
    check_model(processor, model)
    code = check_language(processor, language, "language") if language else None
    candidates = [check_language(processor, item, "languages") for item in languages or [] if item] or None
    if stream and response_format not in ("json", "text"):
        raise OpenAIError(400, f"stream=true answers Server-Sent Events of text: response_format must be json or "
                          f"text, not {response_format}", param="stream", code="unsupported_value")
    options = TranscribeOptions(
        language=code, prompt=prompt or None, temperature=temperature or None,
        words="word" in (timestamp_granularities or []) and response_format == "verbose_json",
        languages=candidates, keywords=check_keywords(keywords),
        chunking=chunking_of(chunking_strategy, await request.form()),
    )
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
    # Several languages are looked for (a timeline) only where there is room for them: more speech than one
    # timeline window, with the model whose answer names them (gpt-transcribe).
    several = model != "whisper-1" and response_format in ("json", "verbose_json")
    job = Job(processor, metrics, request_id, samples, settings.TIMELINE_WINDOW_SECONDS if several else None)
    if stream:
        return await stream_transcription(job, options, response_format)
    result, spans = await job.run(options, timeline=timeline and response_format == "verbose_json")
    identification, transcript = result.identification, result.transcript
    found = detected_languages(identification, spans if several or timeline else None)

    if response_format == "text":
        return PlainTextResponse(transcript.text + "\n")
    if response_format == "srt":
        return PlainTextResponse(srt(transcript.segments))
    if response_format == "vtt":
        return PlainTextResponse(vtt(transcript.segments), media_type="text/vtt")
    usage = {"type": "duration", "seconds": math.ceil(duration)}
    if response_format == "json":
        return JSONResponse(Transcription(text=transcript.text, languages=found, usage=usage).model_dump(
            mode="json", exclude_none=True))
    top = identification.probabilities[: settings.TOP_K]
    verbose = VerboseTranscription(
        duration=round(duration, 3),
        language=WHISPER_LANGUAGES.get(transcript.language or "", transcript.language or ""),
        text=transcript.text,
        segments=[vars(segment) for segment in transcript.segments],
        usage=usage,
        words=[vars(word) for word in transcript.words] if transcript.words is not None else None,
        languages=found,
        language_code=identification.language,
        language_probability=_round(top[0][1]) if identification.language else None,
        confident=bool(identification.confident and identification.language),
        top=[Candidate(language=c, language_name=language_name(c), probability=_round(p)) for c, p in top],
        likely=list(identification.likely),
        reason=identification.reason,
    )
    exclude = {"words"} if transcript.words is None else set()
    if not timeline:
        exclude.add("timeline")
    else:
        assert spans is not None
        verbose.timeline = spans.as_list(settings.TOP_K)
        for segment in verbose.segments or []:
            segment.language = language_at(spans.as_list(1), segment.start, segment.end)  # type: ignore[attr-defined]
    return JSONResponse(verbose.model_dump(mode="json", exclude=exclude))


def check_language(processor: AudioProcessor, value: str, param: str) -> str:
    """The ISO code of a language the engine knows; a 400 naming `param` otherwise."""
    code = to_code(value)
    if code is None or code not in processor.engine.languages():
        raise OpenAIError(400, f"unsupported language {value[:40]!r} in {param}: use an ISO 639-1 code "
                          "(GET /languages)", param=param, code="unsupported_language")
    return code


def check_keywords(keywords: list[str] | None) -> list[str] | None:
    words = [word.strip() for word in keywords or [] if word.strip()]
    if len(words) > MAX_KEYWORDS or any(len(word) > MAX_KEYWORD_CHARS for word in words):
        raise OpenAIError(400, f"keywords: at most {MAX_KEYWORDS}, of at most {MAX_KEYWORD_CHARS} characters each",
                          param="keywords", code="invalid_value")
    return words or None


_VAD_FIELDS = {"type": str, "threshold": float, "prefix_padding_ms": int, "silence_duration_ms": int}


def chunking_of(value: str | None, form: Any) -> VadChunking | None:
    """`chunking_strategy`: None for `auto` (or none given: the engine's VAD always skips silence), the
    server_vad parameters otherwise (as the SDK sends an object in a form: chunking_strategy[threshold]=...,
    or as JSON); a 400 for anything else."""
    fields: dict[str, Any] = {key[len("chunking_strategy["):-1]: item for key, item in form.multi_items()
                              if key.startswith("chunking_strategy[") and key.endswith("]")}
    if value and value.strip().startswith("{"):
        try:
            fields = json.loads(value)
        except ValueError:
            fields = {"type": None}
        if not isinstance(fields, dict):
            fields = {"type": None}
    elif value not in (None, "", "auto"):
        raise OpenAIError(400, f"chunking_strategy must be auto or a server_vad object, not {value[:40]!r}",
                          param="chunking_strategy", code="invalid_value")
    if not fields:
        return None
    unknown = set(fields) - set(_VAD_FIELDS)
    if fields.get("type") != "server_vad" or unknown:
        raise OpenAIError(400, "chunking_strategy: an object must have type server_vad and only threshold, "
                          "prefix_padding_ms, silence_duration_ms", param="chunking_strategy", code="invalid_value")
    try:
        parsed = {key: _VAD_FIELDS[key](fields[key]) for key in fields if key != "type"}
    except (TypeError, ValueError):
        parsed = {"threshold": -1.0}
    threshold = parsed.get("threshold")
    if (threshold is not None and not 0.0 < threshold < 1.0) or any(
            parsed.get(key, 0) < 0 for key in ("prefix_padding_ms", "silence_duration_ms")):
        raise OpenAIError(400, "chunking_strategy: threshold between 0 and 1 (exclusive), durations in whole "
                          "milliseconds >= 0", param="chunking_strategy", code="invalid_value")
    return VadChunking(**parsed)


def detected_languages(identification: Identification, spans: Timeline | None = None) -> list[TranscriptionLanguage]:
    """gpt-transcribe's `languages` by the honesty rule: the language the answer names ([] when it names
    none: uncertain, too little speech or none); several when a timeline finds more than one language,
    each of them confident somewhere."""
    if spans is not None:
        confident = list(dict.fromkeys(seg.language for seg in spans.segments if seg.confident and seg.language))
        if len(confident) > 1:
            return [TranscriptionLanguage(code=code) for code in confident]
    named = identification.language
    return [TranscriptionLanguage(code=named)] if named else []


class Job:
    """One transcription under the processor's slots, counted in /metrics, with the engine's failures in
    OpenAI's shape; a timeline too when asked or when the speech is longer than `timeline_over` seconds."""

    def __init__(self, processor: AudioProcessor, metrics: ServerMetrics, request_id: str, samples: Any,
                 timeline_over: float | None) -> None:
        self.processor, self.metrics, self.request_id, self.samples = processor, metrics, request_id, samples
        self.timeline_over = timeline_over

    async def run(self, options: TranscribeOptions, *, timeline: bool = False) -> tuple[AudioTranscription, Timeline | None]:
        processor, metrics = self.processor, self.metrics
        metrics.detection_started()
        processing_time = None
        spans = None
        try:
            result = await processor.transcribe(self.samples, self.request_id, options)
            if result.identification.probabilities:
                processing_time = result.identification.processing_time
            speech = float(result.identification.extra.get("speech_duration", 0.0))
            if timeline or (self.timeline_over is not None and speech > self.timeline_over):
                spans = await processor.timeline(self.samples, self.request_id, options.languages)
            if timeline:
                result = await transcribe_by_language(processor, self.samples, self.request_id, options, spans, result)
        except Busy as exc:
            raise OpenAIError(503, str(exc), type="server_error", code="server_busy", kind="busy",
                              headers={"Retry-After": "1"}) from None
        except EngineError as exc:
            raise OpenAIError(502, str(exc), type="server_error", code="engine_error", kind="engine") from None
        finally:
            metrics.detection_finished(processing_time)
        metrics.transcribed(result.seconds)
        identification = result.identification
        metrics.answered(identification.language, identification.reason, result.seconds)
        return result, spans


_DONE = object()


async def stream_transcription(job: Job, options: TranscribeOptions, response_format: str) -> Response:
    """stream=true: `transcript.text.delta` per segment as the engine decodes it, then `transcript.text.done`
    with the text and `languages`. A failure before the first event is an ordinary error answer; a failure
    after it is an event carrying OpenAI's error object (the SDK raises it)."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[Any] = asyncio.Queue()
    segmented = replace(options, on_segment=lambda segment: loop.call_soon_threadsafe(pieces.put_nowait, segment))
    task = asyncio.ensure_future(job.run(segmented))
    task.add_done_callback(lambda _: pieces.put_nowait(_DONE))
    first = await pieces.get()
    if first is _DONE and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]

    def event(model: Any) -> bytes:
        return f"data: {json.dumps(model.model_dump(mode='json', exclude_none=True))}\n\n".encode()

    async def events() -> Any:
        piece = first
        while piece is not _DONE:
            yield event(TranscriptionTextDeltaEvent(type="transcript.text.delta", delta=piece.text))
            piece = await pieces.get()
        try:
            result, spans = await task
        except OpenAIError as exc:
            if exc.kind == "busy":
                job.metrics.rejected(exc.kind)
            else:
                job.metrics.error(exc.kind)
            logger.warning("[%s] stream: %d %s", job.request_id, exc.status, exc.message)
            yield f"data: {json.dumps(exc.body())}\n\n".encode()
            return
        languages = detected_languages(result.identification, spans)
        text = result.transcript.text
        yield event(TranscriptionTextDoneEvent(type="transcript.text.done", text=text, languages=languages))
        logger.info("[%s] stream: %d character(s), languages %s", job.request_id, len(text),
                    ",".join(item.code for item in languages) or "none")

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


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
async def not_served(path: str, request: Request) -> Response:
    """404 for a path /v1 does not serve; 405 (with `Allow`) for a wrong method on one it serves."""
    allowed = sorted({method for route in router.routes if route.endpoint is not not_served
                      and route.path_regex.match(request.url.path) for method in route.methods})
    if allowed:
        raise OpenAIError(405, f"{request.method} is not allowed on /v1/{path[:100]}: use {', '.join(allowed)}",
                          code="method_not_allowed", headers={"Allow": ", ".join(allowed)})
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
