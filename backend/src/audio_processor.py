"""AudioProcessor: decodes audio, finds the speech, and runs the engine on it, a few inferences at a time,
off the event loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import numpy as np

from . import audio as audio_codec
from .audio import SAMPLE_RATE
from .confidence import ConfidenceRule, Strictness
from .engines.base import Detection, Engine, TranscribeOptions, Transcript
from .inference_slots import Priority, Slots
from .protocol import Identification
from .timeline import Timeline, TimelineOptions
from .timeline import timeline as build_timeline
from .vad import Speech, VadStream, VoiceActivityDetector

if TYPE_CHECKING:
    from .config.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Busy(RuntimeError):
    """Too many detections are waiting already: answer "busy" now rather than pile up."""


@dataclass(frozen=True)
class Transcription:
    """What `AudioProcessor.transcription` found: the language (as a detection would answer it), the
    transcript, and the seconds both took."""

    identification: Identification
    transcript: Transcript
    seconds: float


class AudioProcessor:
    def __init__(
        self,
        engine: Engine,
        max_concurrent_calls: int = 3,
        *,
        vad: VoiceActivityDetector | None = None,
        min_speech_seconds: float = 0.5,
        gc_after_processing: bool = True,
        max_queued: int | None = None,
        on_queue_change: Callable[[int], None] | None = None,
        timeline_options: TimelineOptions | None = None,
        confidence: ConfidenceRule | None = None,
    ) -> None:
        self.engine = engine
        self.confidence = confidence or ConfidenceRule.default()
        self.max_concurrent_calls = max_concurrent_calls
        self.vad = vad or VoiceActivityDetector()
        self.min_speech_seconds = min_speech_seconds
        self.gc_after_processing = gc_after_processing
        self.max_queued = max_queued
        self.queue_depth = 0  # detections waiting for a slot
        self._on_queue_change = on_queue_change
        self._slots = Slots(max_concurrent_calls)
        self.timeline_options = timeline_options or TimelineOptions()
        # The timeline needs the short pauses between turns: a VAD of its own with a shorter minimum silence.
        self.timeline_vad = VoiceActivityDetector(
            threshold=self.vad.options.threshold, min_silence_ms=self.timeline_options.min_silence_ms
        )

    @classmethod
    def from_settings(cls, settings: "Settings", **overrides: Any) -> "AudioProcessor":
        """The processor the settings describe (engine not loaded yet); keyword arguments override."""
        from .engines import create_engine

        engine = create_engine(settings)
        options: dict[str, Any] = {
            "max_concurrent_calls": max(settings.MAX_CONCURRENT_CALLS, getattr(engine, "min_slots", 1)),
            "vad": VoiceActivityDetector(threshold=settings.VAD_THRESHOLD),
            "min_speech_seconds": settings.MIN_SPEECH_SECONDS,
            "gc_after_processing": settings.GC_AFTER_PROCESSING,
            "max_queued": settings.MAX_QUEUED_DETECTIONS,
            "timeline_options": TimelineOptions.from_settings(settings),
            "confidence": ConfidenceRule.from_settings(settings),
        }
        return cls(engine, **(options | overrides))

    def load(self) -> None:
        self.engine.load()
        self.vad.find_speech(np.zeros(SAMPLE_RATE, dtype=np.float32))  # load the VAD model now, not mid-request

    def close(self) -> None:
        self.engine.close()

    def engine_info(self) -> dict[str, object]:
        """What the start-up log and /metrics say: the engine, and for the local one its model, device,
        compute type, CPU backend, threads and workers; the inference slots; the honesty rule's calibration."""
        describe = getattr(self.engine, "info", None)
        return {"name": self.engine.name, **(describe() if describe else {}),
                "inference_slots": self.max_concurrent_calls, "calibration": self.confidence.calibration,
                "calibrated": self.confidence.calibrated}

    async def decode(self, data: bytes, connection_id: str, *, final: bool = True) -> np.ndarray:
        """Decode a whole compressed stream (see audio.decode) in a worker thread."""
        started = time.perf_counter()
        samples = await asyncio.to_thread(audio_codec.decode, data, final=final)
        logger.debug(
            "[%s] Decoded %d bytes to %.2fs of audio in %.3fs",
            connection_id, len(data), len(samples) / SAMPLE_RATE, time.perf_counter() - started,
        )
        return samples

    async def process_audio(
        self,
        samples: np.ndarray,
        connection_id: str,
        languages: list[str] | None = None,
        speech: Speech | None = None,
        *,
        wait: bool = True,
        strictness: Strictness | None = None,
        priority: Priority = Priority.REQUEST,
        window_seconds: float | None = None,
    ) -> Identification:
        """Identify the language spoken in 16 kHz mono float32 samples, in a worker thread, at most
        `max_concurrent_calls` at a time (see `identify`), waiting ones served by `priority` (see `_run`).
        Raises Busy for a REQUEST when `max_queued` calls are waiting already, or at once when `wait` is
        False and no slot is free (partial answers, which must not delay the final answers behind them)."""
        result = await self._run(self.identify, samples, languages, speech, strictness, window_seconds,
                                 wait=wait, priority=priority)
        if result.reason in ("no_speech", "too_short"):
            logger.info(
                "[%s] %s: %.2fs of speech in %.2fs of audio",
                connection_id, result.reason, result.extra["speech_duration"], result.audio_duration,
            )
        else:
            logger.info(
                "[%s] Detected %s (%s%s) in %.3fs on %.2fs of speech",
                connection_id, result.language or result.reason, _fmt(result.probabilities),
                ", confident" if result.confident else "", result.processing_time, result.extra["speech_duration"],
            )
        return result

    async def process_file(
        self, samples: np.ndarray, connection_id: str, languages: list[str] | None = None, *,
        strictness: Strictness | None = None,
    ) -> Identification:
        """`process_audio` for a whole file (POST /detect), the same answer sooner when the file is long:
        the detection looks at the first `engine.detection_seconds` from the speech's start, so it starts
        as soon as the VAD has found them, while the VAD goes on over the rest of the file (for
        `speech_duration`) on the other core. Should the whole file's speech start elsewhere or end
        sooner than the head's (the VAD's rule can move a segment's end by its padding), the detection
        runs again on the file's own speech."""
        seconds = self.engine.detection_seconds
        if seconds is None or len(samples) < (seconds + _HEAD_STEP_SECONDS) * SAMPLE_RATE:
            return await self.process_audio(samples, connection_id, languages, strictness=strictness)
        need = int(seconds * SAMPLE_RATE)
        vad = self.vad.stream()
        head = await asyncio.to_thread(_find_head, vad, samples, need)
        if head is None:  # the VAD went through the whole file before it found enough speech
            return await self.process_audio(samples, connection_id, languages, vad.speech(), strictness=strictness)
        detection = asyncio.ensure_future(
            self.process_audio(samples, connection_id, languages, head, strictness=strictness))
        try:
            speech = await asyncio.to_thread(_finish, vad, samples)
        except BaseException:
            detection.cancel()
            raise
        result = await detection
        start, end = head.segments[0]
        if speech.segments[0][0] != start or speech.segments[-1][1] < end:
            logger.info("[%s] The file's speech differs from its head's: detecting again", connection_id)
            return await self.process_audio(samples, connection_id, languages, speech, strictness=strictness)
        return replace(result, extra={**result.extra, "speech_duration": round(speech.seconds, 3)})

    async def timeline(
        self, samples: np.ndarray, connection_id: str, languages: list[str] | None = None
    ) -> Timeline:
        """The language timeline of the samples (see src/timeline.py), in a worker thread holding one
        inference slot for all its windows; Busy as for `process_audio`."""
        result = await self._run(self.identify_timeline, samples, languages)
        logger.info(
            "[%s] Timeline of %.2fs of audio: %d segment(s) from %d window(s) in %.3fs (%s)",
            connection_id, len(samples) / SAMPLE_RATE, len(result.segments), len(result.windows),
            result.processing_time, " ".join(seg.language or "?" for seg in result.segments) or "no speech",
        )
        return result

    def identify_timeline(self, samples: np.ndarray, languages: list[str] | None = None) -> Timeline:
        """Blocking: the language timeline (the command line and the evaluation script call this)."""
        try:
            return build_timeline(samples, self._calibrated, self.timeline_vad, self.timeline_options, languages)
        finally:
            if self.gc_after_processing:
                gc.collect()

    def _calibrated(self, audio: np.ndarray, languages: list[str] | None) -> list[tuple[str, float | None]]:
        return self.confidence.calibrate(self.engine.detect(audio, languages).probabilities)

    async def transcribe(self, samples: np.ndarray, connection_id: str, options: TranscribeOptions,
                         priority: Priority = Priority.REQUEST) -> Transcription:
        """Transcribe 16 kHz mono float32 samples in a worker thread, under the same slots and queue limit
        as detections (Busy for a REQUEST when `max_queued` calls are waiting already). See `transcription`."""
        result = await self._run(self.transcription, samples, options, priority=priority)
        logger.info(
            "[%s] Transcribed %.2fs of audio in %.3fs, in %s (detected: %s), %d segments",
            connection_id, result.identification.audio_duration, result.seconds, result.transcript.language,
            _fmt(result.identification.probabilities), len(result.transcript.segments),
        )
        return result

    def transcription(self, samples: np.ndarray, options: TranscribeOptions) -> Transcription:
        """Blocking: the language detected (as `identify` does, among `options.languages` when given) and
        the transcript, in `options.language` when given, else in the detected language. Without enough speech: an empty transcript, no engine
        call. An engine that names the language while transcribing is asked once, not twice."""
        started = time.perf_counter()
        speech = self.vad.find_speech(samples)
        if speech.seconds >= self.min_speech_seconds and self.engine.names_language_when_transcribing and not options.language:
            transcript = self.engine.transcribe(samples, options)
            raw = transcript.detection.probabilities if transcript.detection else []
            probabilities, verdict = self.confidence.apply(raw)
            identification = Identification(
                probabilities, time.perf_counter() - started, len(samples) / SAMPLE_RATE, self.engine.name,
                reason=verdict.reason, extra={"speech_duration": round(speech.seconds, 3)},
                confident=verdict.confident, raw_probabilities=raw, likely=list(verdict.likely),
            )
        else:
            identification = self.identify(samples, options.languages, speech=speech)
            if identification.reason in ("no_speech", "too_short"):
                transcript = Transcript(text="", language=options.language)
            else:
                language = options.language or identification.top_language  # named, or only the likeliest
                transcript = self.engine.transcribe(samples, replace(options, language=language))
        return Transcription(identification, transcript, time.perf_counter() - started)

    async def _run(self, work: Callable[..., T], *args: Any, wait: bool = True,
                   priority: Priority = Priority.REQUEST) -> T:
        """Run `work(*args)` in a worker thread once an inference slot is free (at most
        `max_concurrent_calls` at a time). When none is, callers wait: the answers admitted streams are
        owed (Priority.FINAL), then new requests, each in the order they came. Only a REQUEST is refused,
        with Busy when `max_queued` calls are waiting already (streams are refused at the door instead:
        stream_capacity.py). With `wait` False (a partial answer) Busy comes at once when no slot is free
        or anyone waits for one."""
        if not wait:
            if not self._slots.try_take():
                raise Busy("no inference slot free for a partial answer")
        else:
            if (priority == Priority.REQUEST and self._slots.saturated and self.max_queued is not None
                    and self.queue_depth >= self.max_queued):
                raise Busy(f"the server is busy ({self.queue_depth} detections waiting): try again later")
            self._queue_changed(+1)
            try:
                await self._slots.take(priority)
            finally:
                self._queue_changed(-1)
        future = asyncio.ensure_future(asyncio.to_thread(work, *args))
        # The slot is freed when the thread is done, even if the caller was cancelled meanwhile (client
        # gone): the thread cannot be interrupted, its result is then discarded.
        future.add_done_callback(self._release)
        return await asyncio.shield(future)

    @property
    def saturated(self) -> bool:
        """Every inference slot is taken, or someone waits for one."""
        return self._slots.saturated

    @property
    def finals_waiting(self) -> int:
        """Answers owed to admitted streams that wait for an inference slot."""
        return self._slots.waiting(Priority.FINAL)

    def _release(self, work: asyncio.Future) -> None:
        self._slots.release()
        if not work.cancelled():
            work.exception()  # retrieved, so a discarded failure is not reported as "never retrieved"

    def _queue_changed(self, delta: int) -> None:
        self.queue_depth += delta
        if self._on_queue_change is not None:
            self._on_queue_change(self.queue_depth)

    def identify(
        self, samples: np.ndarray, languages: list[str] | None = None, speech: Speech | None = None,
        strictness: Strictness | None = None, window_seconds: float | None = None,
    ) -> Identification:
        """Blocking: find the speech (unless given), run the engine on it alone, and apply the honesty
        rule (src/confidence.py: calibrated probabilities, `confident`, `reason: "uncertain"`, the likely
        set), with the request's own `strictness` when given (min_confidence, fallback_language).

        With `window_seconds` (a stream's first partial: StreamTracker.window) the engine pads to that
        window instead of its own, and the answer is never confident: a first impression.

        Without enough speech the result has no probabilities and a `reason` ("no_speech", "too_short"):
        non-speech is never named. Every surface (the WebSocket modes, POST /detect, the command line,
        the evaluation scripts) goes through here, so every answer carries the same verdict.
        """
        without = self._without_speech(samples, speech)
        if isinstance(without, Identification):
            return without
        speech = without
        started = time.perf_counter()
        try:
            detection = self.engine.detect(speech.audio(samples), languages, window_seconds=window_seconds)
        finally:
            elapsed = time.perf_counter() - started
            if self.gc_after_processing:
                gc.collect()
        rule = self.confidence.for_request(strictness)
        if window_seconds is not None:
            rule = replace(rule, final_probability=math.inf)  # a first impression is never confident
        return self._judged(detection, rule, samples, speech, elapsed)

    def identify_batch(
        self, clips: list[tuple[np.ndarray, Speech | None]], languages: list[str] | None = None,
        strictness: Strictness | None = None,
    ) -> list[Identification]:
        """Blocking: `identify` for several clips (samples, and their speech when found already), the same
        answers, the engine's detections of those with enough speech in one batched call when the engine
        has one (`detect_batch`: encoder windows of the same length share a CTranslate2 call). The corpus
        mode calls this; each answer's processing_time is its share of the batch's."""
        answers: list[Identification | None] = []
        pending: list[tuple[int, np.ndarray, Speech]] = []
        for samples, speech in clips:
            without = self._without_speech(samples, speech)
            answers.append(without if isinstance(without, Identification) else None)
            if not isinstance(without, Identification):
                pending.append((len(answers) - 1, samples, without))
        if pending:
            audios = [speech.audio(samples) for _, samples, speech in pending]
            started = time.perf_counter()
            batch = getattr(self.engine, "detect_batch", None)
            if batch is not None:
                detections = batch(audios, languages)
            else:
                detections = [self.engine.detect(audio, languages) for audio in audios]
            share = (time.perf_counter() - started) / len(pending)
            rule = self.confidence.for_request(strictness)
            for (index, samples, speech), detection in zip(pending, detections):
                answers[index] = self._judged(detection, rule, samples, speech, share)
        return [answer for answer in answers if answer is not None]

    def _without_speech(self, samples: np.ndarray, speech: Speech | None) -> Speech | Identification:
        """The speech in `samples` (found unless given), or the answer without a language when there is
        not enough of it (reason no_speech or too_short: non-speech is never named)."""
        if speech is None:
            speech = self.vad.find_speech(samples)
        if speech.seconds < self.min_speech_seconds:
            reason = "no_speech" if speech.seconds == 0 else "too_short"
            return Identification([], 0.0, len(samples) / SAMPLE_RATE, self.engine.name, reason=reason,
                                  extra={"speech_duration": round(speech.seconds, 3)})
        return speech

    def _judged(self, detection: Detection, rule: ConfidenceRule, samples: np.ndarray, speech: Speech,
                elapsed: float) -> Identification:
        """The engine's detection under the honesty rule, as an answer."""
        probabilities, verdict = rule.apply(detection.probabilities)
        return Identification(
            probabilities=probabilities,
            processing_time=elapsed,
            audio_duration=len(samples) / SAMPLE_RATE,
            engine=self.engine.name,
            reason=verdict.reason,
            extra={"speech_duration": round(speech.seconds, 3)},
            confident=verdict.confident,
            raw_probabilities=detection.probabilities,
            likely=list(verdict.likely),
            fallback=verdict.fallback,
        )


