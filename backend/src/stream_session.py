"""Mode `stream`: partial answers while speech arrives, then a final one, by the rule in streaming.py
(confident early, end of speech, no speech, stop, shutdown, max duration).

Two tasks per connection: one receives frames and feeds the decoder, the other analyses the audio
whenever about ANALYSIS_STEP_SECONDS of it has arrived (decode the new bytes, run the VAD over the new
samples: vad.VadStream, maybe a detection).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from . import protocol
from .audio import SAMPLE_RATE, AudioIncomplete
from .protocol import ClientMessage, Identification
from .session import SHUTDOWN, ListeningSession
from .streaming import STREAM_VAD_MIN_SILENCE_MS, StreamPolicy, StreamTracker, pause_seconds
from .vad import Speech

logger = logging.getLogger(__name__)

# Decode and look for speech again once about this much new audio has arrived.
ANALYSIS_STEP_SECONDS = 0.25


class StreamSession(ListeningSession):
    def __init__(self, *args, policy: StreamPolicy | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy or StreamPolicy()
        self.tracker = StreamTracker(self.policy)
        self._wake = asyncio.Event()
        self._stop: str | None = None  # "stop" or "shutdown" once the client or the server asked
        self._stop_at = 0.0
        self._vad = self.context.audio_processor.vad.stream()  # the new audio only, at each step

    def _speech(self, samples) -> Speech:
        """The speech in the stream so far (in a worker thread: the VAD runs over the new samples)."""
        self._vad.follow(samples, 0)
        return self._vad.speech(0, STREAM_VAD_MIN_SILENCE_MS)

    async def _receive_loop(self, first: bytes | ClientMessage | None) -> None:
        message = first
        while True:
            if message is None:
                message = await self.receive()
            if isinstance(message, bytes):
                if message:
                    self.feed(message)
                    self._wake.set()
            else:
                self.check_end_of_audio(message)
                self._stop = "shutdown" if message is SHUTDOWN else "stop"
                self._stop_at = time.perf_counter()
                self._wake.set()
                return
            message = None

    async def _analysis_loop(self) -> None:
        policy, tracker = self.policy, self.tracker
        last: Identification | None = None
        analysed_at = 0.0
        while True:
            await self._wake.wait()
            self._wake.clear()
            ended_by = self._stop
            if ended_by is None:
                # Compressed silence is a few bytes a second, so the byte-rate estimate of new audio lags
                # in a pause: analyse also once most of a step of wall time has passed (real-time clients
                # send a chunk per step; waiting for a whole step would often skip to the next chunk).
                new = self.stream.new_seconds()
                recent = time.perf_counter() - analysed_at < 0.8 * ANALYSIS_STEP_SECONDS
                if new == 0 or (new < ANALYSIS_STEP_SECONDS and recent):
                    continue
            analysed_at = time.perf_counter()
            asked_at = self._stop_at if ended_by else time.perf_counter()
            try:
                samples = await self.samples(final=ended_by is not None)
            except AudioIncomplete:
                continue
            decoded_at = time.perf_counter()
            max_samples = int(policy.max_seconds * SAMPLE_RATE)
            if len(samples) >= max_samples:
                samples, ended_by = samples[:max_samples], ended_by or "max_duration"
            speech = await asyncio.to_thread(self._speech, samples)
            self.context.metrics.analysis_step(time.perf_counter() - analysed_at)
            ended_by = ended_by or tracker.ending(speech, len(samples))
            logger.debug(
                "[%s] %.2fs of audio, %.2fs of speech, pause %.2fs: decoded in %.0f ms, VAD %.0f ms%s",
                self.connection_id, len(samples) / SAMPLE_RATE, speech.seconds,
                pause_seconds(speech, len(samples)), 1000 * (decoded_at - analysed_at),
                1000 * (time.perf_counter() - decoded_at), f", ends: {ended_by}" if ended_by else "",
            )
            if ended_by is not None:
                result = last
                if result is None or speech.seconds - tracker.detected_speech > 0.05:
                    result = await self.identify(samples, speech, final=True)
                assert result is not None
                reason = tracker.no_language_reason(speech.seconds) or result.reason
                confident = result.confident and reason is None
                result = replace(result, reason=reason, confident=confident, audio_duration=len(samples) / SAMPLE_RATE)
                await self._finish(result, ended_by, asked_at)
                return
            pause = pause_seconds(speech, len(samples))
            if not tracker.due(speech.seconds, pause):
                continue
            partial = await self.identify(samples, speech, final=False, likely_final=pause > 0,
                                          window_seconds=tracker.window(pause))
            if partial is None:  # busy: skip this partial answer rather than queue it
                continue
            last = partial
            if tracker.update(last, speech.seconds):
                await self._finish(last, "confident", asked_at)
                return
            await self.websocket.send_json(protocol.partial(self.data(last, final=False), self.connection_id))
            self._wake.set()  # audio that arrived during the detection may already be due

    async def _finish(self, result: Identification, ended_by: str, asked_at: float) -> None:
        data = self.data(result, final=True)
        data["ended_by"] = ended_by
        await self.send_final(data, asked_at)
