"""ServerMetrics: what operators read at GET /metrics (the original design's JSON) and, in Prometheus'
text format, at GET /metrics/prometheus."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Gauge, Histogram, Info, ProcessCollector, generate_latest
from prometheus_client import Counter as PromCounter
from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)


class MetricsSnapshot(BaseModel):
    """GET /metrics, as documented in /docs (and docs/http-api.md)."""

    model_config = ConfigDict(extra="allow")

    active_connections: int = Field(description="open WebSocket connections")
    total_requests: int = Field(description="detections and transcriptions started (each partial answer counts)")
    errors: int = Field(description="errors answered, rejections included")
    active_processes: int = Field(description="detections and transcriptions running or waiting")
    average_processing_time: float = Field(description="mean inference time of the recent detections (s)")
    recent_processing_times: int = Field(description="how many detections that mean covers (at most 100)")
    memory_usage_mb: float = Field(description="resident memory of the server")
    cpu_usage_percent: float = Field(description="the machine's CPU use, over at least the last second")
    cpu_usage_per_core: list[float]
    process_cpu_percent: float = Field(description="the server's CPU use, in percent of one core")
    cpu_cores: int
    effective_cores_used: float = Field(description="the server's CPU use, in cores")
    queued_detections: int = Field(description="detections and transcriptions waiting for an inference slot")
    transcriptions: int = Field(description="/v1/audio/transcriptions answered")
    errors_by_type: dict[str, int]
    rejections: dict[str, int] = Field(description="refusals by a limit or an access rule, by reason")
    audio_held_seconds: float = Field(0.0, description="decoded audio held by open continuous streams (s)")
    live_streams: int = Field(0, description="live streams open (/ws stream and continuous modes, Realtime sessions)")
    partials_skipped: int = Field(0, description="partial answers skipped because every inference slot was taken")
    analysis_steps: int = Field(0, description="live streams' analysis steps (decoding the new audio, the VAD over it)")
    analysis_step_seconds: float = Field(0.0, description="time those steps took, detections not included (s)")
    engine: dict[str, Any] = Field(default_factory=dict, description=(
        "the engine, once loaded: name; for the local one model, model_path, device, device_index, compute_type, "
        "cpu_backend, workers, cpu_threads, max_batch; inference_slots; calibration and calibrated (false: the "
        "conservative rule of a model without calibration)"))


class ServerMetrics:
    def __init__(self) -> None:
        self.active_connections = 0
        self.processing_times: deque[float] = deque(maxlen=100)
        self.active_processes = 0
        self.total_requests = 0
        self.errors = 0
        self.errors_by_type: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.queued_detections = 0
        self.transcriptions = 0
        self._audio_held: dict[str, float] = {}  # seconds of decoded audio each continuous stream holds
        self.live_streams = 0
        self.partials_skipped = 0
        self.analysis_steps = 0
        self.analysis_step_seconds = 0.0
        self.engine: dict[str, Any] = {}  # AudioProcessor.engine_info, once the engine is loaded
        self.cpu_cores = psutil.cpu_count(logical=True) or os.cpu_count() or 1
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # prime the counters: later calls measure since the previous one
        psutil.cpu_percent(None, percpu=True)
        self._cpu_sampled_at = time.monotonic()
        self._cpu_sample: tuple[list[float], float] = ([0.0] * self.cpu_cores, 0.0)

        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, open fds
        self._p_connections = PromCounter("langshazam_connections", "WebSocket connections opened", registry=r)
        self._p_active = Gauge("langshazam_active_connections", "Open WebSocket connections", registry=r)
        self._p_requests = PromCounter("langshazam_requests", "Detections requested", registry=r)
        self._p_errors = PromCounter("langshazam_errors", "Errors answered, by type", ["type"], registry=r)
        self._p_rejections = PromCounter(
            "langshazam_rejections", "Connections or requests refused, by reason", ["reason"], registry=r
        )
        self._p_processing = Histogram(
            "langshazam_processing_seconds", "Inference time per detection", buckets=_LATENCY_BUCKETS, registry=r
        )
        self._p_time_to_answer = Histogram(
            "langshazam_time_to_answer_seconds", "From the audio that completed a request (or stop) to its final answer",
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self._p_answers = PromCounter(
            "langshazam_answers", "Final answers, by language (or reason when none)", ["language"], registry=r
        )
        self._p_transcription = Histogram(
            "langshazam_transcription_seconds", "Time per transcription (/v1/audio/transcriptions), detection included",
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self._p_queue = Gauge("langshazam_queue_depth", "Detections waiting for an inference slot", registry=r)
        self._p_in_flight = Gauge("langshazam_active_processes", "Detections running", registry=r)
        self._p_memory = Gauge("langshazam_memory_bytes", "Resident memory of the server", registry=r)
        self._p_audio_held = Gauge(
            "langshazam_audio_held_seconds", "Decoded audio held by open continuous streams", registry=r
        )
        self._p_live = Gauge("langshazam_live_streams", "Live streams open (stream, continuous, Realtime)", registry=r)
        self._p_skipped = PromCounter(
            "langshazam_partials_skipped", "Partial answers skipped: every inference slot was taken", registry=r
        )
        self._p_step = Histogram(
            "langshazam_analysis_step_seconds", "One live stream's analysis step (decode the new audio, VAD), "
            "detections not included", buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0), registry=r,
        )

        self._p_engine = Info("langshazam_engine", "The engine: model, device, compute type, CPU backend, "
                              "workers, threads, inference slots, calibration", registry=r)

    # --- events ---------------------------------------------------------------------------------------

    def engine_loaded(self, info: dict[str, Any]) -> None:
        self.engine = dict(info)
        self._p_engine.info({key: str(value) for key, value in info.items()})

    def connection_opened(self) -> None:
        self.active_connections += 1
        self._p_connections.inc()
        self._p_active.set(self.active_connections)

    def audio_held(self, connection_id: str, seconds: float | None) -> None:
        """A continuous stream holds this much decoded audio now (None: it ended)."""
        if seconds is None:
            self._audio_held.pop(connection_id, None)
        else:
            self._audio_held[connection_id] = seconds
        self._p_audio_held.set(sum(self._audio_held.values()))

    def connection_closed(self) -> None:
        self.active_connections -= 1
        self._p_active.set(self.active_connections)

    def detection_started(self) -> None:
        self.total_requests += 1
        self.active_processes += 1
        self._p_requests.inc()
        self._p_in_flight.set(self.active_processes)

    def detection_finished(self, processing_time: float | None) -> None:
        self.active_processes -= 1
        self._p_in_flight.set(self.active_processes)
        if processing_time is not None:
            self.processing_times.append(processing_time)
            self._p_processing.observe(processing_time)

    def transcribed(self, seconds: float) -> None:
        self.transcriptions += 1
        self._p_transcription.observe(seconds)

    def streams_changed(self, live: int) -> None:
        self.live_streams = live
        self._p_live.set(live)

    def partial_skipped(self) -> None:
        self.partials_skipped += 1
        self._p_skipped.inc()

    def analysis_step(self, seconds: float) -> None:
        self.analysis_steps += 1
        self.analysis_step_seconds += seconds
        self._p_step.observe(seconds)

    def queue_changed(self, depth: int) -> None:
        self.queued_detections = depth
        self._p_queue.set(depth)

    def error(self, kind: str) -> None:
        self.errors += 1
        self.errors_by_type[kind] += 1
        self._p_errors.labels(kind).inc()

    def rejected(self, reason: str) -> None:
        """A connection or request refused by a limit or an access rule (also counted as an error)."""
        self.rejections[reason] += 1
        self._p_rejections.labels(reason).inc()
        self.error(reason)

    def answered(self, language: str | None, reason: str | None, time_to_answer: float) -> None:
        self._p_answers.labels(language or reason or "none").inc()
        self._p_time_to_answer.observe(time_to_answer)

    # --- reading ----------------------------------------------------------------------------------------

    @property
    def average_processing_time(self) -> float:
        return sum(self.processing_times) / len(self.processing_times) if self.processing_times else 0.0

    def _cpu(self) -> tuple[list[float], float]:
        """CPU use per core and of this process (percent of one core), over at least the last second.

        psutil measures since its previous call; every connection logs the metrics when it closes, so
        sampling on each call would report near-empty intervals under load."""
        now = time.monotonic()
        if now - self._cpu_sampled_at >= 1.0:
            self._cpu_sample = (psutil.cpu_percent(None, percpu=True), self._process.cpu_percent(None))
            self._cpu_sampled_at = now
        return self._cpu_sample

    def get_metrics_dict(self) -> dict[str, Any]:
        per_core, process_cpu = self._cpu()
        return {
            "active_connections": self.active_connections,
            "total_requests": self.total_requests,
            "errors": self.errors,
            "active_processes": self.active_processes,
            "average_processing_time": round(self.average_processing_time, 4),
            "recent_processing_times": len(self.processing_times),
            "memory_usage_mb": round(self._process.memory_info().rss / (1024 * 1024), 1),
            "cpu_usage_percent": round(sum(per_core) / len(per_core), 1) if per_core else 0.0,
            "cpu_usage_per_core": [round(value, 1) for value in per_core],
            "process_cpu_percent": round(process_cpu, 1),
            "cpu_cores": self.cpu_cores,
            "effective_cores_used": round(process_cpu / 100.0, 2),
            "queued_detections": self.queued_detections,
            "transcriptions": self.transcriptions,
            "errors_by_type": dict(self.errors_by_type),
            "rejections": dict(self.rejections),
            "audio_held_seconds": round(sum(self._audio_held.values()), 2),
            "live_streams": self.live_streams,
            "partials_skipped": self.partials_skipped,
            "analysis_steps": self.analysis_steps,
            "analysis_step_seconds": round(self.analysis_step_seconds, 4),
            "engine": self.engine,
        }

    def prometheus(self) -> bytes:
        self._p_memory.set(self._process.memory_info().rss)
        return generate_latest(self.registry)

    def log_current_metrics(self, connection_id: str | None = None) -> None:
        m = self.get_metrics_dict()
        prefix = f"[{connection_id}] " if connection_id else ""
        logger.info(
            "%sMetrics - active connections: %d, active processes: %d, total requests: %d, errors: %d, "
            "avg processing time: %.3fs, memory: %.1f MB, CPU: %.1f%% (effective cores used: %.2f of %d)",
            prefix, m["active_connections"], m["active_processes"], m["total_requests"], m["errors"],
            m["average_processing_time"], m["memory_usage_mb"], m["cpu_usage_percent"],
            m["effective_cores_used"], m["cpu_cores"],
        )
