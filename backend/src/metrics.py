"""ServerMetrics: what operators read at GET /metrics (the original design's counters and gauges)."""

from __future__ import annotations

import logging
import os
from collections import deque
from typing import Any

import psutil

logger = logging.getLogger(__name__)


class ServerMetrics:
    def __init__(self) -> None:
        self.active_connections = 0
        self.processing_times: deque[float] = deque(maxlen=100)
        self.active_processes = 0
        self.total_requests = 0
        self.errors = 0
        self.cpu_cores = psutil.cpu_count(logical=True) or os.cpu_count() or 1
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # prime the counters: later calls measure since the previous one
        psutil.cpu_percent(None, percpu=True)

    @property
    def average_processing_time(self) -> float:
        return sum(self.processing_times) / len(self.processing_times) if self.processing_times else 0.0

    def get_metrics_dict(self) -> dict[str, Any]:
        per_core = psutil.cpu_percent(None, percpu=True)
        process_cpu = self._process.cpu_percent(None)  # percent of one core, may exceed 100
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
        }

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
