"""WebSocketManager: admits each client on /ws and hands it to its mode's session.

Three modes (see docs/protocol.md):
- once (the original design, once_session.py): one answer at MIN_AUDIO_SIZE bytes (20 KB), on stop, or
  after a quiet spell;
- stream (`?mode=stream` or a first frame `{"type": "start", "mode": "stream"}`, stream_session.py):
  partial answers as speech arrives, then a final one, by the rule in streaming.py;
- continuous (`?mode=continuous` or in the start frame, continuous_session.py): a segment per utterance
  (language and times), partials meanwhile, and a summary when the stream ends.

Every connection is checked on arrival (Host, origin, API key, connection limits, the per-client cap of
client_connections.py) and bounded while it lasts
(bytes, seconds of audio, frame size, idle time); each refusal is an error message and a close code.
What the sessions share (limits, errors, receiving, detections, answers) is in session.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from . import protocol
from .access import HostPolicy, client_of, origin_allowed, presented_key, token_matches
from .audio import AudioDecodeError, AudioStream
from .audio_processor import AudioProcessor
from .client_connections import ClientConnections, Held
from .metrics import ServerMetrics
from .continuous_session import ContinuousSession
from .once_session import OnceSession
from .protocol import ClientMessage, ConnectionOptions, ProtocolError
from .session import (  # noqa: F401 (Limits and the close codes are imported from here by main.py and tests)
    CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, CLOSE_POLICY_VIOLATION, CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN_LATER, CLOSE_UNSUPPORTED_DATA, ClientError, Limits, SessionContext, receive,
)
from .stream_session import StreamSession
from .stream_capacity import StreamCapacity, StreamsFull, Ticket
from .streaming import StreamPolicy

logger = logging.getLogger(__name__)

LIVE_MODES = ("stream", "continuous")  # modes admitted at the door as live streams


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
        once_quiet_seconds: float = 2.0,
        capacity: StreamCapacity | None = None,
        hosts: HostPolicy | None = None,
        clients: ClientConnections | None = None,
    ) -> None:
        self.audio_processor = audio_processor
        self.metrics = metrics
        self.min_audio_size = min_audio_size
        self.top_k = top_k
        self.stream_policy = stream_policy or StreamPolicy()
        self.limits = limits or Limits()
        self.allowed_origins = allowed_origins if allowed_origins is not None else ["*"]
        self.api_key = api_key
        self.hosts = hosts or HostPolicy([], any_host=True)
        self.clients = clients or ClientConnections(0)
        self.once_quiet_seconds = once_quiet_seconds
        self._shutdown = asyncio.Event()
        # Live streams (stream and continuous modes, Realtime sessions) are admitted at the door.
        self.capacity = capacity or StreamCapacity(self.limits.max_connections, audio_processor)
        self._context = SessionContext(audio_processor, metrics, self.limits, self._shutdown, top_k)

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

    @property
    def context(self) -> SessionContext:
        """What every session shares (also the Realtime sessions of realtime_api.py)."""
        return self._context

    def admission(self, websocket: WebSocket) -> ClientError | None:
        """Why this connection may not be served, if it may not (Host, origin, API key, connection limits,
        shutdown): the same rules for /ws and /v1/realtime. An admitted connection is then `hold`-en at
        once, with no await in between."""
        if self._shutdown.is_set():
            return ClientError("the server is shutting down: try again later", CLOSE_TRY_AGAIN_LATER, "shutting_down", True)
        host = websocket.headers.get("host")
        if not self.hosts.allows(host):
            return ClientError(self.hosts.refusal(host), CLOSE_POLICY_VIOLATION, "host", True)
        origin = websocket.headers.get("origin")
        if not origin_allowed(origin, host, self.allowed_origins, self.hosts):
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
        full = self.clients.refusal(self.client_of(websocket))
        if full is not None:
            return ClientError(full.message, CLOSE_TRY_AGAIN_LATER, "client_limit", True, full.retry_after)
        return None

    def client_of(self, websocket: WebSocket) -> str:
        """Who this connection's client is (access.client_of), for the per-client cap."""
        return client_of(websocket.client.host if websocket.client else None, self.api_key)

    def hold(self, websocket: WebSocket) -> Held:
        """Count an admitted connection for its client until `release`."""
        return self.clients.hold(self.client_of(websocket))

    async def handle_connection(self, websocket: WebSocket) -> None:
        connection_id = str(uuid.uuid4())[:8]
        refusal = self.admission(websocket)
        if refusal is not None:
            await websocket.accept()
            self.metrics.rejected(refusal.kind)
            logger.warning("[%s] Refused: %s", connection_id, refusal.message)
            await self._close_with_error(websocket, connection_id, refusal.message, refusal.close_code,
                                         refusal.retry_after)
            return
        held = self.hold(websocket)
        self.metrics.connection_opened()
        try:
            await websocket.accept()
            logger.info("[%s] Connection opened", connection_id)
            await self._serve(websocket, connection_id)
        except WebSocketDisconnect as exc:
            logger.info("[%s] Client disconnected (code %s)", connection_id, exc.code)
        except ClientError as exc:
            if exc.rejection:
                self.metrics.rejected(exc.kind)
            else:
                self.metrics.error(exc.kind)
            logger.warning("[%s] %s", connection_id, exc.message)
            await self._close_with_error(websocket, connection_id, exc.message, exc.close_code, exc.retry_after)
        except Exception:
            self.metrics.error("internal")
            logger.exception("[%s] Unexpected error", connection_id)
            await self._close_with_error(
                websocket, connection_id, "internal error while processing the audio", CLOSE_INTERNAL_ERROR
            )
        finally:
            held.release()
            self.metrics.connection_closed()
            self.metrics.log_current_metrics(connection_id)

    async def _serve(self, websocket: WebSocket, connection_id: str) -> None:
        try:
            options = ConnectionOptions().merged(dict(websocket.query_params))
        except ProtocolError as exc:
            raise ClientError(str(exc), kind="bad_message") from None
        # A live stream named in the query is admitted (or refused) before anything is read.
        ticket = self.admit_stream() if options.mode in LIVE_MODES else None
        try:
            first = await receive(websocket, self.limits, self._shutdown)
            if isinstance(first, ClientMessage) and first.type == "start":
                try:
                    options = options.merged(first.body)
                except ProtocolError as exc:
                    raise ClientError(str(exc), kind="bad_message") from None
                first = None
            if options.mode in LIVE_MODES and ticket is None:
                ticket = self.admit_stream()
            elif options.mode not in LIVE_MODES and ticket is not None:
                ticket.release()
            await self._serve_mode(websocket, connection_id, options, first)
        finally:
            if ticket is not None:
                ticket.release()

    def admit_stream(self) -> Ticket:
        """A place for a live stream, or ClientError 1013 with a retry hint (see stream_capacity.py)."""
        try:
            return self.capacity.admit()
        except StreamsFull as exc:
            raise ClientError(exc.message, CLOSE_TRY_AGAIN_LATER, "streams_full", True, exc.retry_after) from None

    async def _serve_mode(self, websocket: WebSocket, connection_id: str, options: ConnectionOptions,
                          first: bytes | ClientMessage | None) -> None:
        try:
            longest = self.limits.max_call_seconds if options.mode == "continuous" else self.limits.max_audio_seconds
            stream = AudioStream(options.format, options.sample_rate, max_seconds=longest)
        except AudioDecodeError as exc:
            raise ClientError(str(exc), kind="bad_message") from None
        logger.info(
            "[%s] Mode %s, format %s, candidates %s",
            connection_id, options.mode, options.format or "container", ",".join(options.languages or []) or "all",
        )
        args = (self._context, websocket, connection_id, options, stream)
        if options.mode == "stream":
            session = StreamSession(*args, policy=self.stream_policy)
        elif options.mode == "continuous":
            session = ContinuousSession(*args, policy=self.stream_policy)
        else:
            session = OnceSession(*args, min_audio_size=self.min_audio_size, quiet_seconds=self.once_quiet_seconds)
        with stream:  # its decoder stops with the connection
            await session.run(first)

    async def _close_with_error(self, websocket: WebSocket, connection_id: str, message: str, code: int,
                                retry_after: float | None = None) -> None:
        if websocket.client_state != WebSocketState.CONNECTED:
            return
        try:
            await websocket.send_json(protocol.error(message, connection_id, retry_after))
            await websocket.close(code)
        except (WebSocketDisconnect, RuntimeError, OSError):
            logger.info("[%s] Client left before the error could be sent", connection_id)
