#!/usr/bin/env python3
"""The corpus mode (`python -m src.corpus`) against today's CLI and stock faster-whisper, in one run.

    python scripts/benchmark_corpus.py [--batch-sizes 1,2,3,4,5,6,7,8] [--copies 10] [--skip rss,ray] [--json PATH]

From the repository root, with the project's Python. The folder: every clip of ../shared/eval, eval-more and
eval-extra (linked into a temporary folder, never copied into the project) plus broken files (empty,
truncated, not audio). Every figure is the wall time of a whole command, start-up and model loading
included, as a user runs it:

- corpus: `python -m src.corpus FOLDER --out OUT.jsonl` (every core) at each batch size;
- cli: today's `python -m src.cli FOLDER --json`, one file at a time;
- stock: faster-whisper's own `decode_audio(file)` + `WhisperModel.detect_language` (30 s window) in a
  loop, `cpu_threads` = the cores;
- agreement: the corpus rows' language against POST /detect's on a real server (127.0.0.1), file by file;
- kill: the corpus run SIGKILLed (the whole process group) at about 40 % of its rows, then run again: every
  file must be in the output exactly once;
- rss: the peak RSS of the run's processes (parent and workers, summed) on the folder and on --copies
  times the folder (links under other names);
- ray: the same run on a local two-node Ray cluster (head and one worker, 1 CPU each) in network and PID
  namespaces of its own (`unshare`, loopback only), timed without the cluster's start, against the local run.

Targets: >= 1.8x the CLI's files/s, >= 7x stock's, >= 98 % the same language as POST /detect, RSS at 10x
within 10 % of once, every file exactly once after the kill, Ray <= 1.3x the local time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (  # noqa: E402
    BACKEND_DIR, Server, ct2_backend, default_manifests, describe_backend, log, machine, model_path,
    stop_on_sigterm, table, write_json,
)

SET_DIRS = [path.parent / "clips" for path in default_manifests()] + [default_manifests()[0].parent.parent / "eval-extra" / "clips"]
RAY_SCRIPT = (Path(__file__).resolve().parents[1] / "backend" / "tests" / "test_corpus.py")  # its RAY_SCRIPT is reused


def build_folder(root: Path) -> list[Path]:
    """Links to every clip of the sets, and broken files; the audio files in it."""
    from audio_tools import clip, encode

    for directory in SET_DIRS:
        if directory.is_dir():
            target = root / directory.parent.name
            target.mkdir()
            for path in sorted(directory.iterdir()):
                (target / path.name).symlink_to(path.resolve())
    broken = root / "broken"
    broken.mkdir()
    (broken / "empty.mp3").write_bytes(b"")
    whole = encode(clip("es_cv_5.mp3").samples(), "mp4-file")
    (broken / "truncated.m4a").write_bytes(whole[: len(whole) // 2])
    (broken / "notes.wav").write_bytes(b"not audio\n" * 100)
    from src.cli import find_files

    return find_files([str(root)])[0]


LAST_CPU = [0.0]  # CPU seconds (user + system) of the last `timed` command and the processes it waited for


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str], **popen) -> tuple[float, subprocess.CompletedProcess]:
    started, cpu = time.perf_counter(), _children_cpu()
    result = subprocess.run(args, cwd=BACKEND_DIR, capture_output=True, text=True, **popen)
    LAST_CPU[0] = _children_cpu() - cpu
    return time.perf_counter() - started, result


def engine_batches(sizes: list[int], files: list[Path], rounds: int = 1, most: int = 24) -> list[list[object]]:
    """In this process, the engine alone on one thread: CPU ms per detection at each batch size, on the
    speech of the folder's clips whose window is the engine's minimum (most of them: one shape a batch)."""
    from src.audio import decode_head
    from src.audio_processor import AudioProcessor
    from src.config import load_settings

    settings = load_settings().model_copy(update={"WHISPER_WORKERS": 1, "WHISPER_CPU_THREADS": 1})
    processor = AudioProcessor.from_settings(settings, gc_after_processing=False)
    processor.load()
    engine = processor.engine
    clips = []
    for path in files:
        try:
            samples, _ = decode_head(path.read_bytes(), settings.MAX_UPLOAD_SECONDS)
        except Exception:  # noqa: BLE001 - the broken ones
            continue
        speech = processor.vad.find_speech(samples)
        audio = speech.audio(samples)
        if audio.size and engine.features(audio).shape[1] == int(engine.window_seconds * 100):
            clips.append(audio)
        if len(clips) == most:
            break
    rows, base = [], None
    for size in sizes:
        cpu = time.process_time()
        wall = time.perf_counter()
        for _ in range(rounds):
            for at in range(0, len(clips) - size + 1, size):
                engine.detect_batch(clips[at : at + size])
        count = rounds * (len(clips) // size) * size
        per = 1000 * (time.process_time() - cpu) / count
        base = base or per
        rows.append([size, count, f"{per:.0f} ms", f"{base / per:.2f}x", f"{1000 * (time.perf_counter() - wall) / count:.0f} ms"])
        log(rows[-1])
    processor.close()
    return rows


def corpus_args(inputs: list[str], out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "src.corpus", *inputs, "--out", str(out), "--no-progress", "--overwrite", *extra]


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def stock_loop(list_file: str) -> None:
    """(In a child process) stock faster-whisper over the files listed, one language per line out."""
    from faster_whisper import WhisperModel, decode_audio

    model = WhisperModel(model_path(), device="cpu", compute_type="int8", cpu_threads=os.cpu_count() or 1)
    for name in Path(list_file).read_text().splitlines():
        try:
            language, _, _ = model.detect_language(decode_audio(name))
        except Exception as exc:  # noqa: BLE001 - stock stops at nothing either: count it
            language = f"error: {type(exc).__name__}"
        print(json.dumps({"path": name, "language": language}), flush=True)


class TreeRss:
    """The peak of the summed RSS of a process and its children, sampled."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.process, *self.process.children(recursive=True)]
                total = sum(p.memory_info().rss for p in procs if p.is_running())
                self.peak = max(self.peak, total / 2**20)
            except psutil.Error:
                pass
            self._stop.wait(every)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.peak