_HEAD_STEP_SECONDS = 2.0  # audio the VAD reads between two looks for the head of a file's speech


def _find_head(vad: VadStream, samples: np.ndarray, need: int) -> Speech | None:
    """Push `samples` into `vad` a step at a time until its speech spans `need` samples (and the VAD's
    padding) from the first speech on: then the head, the first `need` samples of that span; None when the
    file ends first (everything pushed)."""
    step = int(_HEAD_STEP_SECONDS * SAMPLE_RATE)
    for at in range(0, len(samples), step):
        vad.push(samples[at : at + step])
        if vad.samples >= len(samples):
            return None
        speech = vad.speech()
        if speech.segments and speech.segments[-1][1] >= speech.segments[0][0] + need + speech.pad:
            start = speech.segments[0][0]
            return Speech([(start, start + need)], speech.pad)
    return None


def _finish(vad: VadStream, samples: np.ndarray) -> Speech:
    """The speech of the whole file, once `vad` has read the rest of it."""
    vad.push(samples[vad.samples :])
    return vad.speech()


def _fmt(probabilities: list[tuple[str, float | None]]) -> str:
    if not probabilities:
        return "no candidate"
    code, prob = probabilities[0]
    return f"{code} p={prob:.3f}" if prob is not None else f"{code}, no probability"
