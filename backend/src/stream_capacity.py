"""The door for live streams (/ws stream and continuous modes, Realtime transcription sessions).

A stream admitted is owed its answers: they are never refused mid-stream, and they go before new requests
for an inference slot (inference_slots.Priority.FINAL). Overload is refused here instead, when a stream
asks to start: one replica serves at most `max_streams` at once (MAX_STREAMS), and none while the answers
it owes are behind (more of them waiting for the engine than twice MAX_CONCURRENT_CALLS). The refusal is
close 1013 with `retry_after` seconds, at once, so a client or a proxy can go to another replica.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .audio_processor import AudioProcessor


class StreamsFull(Exception):
    """A new live stream is refused: the message says why; `retry_after` is the hint in seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class Ticket:
    """A live stream's place, given back once (`release`, or as a context manager)."""

    def __init__(self, capacity: "StreamCapacity") -> None:
        self._capacity: StreamCapacity | None = capacity

    def release(self) -> None:
        if self._capacity is not None:
            self._capacity._changed(-1)
            self._capacity = None

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class StreamCapacity:
    def __init__(self, max_streams: int, processor: "AudioProcessor", retry_after: float = 5.0,
                 on_change: Callable[[int], None] | None = None) -> None:
        self.max_streams = max_streams
        self.processor = processor
        # Behind: more answers owed wait for the engine than two rounds of its inference slots.
        self.behind_after = 2 * processor.max_concurrent_calls
        self.retry_after = retry_after
        self.live = 0
        self._on_change = on_change

    def admit(self) -> Ticket:
        """A place for a new live stream, or StreamsFull."""
        hint = f"try again in {self.retry_after:g} s"
        if self.live >= self.max_streams:
            raise StreamsFull(f"the server is serving {self.live} live streams, its limit: {hint}", self.retry_after)
        waiting = self.processor.finals_waiting
        if waiting > self.behind_after:
            raise StreamsFull(f"the server is behind ({waiting} answers waiting for the engine): {hint}",
                              self.retry_after)
        self._changed(+1)
        return Ticket(self)

    def _changed(self, delta: int) -> None:
        self.live += delta
        if self._on_change is not None:
            self._on_change(self.live)