def rss_run(inputs: list[str], out: Path, workers: str) -> tuple[float, float]:
    process = subprocess.Popen(corpus_args(inputs, out, "--workers", workers), cwd=BACKEND_DIR,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sampler = TreeRss(process.pid)
    started = time.perf_counter()
    process.wait()
    return sampler.stop(), time.perf_counter() - started


def kill_and_resume(folder: Path, out: Path, total: int, workers: str) -> dict:
    args = [sys.executable, "-m", "src.corpus", str(folder), "--out", str(out), "--no-progress", "--workers", workers]
    process = subprocess.Popen([*args, "--overwrite"], cwd=BACKEND_DIR, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    target = int(total * 0.4)
    while process.poll() is None and (not out.exists() or out.read_bytes().count(b"\n") < target):
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = out.read_bytes().count(b"\n")
    _, result = timed([*args, "--summary-json", "-"])
    ids = [row["id"] for row in rows_of(out)]
    return {"killed_at_rows": before, "resumed_new": json.loads(result.stdout)["new"] if result.returncode == 0 else None,
            "rows": len(ids), "distinct": len(set(ids)), "files": total, "exit": result.returncode,
            "exactly_once": len(ids) == len(set(ids)) == total}


def agreement(rows: list[dict]) -> dict:
    """The share of files whose language (or error) is POST /detect's, on a real server."""
    import httpx

    same, compared, differ = 0, 0, []
    with Server(name="corpus-bench") as server:
        server.start()
        server.wait_ready()
        for row in rows:
            data = Path(row["path"]).read_bytes()
            response = httpx.post(server.http + "/detect", content=data, timeout=300)
            answer = response.json()
            theirs = answer["data"]["language"] if response.status_code == 200 else "error"
            ours = row["language"] if row["status"] != "error" else "error"
            compared += 1
            if ours == theirs:
                same += 1
            else:
                differ.append({"id": row["id"], "corpus": ours, "detect": theirs})
    return {"compared": compared, "same": same, "share": same / compared if compared else None, "differ": differ}


def ray_run(folder: Path, out: Path, workers: str) -> dict:
    """The corpus run on a two-node local cluster in namespaces of its own; the run's own time."""
    text = RAY_SCRIPT.read_text()
    script = text.split('RAY_SCRIPT = r"""', 1)[1].split('"""', 1)[0]
    script = script.replace('python -m src.corpus "$@" --ray 127.0.0.1:6379',
                            'start=$(python -c "import time; print(time.time())")\n'
                            'python -m src.corpus "$@" --ray 127.0.0.1:6379\n'
                            'python -c "import sys, time; print(\'RUN_SECONDS\', time.time() - float(sys.argv[1]))" '
                            '"$start" >&2')
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    env = os.environ | {"RAY_TMP": str(ray_tmp), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    try:
        wall, result = timed(["unshare", "-n", "-p", "-f", "--mount-proc", "bash", "-c", script, "ray", str(folder),
                              "--out", str(out), "--no-progress", "--overwrite", "--workers", workers], env=env,
                             timeout=1800)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    seconds = [float(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("RUN_SECONDS")]
    return {"exit": result.returncode, "run_seconds": seconds[0] if seconds else None, "wall_with_start": wall,
            "error": result.stderr[-2000:] if result.returncode else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", default="1,2,3,4,5,6,7,8", help="the engine's sweep, in process")
    parser.add_argument("--corpus-batches", default="4", help="batch sizes of the end-to-end corpus runs")
    parser.add_argument("--limit", type=int, default=0, help="every k-th file only, about this many (0: all)")
    parser.add_argument("--rss-files", type=int, default=0, help="the RSS comparison on this many files (0: all)")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--workers", default=str(os.cpu_count() or 1))
    parser.add_argument("--skip", default="", help="comma-separated: engine, cli, stock, agreement, kill, rss, ray")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--stock-loop", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stock_loop:
        stock_loop(args.stock_loop)
        return 0
    stop_on_sigterm()
    skip = set(filter(None, args.skip.split(",")))
    figures: dict = {"machine": machine(), "backend": ct2_backend(model_path())}
    log(f"{describe_backend(figures['backend'])}; load average {figures['machine']['loadavg_start']}")
    work = Path(tempfile.mkdtemp(prefix="corpus-bench-"))
    try:
        folder = work / "corpus"
        folder.mkdir()
        files = build_folder(folder)
        if args.limit and args.limit < len(files):
            keep = set(files[:: max(1, len(files) // args.limit)]) | {p for p in files if p.parent.name == "broken"}
            for path in files:
                if path not in keep:
                    path.unlink()
            files = [p for p in files if p in keep]
        n = len(files)
        log(f"{n} files in the folder (three sets and 3 broken files)")
        if "engine" not in skip:
            sweep = engine_batches([int(b) for b in args.batch_sizes.split(",")], files)
            figures["engine_batches"] = sweep
            print(table(["batch", "detections", "CPU per detection", "vs batch 1", "wall per detection"], sweep))
        rows: list[list[object]] = []
        best = None
        for size in [int(b) for b in args.corpus_batches.split(",")]:
            out = work / f"batch{size}.jsonl"
            wall, result = timed(corpus_args([str(folder)], out, "--workers", args.workers, "--batch-size", str(size),
                                             "--summary-json", "-"))
            summary = json.loads(result.stdout)
            figures[f"corpus_batch_{size}"] = {"wall": wall, "cpu": LAST_CPU[0], "summary": summary,
                                               "load": os.getloadavg()[0]}
            rows.append([f"corpus, batch {size}", n, f"{wall:.1f} s", f"{n / wall:.2f}", f"{LAST_CPU[0]:.1f} s",
                         f"{n / LAST_CPU[0]:.2f}", f"{os.getloadavg()[0]:.1f}"])
            log(rows[-1])
            if best is None or wall < figures[f"corpus_batch_{best}"]["wall"]:
                best = size
        best_wall = figures[f"corpus_batch_{best}"]["wall"]
        if "cli" not in skip:
            wall, result = timed([sys.executable, "-m", "src.cli", str(folder), "--json", "--no-progress"])
            figures["cli"] = {"wall": wall, "cpu": LAST_CPU[0]}
            rows.append(["today's CLI (python -m src.cli)", n, f"{wall:.1f} s", f"{n / wall:.2f}", f"{LAST_CPU[0]:.1f} s",
                         f"{n / LAST_CPU[0]:.2f}", f"{os.getloadavg()[0]:.1f}"])
            log(rows[-1])
        if "stock" not in skip:
            listing = work / "files.txt"
            listing.write_text("\n".join(str(p) for p in files) + "\n")
            wall, result = timed([sys.executable, str(Path(__file__).resolve()), "--stock-loop", str(listing)])
            figures["stock"] = {"wall": wall, "cpu": LAST_CPU[0]}
            rows.append(["stock faster-whisper loop", n, f"{wall:.1f} s", f"{n / wall:.2f}", f"{LAST_CPU[0]:.1f} s",
                         f"{n / LAST_CPU[0]:.2f}", f"{os.getloadavg()[0]:.1f}"])
            log(rows[-1])
        print(table(["run", "files", "wall", "files/s", "CPU", "files per CPU s", "load after"], rows))
        best_cpu = figures[f"corpus_batch_{best}"]["cpu"]
        for name, target in (("cli", 1.8), ("stock", 7.0)):
            if name in figures:
                print(f"corpus (batch {best}) vs {name}: {figures[name]['wall'] / best_wall:.2f}x the files/s, "
                      f"{figures[name]['cpu'] / best_cpu:.2f}x the files per CPU second (target {target}x)")
        best_rows = rows_of(work / f"batch{best}.jsonl")
        if "agreement" not in skip:
            figures["agreement"] = agreement(best_rows)
            a = figures["agreement"]
            print(f"same language as POST /detect: {100 * a['share']:.1f} % ({a['same']}/{a['compared']}; target 98 %)"
                  + "".join(f"\n  {d['id']}: corpus {d['corpus']}, /detect {d['detect']}" for d in a["differ"]))
        if "kill" not in skip:
            figures["kill"] = kill_and_resume(folder, work / "kill.jsonl", n, args.workers)
            k = figures["kill"]
            print(f"killed at {k['killed_at_rows']}/{n} rows, resumed {k['resumed_new']}: {k['rows']} rows, "
                  f"{k['distinct']} distinct, exactly once: {k['exactly_once']}")
        if "rss" not in skip:
            copies = work / "copies"
            copies.mkdir()
            chosen = files
            if args.rss_files and args.rss_files < n:
                chosen = files[:: max(1, n // args.rss_files)][: args.rss_files]
            small = work / "rss-once"
            for index in range(args.copies + 1):  # the once folder, then the copies: links under other names
                target = small if index == args.copies else copies / f"copy{index:02d}"
                target.mkdir()
                for path in chosen:
                    (target / f"{path.parent.name}-{path.name}").symlink_to(path.resolve())
            once, once_wall = rss_run([str(small)], work / "rss1.jsonl", args.workers)
            many, many_wall = rss_run([str(copies)], work / "rss10.jsonl", args.workers)
            figures["rss"] = {"once_mib": once, "copies_mib": many, "copies": args.copies,
                              "once_wall": once_wall, "copies_wall": many_wall}
            print(f"peak RSS (parent + workers): once {once:.0f} MiB, {args.copies}x {many:.0f} MiB "
                  f"({100 * (many / once - 1):+.1f} %; target within 10 %); {args.copies}x took {many_wall:.0f} s")
        if "ray" not in skip:
            figures["ray"] = ray_run(folder, work / "ray.jsonl", args.workers)
            r = figures["ray"]
            if r["exit"] == 0 and r["run_seconds"]:
                local = {row["id"]: (row["status"], row["language"]) for row in best_rows}
                remote = {row["id"]: (row["status"], row["language"]) for row in rows_of(work / "ray.jsonl")}
                same = sum(local.get(key) == value for key, value in remote.items())
                print(f"Ray, two nodes of 1 CPU: {r['run_seconds']:.1f} s for the run (cluster start excluded) vs "
                      f"{best_wall:.1f} s local: {r['run_seconds'] / best_wall:.2f}x (target <= 1.3x); "
                      f"{same}/{len(local)} rows the same status and language, {len(remote)} rows")
                figures["ray"]["same_rows"] = same
            else:
                print(f"Ray run failed: {r['error']}")
        figures["loadavg_end"] = os.getloadavg()
        print(f"load average at the end: {' '.join(f'{x:.1f}' for x in figures['loadavg_end'])} "
              f"(at the start {figures['machine']['loadavg_start']}); {figures['machine']['nproc']} cores")
        if args.json:
            write_json(args.json, figures)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
