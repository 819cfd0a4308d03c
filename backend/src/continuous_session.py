"""Mode `continuous`: a language timeline live. The connection does not close after one answer:

- each utterance, as ended by stream mode's pause rule (streaming.py: a pause of `end_silence_seconds`
  after enough speech), gets `{"status": "segment", "data": {...}}`: its language (the honesty rule's
  verdict, as any answer) and `start`/`end`, seconds of speech in the stream; an utterance longer than
  `max_seconds` is cut there;
- partial answers (`{"status": "partial", ...}`, with `start`/`end` too) while an utterance is spoken;
- the connection ends with a summary (`{"status": "success", "data": {"final": true, "segments": [...],
  ...}}`) on the client's stop, the server's shutdown, `MAX_CALL_SECONDS` of audio (`max_duration`;
  4 hours by default: a whole call) or the idle timeout (`idle`). Bytes are bounded per second of audio
  (`MAX_CALL_BYTES_PER_SECOND` on average, beyond `MAX_CALL_BURST_BYTES`): a flood ends with close 1009.

Each utterance is judged on its own audio only (from the end of the previous one), so what was said
before in another language does not sway it. The audio before the utterance in progress is released
once answered (its segments stay, as results): a call holds a few seconds of audio whatever its length,
and each step's work (decoding the new bytes, the VAD over the new samples with its state carried:
vad.VadStream, a bounded detection window) does not grow with it.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from . import protocol
from .audio import SAMPLE_RATE, AudioDecodeError, AudioIncomplete, AudioTooLong
from .languages import language_name
from .protocol import ClientMessage, Identification
from .session import CLOSE_TOO_BIG, SHUTDOWN, ClientError, ListeningSession
from .streaming import StreamPolicy, StreamTracker, pause_seconds
from .vad import Speech

logger = logging.getLogger(__name__)

# Decode and look for speech again once about this much new audio has arrived.
ANALYSIS_STEP_SECONDS = 0.25
# Silence kept before an utterance (the VAD's own padding needs a little audio before the speech).
LEAD_SECONDS = 0.3


class ContinuousSession(ListeningSession):
    def __init__(self, *args, policy: StreamPolicy | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy or StreamPolicy()
        self._wake = asyncio.Event()
        self._stop: str | None = None  # why the connection ends, once it does
        self._stop_at = 0.0
        self.segments: list[dict] = []
        self._vad = self.context.audio_processor.vad.stream()  # the new audio only, at each step

    def _speech(self, samples: np.ndarray, base: int, offset: int) -> Speech:
        """The speech from stream sample `offset` on (in a worker thread: the VAD runs over the new samples)."""
        self._vad.follow(samples, base)
        return self._vad.speech(offset)

    async def run(self, first: bytes | ClientMessage | None) -> None:
        try:
            await super().run(first)
        finally:
            self.context.metrics.audio_held(self.connection_id, None)  # the stream's audio is let go

    def _end(self, why: str) -> None:
        self._stop = why
        self._stop_at = time.perf_counter()
        self._wake.set()

    async def _receive_loop(self, first: bytes | ClientMessage | None) -> None:
        message = first
        while True:
            try:
                if message is None:
                    message = await self.receive()
            except ClientError as exc:
                if exc.kind == "idle" and self.stream.bytes_received:  # ends with the summary, like a stop
                    logger.info("[%s] Continuous stream ends: %s", self.connection_id, exc.message)
                    self._end("idle")
                    return
                raise
            if isinstance(message, bytes):
                if message and not self._take(message):
                    return
                message = None
                continue
            self.check_end_of_audio(message)
            self._end("shutdown" if message is SHUTDOWN else "stop")
            return

    def _take(self, data: bytes) -> bool:
        """Feed audio; at the call's length limit end with the summary and return False. More bytes than
        the audio decoded so far allows (per second, plus the burst allowance) is a ClientError (1009)."""
        limits = self.context.limits
        decoded = self.stream.decoded_samples / SAMPLE_RATE
        allowed = limits.call_burst_bytes + limits.call_bytes_per_second * decoded
        if self.stream.bytes_received + len(data) > allowed:
            raise ClientError(
                f"more than {limits.call_bytes_per_second} bytes per second of audio (beyond an allowance of "
                f"{limits.call_burst_bytes} bytes): {self.stream.bytes_received + len(data)} bytes for "
                f"{decoded:.1f} s of audio decoded", CLOSE_TOO_BIG, "too_large", True,
            )
        try:
            self.stream.feed(data)
        except AudioTooLong:
            logger.info("[%s] Continuous stream ends: %g s of audio", self.connection_id, limits.max_call_seconds)
            self._end("max_duration")
            return False
        except AudioDecodeError as exc:
            raise ClientError(str(exc), kind="bad_audio") from None
        if self.stream.mode == "whole":  # its cost and memory would grow with the call
            raise ClientError(
                "continuous mode needs audio that can be decoded as it arrives (webm, ogg, wav, mp3, flac, an "
                "mp4 whose index comes first, or raw PCM): this stream can only be decoded whole",
                kind="bad_audio",
            )
        self._wake.set()
        return True

    async def _decoded(self, *, final: bool) -> tuple[np.ndarray, bool]:
        """The audio held (from `stream.base`), cut at MAX_CALL_SECONDS of the whole stream (and True when
        it was cut)."""
        try:
            samples = await asyncio.to_thread(self.stream.samples, final=final)
        except AudioTooLong:
            samples = self.stream.kept()  # decoding stopped at MAX_AUDIO_SECONDS: answer on those
        except AudioIncomplete:
            if final:
                raise ClientError("the audio ended before it could be decoded", kind="bad_audio") from None
            raise
        except AudioDecodeError as exc:
            raise ClientError(str(exc), kind="bad_audio") from None
        limit = int(self.context.limits.max_call_seconds * SAMPLE_RATE) - self.stream.base
        return samples[:limit], len(samples) >= limit

    async def _analysis_loop(self) -> None:
        policy = self.policy
        tracker = StreamTracker(policy)
        offset = 0  # sample (from the stream's start) where the current utterance's audio starts
        last: Identification | None = None
        while True:
            await self._wake.wait()
            self._wake.clear()
            ended_by = self._stop
            if ended_by is None and self.stream.new_seconds() < ANALYSIS_STEP_SECONDS:
                continue
            asked_at = self._stop_at if ended_by else time.perf_counter()
            step_started = time.perf_counter()
            try:
                samples, full = await self._decoded(final=ended_by is not None)
            except AudioIncomplete:
                continue
            if full and ended_by is None:
                ended_by = "max_duration"
            base = self.stream.base  # samples[0] is this sample of the stream
            end = base + len(samples)
            tail = samples[offset - base:]
            speech = await asyncio.to_thread(self._speech, samples, base, offset)
            self.context.metrics.analysis_step(time.perf_counter() - step_started)
            # Audio that came faster than real time may hold whole utterances already: each ends as the
            # pause rule would have ended it live.
            while (ended := earlier_utterance(tracker, speech)) is not None:
                head, cut = ended
                await self._utterance(tail[:cut], head, offset, tracker, last, "end_of_speech")
                offset += cut
                tail = tail[cut:]
                rest = speech.segments[len(head.segments):]
                speech = Speech([(start - cut, end - cut) for start, end in rest], speech.pad)
                tracker, last = StreamTracker(policy), None
            ending = tracker.ending(speech, len(tail))
            if len(tail) >= policy.max_seconds * SAMPLE_RATE and speech.segments:
                ending = "max_duration"  # a long utterance is cut here
            if ending == "no_speech" or (not speech.segments and len(tail) > SAMPLE_RATE):
                # Only silence or noise so far: look at what comes next only.
                offset = max(offset, end - int(LEAD_SECONDS * SAMPLE_RATE))
                tracker, last = StreamTracker(policy), None
            elif ending is not None or (ended_by is not None and speech.segments):
                await self._utterance(tail, speech, offset, tracker, last, ending or ended_by)
                # The next utterance starts after this one's last speech (its pause leads it in).
                offset += speech.segments[-1][1] if ending == "end_of_speech" else len(tail)
                tracker, last = StreamTracker(policy), None
            elif tracker.due(speech.seconds, pause := pause_seconds(speech, len(tail))):
                partial = await self.identify(tail, speech, final=False, likely_final=pause > 0,
                                              window_seconds=tracker.window(pause))
                if partial is not None:  # None: busy, this partial answer is skipped rather than queued
                    last = partial
                    tracker.update(partial, speech.seconds)
                    data = self.data(partial, final=False)
                    data.update(self._times(speech, offset))
                    await self.websocket.send_json(protocol.partial(data, self.connection_id))
                    self._wake.set()  # audio that arrived during the detection may already be due
            if ended_by is not None:
                await self._summary(ended_by, end, asked_at)
                return
            self.stream.release(offset)  # what came before the utterance in progress is answered
            self._vad.release(offset)
            self.context.metrics.audio_held(self.connection_id, (end - max(offset, base)) / SAMPLE_RATE)

    async def _utterance(self, tail: np.ndarray, speech: Speech, offset: int, tracker: StreamTracker,
                         last: Identification | None, ended_by: str) -> None:
        """Send the segment of the utterance that just ended (none for a blip under MIN_SPEECH_SECONDS)."""
        if tracker.no_language_reason(speech.seconds) is not None:
            logger.debug("[%s] %.2fs of speech: no segment", self.connection_id, speech.seconds)
            return
        result = last
        if result is None or speech.seconds - tracker.detected_speech > 0.05:
            result = await self.identify(tail, speech, final=True)
        assert result is not None
        data = self.data(result, final=True)
        data.update(self._times(speech, offset))
        data["index"] = len(self.segments)
        data["ended_by"] = ended_by
        self.segments.append(data)
        await self.websocket.send_json(protocol.segment(data, self.connection_id))
        logger.info(
            "[%s] Segment %d: %.2f-%.2f s %s%s", self.connection_id, data["index"], data["start"], data["end"],
            data["language"] or data.get("reason"), " (confident)" if data.get("confident") else "",
        )

    @staticmethod
    def _times(speech: Speech, offset: int) -> dict:
        if not speech.segments:
            return {"start": round(offset / SAMPLE_RATE, 2), "end": round(offset / SAMPLE_RATE, 2)}
        return {"start": round((offset + speech.segments[0][0]) / SAMPLE_RATE, 2),
                "end": round((offset + speech.segments[-1][1]) / SAMPLE_RATE, 2)}

    async def _summary(self, ended_by: str, samples: int, asked_at: float) -> None:
        await self.send_final(summary(self.segments, ended_by, samples / SAMPLE_RATE, self.connection_id,
                                      self.options.languages), asked_at)


def earlier_utterance(tracker: StreamTracker, speech: Speech) -> tuple[Speech, int] | None:
    """The first utterance that the pause rule ends before the last speech segment begins: its speech
    and the sample where it ends; None if there is none."""
    for index in range(len(speech.segments) - 1):
        head = Speech(speech.segments[: index + 1], speech.pad)
        if tracker.ending(head, speech.segments[index + 1][0]) == "end_of_speech":
            return head, speech.segments[index][1]
    return None


def summary(segments: list[dict], ended_by: str, audio_duration: float, connection_id: str,
            candidates: list[str] | None = None) -> dict:
    """The final answer of a continuous stream: its segments, and the language spoken longest."""
    seconds: dict[str, float] = {}
    for segment in segments:
        if segment["language"]:
            seconds[segment["language"]] = seconds.get(segment["language"], 0.0) + segment["end"] - segment["start"]
    ranked = sorted(seconds.items(), key=lambda item: -item[1])
    main = ranked[0][0] if ranked else None
    data = {
        "mode": "continuous",
        "final": True,
        "ended_by": ended_by,
        "language": main,
        "language_name": language_name(main) if main else None,
        "confidence": None,
        "confident": False,
        "languages": [{"language": code, "language_name": language_name(code), "seconds": round(value, 2)}
                      for code, value in ranked],
        "segments": [
            {key: segment.get(key) for key in
             ("index", "start", "end", "language", "language_name", "confidence", "confident", "likely", "reason")}
            for segment in segments
        ],
        "audio_duration": round(audio_duration, 3),
        "connection_id": connection_id,
    }
    if main is None:
        data["reason"] = "uncertain" if segments else "no_speech"
    if candidates:
        data["candidates"] = candidates
    return data
