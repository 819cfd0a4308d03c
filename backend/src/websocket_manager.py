"""WebSocketManager: talks to one client per connection on /ws.

Two modes (see README, "WebSocket protocol"):
- once (the original design): buffer binary frames of audio until MIN_AUDIO_SIZE bytes (20 KB), identify
  the language, send one answer, close. `{"type": "stop"}` asks for the answer on what has arrived so far.
- stream (`?mode=stream` or a first frame `{"type": "start", "mode": "stream"}`): partial answers as speech
  arrives, then a final one, by the rule in streaming.py.

Every connection is checked on arrival (origin, API key, connection limit) and bounded while it lasts
(bytes, seconds of audio, frame size, idle time); each refusal is an error message and a close code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from . import protocol
from .access import origin_allowed, presented_key, token_matches
from .audio import SAMPLE_RATE, AudioDecodeError, AudioIncomplete, AudioStream, AudioTooLong
from .audio_processor import AudioProcessor, Busy
from .engines.base import EngineError
from .metrics import ServerMetrics
from .protocol import ClientMessage, ConnectionOptions, Identification, ProtocolError
from .streaming import StreamPolicy, StreamTracker

logger = logging.getLogger(__name__)

# RFC 6455 close codes
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013

# In stream mode, decode and look for speech again once about this much new audio has arrived.
ANALYSIS_STEP_SECONDS = 0.25

SHUTDOWN = object()  # what _receive returns once the server is draining


@dataclass(frozen=True)
class Limits:
    max_connections: int = 64
    max_bytes: int = 10 * 1024 * 1024
    max_audio_seconds: float = 120.0
    max_frame_bytes: int = 1024 * 1024
    idle_timeout: float = 30.0


class ClientError(Exception):
    """Ends a connection with an error message to the client and a close code.

    `kind` names the error in /metrics; `rejection` marks refusals by a limit or an access rule.
    """

    def __init__(
        self, message: str, close_code: int = CLOSE_UNSUPPORTED_DATA, kind: str = "bad_input",
        rejection: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.close_code = close_code
        self.kind = kind
        self.rejection = rejection


class WebSocketManager:
    def __init__(
        self,
        audio_processor: AudioProcessor,
        metrics: ServerMetrics,
        *,
        min_audio_size: int = 20000,
        top_k: int = 5,
        stream_policy: StreamPolicy | None = None,
        limits: Limits | None = None,
        allowed_origins: list[str] | None = None,
        api_key: str = "",
    ) -> None:
        self.audio_processor = audio_processor
        self.metrics = metrics
        self.min_audio_size = min_audio_size
        self.top_k = top_k
        self.stream_policy = stream_policy or StreamPolicy()
        self.limits = limits or Limits()
        self.allowed_origins = allowed_origins if allowed_origins is not None else ["*"]
        self.api_key = api_key
        self._shutdown = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------------------

    async def drain(self, timeout: float) -> None:
        """Graceful shutdown: refuse new connections, tell open ones to answer on what they have, and
        wait (up to `timeout`) until they are done."""
        self._shutdown.set()
        deadline = time.monotonic() + timeout
        while self.metrics.active_connections > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.metrics.active_connections:
            logger.warning("Shutting down with %d connection(s) still open", self.metrics.active_connections)

    def _admission(self, websocket: WebSocket) -> ClientError | None:
        """Why this connection may not be served, if it may not."""
        if self._shutdown.is_set():
            return ClientError("the server is shutting down: try again later", CLOSE_TRY_AGAIN_LATER, "shutting_down", True)
        origin = websocket.headers.get("origin")
        if not origin_allowed(origin, websocket.headers.get("host"), self.allowed_origins):
            return ClientError(f"origin {origin[:100]!r} is not allowed", CLOSE_POLICY_VIOLATION, "origin", True)
        if self.api_key and not token_matches(presented_key(websocket.headers, websocket.query_params), self.api_key):
            return ClientError(
                "missing or wrong API key: send Authorization: Bearer <key> or ?token=<key>",
                CLOSE_POLICY_VIOLATION, "unauthorized", True,
            )
        if self.metrics.active_connections >= self.limits.max_connections:
            return ClientError(
                f"the server has {self.limits.max_connections} connections open: try again later",
                CLOSE_TRY_AGAIN_LATER, "too_many_connections", True,
            )
        return None

    async def handle_connection(self, websocket: WebSocket) -> None:
        connection_id = str(uuid.uuid4())[:8]
        refusal = self._admission(websocket)
        await websocket.accept()
        if refusal is not None:
            self.metrics.rejected(refusal.kind)
            logger.warning("[%s] Refused: %s", connection_id, refusal.message)
            await self._close_with_error(websocket, connection_id, refusal.message, refusal.close_code)
            return
        self.metrics.connection_opened()
        logger.info("[%s] Connection opened", connection_id)
        try:
            await self._serve(websocket, connection_id)
        except WebSocketDisconnect as exc:
            logger.info("[%s] Client disconnected (code %s)", connection_id, exc.code)
        except ClientError as exc:
            if exc.rejection:
                self.metrics.rejected(exc.kind)
            else:
                self.metrics.error(exc.kind)
            logger.warning("[%s] %s", connection_id, exc.message)
            await self._close_with_error(websocket, connection_id, exc.message, exc.close_code)
        except Exception:
            self.metrics.error("internal")
            logger.exception("[%s] Unexpected error", connection_id)
            await self._close_with_error(
                websocket, connection_id, "internal error while processing the audio", CLOSE_INTERNAL_ERROR
            )
        finally:
            self.metrics.connection_closed()
            self.metrics.log_current_metrics(connection_id)

    async def _serve(self, websocket: WebSocket, connection_id: str) -> None:
        try:
            options = ConnectionOptions().merged(dict(websocket.query_params))
        except ProtocolError as exc:
            raise ClientError(str(exc), kind="bad_message") from None
        first = await self._receive(websocket)
        if isinstance(first, ClientMessage) and first.type == "start":
            try:
                options = options.merged(first.body)
            except ProtocolError as exc:
                raise ClientError(str(exc), kind="bad_message") from None
            first = None
        try:
            stream = AudioStream(options.format, options.sample_rate, max_seconds=self.limits.max_audio_seconds)
        except AudioDecodeError as exc:
            raise ClientError(str(exc), kind="bad_message") from None
        logger.info(
            "[%s] Mode %s, format %s, candidates %s",
            connection_id, options.mode, options.format or "container", ",".join(options.languages or []) or "all",
        )
        with stream:  # its decoder stops with the connection
            if options.mode == "stream":
                await self._stream(websocket, connection_id, options, stream, first)
            else:
                await self._answer_once(websocket, connection_id, options, stream, first)

    async def _receive(self, websocket: WebSocket) -> bytes | ClientMessage | object:
        """The next frame (audio bytes or a checked client message), or SHUTDOWN once draining."""
        if self._shutdown.is_set():
            return SHUTDOWN
        receive = asyncio.ensure_future(websocket.receive())
        shutdown = asyncio.ensure_future(self._shutdown.wait())
        try:
            done, _ = await asyncio.wait(
                {receive, shutdown}, timeout=self.limits.idle_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            shutdown.cancel()
            if not receive.done():
                receive.cancel()
        if receive not in done:
            if shutdown in done:
                return SHUTDOWN
            raise ClientError(
                f"nothing received for {self.limits.idle_timeout:g} s", CLOSE_POLICY_VIOLATION, "idle", True
            )
        message = receive.result()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", CLOSE_NORMAL))
        if message.get("bytes") is not None:
            data = message["bytes"]
            if len(data) > self.limits.max_frame_bytes:
                raise ClientError(
                    f"a frame of {len(data)} bytes is larger than the limit of {self.limits.max_frame_bytes}",
                    CLOSE_TOO_BIG, "too_large", True,
                )
            return data
        text = message.get("text") or ""
        if len(text) > 65536:
            raise ClientError("text frames are control messages of at most 64 KB", CLOSE_TOO_BIG, "too_large", True)
        try:
            return protocol.parse_client_message(text)
        except ProtocolError as exc:
            raise ClientError(str(exc), kind="bad_message") from None

    def _feed(self, stream: AudioStream, data: bytes) -> None:
        if stream.bytes_received + len(data) > self.limits.max_bytes:
            raise ClientError(
                f"more than {self.limits.max_bytes} bytes of audio on one connection", CLOSE_TOO_BIG, "too_large", True
            )
        try:
            stream.feed(data)
        except AudioTooLong as exc:
            raise self._too_long(exc) from None
        except AudioDecodeError as exc:
            raise ClientError(str(exc), kind="bad_audio") from None

    @staticmethod
    def _too_long(exc: AudioTooLong) -> ClientError:
        """The stream passed MAX_AUDIO_SECONDS: its decoding stopped there."""
        return ClientError(f"more than {exc.limit_seconds:g} s of audio on one connection", CLOSE_TOO_BIG, "too_large", True)

    @staticmethod
    def _check_end_of_audio(message: ClientMessage | object, stream: AudioStream) -> None:
        """A stop (or the server's shutdown) asks for the answer now: there must be audio to answer on."""
        if message is not SHUTDOWN and message.type != "stop":  # type: ignore[attr-defined]
            raise ClientError("a start message must be the first message of a connection", kind="bad_message")
        if stream.bytes_received == 0:
            if message is SHUTDOWN:
                raise ClientError("the server is shutting down", CLOSE_GOING_AWAY, "shutting_down", True)
            raise ClientError("no audio received before stop", kind="bad_message")

    async def _samples(self, stream: AudioStream, *, final: bool) -> np.ndarray:
        """The stream's audio so far (AudioIncomplete passes through; other failures end the connection)."""
        try:
            samples = await asyncio.to_thread(stream.samples, final=final)
        except AudioIncomplete:
            if final:
                raise ClientError("the audio ended before it could be decoded", kind="bad_audio") from None
            raise
        except AudioTooLong as exc:
            raise self._too_long(exc) from None
        except AudioDecodeError as exc:
            raise ClientError(str(exc), kind="bad_audio") from None
        return samples

    # --- once: the original one-answer protocol ----------------------------------------------------

    async def _answer_once(
        self,
        websocket: WebSocket,
        connection_id: str,
        options: ConnectionOptions,
        stream: AudioStream,
        first: bytes | ClientMessage | None,
    ) -> None:
        while True:
            message = first if first is not None else await self._receive(websocket)
            first = None
            if isinstance(message, bytes):
                if not message:
                    continue
                self._feed(stream, message)
                if stream.bytes_received < self.min_audio_size:
                    continue
                final = False
            else:
                self._check_end_of_audio(message, stream)
                final = True
            asked_at = time.perf_counter()
            try:
                samples = await self._samples(stream, final=final)
            except AudioIncomplete as exc:
                logger.debug("[%s] %s; buffering more", connection_id, exc)
                continue
            result = await self._identify(samples, connection_id, options, final=True)
            data = self._data(result, connection_id, options, final=True)
            await self._send_final(websocket, connection_id, data, asked_at)
            return

    # --- stream: partial answers, then a final one -------------------------------------------------

    async def _stream(
        self,
        websocket: WebSocket,
        connection_id: str,
        options: ConnectionOptions,
        stream: AudioStream,
        first: bytes | ClientMessage | None,
    ) -> None:
        policy = self.stream_policy
        tracker = StreamTracker(policy)
        wake = asyncio.Event()
        state: dict[str, Any] = {"stop": None, "stop_at": 0.0}

        async def receive_loop() -> None:
            message = first
            while True:
                if message is None:
                    message = await self._receive(websocket)
                if isinstance(message, bytes):
                    if message:
                        self._feed(stream, message)
                        wake.set()
                else:
                    self._check_end_of_audio(message, stream)
                    state["stop"] = "shutdown" if message is SHUTDOWN else "stop"
                    state["stop_at"] = time.perf_counter()
                    wake.set()
                    return
                message = None

        async def analysis_loop() -> None:
            last: Identification | None = None
            while True:
                await wake.wait()
                wake.clear()
                ended_by = state["stop"]
                if ended_by is None and stream.new_seconds() < ANALYSIS_STEP_SECONDS:
                    continue
                asked_at = state["stop_at"] if ended_by else time.perf_counter()
                try:
                    samples = await self._samples(stream, final=ended_by is not None)
                except AudioIncomplete:
                    continue
                max_samples = int(policy.max_seconds * SAMPLE_RATE)
                if len(samples) >= max_samples:
                    samples, ended_by = samples[:max_samples], ended_by or "max_duration"
                speech = await self.audio_processor.find_speech(samples)
                if ended_by is not None:
                    result = last
                    if result is None or speech.seconds - tracker.detected_speech > 0.05:
                        result = await self._identify(samples, connection_id, options, speech, final=True)
                    reason = result.reason or tracker.no_language_reason(result.probabilities, speech.seconds)
                    result = replace(result, reason=reason, audio_duration=len(samples) / SAMPLE_RATE)
                    await self._finish(websocket, connection_id, options, result, ended_by, asked_at)
                    return
                if not tracker.due(speech.seconds):
                    continue
                partial = await self._identify(samples, connection_id, options, speech, final=False)
                if partial is None:  # busy: skip this partial answer rather than queue it
                    continue
                last = partial
                if tracker.update(last.probabilities, speech.seconds):
                    await self._finish(websocket, connection_id, options, last, "confident", asked_at)
                    return
                data = self._data(last, connection_id, options, final=False)
                await websocket.send_json(protocol.partial(data, connection_id))
                wake.set()  # audio that arrived during the detection may already be due

        receiver = asyncio.create_task(receive_loop())
        analysis = asyncio.create_task(analysis_loop())
        try:
            done, _ = await asyncio.wait({receiver, analysis}, return_when=asyncio.FIRST_COMPLETED)
            if analysis not in done and receiver.exception() is not None:
                raise receiver.exception()  # the client left or broke a rule: no answer is owed any more
            await analysis
        finally:
            for task in (receiver, analysis):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _finish(
        self, websocket: WebSocket, connection_id: str, options: ConnectionOptions, result: Identification,
        ended_by: str, asked_at: float,
    ) -> None:
        data = self._data(result, connection_id, options, final=True)
        data["ended_by"] = ended_by
        await self._send_final(websocket, connection_id, data, asked_at)

    # --- shared ------------------------------------------------------------------------------------

    async def _identify(
        self, samples: np.ndarray, connection_id: str, options: ConnectionOptions, speech: Any = None,
        *, final: bool,
    ) -> Identification | None:
        """Run a detection; None for a partial one skipped because every inference slot is taken (partials
        never queue: the final answers waiting behind them would be late)."""
        if not final and self.audio_processor.saturated:
            logger.debug("[%s] Busy: partial answer skipped", connection_id)
            return None
        self.metrics.detection_started()
        processing_time = None
        try:
            result = await self.audio_processor.process_audio(
                samples, connection_id, options.languages, speech, wait=final
            )
            processing_time = result.processing_time if result.probabilities else None
            return result
        except Busy as exc:
            if not final:
                logger.info("[%s] Busy: partial answer skipped", connection_id)
                return None
            raise ClientError(str(exc), CLOSE_TRY_AGAIN_LATER, "busy", True) from None
        except EngineError as exc:
            raise ClientError(str(exc), CLOSE_INTERNAL_ERROR, "engine") from None
        finally:
            self.metrics.detection_finished(processing_time)

    def _data(self, result: Identification, connection_id: str, options: ConnectionOptions, *, final: bool) -> dict:
        data = protocol.answer_data(result, connection_id, options.top_k or self.top_k)
        data["final"] = final
        if options.languages:
            data["candidates"] = options.languages
        return data

    async def _send_final(self, websocket: WebSocket, connection_id: str, data: dict, asked_at: float) -> None:
        await websocket.send_json(protocol.success(data, connection_id))
        self.metrics.answered(data["language"], data.get("reason"), time.perf_counter() - asked_at)
        logger.info(
            "[%s] Final answer %s%s", connection_id, data["language"] or data.get("reason"),
            f" (ended by {data['ended_by']})" if "ended_by" in data else "",
        )
        await websocket.close(CLOSE_NORMAL)

    async def _close_with_error(self, websocket: WebSocket, connection_id: str, message: str, code: int) -> None:
        if websocket.client_state != WebSocketState.CONNECTED:
            return
        try:
            await websocket.send_json(protocol.error(message, connection_id))
            await websocket.close(code)
        except (WebSocketDisconnect, RuntimeError, OSError):
            logger.info("[%s] Client left before the error could be sent", connection_id)
