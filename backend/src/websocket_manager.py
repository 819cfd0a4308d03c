"""WebSocketManager: talks to one client per connection on /ws.

The original one-answer protocol: buffer binary frames of audio until MIN_AUDIO_SIZE bytes (20 KB),
identify the language, send one answer, close. A text frame `{"type": "stop"}` asks for the answer on
what has arrived so far (short clips never reach 20 KB).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from . import protocol
from .audio import AudioDecodeError, AudioIncomplete
from .audio_processor import AudioProcessor
from .engines.base import EngineError
from .metrics import ServerMetrics
from .protocol import ProtocolError

logger = logging.getLogger(__name__)

# RFC 6455 close codes
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INTERNAL_ERROR = 1011


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
    ) -> None:
        self.audio_processor = audio_processor
        self.metrics = metrics
        self.min_audio_size = min_audio_size
        self.top_k = top_k

    async def handle_connection(self, websocket: WebSocket) -> None:
        connection_id = str(uuid.uuid4())[:8]
        await websocket.accept()
        self.metrics.active_connections += 1
        logger.info("[%s] Connection opened", connection_id)
        try:
            await self._answer_once(websocket, connection_id)
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

    async def _answer_once(self, websocket: WebSocket, connection_id: str) -> None:
        buffer = bytearray()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", CLOSE_NORMAL))
            if message.get("bytes") is not None:
                buffer += message["bytes"]
                if len(buffer) < self.min_audio_size:
                    continue
                final = False
            else:
                try:
                    request = protocol.parse_client_message(message.get("text") or "")
                except ProtocolError as exc:
                    raise ClientError(str(exc)) from None
                if request.type != "stop":
                    continue
                if not buffer:
                    raise ClientError("no audio received before stop")
                final = True
            try:
                samples = await self.audio_processor.decode(bytes(buffer), connection_id, final=final)
            except AudioIncomplete as exc:
                logger.debug("[%s] %s; buffering more", connection_id, exc)
                continue
            except AudioDecodeError as exc:
                raise ClientError(str(exc)) from None
            data = await self._identify(samples, connection_id)
            await self._send(websocket, protocol.success(data, connection_id))
            await websocket.close(CLOSE_NORMAL)
            return

    async def _identify(self, samples: Any, connection_id: str, languages: list[str] | None = None) -> dict:
        self.metrics.total_requests += 1
        self.metrics.active_processes += 1
        try:
            result = await self.audio_processor.process_audio(samples, connection_id, languages)
        except EngineError as exc:
            raise ClientError(str(exc), CLOSE_INTERNAL_ERROR) from None
        finally:
            self.metrics.active_processes -= 1
        if result.probabilities:
            self.metrics.processing_times.append(result.processing_time)
        return protocol.answer_data(result, connection_id, self.top_k)

    async def _send(self, websocket: WebSocket, message: dict) -> None:
        await websocket.send_json(message)

    async def _close_with_error(self, websocket: WebSocket, connection_id: str, message: str, code: int) -> None:
        if websocket.client_state != WebSocketState.CONNECTED:
            return
        try:
            await websocket.send_json(protocol.error(message, connection_id))
            await websocket.close(code)
        except (WebSocketDisconnect, RuntimeError):
            logger.info("[%s] Client left before the error could be sent", connection_id)
