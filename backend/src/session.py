"""What every /ws session shares: close codes, limits, client errors, receiving frames, feeding audio,
running a detection and sending the final answer. Each mode's loop lives in its own module
(once_session.py, stream_session.py); websocket_manager.py admits connections and dispatches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect

from . import protocol
from .audio import AudioDecodeError, AudioIncomplete, AudioStream, AudioTooLong
from .audio_processor import AudioProcessor, Busy
from .inference_slots import Priority
from .engines.base import EngineError
from .metrics import ServerMetrics
from .protocol import ClientMessage, ConnectionOptions, Identification, ProtocolError

logger = logging.getLogger(__name__)

# RFC 6455 close codes
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013

SHUTDOWN = object()  # what receive() returns once the server is draining
QUIET = object()  # what receive() returns when a `quiet` wait passed with nothing received


@dataclass(frozen=True)
class Limits:
    max_connections: int = 64
    max_bytes: int = 10 * 1024 * 1024
    max_audio_seconds: float = 120.0
    max_call_seconds: float = 4 * 3600.0  # continuous mode, instead of max_audio_seconds and max_bytes ...
    call_bytes_per_second: int = 256000  # ... on average per second of audio decoded,
    call_burst_bytes: int = 10 * 1024 * 1024  # ... plus this
    max_frame_bytes: int = 1024 * 1024
    idle_timeout: float = 30.0


class ClientError(Exception):
    """Ends a connection with an error message to the client and a close code.

    `kind` names the error in /metrics; `rejection` marks refusals by a limit or an access rule;
    `retry_after` (seconds) is the hint sent with a refusal for lack of capacity.
    """

    def __init__(
        self, message: str, close_code: int = CLOSE_UNSUPPORTED_DATA, kind: str = "bad_input",
        rejection: bool = False, retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.close_code = close_code
        self.kind = kind
        self.rejection = rejection
        self.retry_after = retry_after  # seconds, sent with the error when set


async def receive(
    websocket: WebSocket, limits: Limits, shutdown: asyncio.Event, quiet: float | None = None
) -> bytes | ClientMessage | object:
    """The next frame (audio bytes or a checked client message); SHUTDOWN once draining; QUIET when
    `quiet` seconds passed with nothing (otherwise nothing for the idle timeout is a ClientError)."""
    if shutdown.is_set():
        return SHUTDOWN
    wait = limits.idle_timeout if quiet is None else min(quiet, limits.idle_timeout)
    frame = asyncio.ensure_future(websocket.receive())
    stopping = asyncio.ensure_future(shutdown.wait())
    try:
        done, _ = await asyncio.wait({frame, stopping}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not frame.done():
            frame.cancel()
    if frame not in done:
        if stopping in done:
            return SHUTDOWN
        if quiet is not None and quiet < limits.idle_timeout:
            return QUIET
        raise ClientError(f"nothing received for {limits.idle_timeout:g} s", CLOSE_POLICY_VIOLATION, "idle", True)
    message = frame.result()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", CLOSE_NORMAL))
    if message.get("bytes") is not None:
        data = message["bytes"]
        if len(data) > limits.max_frame_bytes:
            raise ClientError(
                f"a frame of {len(data)} bytes is larger than the limit of {limits.max_frame_bytes}",
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


@dataclass
class SessionContext:
    """What the manager hands every session: the shared processor and metrics, and the server's rules."""

    audio_processor: AudioProcessor
    metrics: ServerMetrics
    limits: Limits
    shutdown: asyncio.Event
    top_k: int = 5


