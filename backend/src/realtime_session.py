"""One Realtime transcription session (OpenAI's Realtime API, `intent=transcription`): the input audio
buffer, turn detection, and a transcription per committed turn.

The client appends base64 audio to the input audio buffer. With `server_vad` turn detection the buffer
is watched as it grows, by the streaming core /ws's stream mode uses: the Silero VAD (vad.py, at the
session's threshold) finds the speech, and StreamTracker's end-of-speech rule (streaming.py, with the
session's `silence_duration_ms` as the pause) says when the speaker stopped; that commits the turn
(`speech_started`, `speech_stopped`, `committed`). With turn detection off (`null`) the client commits.
Each committed turn is transcribed by the AudioProcessor (its inference slots, queue limit and honesty
rule, as /v1/audio/transcriptions), one turn after the other: `...transcription.delta` per segment decoded,
then `...transcription.completed` with the transcript and `languages` (gpt-transcribe's answer: [] when no
language is reliable), plus LangShazam's `language_probability`, `confident`, `top` and `reason`.

Every event out goes through one queue and one writer task, so events keep their order whichever task
(or engine thread) makes them. realtime_api.py admits the connection and checks the session's settings.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect
from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionCompletedEvent, ConversationItemInputAudioTranscriptionDeltaEvent,
    ConversationItemInputAudioTranscriptionFailedEvent, InputAudioBufferClearedEvent,
    InputAudioBufferCommittedEvent, InputAudioBufferSpeechStartedEvent, InputAudioBufferSpeechStoppedEvent,
    RealtimeErrorEvent, SessionCreatedEvent, SessionUpdatedEvent,
)
from openai.types.realtime.realtime_error import RealtimeError

from .audio import SAMPLE_RATE, AudioDecodeError, PcmConverter
from .audio_processor import Busy
from .inference_slots import Priority
from .engines.base import EngineError, TranscribeOptions
from .languages import language_name
from .openai_api import detected_languages
from .session import CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_POLICY_VIOLATION, SessionContext
from .streaming import STREAM_VAD_MIN_SILENCE_MS, StreamPolicy, StreamTracker
from .vad import Speech, VoiceActivityDetector

logger = logging.getLogger(__name__)

ANALYSIS_STEP_SECONDS = 0.25  # look for the end of speech again once this much new audio arrived
MIN_COMMIT_SECONDS = 0.1  # OpenAI refuses to commit less than 100 ms of audio
FORMATS = {"audio/pcm": ("pcm_s16le", 24000), "audio/pcmu": ("pcm_mulaw", 8000), "audio/pcma": ("pcm_alaw", 8000)}


@dataclass
class RealtimeConfig:
    """A transcription session's effective settings (what session.created / session.updated show)."""

    format: str = "audio/pcm"
    server_vad: bool = True  # False: turn detection off, the client commits
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    model: str = "gpt-transcribe"
    language: str | None = None
    languages: list[str] | None = None
    prompt: str | None = None
    keywords: list[str] | None = None
    session_id: str = field(default_factory=lambda: "sess_" + uuid.uuid4().hex[:20])

    def session(self) -> dict[str, Any]:
        audio_format: dict[str, Any] = {"type": self.format}
        if self.format == "audio/pcm":
            audio_format["rate"] = 24000
        turn_detection = None
        if self.server_vad:
            turn_detection = {"type": "server_vad", "threshold": self.threshold,
                              "prefix_padding_ms": self.prefix_padding_ms, "silence_duration_ms": self.silence_duration_ms}
        transcription = {"model": self.model, "language": self.language, "languages": self.languages,
                         "prompt": self.prompt, "keywords": self.keywords}
        return {"type": "transcription", "id": self.session_id, "audio": {"input": {
            "format": audio_format, "transcription": transcription, "turn_detection": turn_detection,
            "noise_reduction": None}}, "include": None}


