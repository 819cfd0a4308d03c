"""Percentiles, number formats, markdown tables, and the machine / CTranslate2 line reports start with."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def log(message: str) -> None:
    """A progress line on stderr, with the time (the report itself goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- percentiles ----------------------------------------------------------------------------------------


def write_json(path: Path, data: object) -> None:
    """A script's figures as JSON (`--json PATH`), its folder made if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))


def quantile(values, q: float) -> float | None:
    """The q-quantile (linear interpolation, as numpy's default); None when there is no value."""
    return float(np.quantile(values, q)) if len(values) else None


def med(values) -> float:
    """The median; NaN when there is no value (printed "n/a" by ms)."""
    return float(np.median(values)) if len(values) else float("nan")


def p95(values) -> float:
    return float(np.percentile(values, 95)) if len(values) else float("nan")


# --- formats --------------------------------------------------------------------------------------------


def ms(seconds: float | None, digits: int = 0) -> str:
    if seconds is None or seconds != seconds:
        return "n/a"
    return f"{1000 * seconds:.{digits}f} ms"


def secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def pct(num: int, den: int, counts: bool = False) -> str:
    """"12.5 %" (with counts: "12.5 % (1/8)"); "n/a" when den is 0."""
    if not den:
        return "n/a"
    return f"{100.0 * num / den:.1f} %" + (f" ({num}/{den})" if counts else "")


def table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# --- the machine ----------------------------------------------------------------------------------------


def _proc_field(path: str, prefix: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine() -> dict:
    """Cores (all, and those this process may use), RAM, CPU model, Python, load average now."""
    total = _proc_field("/proc/meminfo", "MemTotal:")
    available = _proc_field("/proc/meminfo", "MemAvailable:")
    return {
        "nproc": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": round(int(total.split()[0]) / 2**20, 1) if total else 0.0,
        "mem_available_gib": round(int(available.split()[0]) / 2**20, 1) if available else None,
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def ct2_backend(model_path: str) -> dict[str, str]:
    """How CTranslate2 runs on this machine: CPU vendor, ISA, int8 GEMM backend (MKL on Intel, oneDNN
    elsewhere; CT2_USE_MKL=0/1 forces one), read from its own log while loading the model in a child process."""
    code = "import ctranslate2, sys; ctranslate2.models.Whisper(sys.argv[1], device='cpu', compute_type='int8')"
    env = dict(os.environ, CT2_VERBOSE="1")
    try:
        log_text = subprocess.run([sys.executable, "-c", code, model_path], env=env, capture_output=True,
                                  text=True, timeout=120).stderr
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": str(exc)}
    found = {}
    for key, pattern in (("cpu", r"CPU: (\S+)"), ("isa", r"Selected ISA: (\S+)"),
                         ("int8_gemm", r"GEMM_S8 backend: (\S+)"), ("mkl", r"Use Intel MKL: (\S+)")):
        match = re.search(pattern, log_text)
        found[key] = match.group(1) if match else "?"
    found["backend"] = {"DNNL": "oneDNN", "MKL": "MKL"}.get(found["int8_gemm"], found["int8_gemm"])
    return found


def describe_backend(info: dict[str, str]) -> str:
    if "error" in info:
        return f"CTranslate2 backend unknown ({info['error']})"
    return (f"CTranslate2 int8 via {info['backend']} on {info['cpu']} (ISA {info['isa']}; "
            f"CT2_USE_MKL={os.environ.get('CT2_USE_MKL', 'unset')})")


def model_path() -> str:
    """The Whisper model directory the server would load (from the settings), for ct2_backend."""
    from src.config.settings import load_settings
    from src.engines.model_files import ensure_model

    settings = load_settings()
    return settings.WHISPER_MODEL or str(ensure_model(settings.MODEL_CACHE_DIR))
