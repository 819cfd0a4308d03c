"""Markdown output shared by the scripts."""

from __future__ import annotations


def pct(num: int, den: int) -> str:
    return f"{100.0 * num / den:.1f} %" if den else "n/a"


def table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def ct2_backend(model_path: str) -> dict[str, str]:
    """How CTranslate2 runs on this machine: CPU vendor, ISA, int8 GEMM backend (MKL on Intel, oneDNN
    elsewhere; CT2_USE_MKL=0/1 forces one), read from its own log while loading the model in a child process."""
    import os
    import re
    import subprocess
    import sys

    code = "import ctranslate2, sys; ctranslate2.models.Whisper(sys.argv[1], device='cpu', compute_type='int8')"
    env = dict(os.environ, CT2_VERBOSE="1")
    try:
        log = subprocess.run([sys.executable, "-c", code, model_path], env=env, capture_output=True, text=True,
                             timeout=120).stderr
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": str(exc)}
    found = {}
    for key, pattern in (("cpu", r"CPU: (\S+)"), ("isa", r"Selected ISA: (\S+)"),
                         ("int8_gemm", r"GEMM_S8 backend: (\S+)"), ("mkl", r"Use Intel MKL: (\S+)")):
        match = re.search(pattern, log)
        found[key] = match.group(1) if match else "?"
    found["backend"] = {"DNNL": "oneDNN", "MKL": "MKL"}.get(found["int8_gemm"], found["int8_gemm"])
    return found


def describe_backend(info: dict[str, str]) -> str:
    if "error" in info:
        return f"CTranslate2 backend unknown ({info['error']})"
    return (f"CTranslate2 int8 via {info['backend']} on {info['cpu']} (ISA {info['isa']}; "
            f"CT2_USE_MKL={os_env('CT2_USE_MKL')})")


def os_env(name: str) -> str:
    import os

    return os.environ.get(name, "unset")
