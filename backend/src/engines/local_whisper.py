"""The local engine: Whisper on faster-whisper / CTranslate2, offline: the embedded Whisper base or any
model WHISPER_MODEL names (model_source.py), on the CPU or a CUDA GPU (device.py).

Stock `WhisperModel.detect_language` pads every input to a 30 s window, so a 3 s clip pays for a full
30 s encoder pass. CTranslate2's Whisper encoder accepts shorter inputs (whole seconds, multiples of 100
mel frames): this engine runs it on `max(audio, window_seconds)` rounded up to whole seconds, which is
several times faster. The features are levelled and padded as Whisper's own silence would pad them, and
an 8 s minimum window keeps the accuracy of short clips (see the benchmark).

A detection looks at most `max_seconds` (12 s) of audio, the first ones: the encoder's cost grows with its
window (a 30 s window costs ~4x an 8 s one), and more than 12 s of speech did not name the language better
on either evaluation set (docs/accuracy.md), so a detection costs about the same whatever the length.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from dataclasses import dataclass, field

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel

from ..audio import SAMPLE_RATE
from .base import Detection, EngineError, Segment, TranscribeOptions, Transcript, Word
from .device import place
from .model_files import MODEL_NAME
from .model_source import model_key, resolve

logger = logging.getLogger(__name__)

_HOP = 160  # samples per mel frame
_MAX_SECONDS = 30  # Whisper's positional embedding covers 30 s
# Peak of the log-mel features after levelling. Loud recordings (Common Voice's peak is ~1.36) confuse
# Whisper base's language head; levelling to 1.0 raised top-1 on the dev set from 75.8 % to 81.8 %
# (0.9-1.1 all helped; see docs/accuracy.md).
LEVEL_TARGET = 1.0


class LocalWhisperEngine:
    names_language_when_transcribing = False  # the caller detects first (this engine's detection is better)

    def __init__(
        self,
        model: str = "",
        cache_dir: str = "~/.cache/langshazam",
        compute_type: str = "",
        cpu_threads: int = 0,
        window_seconds: float = 8.0,
        max_seconds: float = 12.0,
        max_batch: int = 0,
        workers: int = 0,
        device: str = "auto",
        device_index: int = 0,
    ) -> None:
        self.model_name = model  # WHISPER_MODEL: empty (the embedded base), a directory, a size name or a repo id
        self.cache_dir = cache_dir
        # Inferences run side by side (CTranslate2's inter_threads), each on a share of the cores
        # (intra_threads): on 2 cores, 2 workers of 1 thread did 1.27-1.31x the detections per second of
        # 1 worker of 2 threads under load (scripts/benchmark_engine.py). On a GPU: one worker, batches.
        self._unplaceable: EngineError | None = None
        try:
            self.placement = place(device, device_index, compute_type, workers, cpu_threads, max_batch)
        except EngineError as exc:  # raised by load(), at start, where it can be reported
            self._unplaceable = exc
            self.placement = place("cpu", 0, compute_type, workers, cpu_threads, max_batch)
        self.compute_type = self.placement.compute_type
        self.workers = self.placement.workers
        self.cpu_threads = self.placement.cpu_threads
        self.max_batch = self.placement.max_batch
        self.window_seconds = window_seconds
        self.max_seconds = min(float(_MAX_SECONDS), max(max_seconds, window_seconds))
        self.model_key = model_key(model)  # the model's name for its calibration (calibration.py)
        label = os.path.basename(os.path.normpath(model)) if os.path.isdir(os.path.expanduser(model)) else model
        self.name = f"local:{label or MODEL_NAME}"
        self.loaded_path: str | None = None  # the model directory, once loaded
        self._model: WhisperModel | None = None
        self._batcher: _Batcher | None = None

    @property
    def min_slots(self) -> int:
        """Inference slots this engine needs to be kept busy: on a GPU every worker with a full batch (the
        CPU's workers are kept busy by MAX_CONCURRENT_CALLS as it is)."""
        return self.placement.slots if self.placement.device == "cuda" else 1

    def load(self) -> None:
        if self._unplaceable is not None:
            raise self._unplaceable
        path = resolve(self.model_name, self.cache_dir)
        self.loaded_path = path
        placement = self.placement
        self._model = WhisperModel(
            path, device=placement.device, device_index=placement.device_index, compute_type=self.compute_type,
            cpu_threads=self.cpu_threads, num_workers=self.workers,
        )
        if not self._model.model.is_multilingual:
            raise EngineError(f"the model in {path} is English-only: language identification needs a multilingual one")
        self._batcher = _Batcher(self._detect_batch, self.max_batch, self.workers)
        logger.info("Loaded %s on %s (%s, %d worker(s) of %d thread(s), batches of up to %d)", path,
                    self.device_label, self.compute_type, self.workers, self.cpu_threads, self.max_batch)

    @property
    def device_label(self) -> str:
        placement = self.placement
        if placement.device == "cuda":
            return f"cuda:{placement.device_index}"
        return f"cpu (int8 GEMM: {placement.cpu_backend})"

    def info(self) -> dict[str, object]:
        """What the start-up log and /metrics say about this engine."""
        return {"model": self.model_name or MODEL_NAME, "model_path": self.loaded_path, **self.placement.as_dict()}

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        self._batcher = None
        self._model = None

    @property
    def model(self) -> WhisperModel:
        if self._model is None:
            raise EngineError("the model is not loaded")
        return self._model

    @property
    def detection_seconds(self) -> float:
        """The most audio `detect` looks at (Engine.detection_seconds): `max_seconds`."""
        return self.max_seconds

    def features(self, audio: np.ndarray, window_seconds: float | None = None) -> np.ndarray:
        """Log-mel features for detection: the audio's own frames (the first `max_seconds` of them),
        levelled so that their peak is LEVEL_TARGET, then padded on the right with the value Whisper's own
        silence padding has (peak - 2.0) up to the window (whole seconds, at least `window_seconds`: the
        engine's own unless given)."""
        clip = audio[: int(self.max_seconds * SAMPLE_RATE)]
        if len(clip) < 1600:  # under 0.1 s: pad so that the STFT is defined
            clip = np.concatenate([clip, np.zeros(1600 - len(clip), dtype=np.float32)])
        frames = len(clip) // _HOP
        mel = self.model.feature_extractor(clip, padding=0)[:, :frames]
        window = self.window_seconds if window_seconds is None else window_seconds
        seconds = min(_MAX_SECONDS, max(math.ceil(window), math.ceil(len(clip) / SAMPLE_RATE)))
        out = np.full((mel.shape[0], seconds * 100), LEVEL_TARGET - 2.0, dtype=np.float32)
        out[:, :frames] = mel - mel.max() + LEVEL_TARGET
        return out

    def detect(self, audio: np.ndarray, languages: list[str] | None = None, *,
               window_seconds: float | None = None) -> Detection:
        if audio.size == 0:
            raise EngineError("no audio to detect")
        if self._batcher is None:
            raise EngineError("the model is not loaded")
        probabilities = self._batcher.run(self.features(audio, window_seconds))
        return Detection(probabilities=restrict(probabilities, languages))

    def detect_batch(self, clips: list[np.ndarray], languages: list[str] | None = None) -> list[Detection]:
        """`detect` for several clips at once, on the calling thread: clips whose features have the same
        window go through the encoder together (one CTranslate2 call each), as many as are given. The
        corpus mode calls this from the one inference thread of each of its processes."""
        if any(clip.size == 0 for clip in clips):
            raise EngineError("no audio to detect")
        features = [self.features(clip) for clip in clips]
        results: list[list[tuple[str, float]] | None] = [None] * len(clips)
        for shape in dict.fromkeys(f.shape for f in features):
            indexes = [i for i, f in enumerate(features) if f.shape == shape]
            for index, result in zip(indexes, self._detect_batch([features[i] for i in indexes])):
                results[index] = result
        return [Detection(probabilities=restrict(result or [], languages)) for result in results]

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions) -> Transcript:
        """faster-whisper's own transcription, with its Silero VAD skipping silence, in the given language
        (faster-whisper detects it on the first 30 s when none is given)."""
        if audio.size == 0:
            raise EngineError("no audio to transcribe")
        temperature = options.temperature
        chunking = options.chunking
        vad_parameters = None
        if chunking is not None:  # OpenAI's server_vad chunking, in faster-whisper's Silero VAD terms
            vad_parameters = {key: value for key, value in {
                "threshold": chunking.threshold, "speech_pad_ms": chunking.prefix_padding_ms,
                "min_silence_duration_ms": chunking.silence_duration_ms}.items() if value is not None}
        segments, info = self.model.transcribe(
            audio,
            language=options.language,
            initial_prompt=options.prompt or None,
            # OpenAI's temperature 0 (the default) means: raise it on failure; so does faster-whisper's default
            temperature=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0] if not temperature else temperature,
            # One sample per fallback temperature (openai-whisper's transcribe() default; faster-whisper's is
            # 5). Beam search at 0 is unchanged; the fallback mostly runs on audio in a misdetected language,
            # where 5 samples cost up to 50 s for a 5 s clip on 2 cores and 1 sample about half.
            best_of=1,
            vad_filter=True,
            vad_parameters=vad_parameters,
            word_timestamps=options.words,
            hotwords=" ".join(options.keywords) if options.keywords else None,
        )
        kept: list[Segment] = []
        words: list[Word] = []
        for index, segment in enumerate(segments):  # the generator does the work
            kept.append(
                Segment(
                    id=index, seek=segment.seek, start=round(segment.start, 3), end=round(segment.end, 3),
                    text=segment.text, tokens=list(segment.tokens), temperature=segment.temperature or 0.0,
                    avg_logprob=segment.avg_logprob, compression_ratio=segment.compression_ratio,
                    no_speech_prob=segment.no_speech_prob,
                )
            )
            words += [Word(w.word, round(w.start, 3), round(w.end, 3)) for w in segment.words or []]
            if options.on_segment is not None:
                options.on_segment(kept[-1])
        return Transcript(
            text="".join(segment.text for segment in kept).strip(),
            language=info.language,
            segments=kept,
            words=words if options.words else None,
        )

    def languages(self) -> list[str]:
        """The languages this model has a token for (faster-whisper lists large-v3's 100 for every model;
        Whisper base has 99: no "yue")."""
        tokenizer = self.model.hf_tokenizer
        return [code for code in self.model.supported_languages if tokenizer.token_to_id(f"<|{code}|>") is not None]

    def _detect_batch(self, batch: list[np.ndarray]) -> list[list[tuple[str, float]]]:
        """One encoder + language-token pass over features of the same length."""
        features = np.ascontiguousarray(np.stack(batch), dtype=np.float32)
        results = self.model.model.detect_language(ctranslate2.StorageView.from_array(features))
        return [[(token[2:-2], float(prob)) for token, prob in result] for result in results]