class EventError(Exception):
    """A client event that cannot be honoured: answered with an `error` event, the session goes on."""

    def __init__(self, message: str, *, code: str = "invalid_value", param: str | None = None,
                 type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.message, self.code, self.param, self.type = message, code, param, type


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _dump(event: Any, *, exclude_none: bool = True) -> str:
    return json.dumps(event.model_dump(mode="json", exclude_none=exclude_none))


@dataclass
class _Turn:
    item_id: str
    samples: np.ndarray


class RealtimeSession:
    """The connection once admitted; `update_session` (realtime_api.py) checks a session.update's settings
    and returns the new RealtimeConfig, raising EventError."""

    def __init__(self, context: SessionContext, websocket: WebSocket, connection_id: str, config: RealtimeConfig,
                 policy: StreamPolicy, update_session: Any) -> None:
        self.context, self.websocket, self.connection_id = context, websocket, connection_id
        self.config = config
        self._policy = policy
        self._update_session = update_session
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._turns: asyncio.Queue[_Turn | None] = asyncio.Queue()
        self._owed = 0  # turns committed and not transcribed yet: the client may wait quietly for them
        self._session_samples = 0  # samples appended since the session began (for audio_start_ms / end_ms)
        self._converter: PcmConverter | None = None
        self._configure(config)
        self._reset_buffer()
        self._previous_item: str | None = None
        self._too_long_reported = False

    # --- settings ------------------------------------------------------------------------------------

    def _configure(self, config: RealtimeConfig) -> None:
        fmt, rate = FORMATS[config.format]
        if self._converter is None or self._converter.format != fmt:
            self._converter = PcmConverter(fmt, rate)
        self._vad = VoiceActivityDetector(threshold=config.threshold)
        if hasattr(self, "_vad_stream"):
            self._vad_stream.detector = self._vad  # its probabilities do not depend on the threshold
        # The pause that ends a turn is the session's; a turn of any length ends at it (a one-word answer
        # must not wait for STREAM_NO_SPEECH_SECONDS).
        self._turn_policy = replace(self._policy, end_silence_seconds=config.silence_duration_ms / 1000,
                                    end_min_speech_seconds=0.0)
        self.config = config

    def _reset_buffer(self, keep: np.ndarray | None = None) -> None:
        self._chunks: list[np.ndarray] = [] if keep is None or not keep.size else [keep]
        self._buffered = 0 if keep is None else int(keep.size)
        self._analysed = 0
        self._buffer_start = self._session_samples - self._buffered  # the session's sample at buffer[0]
        self._item_id: str | None = None  # set at speech_started
        self._tracker = StreamTracker(self._turn_policy)
        # The VAD follows the buffer: it runs over the samples appended since its last step only.
        self._vad_stream = self._vad.stream()
        self._unseen: list[np.ndarray] = list(self._chunks)

    def _buffer(self) -> np.ndarray:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, dtype=np.float32)

    def _ms(self, sample: int) -> int:
        return int(1000 * sample / SAMPLE_RATE)

    # --- the connection ------------------------------------------------------------------------------

    def emit(self, event: Any) -> None:
        self._outbox.put_nowait(_dump(event))

    def emit_session(self, kind: str) -> None:
        """session.created / session.updated: the whole effective configuration (nulls included: a null
        turn_detection is a setting)."""
        event = (SessionCreatedEvent if kind == "session.created" else SessionUpdatedEvent).model_validate(
            {"type": kind, "event_id": _id("event"), "session": self.config.session()})
        self._outbox.put_nowait(_dump(event, exclude_none=False))

    def error(self, exc: EventError, event_id: str | None = None, kind: str = "bad_message") -> None:
        logger.info("[%s] error event: %s", self.connection_id, exc.message)
        if kind == "idle":
            self.context.metrics.rejected(kind)
        else:
            self.context.metrics.error(kind)
        self.emit(RealtimeErrorEvent(type="error", event_id=_id("event"), error=RealtimeError(
            message=exc.message, type=exc.type, code=exc.code, param=exc.param, event_id=event_id)))

    async def run(self) -> None:
        writer = asyncio.ensure_future(self._write())
        worker = asyncio.ensure_future(self._transcribe_turns())
        self.emit_session("session.created")
        close_code = CLOSE_NORMAL
        try:
            close_code = await self._receive_loop()
        finally:
            if close_code != CLOSE_NORMAL:  # the client left: nothing more to send it
                worker.cancel()
            self._turns.put_nowait(None)
            try:
                await worker
            except asyncio.CancelledError:
                pass
            self._outbox.put_nowait(None)
            await writer
        if close_code != CLOSE_NORMAL and close_code != CLOSE_GOING_AWAY:
            return
        try:
            await self.websocket.close(close_code)
        except (RuntimeError, OSError):
            pass

    async def _write(self) -> None:
        while (text := await self._outbox.get()) is not None:
            try:
                await self.websocket.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                logger.info("[%s] client gone: events dropped", self.connection_id)
                while await self._outbox.get() is not None:
                    pass
                return

    async def _receive_loop(self) -> int:
        """Client events until the client leaves (its close code), the server shuts down (1001) or the idle
        timeout passes (1008)."""
        limits, shutdown = self.context.limits, self.context.shutdown
        while True:
            frame = asyncio.ensure_future(self.websocket.receive())
            stopping = asyncio.ensure_future(shutdown.wait())
            done, _ = await asyncio.wait({frame, stopping}, timeout=limits.idle_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if frame not in done:
                frame.cancel()
                if stopping in done:
                    logger.info("[%s] server shutting down: committing what was said", self.connection_id)
                    self._commit_speech()
                    return CLOSE_GOING_AWAY
                if self._owed:  # silent while it waits for its transcripts: not idle
                    continue
                self.error(EventError(f"nothing received for {limits.idle_timeout:g} s", code="idle_timeout"), kind="idle")
                return CLOSE_POLICY_VIOLATION
            message = frame.result()
            if message["type"] == "websocket.disconnect":
                logger.info("[%s] client disconnected (code %s)", self.connection_id, message.get("code"))
                return message.get("code") or 1005
            text = message.get("text")
            event_id = None
            try:
                if text is None:
                    raise EventError("binary frames are not events: send JSON events, audio base64 in "
                                     "input_audio_buffer.append", code="invalid_event")
                if len(text) > limits.max_frame_bytes:
                    raise EventError(f"an event of {len(text)} bytes is larger than the limit of "
                                     f"{limits.max_frame_bytes}", code="event_too_large")
                try:
                    event = json.loads(text)
                except ValueError:
                    raise EventError("the event is not valid JSON", code="invalid_json") from None
                if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                    raise EventError("an event is a JSON object with a string `type`", code="invalid_event",
                                     param="type")
                event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
                await self._handle(event)
            except EventError as exc:
                self.error(exc, event_id)

    async def _handle(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "input_audio_buffer.append":
            await self._append(event.get("audio"))
        elif kind == "input_audio_buffer.commit":
            if self._buffered < MIN_COMMIT_SECONDS * SAMPLE_RATE:
                raise EventError(f"Error committing input audio buffer: buffer too small. Expected at least "
                                 f"{int(MIN_COMMIT_SECONDS * 1000)}ms of audio, but buffer only has "
                                 f"{self._ms(self._buffered)}ms of audio.", code="input_audio_buffer_commit_empty")
            self._commit(self._buffer(), stopped=self._item_id is not None)
        elif kind == "input_audio_buffer.clear":
            self._reset_buffer()
            self.emit(InputAudioBufferClearedEvent(type="input_audio_buffer.cleared", event_id=_id("event")))
        elif kind == "session.update":
            self._configure(self._update_session(self.config, event.get("session")))
            if not self.config.server_vad:
                self._analysed = self._buffered
            self.emit_session("session.updated")
            logger.info("[%s] session updated: %s", self.connection_id, json.dumps(self.config.session()["audio"]))
        else:
            raise EventError(f"LangShazam's Realtime API serves transcription sessions: {kind[:60]!r} is not "
                             "served (session.update, input_audio_buffer.append / commit / clear are)",
                             code="unknown_event", param="type")

    # --- the input audio buffer ---------------------------------------------------------------------

    async def _append(self, audio: Any) -> None:
        if not isinstance(audio, str):
            raise EventError("input_audio_buffer.append needs `audio`, base64 audio bytes", param="audio")
        try:
            data = base64.b64decode(audio, validate=True)
            samples = self._converter.convert(data)
        except (binascii.Error, ValueError) as exc:
            if isinstance(exc, AudioDecodeError):
                raise EventError(str(exc), param="audio") from None
            raise EventError("`audio` is not valid base64", param="audio") from None
        limit = int(self.context.limits.max_audio_seconds * SAMPLE_RATE)
        room = limit - self._buffered
        if samples.size > room:
            samples = samples[: max(room, 0)]
            if not self._too_long_reported:
                self._too_long_reported = True
                raise EventError(f"the input audio buffer holds at most {self.context.limits.max_audio_seconds:g} s: "
                                 "commit or clear it; audio beyond was dropped", code="input_audio_buffer_full",
                                 param="audio")
        if samples.size:
            self._chunks.append(samples)
            self._unseen.append(samples)
            self._buffered += samples.size
            self._session_samples += samples.size
        if self.config.server_vad and self._buffered - self._analysed >= ANALYSIS_STEP_SECONDS * SAMPLE_RATE:
            await self._analyse(full=self._buffered >= limit)

    async def _analyse(self, *, full: bool) -> None:
        """server_vad: speech started? stopped (the end-of-speech rule)? With no speech, only the last
        prefix_padding_ms of the buffer are kept."""
        self._analysed = self._buffered
        unseen, self._unseen = self._unseen, []
        started = time.perf_counter()
        speech = await asyncio.to_thread(self._speech, unseen)
        self.context.metrics.analysis_step(time.perf_counter() - started)
        if not speech.segments:
            keep = int(max(self.config.prefix_padding_ms / 1000, 2 * ANALYSIS_STEP_SECONDS) * SAMPLE_RATE)
            if self._buffered > 2 * keep:
                self._reset_buffer(self._buffer()[-keep:])
                self._analysed = self._buffered
            return
        if self._item_id is None:
            self._item_id = _id("item")
            self.emit(InputAudioBufferSpeechStartedEvent(
                type="input_audio_buffer.speech_started", event_id=_id("event"), item_id=self._item_id,
                audio_start_ms=self._ms(self._buffer_start + speech.segments[0][0])))
        if full or self._tracker.ending(speech, self._buffered) == "end_of_speech":
            samples = self._buffer()
            first, last = speech.segments[0][0], speech.segments[-1][1]
            start = max(0, first - int(self.config.prefix_padding_ms * SAMPLE_RATE / 1000))
            self._commit(samples[start:last], stopped=True, end=last, rest=samples[last:])

    def _speech(self, unseen: list[np.ndarray]) -> Speech:
        """The speech in the buffer (in a worker thread: the VAD runs over the `unseen` samples only)."""
        for chunk in unseen:
            self._vad_stream.push(chunk)
        return self._vad_stream.speech(0, STREAM_VAD_MIN_SILENCE_MS)

    def _commit_speech(self) -> None:
        """On shutdown: a turn under way is committed as it is."""
        if self._item_id is not None and self._buffered >= MIN_COMMIT_SECONDS * SAMPLE_RATE:
            self._commit(self._buffer(), stopped=True)

    def _commit(self, turn: np.ndarray, *, stopped: bool, end: int | None = None, rest: np.ndarray | None = None) -> None:
        item_id = self._item_id or _id("item")
        if stopped:
            self.emit(InputAudioBufferSpeechStoppedEvent(
                type="input_audio_buffer.speech_stopped", event_id=_id("event"), item_id=item_id,
                audio_end_ms=self._ms(self._buffer_start + (self._buffered if end is None else end))))
        self.emit(InputAudioBufferCommittedEvent(type="input_audio_buffer.committed", event_id=_id("event"),
                                                 item_id=item_id, previous_item_id=self._previous_item))
        self._previous_item = item_id
        self._too_long_reported = False
        self._owed += 1
        self._turns.put_nowait(_Turn(item_id, turn.copy()))
        self._reset_buffer(rest)

    # --- transcriptions ------------------------------------------------------------------------------

    async def _transcribe_turns(self) -> None:
        while (turn := await self._turns.get()) is not None:
            try:
                await self._transcribe(turn)
            finally:
                self._owed -= 1

    async def _transcribe(self, turn: _Turn) -> None:
        processor, metrics, config = self.context.audio_processor, self.context.metrics, self.config
        loop = asyncio.get_running_loop()

        def delta(segment: Any) -> None:  # in the engine's thread
            event = ConversationItemInputAudioTranscriptionDeltaEvent(
                type="conversation.item.input_audio_transcription.delta", event_id=_id("event"),
                item_id=turn.item_id, content_index=0, delta=segment.text)
            loop.call_soon_threadsafe(self.emit, event)

        options = TranscribeOptions(language=config.language, prompt=config.prompt, languages=config.languages,
                                    keywords=config.keywords, on_segment=delta)
        asked_at = time.perf_counter()
        metrics.detection_started()
        processing_time = None
        try:
            result = await processor.transcribe(turn.samples, self.connection_id, options, Priority.FINAL)
            if result.identification.probabilities:
                processing_time = result.identification.processing_time
        except (Busy, EngineError) as exc:
            busy = isinstance(exc, Busy)
            if busy:
                metrics.rejected("busy")
            else:
                metrics.error("engine")
            logger.warning("[%s] item %s: transcription failed: %s", self.connection_id, turn.item_id, exc)
            self.emit(ConversationItemInputAudioTranscriptionFailedEvent(
                type="conversation.item.input_audio_transcription.failed", event_id=_id("event"),
                item_id=turn.item_id, content_index=0, error={
                    "type": "server_error", "code": "server_busy" if busy else "engine_error", "message": str(exc)}))
            return
        finally:
            metrics.detection_finished(processing_time)
        identification = result.identification
        metrics.transcribed(result.seconds)
        metrics.answered(identification.language, identification.reason, time.perf_counter() - asked_at)
        top = identification.probabilities[: self.context.top_k]
        languages = detected_languages(identification)
        self.emit(ConversationItemInputAudioTranscriptionCompletedEvent(
            type="conversation.item.input_audio_transcription.completed", event_id=_id("event"),
            item_id=turn.item_id, content_index=0, transcript=result.transcript.text, languages=languages,
            usage={"type": "duration", "seconds": round(turn.samples.size / SAMPLE_RATE, 3)},
            # LangShazam's own fields (OpenAI clients ignore them)
            language_probability=round(float(top[0][1]), 4) if identification.language and top[0][1] is not None else None,
            confident=bool(identification.confident and identification.language),
            top=[{"language": code, "language_name": language_name(code),
                  "probability": None if p is None else round(float(p), 4)} for code, p in top],
            reason=identification.reason,
        ))
        logger.info("[%s] item %s: %.2fs transcribed, languages %s", self.connection_id, turn.item_id,
                    turn.samples.size / SAMPLE_RATE, ",".join(item.code for item in languages) or "none")
