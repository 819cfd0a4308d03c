"""WebSocketManager: talks to one client per connection on /ws.

Two modes (see README, "WebSocket protocol"):
- once (the original design): buffer binary frames of audio until MIN_AUDIO_SIZE bytes (20 KB), identify
  the language, send one answer, close. `{"type": "stop"}` asks for the answer on what has arrived so far.
- stream (`?mode=stream` or a first frame `{"type": "start", "mode": "stream"}`): partial answers as speech
  arrives, then a final one, by the rule in streaming.py.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace
from typing import Any

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from . import protocol
from .audio import SAMPLE_RATE, AudioDecodeError, AudioIncomplete, AudioStream
from .audio_processor import AudioProcessor
from .engines.base import EngineError
from .metrics import ServerMetrics
from .protocol import ClientMessage, ConnectionOptions, Identification, ProtocolError
from .streaming import StreamPolicy, StreamTracker

logger = logging.getLogger(__name__)

# RFC 6455 close codes
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INTERNAL_ERROR = 1011

# In stream mode, decode and look for speech again once about this much new audio has arrived.
ANALYSIS_STEP_SECONDS = 0.25


class ClientError(Exception):
    """Ends a connection with an error message to the client and a close code."""

    def __init__(self, message: str, close_code: int = CLOSE_UNSUPPORTED_DATA) -> None:
        super().__init__(message)
        self.message = message
        self.close_code = close_code


class WebSocketManager:
    def __init__(
        self,
        audio_processor: AudioProcessor,
        metrics: ServerMetrics,
        *,
        min_audio_size: int = 20000,
        top_k: int = 5,
        stream_policy: StreamPolicy | None = None,
    ) -> None:
        self.audio_processor = audio_processor
        self.metrics = metrics
        self.min_audio_size = min_audio_size
        self.top_k = top_k
        self.stream_policy = stream_policy or StreamPolicy()

    async def handle_connection(self, websocket: WebSocket) -> None:
        connection_id = str(uuid.uuid4())[:8]
        await websocket.accept()
        self.metrics.active_connections += 1
        logger.info("[%s] Connection opened", connection_id)
        try:
            await self._serve(websocket, connection_id)
        except WebSocketDisconnect as exc:
            logger.info("[%s] Client disconnected (code %s)", connection_id, exc.code)
        except ClientError as exc:
            self.metrics.errors += 1
            logger.warning("[%s] %s", connection_id, exc.message)
            await self._close_with_error(websocket, connection_id, exc.message, exc.close_code)
        except Exception:
            self.metrics.errors += 1
            logger.exception("[%s] Unexpected error", connection_id)
            await self._close_with_error(
                websocket, connection_id, "internal error while processing the audio", CLOSE_INTERNAL_ERROR
            )
        finally:
            self.metrics.active_connections -= 1
            self.metrics.log_current_metrics(connection_id)

    async def _serve(self, websocket: WebSocket, connection_id: str) -> None:
        try:
            options = ConnectionOptions().merged(dict(websocket.query_params))
        except ProtocolError as exc:
            raise ClientError(str(exc)) from None
        first = await self._receive(websocket)
        if isinstance(first, ClientMessage) and first.type == "start":
            try:
                options = options.merged(first.body)
            except ProtocolError as exc:
                raise ClientError(str(exc)) from None
            first = None
        try:
            stream = AudioStream(options.format, options.sample_rate)
        except AudioDecodeError as exc:
            raise ClientError(str(exc)) from None
        logger.info(
            "[%s] Mode %s, format %s, candidates %s",
            connection_id, options.mode, options.format or "container", ",".join(options.languages or []) or "all",
        )
        if options.mode == "stream":
            await self._stream(websocket, connection_id, options, stream, first)
        else:
            await self._answer_once(websocket, connection_id, options, stream, first)

    async def _receive(self, websocket: WebSocket) -> bytes | ClientMessage:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", CLOSE_NORMAL))
        if message.get("bytes") is not None:
            return message["bytes"]
        try:
            return protocol.parse_client_message(message.get("text") or "")
        except ProtocolError as exc:
            raise ClientError(str(exc)) from None

    @staticmethod
    def _feed(stream: AudioStream, data: bytes) -> None:
        try:
            stream.feed(data)
        except AudioDecodeError as exc:
            raise ClientError(str(exc)) from None

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
                self._feed(stream, message)
                if stream.bytes_received < self.min_audio_size:
                    continue
                final = False
            elif message.type == "stop":
                if stream.bytes_received == 0:
                    raise ClientError("no audio received before stop")
                final = True
            else:
                raise ClientError("a start message must be the first message of a connection")
            try:
                samples = await asyncio.to_thread(stream.samples, final=final)
            except AudioIncomplete as exc:
                logger.debug("[%s] %s; buffering more", connection_id, exc)
                continue
            except AudioDecodeError as exc:
                raise ClientError(str(exc)) from None
            result = await self._identify(samples, connection_id, options)
            data = self._data(result, connection_id, options, final=True)
            await websocket.send_json(protocol.success(data, connection_id))
            await websocket.close(CLOSE_NORMAL)
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
        state: dict[str, Any] = {"stop": False, "failure": None}

        async def receive_loop() -> None:
            message = first
            try:
                while True:
                    if message is None:
                        message = await self._receive(websocket)
                    if isinstance(message, bytes):
                        self._feed(stream, message)
                    elif message.type == "stop":
                        state["stop"] = True
                        return
                    else:
                        raise ClientError("a start message must be the first message of a connection")
                    message = None
                    wake.set()
            except Exception as exc:  # handed to the analysis loop, which ends the connection
                state["failure"] = exc
            finally:
                wake.set()

        receiver = asyncio.create_task(receive_loop())
        last: Identification | None = None
        try:
            while True:
                await wake.wait()
                wake.clear()
                if state["failure"] is not None:
                    raise state["failure"]
                final = state["stop"]
                if not final and stream.new_seconds() < ANALYSIS_STEP_SECONDS:
                    continue
                if final and stream.bytes_received == 0:
                    raise ClientError("no audio received before stop")
                try:
                    samples = await asyncio.to_thread(stream.samples, final=final)
                except AudioIncomplete:
                    continue
                except AudioDecodeError as exc:
                    raise ClientError(str(exc)) from None
                ended_by = "stop" if final else None
                max_samples = int(policy.max_seconds * SAMPLE_RATE)
                if len(samples) >= max_samples:
                    samples, ended_by = samples[:max_samples], "max_duration"
                speech = await self.audio_processor.find_speech(samples)
                if ended_by is not None:
                    result = last
                    if result is None or speech.seconds - tracker.detected_speech > 0.05:
                        result = await self._identify(samples, connection_id, options, speech)
                    reason = result.reason or tracker.no_language_reason(result.probabilities, speech.seconds)
                    result = replace(result, reason=reason, audio_duration=len(samples) / SAMPLE_RATE)
                    await self._finish(websocket, connection_id, options, result, ended_by)
                    return
                if not tracker.due(speech.seconds):
                    continue
                last = await self._identify(samples, connection_id, options, speech)
                if tracker.update(last.probabilities, speech.seconds):
                    await self._finish(websocket, connection_id, options, last, "confident")
                    return
                data = self._data(last, connection_id, options, final=False)
                await websocket.send_json(protocol.partial(data, connection_id))
                wake.set()  # audio that arrived during the detection may already be due
        finally:
            receiver.cancel()

    async def _finish(
        self, websocket: WebSocket, connection_id: str, options: ConnectionOptions, result: Identification,
        ended_by: str,
    ) -> None:
        data = self._data(result, connection_id, options, final=True)
        data["ended_by"] = ended_by
        logger.info("[%s] Final answer %s (ended by %s)", connection_id, data["language"] or data.get("reason"), ended_by)
        await websocket.send_json(protocol.success(data, connection_id))
        await websocket.close(CLOSE_NORMAL)

    # --- shared ------------------------------------------------------------------------------------

    async def _identify(
        self, samples: np.ndarray, connection_id: str, options: ConnectionOptions, speech: Any = None
    ) -> Identification:
        self.metrics.total_requests += 1
        self.metrics.active_processes += 1
        try:
            result = await self.audio_processor.process_audio(samples, connection_id, options.languages, speech)
        except EngineError as exc:
            raise ClientError(str(exc), CLOSE_INTERNAL_ERROR) from None
        finally:
            self.metrics.active_processes -= 1
        if result.probabilities:
            self.metrics.processing_times.append(result.processing_time)
        return result

    def _data(self, result: Identification, connection_id: str, options: ConnectionOptions, *, final: bool) -> dict:
        data = protocol.answer_data(result, connection_id, options.top_k or self.top_k)
        data["final"] = final
        if options.languages:
            data["candidates"] = options.languages
        return data

    async def _close_with_error(self, websocket: WebSocket, connection_id: str, message: str, code: int) -> None:
        if websocket.client_state != WebSocketState.CONNECTED:
            return
        try:
            await websocket.send_json(protocol.error(message, connection_id))
            await websocket.close(code)
        except (WebSocketDisconnect, RuntimeError):
            logger.info("[%s] Client left before the error could be sent", connection_id)