class Session:
    """One client's connection once its mode is known; subclasses implement `run`."""

    def __init__(
        self, context: SessionContext, websocket: WebSocket, connection_id: str, options: ConnectionOptions,
        stream: AudioStream,
    ) -> None:
        self.context = context
        self.websocket = websocket
        self.connection_id = connection_id
        self.options = options
        self.stream = stream

    # Stream and continuous modes' answers are owed to admitted streams (never refused, served first);
    # once mode's single answer is a new request.
    final_priority = Priority.REQUEST

    async def run(self, first: bytes | ClientMessage | None) -> None:
        raise NotImplementedError

    async def receive(self, quiet: float | None = None) -> bytes | ClientMessage | object:
        return await receive(self.websocket, self.context.limits, self.context.shutdown, quiet)

    def feed(self, data: bytes) -> None:
        limits = self.context.limits
        if self.stream.bytes_received + len(data) > limits.max_bytes:
            raise ClientError(
                f"more than {limits.max_bytes} bytes of audio on one connection", CLOSE_TOO_BIG, "too_large", True
            )
        try:
            self.stream.feed(data)
        except AudioTooLong as exc:
            raise too_long(exc) from None
        except AudioDecodeError as exc:
            raise ClientError(str(exc), kind="bad_audio") from None

    def check_end_of_audio(self, message: ClientMessage | object) -> None:
        """A stop (or the server's shutdown) asks for the answer now: there must be audio to answer on."""
        if message is not SHUTDOWN and message is not QUIET and message.type != "stop":  # type: ignore[attr-defined]
            raise ClientError("a start message must be the first message of a connection", kind="bad_message")
        if self.stream.bytes_received == 0:
            if message is SHUTDOWN:
                raise ClientError("the server is shutting down", CLOSE_GOING_AWAY, "shutting_down", True)
            raise ClientError("no audio received before stop", kind="bad_message")

    async def samples(self, *, final: bool) -> np.ndarray:
        """The stream's audio so far (AudioIncomplete passes through; other failures end the connection)."""
        try:
            samples = await asyncio.to_thread(self.stream.samples, final=final)
        except AudioIncomplete:
            if final:
                raise ClientError("the audio ended before it could be decoded", kind="bad_audio") from None
            raise
        except AudioTooLong as exc:
            raise too_long(exc) from None
        except AudioDecodeError as exc:
            raise ClientError(str(exc), kind="bad_audio") from None
        return samples

    async def identify(self, samples: np.ndarray, speech: Any = None, *, final: bool,
                       likely_final: bool = False, window_seconds: float | None = None) -> Identification | None:
        """Run a detection; None for a partial one skipped because every inference slot is taken (partials
        never queue: the final answers waiting behind them would be late). A partial that is `likely_final`
        (the speaker has paused: unless they go on, it is the answer the end of speech will give) waits
        for a slot as a final does, so that the final answer is ready when the pause is long enough.
        An utterance's first partial, on its short `window_seconds` (StreamTracker.window), waits too,
        after the finals (Priority.FIRST): at 30 streams that start together, first partials came at p95
        2.0-2.4 s (medians of 5 runs) against 3.4 s when they neither waited nor had a short window, and
        3.2 s with the short window alone; finals at p95 0.87-0.90 s against 0.77 s (scripts/capacity.py).
        (Waiting on the full 8 s window was measured before: it delayed the finals to p95 1.35-1.42 s.)"""
        processor, metrics = self.context.audio_processor, self.context.metrics
        first = window_seconds is not None  # only a first partial has one (never at a pause, never a final)
        wait = final or likely_final or first
        priority = Priority.FIRST if first else self.final_priority
        if not wait and processor.saturated:
            logger.debug("[%s] Busy: partial answer skipped", self.connection_id)
            metrics.partial_skipped()
            return None
        metrics.detection_started()
        processing_time = None
        try:
            result = await processor.process_audio(
                samples, self.connection_id, self.options.languages, speech, wait=wait,
                strictness=self.options.strictness, priority=priority, window_seconds=window_seconds,
            )
            processing_time = result.processing_time if result.probabilities else None
            return result
        except Busy as exc:
            if not wait:
                logger.info("[%s] Busy: partial answer skipped", self.connection_id)
                metrics.partial_skipped()
                return None
            raise ClientError(str(exc), CLOSE_TRY_AGAIN_LATER, "busy", True) from None
        except EngineError as exc:
            raise ClientError(str(exc), CLOSE_INTERNAL_ERROR, "engine") from None
        finally:
            metrics.detection_finished(processing_time)

    def data(self, result: Identification, *, final: bool) -> dict:
        data = protocol.answer_data(result, self.connection_id, self.options.top_k or self.context.top_k)
        data["final"] = final
        if self.options.languages:
            data["candidates"] = self.options.languages
        return data

    async def send_final(self, data: dict, asked_at: float) -> None:
        await self.websocket.send_json(protocol.success(data, self.connection_id))
        self.context.metrics.answered(data["language"], data.get("reason"), time.perf_counter() - asked_at)
        logger.info(
            "[%s] Final answer %s%s%s", self.connection_id, data["language"] or data.get("reason"),
            " (confident)" if data.get("confident") else "",
            f" (ended by {data['ended_by']})" if "ended_by" in data else "",
        )
        await self.websocket.close(CLOSE_NORMAL)


def too_long(exc: AudioTooLong) -> ClientError:
    """The stream passed MAX_AUDIO_SECONDS: its decoding stopped there."""
    return ClientError(f"more than {exc.limit_seconds:g} s of audio on one connection", CLOSE_TOO_BIG, "too_large", True)


class ListeningSession(Session):
    """A session that analyses while audio still arrives (stream and continuous modes): a receive loop
    and an analysis loop run together until the analysis is done or the receiving fails."""

    final_priority = Priority.FINAL

    async def run(self, first: bytes | ClientMessage | None) -> None:
        receiver = asyncio.create_task(self._receive_loop(first))
        analysis = asyncio.create_task(self._analysis_loop())
        try:
            done, _ = await asyncio.wait({receiver, analysis}, return_when=asyncio.FIRST_COMPLETED)
            if analysis not in done and receiver.exception() is not None:
                raise receiver.exception()  # the client left or broke a rule: nothing is owed any more
            await analysis
        finally:
            for task in (receiver, analysis):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _receive_loop(self, first: bytes | ClientMessage | None) -> None:
        raise NotImplementedError

    async def _analysis_loop(self) -> None:
        raise NotImplementedError
