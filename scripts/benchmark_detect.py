#!/usr/bin/env python3
"""POST /detect end to end against stock faster-whisper, on the same clips, in one run.

    python scripts/benchmark_detect.py [--quick] [--passes N] [--manifest PATH ...] [--json PATH]

From the repository root, with the project's Python. Clips: the speech clips of ../shared/eval,
../shared/eval-more and ../shared/eval-extra beside the project (--manifest PATH, repeatable, instead), as
their files are (mp3, wav, ogg, flac, ...), never copied; plus long files made here from them: for each
set, clips of one language joined with 0.5 s pauses to about 30 s and 60 s, encoded as mp3 (the server
answers on the first MAX_UPLOAD_SECONDS, 60 s, as stock reads the whole file).

- ours: a real server (`python -m src.main`, 127.0.0.1, a free port, default settings), one request at a
  time: POST /detect with the file's bytes as the body, timed from sending the request to the parsed JSON
  answer (HTTP, upload, decoding, VAD, detection, the answer);
- stock: in this process, faster-whisper's own `decode_audio(file)` then `WhisperModel.detect_language`
  (30 s window) on the same model files, `cpu_threads` = the cores, as a user of faster-whisper would run it.

The two alternate clip by clip (the server idles while stock runs, and the other way round), --passes times
(3; --quick 1 pass over 30 clips), each clip's median over the passes; then per set and per length
(under 5 s, 5-15 s, 15 s and more): the medians of both, the ratio of the medians, and the ratio of the
totals (stock time / ours: above 1, ours is faster), and the top-1 of both. Target: >= 4x, long files
included.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (  # noqa: E402
    SAMPLE_RATE, SPEECH_KINDS, Clip, Server, ct2_backend, default_manifests, describe_backend, log, machine, med,
    model_path, read_manifest, stop_on_sigterm, table, write_json,
)

TARGET_RATIO = 4.0
LONG_SECONDS = (30.0, 60.0)


def eval_extra_manifest() -> Path:
    return default_manifests()[0].parent.parent / "eval-extra" / "manifest.csv"


def load_clips(manifests: list[Path]) -> list[tuple[str, Clip, bytes]]:
    """(set, clip, file bytes) for every speech clip, plus the long joined files of each set."""
    from audio_tools import encode

    out: list[tuple[str, Clip, bytes]] = []
    for manifest in manifests:
        clips = [c for c in read_manifest(manifest, "benchmark_detect", skip_missing=True)
                 if c.kind in SPEECH_KINDS and "+" not in c.lang]
        if not clips:
            continue
        name = clips[0].set
        out += [(name, clip, clip.path.read_bytes()) for clip in clips]
        by_lang: dict[str, list[Clip]] = defaultdict(list)
        for clip in clips:
            by_lang[clip.lang].append(clip)
        lang, group = max(by_lang.items(), key=lambda item: sum(c.seconds for c in item[1]))
        import numpy as np

        pieces, pause = [], np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
        for seconds in LONG_SECONDS:
            while sum(len(p) for p in pieces) < seconds * SAMPLE_RATE:
                for clip in group:
                    pieces += [clip.samples(), pause]
            samples = np.concatenate(pieces)[: int(seconds * SAMPLE_RATE)]
            joined = Clip(f"{lang}-joined-{seconds:g}s.mp3", lang, seconds, group[0].path, "speech")
            out.append((name, joined, encode(samples, "mp3")))
    return out


def bucket(seconds: float) -> str:
    return "< 5 s" if seconds < 5 else "5-15 s" if seconds < 15 else ">= 15 s"


def run(args: argparse.Namespace) -> dict:
    import httpx
    from faster_whisper import WhisperModel, decode_audio

    from src.config.settings import Settings

    items = load_clips(args.manifest or default_manifests() + [eval_extra_manifest()])
    if args.quick:
        items = items[:: max(1, len(items) // 30)][:30]
    log(f"{len(items)} files ({sum(c.seconds for _, c, _ in items) / 60:.1f} min of audio)")
    path = model_path()
    cores = Settings().WHISPER_CPU_THREADS or __import__("os").cpu_count() or 1
    stock_model = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=cores)
    ours: list[list[float]] = [[] for _ in items]
    stock: list[list[float]] = [[] for _ in items]
    ours_top: list[str | None] = [None] * len(items)
    stock_top: list[str | None] = [None] * len(items)
    with Server(name="detect") as server, httpx.Client(base_url=server.http, timeout=120) as client:
        server.start()
        server.wait_ready()
        for _, _, data in items[:3]:  # warm both up
            client.post("/detect", content=data)
            stock_model.detect_language(decode_audio(io.BytesIO(data)))
        for p in range(args.passes):
            for i, (_, clip, data) in enumerate(items):
                t = time.perf_counter()
                answer = client.post("/detect", content=data).json()
                ours[i].append(time.perf_counter() - t)
                if answer.get("status") != "success":
                    raise RuntimeError(f"{clip.file}: {answer}")
                ranked = answer["data"].get("top_languages") or answer["data"].get("top") or []
                ours_top[i] = answer["data"].get("language") or (ranked[0]["language"] if ranked else None)
                t = time.perf_counter()
                language, _, _ = stock_model.detect_language(decode_audio(io.BytesIO(data)))
                stock[i].append(time.perf_counter() - t)
                stock_top[i] = language
            log(f"pass {p + 1}/{args.passes} done")
    rows = []
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (name, clip, _) in enumerate(items):
        groups[name].append(i)
        groups[f"length {bucket(clip.seconds)}"].append(i)
        groups["all"].append(i)
    figures = {}
    for group, index in groups.items():
        o = [med(ours[i]) for i in index]
        s = [med(stock[i]) for i in index]
        right_o = sum(ours_top[i] == items[i][1].lang for i in index)
        right_s = sum(stock_top[i] == items[i][1].lang for i in index)
        figures[group] = {"files": len(index), "ours_median": med(o), "stock_median": med(s),
                          "ratio_of_medians": med(s) / med(o), "ratio_of_totals": sum(s) / sum(o),
                          "ours_top1": right_o, "stock_top1": right_s}
        f = figures[group]
        rows.append([group, len(index), f"{1000 * f['ours_median']:.0f} ms", f"{1000 * f['stock_median']:.0f} ms",
                     f"{f['ratio_of_medians']:.2f}x", f"{f['ratio_of_totals']:.2f}x",
                     f"{right_o}/{len(index)}", f"{right_s}/{len(index)}"])
    return {"machine": machine(), "backend": ct2_backend(path), "passes": args.passes, "rows": rows,
            "figures": figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one pass over 30 files")
    parser.add_argument("--passes", type=int, default=None)
    parser.add_argument("--manifest", type=Path, action="append")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.passes = args.passes or (1 if args.quick else 3)
    stop_on_sigterm()
    try:
        result = run(args)
    except (OSError, RuntimeError) as exc:
        print(f"benchmark_detect: could not run: {exc}", file=sys.stderr)
        return 2
    info = result["machine"]
    print(f"machine: {info}")
    print(f"CTranslate2: {describe_backend(result['backend'])}; {result['passes']} pass(es), per-file medians")
    print()
    print(table(["files", "n", "ours: POST /detect", "stock", "ratio of medians", "ratio of totals",
                 "ours top-1", "stock top-1"], result["rows"]))
    ratio = result["figures"]["all"]["ratio_of_totals"]
    print(f"\nstock / ours over all files: {ratio:.2f}x (target >= {TARGET_RATIO:g}x): "
          f"{'ok' if ratio >= TARGET_RATIO else 'MISS'}")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
