"""Where the local engine runs: WHISPER_DEVICE (`auto`, `cpu`, `cuda`), the compute type each device
takes by default, CTranslate2's int8 backend on the CPU, and how the work is shared out on the device.

- CPU: one CTranslate2 worker per core (inter_threads), each inference on a share of the cores, one
  detection per batch: on 2 cores that did the most detections per second (scripts/benchmark_engine.py).
- CUDA: a GPU wants batched work, not one worker per core: one worker, and detections waiting together
  go through the encoder in batches of up to CUDA_BATCH (the inference slots are sized so that a batch
  can fill). The README's "Models and devices" writes down the plan for one GPU serving many streams.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass

from .base import EngineError

CPU_COMPUTE_TYPE = "int8"
CUDA_COMPUTE_TYPES = ("float16", "int8_float16", "int8", "float32")  # the first the GPU supports
CUDA_BATCH = 8  # detections per encoder pass on a GPU, when BATCH_MAX_SIZE is 0


@dataclass(frozen=True)
class Placement:
    device: str  # "cpu" or "cuda"
    device_index: int
    compute_type: str
    workers: int  # inferences side by side (CTranslate2's inter_threads / num_workers)
    cpu_threads: int  # threads of one inference on the CPU (intra_threads)
    max_batch: int  # detections per encoder pass
    cpu_backend: str  # CTranslate2's int8 GEMM on this CPU: "MKL" or "oneDNN" (see cpu_backend)

    @property
    def slots(self) -> int:
        """Inferences worth letting in at once: every worker with a full batch."""
        return self.workers * self.max_batch

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def cuda_devices() -> int:
    """CUDA devices CTranslate2 sees (0 without a GPU, a driver or a CUDA build of CTranslate2)."""
    import ctranslate2

    try:
        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # a CPU-only build or a broken driver: no usable device
        return 0


def cpu_backend() -> str:
    """CTranslate2's int8 matrix products on this CPU: Intel MKL on Intel CPUs, oneDNN elsewhere;
    CT2_USE_MKL=1 / 0 forces one or the other (as CTranslate2 itself reads it)."""
    forced = os.environ.get("CT2_USE_MKL", "").strip().lower()
    if forced:
        return "MKL" if forced in ("1", "true", "yes", "on") else "oneDNN"
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return "not x86 (Ruy or Accelerate)"
    return "MKL" if _cpu_vendor() == "GenuineIntel" else "oneDNN"


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def place(device: str = "auto", device_index: int = 0, compute_type: str = "", workers: int = 0,
          cpu_threads: int = 0, max_batch: int = 0) -> Placement:
    """The placement the settings ask for (0 and "" meaning: the device's default); EngineError when
    `cuda` is asked for and there is no such device."""
    cores = os.cpu_count() or 1
    if device == "auto":
        device = "cuda" if cuda_devices() > 0 else "cpu"
    if device == "cuda":
        found = cuda_devices()
        if device_index >= found:
            raise EngineError(
                f"WHISPER_DEVICE=cuda (WHISPER_DEVICE_INDEX={device_index}) but CTranslate2 sees "
                + (f"{found} CUDA device(s)" if found else "no CUDA device (no GPU, no driver, or a CPU-only build)")
                + ": set WHISPER_DEVICE=cpu or auto"
            )
        return Placement("cuda", device_index, compute_type or _cuda_compute_type(device_index), workers or 1,
                         cpu_threads or 1, max_batch or CUDA_BATCH, cpu_backend())
    if device != "cpu":
        raise EngineError(f"WHISPER_DEVICE={device!r}: expected auto, cpu or cuda")
    workers = workers or cores
    return Placement("cpu", 0, compute_type or CPU_COMPUTE_TYPE, workers, cpu_threads or max(1, cores // workers),
                     max_batch or 1, cpu_backend())


def _cuda_compute_type(index: int) -> str:
    import ctranslate2

    supported = set(ctranslate2.get_supported_compute_types("cuda", index))
    return next((kind for kind in CUDA_COMPUTE_TYPES if kind in supported), "float32")