@dataclass(eq=False)
class _Job:
    features: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    result: list[tuple[str, float]] | None = None
    error: BaseException | None = None


class _Batcher:
    """Runs detections on `workers` threads (one per CTranslate2 worker); detections waiting together
    (several connections under load) go through the encoder as one batch, up to `max_batch` of the same
    window length. Measured on 2 cores (scripts/benchmark_engine.py), with one worker a batch of 2 costs
    ~15 % less CPU per detection; two workers of one batch each did more detections per second still."""

    def __init__(self, run_batch, max_batch: int, workers: int = 1) -> None:
        self._run_batch = run_batch
        self._max_batch = max(1, max_batch)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._threads = [threading.Thread(target=self._work, name=f"whisper-worker-{index}", daemon=True)
                         for index in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def run(self, features: np.ndarray) -> list[tuple[str, float]]:
        job = _Job(features)
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            # Jobs queued meanwhile with the same window join the batch; others go back for any worker.
            batch, others = [job], []
            while len(batch) < self._max_batch:
                try:
                    queued = self._queue.get_nowait()
                except queue.Empty:
                    break
                if queued is None:
                    self._queue.put(None)
                    break
                (batch if queued.features.shape == job.features.shape else others).append(queued)
            for other in others:
                self._queue.put(other)
            try:
                results = self._run_batch([job.features for job in batch])
                for job, result in zip(batch, results):
                    job.result = result
            except BaseException as exc:  # handed to the callers
                for job in batch:
                    job.error = exc
            for job in batch:
                job.done.set()


def restrict(probabilities: list[tuple[str, float]], languages: list[str] | None) -> list[tuple[str, float]]:
    """Probabilities renormalised over the candidate languages (all of them when None)."""
    if not languages:
        return probabilities
    wanted = set(languages)
    kept = [(code, prob) for code, prob in probabilities if code in wanted]
    if not kept:
        raise EngineError("none of the candidate languages is known to this model")
    total = sum(prob for _, prob in kept)
    if total <= 0:
        return [(code, 1.0 / len(kept)) for code, _ in kept]
    return [(code, prob / total) for code, prob in kept]
