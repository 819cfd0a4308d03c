"""A real-time WebSocket stream client: send the audio in chunks at the pace it was recorded, optionally
{"type": "stop"} after the last one, and keep every answer with the moment it came (time.perf_counter())."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

CHUNK_SECONDS = 0.25


def split_frames(data: bytes, seconds: float, chunk_seconds: float = CHUNK_SECONDS) -> list[bytes]:
    """Encoded bytes cut into pieces of about `chunk_seconds` of audio each (an even share of the bytes)."""
    per_chunk = max(1, int(len(data) * chunk_seconds / max(seconds, chunk_seconds)))
    return [data[i : i + per_chunk] for i in range(0, len(data), per_chunk)]


def is_answer(message: dict) -> bool:
    """A final answer (success with data.final true, or without `final`: one-shot mode) or an error."""
    status = message.get("status")
    return status == "error" or (status == "success" and (message.get("data") or {}).get("final", True))


@dataclass
class Exchange:
    """What happened on one connection; every time is time.perf_counter()."""

    messages: list[tuple[float, dict]] = field(default_factory=list)
    opened: float | None = None  # connected
    sent: list[float] = field(default_factory=list)  # each chunk's send
    stop_sent: float | None = None
    connect_error: str | None = None  # the handshake failed (then nothing else is set)
    http_status: int | None = None  # the status the upgrade was refused with, if it was
    timed_out: bool = False  # the server neither closed nor answered within answer_timeout after the audio
    close_code: int | None = None
    local_port: int | None = None

    @property
    def answer(self) -> tuple[float, dict] | None:
        """The first final answer or error, with its time."""
        return next(((at, m) for at, m in self.messages if is_answer(m)), None)

    def partials(self) -> list[tuple[float, dict]]:
        return [(at, m) for at, m in self.messages if m.get("status") == "partial"]


async def stream(url: str, chunks: list[bytes], *, pace: float = CHUNK_SECONDS, send_at_chunk_end: bool = False,
                 wait_after_last: bool = False, stop: bool = True, until_answer: bool = False,
                 answer_timeout: float = 60.0, **connect_options) -> Exchange:
    """Open `url` and send `chunks`, chunk i at i x pace after opening (send_at_chunk_end: at (i+1) x pace,
    when its audio has been "recorded", as MediaRecorder does; wait_after_last: the pause after the last
    chunk too), then {"type": "stop"} when `stop`. Sending ends early when the server closes, or, with
    `until_answer`, once a final answer or an error came. Then read until the server closes, at most
    `answer_timeout` seconds. `connect_options` go to websockets' connect (default: max_size=None,
    open_timeout=10, close_timeout=5)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    out = Exchange()
    options = {"max_size": None, "open_timeout": 10, "close_timeout": 5, **connect_options}
    try:
        ws = await connect(url, **options)
    except InvalidStatus as exc:
        out.http_status = exc.response.status_code
        out.connect_error = f"HTTP {exc.response.status_code}"
        return out
    except Exception as exc:  # noqa: BLE001 (any handshake failure: refused, timeout, bad response)
        out.connect_error = f"{type(exc).__name__}: {exc}"[:200]
        return out
    out.opened = time.perf_counter()
    out.local_port = ws.local_address[1] if ws.local_address else None
    answered = asyncio.Event()

    async def reader() -> None:
        try:
            async for raw in ws:
                now = time.perf_counter()
                try:
                    message = json.loads(raw)
                except (TypeError, ValueError):
                    continue
                out.messages.append((now, message))
                if is_answer(message):
                    answered.set()
        except ConnectionClosed:
            pass

    reading = asyncio.create_task(reader())

    def done() -> bool:
        return reading.done() or (until_answer and answered.is_set())

    async def pause_until(moment: float) -> None:
        delay = moment - time.perf_counter()
        if delay <= 0:
            return
        if until_answer:
            try:
                await asyncio.wait_for(answered.wait(), delay)
            except asyncio.TimeoutError:
                pass
        else:
            await asyncio.sleep(delay)

    try:
        try:
            for index, chunk in enumerate(chunks):
                if send_at_chunk_end:
                    await pause_until(out.opened + (index + 1) * pace)
                if done():
                    break
                await ws.send(chunk)
                out.sent.append(time.perf_counter())
                if not send_at_chunk_end and (wait_after_last or index < len(chunks) - 1):
                    await pause_until(out.opened + (index + 1) * pace)
            if stop and not done():
                await ws.send(json.dumps({"type": "stop"}))
                out.stop_sent = time.perf_counter()
        except (ConnectionClosed, OSError):
            pass  # the server answered (or refused) and closed: read what it sent
        try:
            await asyncio.wait_for(asyncio.shield(reading), answer_timeout)
        except asyncio.TimeoutError:
            out.timed_out = True
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        try:
            await asyncio.wait_for(ws.close(), options["close_timeout"] + 1)
        except Exception:  # noqa: BLE001
            pass
    out.close_code = ws.close_code
    return out
