"""Mode `once` (the original protocol): buffer binary frames of audio until MIN_AUDIO_SIZE bytes (20 KB),
identify the language, send one answer, close.

The answer also comes, on the audio received so far, when the client sends `{"type": "stop"}`, when the
server shuts down, or after a quiet spell: a client that sent some audio and then nothing for
`quiet_seconds` (ONCE_QUIET_SECONDS, 2 s) has sent all it had (a 4.7 s clip of webm at 32 kbps is
17.9 KB, under 20 KB), so it is answered rather than left waiting for the idle timeout. Audio that does
not decode yet (an ordinary mp4 file's start: its index comes last) is not answered by a quiet spell; it
waits for more, or for stop, within the idle limit.
"""

from __future__ import annotations

import logging
import time

from .audio import AudioIncomplete
from .protocol import ClientMessage
from .session import QUIET, Session

logger = logging.getLogger(__name__)


class OnceSession(Session):
    def __init__(self, *args, min_audio_size: int = 20000, quiet_seconds: float = 2.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.min_audio_size = min_audio_size
        self.quiet_seconds = quiet_seconds

    async def run(self, first: bytes | ClientMessage | None) -> None:
        quiet_ok = True  # off after a quiet spell found audio that does not decode yet, until more arrives
        while True:
            if first is not None:
                message, first = first, None
            else:
                waiting_with_audio = self.stream.bytes_received > 0 and self.quiet_seconds > 0 and quiet_ok
                message = await self.receive(quiet=self.quiet_seconds if waiting_with_audio else None)
            if isinstance(message, bytes):
                if not message:
                    continue
                self.feed(message)
                quiet_ok = True
                if self.stream.bytes_received < self.min_audio_size:
                    continue
                final = False
            elif message is QUIET:
                logger.info(
                    "[%s] Nothing more for %gs after %d bytes: answering on them",
                    self.connection_id, self.quiet_seconds, self.stream.bytes_received,
                )
                final = False  # a stream that does not decode yet waits on (for the idle limit)
            else:
                self.check_end_of_audio(message)
                final = True
            asked_at = time.perf_counter()
            try:
                samples = await self.samples(final=final)
            except AudioIncomplete as exc:
                logger.debug("[%s] %s; buffering more", self.connection_id, exc)
                quiet_ok = quiet_ok and message is not QUIET
                continue
            result = await self.identify(samples, final=True)
            data = self.data(result, final=True)
            if message is QUIET:
                data["ended_by"] = "quiet"
            await self.send_final(data, asked_at)
            return
