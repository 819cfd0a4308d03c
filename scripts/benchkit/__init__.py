"""What the measuring scripts share: a real server, the evaluation sets, clip conversion, a real-time
stream client, percentiles and the machine line. A new measurement imports what it needs from here:

    from benchkit import Server, read_manifest, default_manifests, to_webm, stream, quantile, table, machine

Importing it puts backend/ (the product, `src.*`) and backend/tests/ (`audio_tools`: encoding like a
browser) on sys.path, so the scripts run from the repository root without installing anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

SCRIPTS_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = SCRIPTS_DIR.parent
BACKEND_DIR = REPO_ROOT / "backend"
for _path in (SCRIPTS_DIR, BACKEND_DIR, BACKEND_DIR / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from benchkit.clips import (  # noqa: E402
    SAMPLE_RATE, SPEECH_KINDS, Clip, Encoded, default_manifest, default_manifests, default_more_manifest, one_per_language,
    encode_clips, read_manifest, read_set, round_robin, samples_to_webm, to_webm, with_silence,
)
from benchkit.figures import (  # noqa: E402
    ct2_backend, describe_backend, log, machine, med, model_path, ms, p95, pct, quantile, secs, table,
    write_json,
)
from benchkit.server import CpuAccount, RssPeak, Server, free_port, http_json, stop_on_sigterm  # noqa: E402
from benchkit.stream import CHUNK_SECONDS, Exchange, split_frames, stream  # noqa: E402

__all__ = [
    "BACKEND_DIR", "CHUNK_SECONDS", "REPO_ROOT", "SAMPLE_RATE", "Clip", "CpuAccount", "Encoded", "Exchange", "RssPeak", "SPEECH_KINDS", "encode_clips", "Server",
    "ct2_backend", "default_manifest", "default_manifests", "default_more_manifest", "describe_backend",
    "free_port", "http_json", "log", "machine", "med", "model_path", "ms", "one_per_language", "p95", "pct", "quantile",
    "read_manifest", "read_set", "round_robin", "samples_to_webm", "secs", "split_frames", "stop_on_sigterm",
    "stream", "table", "to_webm", "with_silence",
]
