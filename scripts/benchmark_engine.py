#!/usr/bin/env python3
"""The local engine's CTranslate2 thread split and batching under concurrent load, and what the
gc.collect() after each detection costs and saves, in process.

    python scripts/benchmark_engine.py [--quick] [--manifest PATH ...] [--json PATH]
                                       [--passes N] [--detections N] [--gc-detections N]

From the repository root (it finds backend/ itself). Settings come from the environment / `.env` as for the
server (MODEL_CACHE_DIR, WHISPER_MODEL, WHISPER_COMPUTE_TYPE, ...). The clips are the speech clips (kinds
speech, speech_unverified) of the three evaluation sets, ../shared/eval, ../shared/eval-more and
../shared/eval-extra beside the project (`--manifest` for others), decoded once up front as the server
decodes (`src.audio.decode`) and cut to their speech by the server's VAD (`src.vad.VoiceActivityDetector`);
clips with less than MIN_SPEECH_SECONDS of speech are left out, as the server answers them without the engine.

1. Thread split and batching. CTranslate2 runs a model on `inter_threads` workers (faster-whisper's
   `num_workers`), each using `intra_threads` cores for one call (`cpu_threads`). Configurations:
   - workers=1, cpu_threads=2 and workers=1, cpu_threads=1, each with max_batch 1, 2 and 4, and workers=2,
     cpu_threads=1 with max_batch 1 and 2: the product's own engine (`create_engine` on the settings,
     WHISPER_WORKERS, WHISPER_CPU_THREADS and BATCH_MAX_SIZE replaced), one `_Batcher` thread per worker
     batching same-length windows (the server's default on 2 cores: 2 workers, 1 thread, batches of 1).
   The product's detect() is what every requester calls: features (an 8-12 s log-mel window) in the caller's
   thread, then the engine's worker. The engine subclass here only counts the batches it runs.
   Offered load: K requester threads (K = 1, 2, 4, 8) start together and each runs `--detections / K`
   detections, taking the next clip of one shared list (the same clips, in the same order, for every cell
   of a pass). K hits the engine directly: the server's MAX_CONCURRENT_CALLS semaphore (3 by default) is
   not in the way. Per cell: detections per second (detections / wall time of the cell), per-detection
   latency p50 / p95 (the caller's detect(), queueing included), process CPU seconds per detection
   (time.process_time over the cell: every thread of the process), the part of it spent in numpy's
   OpenBLAS threads (busy-waiting after the features' matrix product, per OPENBLAS_NUM_THREADS), the mean
   batch size.
   All engines are loaded at once; cells run round robin (each K, every configuration, the configuration
   order rotated from pass to pass) so machine noise hits all alike. Printed: medians over the passes
   (and the range of the detections per second over the passes).
2. gc.collect() after each detection (GC_AFTER_PROCESSING): one subprocess each, with and without (one
   after the other, never at once), the server's engine and AudioProcessor as the settings make them;
   `--gc-detections` detections (default 400, --quick 60) of `processor.identify(samples, speech=...)` (the
   speech found up front), one caller. Time per detection (gc included when on), RSS (psutil) at start
   (engine loaded, clips decoded, warmed up), after 10 % of the detections and at the end, the growth;
   Python's own automatic collection runs in both. Whether RSS grows without the explicit gc.
3. A conclusion: the configuration with the most detections per second at K >= 4 and the lowest K=1 latency,
   with the ratios to the product default (workers=1, cpu_threads=2, max_batch=2) and to the others.

Default run ≤ 12 minutes on 2 cores (4 passes of 32 detections per cell; fewer passes if the first ones
are slow); `--quick` about 3 minutes (one clip per language, 2 passes of 12). Other processes on the machine
(tests, builds) inflate and scatter the figures: compare ratios within one run, and read the load average
printed at the start and the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (  # noqa: E402
    SAMPLE_RATE, SPEECH_KINDS, Clip, ct2_backend, default_manifest, default_manifests, describe_backend, log,
    machine, med, ms, one_per_language, p95, read_manifest, table, write_json,
)

import numpy as np  # noqa: E402
import psutil  # noqa: E402

# Threads numpy's OpenBLAS started on import (all but the main thread, before anything else runs): after a
# BLAS call (the mel filter bank in features()) they busy-wait a while, on a core the encoder could use.
BLAS_THREADS = {thread.id for thread in psutil.Process().threads()} - {threading.get_native_id()}
PROG = "benchmark_engine.py"
LEVELS = (1, 2, 4, 8)


def default_sets() -> list[Path]:
    """eval, eval-more (benchkit's defaults) and eval-extra beside them."""
    return default_manifests() + [default_manifest().parent.parent / "eval-extra" / "manifest.csv"]


def speech_clips(manifests: list[Path], quick: bool) -> list[Clip]:
    clips = [clip for path in manifests for clip in read_manifest(path, PROG, kinds=SPEECH_KINDS)]
    return one_per_language(clips) if quick else clips


def settings_for_local():
    from src.config.settings import load_settings

    return load_settings(ENGINE="local")


@dataclass
class Cut:
    """A clip decoded and cut to its speech, as identify() hands it to the engine."""

    clip: Clip
    samples: np.ndarray
    speech: object  # src.vad.Speech
    audio: np.ndarray  # speech.audio(samples)


def decode_and_cut(clips: list[Clip], settings) -> list[Cut]:
    from src.vad import VoiceActivityDetector

    vad = VoiceActivityDetector(threshold=settings.VAD_THRESHOLD)
    out = []
    for clip in clips:
        samples = clip.samples()
        speech = vad.find_speech(samples)
        if speech.seconds >= settings.MIN_SPEECH_SECONDS:
            out.append(Cut(clip, samples, speech, speech.audio(samples)))
    return out


# --- the engines measured ---------------------------------------------------------------------------------

def counting_engine_class():
    from src.engines.local_whisper import LocalWhisperEngine

    class CountingEngine(LocalWhisperEngine):
        """The product's engine, counting the batches its worker runs (nothing else differs)."""

        batches = 0
        batched = 0

        @classmethod
        def like(cls, engine: LocalWhisperEngine) -> "CountingEngine":
            """An unloaded copy of `engine` (as create_engine made it) of this class."""
            if not isinstance(engine, LocalWhisperEngine):
                sys.exit(f"{PROG}: the settings make a {type(engine).__name__}, not the local engine")
            copy = cls.__new__(cls)
            copy.__dict__.update(engine.__dict__)
            return copy

        def _detect_batch(self, batch):
            self.batches += 1
            self.batched += len(batch)
            return super()._detect_batch(batch)

    return CountingEngine


@dataclass
class Config:
    workers: int
    threads: int
    batch: int
    engine: object = None

    @property
    def label(self) -> str:
        return f"w{self.workers} t{self.threads} b{self.batch}"

    @property
    def is_default(self) -> bool:
        """The server's default on 2 cores (WHISPER_WORKERS and WHISPER_CPU_THREADS 0, BATCH_MAX_SIZE 1)."""
        return (self.workers, self.threads, self.batch) == (2, 1, 1)


def make_configs(settings) -> list[Config]:
    from src.engines import create_engine

    counting = counting_engine_class()
    configs = ([Config(1, threads, batch) for threads in (2, 1) for batch in (1, 2, 4)]
               + [Config(2, 1, batch) for batch in (1, 2)])
    for config in configs:
        product = create_engine(settings.model_copy(update={
            "WHISPER_WORKERS": config.workers, "WHISPER_CPU_THREADS": config.threads,
            "BATCH_MAX_SIZE": config.batch}))
        config.engine = counting.like(product)
        config.engine.load()
    return configs


# --- part 1: the cells -------------------------------------------------------------------------------------

@dataclass
class Cell:
    label: str
    k: int
    detections: int
    wall: float
    cpu: float
    latencies: list[float] = field(default_factory=list)
    batches: int = 0
    blas_cpu: float = 0.0

    @property
    def per_second(self) -> float:
        return self.detections / self.wall

    @property
    def cpu_per_detection(self) -> float:
        return self.cpu / self.detections

    @property
    def blas_per_detection(self) -> float:
        return self.blas_cpu / self.detections

    @property
    def mean_batch(self) -> float:
        return self.detections / self.batches if self.batches else float("nan")


def run_cell(config: Config, k: int, audios: list[np.ndarray], start: int, detections: int) -> Cell:
    """K requester threads, `detections / K` each, clips taken in turn from `start` in `audios`."""
    engine = config.engine
    each = math.ceil(detections / k)
    lock = threading.Lock()
    cursor = [start]
    latencies: list[float] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(k + 1)

    def requester() -> None:
        barrier.wait()
        for _ in range(each):
            with lock:
                audio = audios[cursor[0] % len(audios)]
                cursor[0] += 1
            t = time.perf_counter()
            try:
                engine.detect(audio)
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)
                return
            elapsed = time.perf_counter() - t
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=requester, name=f"requester-{i}") for i in range(k)]
    for thread in threads:
        thread.start()
    batches0 = engine.batches
    blas0 = blas_cpu()
    cpu0 = time.process_time()
    barrier.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    blas = blas_cpu() - blas0
    if errors:
        raise errors[0]
    return Cell(config.label, k, len(latencies), wall, cpu, latencies, engine.batches - batches0, blas)


def blas_cpu() -> float:
    """CPU seconds of the OpenBLAS threads so far."""
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in BLAS_THREADS)


def warm_up(configs: list[Config], cuts: list[Cut]) -> None:
    """Each engine on one clip per window length, then a burst of 4 callers (oneDNN prepares per shape)."""
    by_window: dict[int, np.ndarray] = {}
    for cut in cuts:
        by_window.setdefault(window_seconds(cut, configs[0].engine), cut.audio)
    for config in configs:
        for audio in by_window.values():
            config.engine.detect(audio)
        run_cell(config, 4, [cut.audio for cut in cuts], 0, 8)


def window_seconds(cut: Cut, engine) -> int:
    return engine.features(cut.audio).shape[1] // 100


def bench_split(configs: list[Config], cuts: list[Cut], passes: int, detections: int, budget: float) -> list[list[Cell]]:
    audios = [cut.audio for cut in cuts]
    done: list[list[Cell]] = []
    started = time.monotonic()
    for p in range(passes):
        if p > 0:
            spent = time.monotonic() - started
            if spent + spent / p > budget:
                log(f"part 1: time budget ({budget / 60:.1f} min) reached after {p} pass(es)")
                break
        start = (p * detections) % len(audios)  # each pass its own clips, the same for every cell
        cells: list[Cell] = []
        t_pass = time.monotonic()
        for k in LEVELS:
            order = configs[p % len(configs):] + configs[: p % len(configs)]
            if (p + LEVELS.index(k)) % 2:
                order = order[::-1]
            for config in order:
                time.sleep(0.2)  # let the previous cell's threads go idle
                cells.append(run_cell(config, k, audios, start, detections))
        done.append(cells)
        log(f"part 1: pass {p + 1}/{passes} in {time.monotonic() - t_pass:.0f} s")
    return done


def summarize(passes: list[list[Cell]], configs: list[Config]) -> list[dict]:
    rows = []
    for config in configs:
        for k in LEVELS:
            cells = [cell for cells in passes for cell in cells if cell.label == config.label and cell.k == k]
            rates = [cell.per_second for cell in cells]
            rows.append({
                "config": config.label, "workers": config.workers, "cpu_threads": config.threads,
                "max_batch": config.batch, "default": config.is_default, "k": k, "passes": len(cells),
                "detections_per_cell": cells[0].detections,
                "per_second": med(rates), "per_second_min": min(rates), "per_second_max": max(rates),
                "p50": med([med(cell.latencies) for cell in cells]),
                "p95": med([p95(cell.latencies) for cell in cells]),
                "cpu_per_detection": med([cell.cpu_per_detection for cell in cells]),
                "blas_per_detection": med([cell.blas_per_detection for cell in cells]),
                "mean_batch": med([cell.mean_batch for cell in cells]),
                "per_pass": [{"per_second": c.per_second, "p50": med(c.latencies), "p95": p95(c.latencies),
                              "cpu_per_detection": c.cpu_per_detection, "blas_per_detection": c.blas_per_detection,
                              "mean_batch": c.mean_batch,
                              "wall": c.wall} for c in cells],
            })
    return rows


# --- part 2: gc after each detection, one subprocess each ---------------------------------------------------

def gc_child(gc_on: bool, n: int, manifests: list[Path], quick: bool) -> dict:
    """In the subprocess: the server's AudioProcessor, `n` detections of identify(speech=...), RSS."""
    from src.audio_processor import AudioProcessor

    settings = settings_for_local()
    cuts = decode_and_cut(speech_clips(manifests, quick), settings)
    processor = AudioProcessor.from_settings(settings, gc_after_processing=gc_on)
    processor.load()
    for cut in cuts[:4]:
        processor.identify(cut.samples, speech=cut.speech)
    gc.collect()
    process = psutil.Process()
    rss = {"start": process.memory_info().rss}
    tenth = max(1, n // 10)
    times = []
    for i in range(n):
        cut = cuts[i % len(cuts)]
        t = time.perf_counter()
        processor.identify(cut.samples, speech=cut.speech)
        times.append(time.perf_counter() - t)
        if i + 1 == tenth:
            rss["tenth"] = process.memory_info().rss
    rss["end"] = process.memory_info().rss
    tracked = len(gc.get_objects())
    collected = gc.collect()  # what was left for the explicit gc to find at the end
    processor.close()
    return {"gc": gc_on, "n": n, "clips": len(cuts), "times": times, "rss": rss,
            "tracked_objects_end": tracked, "collected_at_end": collected,
            "threads": processor.engine.cpu_threads, "max_batch": processor.engine.max_batch}


def run_gc_children(n: int, manifests: list[Path], quick: bool) -> list[dict]:
    out = []
    for gc_on in (False, True):
        log(f"part 2: {n} detections {'with' if gc_on else 'without'} gc.collect(), in a subprocess")
        command = [sys.executable, str(Path(__file__).resolve()), "--gc-child", "on" if gc_on else "off",
                   "--gc-detections", str(n)] + (["--quick"] if quick else [])
        for path in manifests:
            command += ["--manifest", str(path)]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def mib(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


def signed_mib(value: float) -> str:
    return f"{value / 2**20:+.1f} MiB"


# --- the report ---------------------------------------------------------------------------------------------

def conclusion(rows: list[dict], gc_runs: list[dict]) -> list[str]:
    lines = []
    default = {row["k"]: row for row in rows if row["default"]}
    by_config: dict[str, dict[int, dict]] = {}
    for row in rows:
        by_config.setdefault(row["config"], {})[row["k"]] = row
    # Most detections per second at K >= 4: the mean of the K=4 and K=8 medians.
    loaded = {label: statistics.mean(ks[k]["per_second"] for k in LEVELS if k >= 4) for label, ks in by_config.items()}
    ranked = sorted(loaded, key=loaded.get, reverse=True)
    best = ranked[0]
    base = default[4]["config"]
    lines.append(
        f"- Most detections per second at K >= 4: **{best}** ({loaded[best]:.2f}/s, mean of K=4 and K=8), "
        f"{loaded[best] / loaded[base]:.2f}x the product default {base} ({loaded[base]:.2f}/s); "
        f"the slowest, {ranked[-1]}, {loaded[ranked[-1]]:.2f}/s ({loaded[best] / loaded[ranked[-1]]:.2f}x). "
        "Ranking: " + ", ".join(f"{label} {loaded[label]:.2f}" for label in ranked) + ".")
    for k in (4, 8):
        top = max(by_config, key=lambda label: by_config[label][k]["per_second"])
        lines.append(f"  At K={k}: {top} {by_config[top][k]['per_second']:.2f}/s vs default "
                     f"{default[k]['per_second']:.2f}/s ({by_config[top][k]['per_second'] / default[k]['per_second']:.2f}x); "
                     f"p95 {ms(by_config[top][k]['p95'])} vs {ms(default[k]['p95'])}.")
    k1 = sorted(by_config, key=lambda label: by_config[label][1]["p50"])
    q = by_config[k1[0]][1]
    two, one = by_config["w1 t2 b1"][1], by_config["w1 t1 b1"][1]
    lines.append(
        f"- Lowest latency at K=1: **{k1[0]}**, p50 {ms(q['p50'])} (p95 {ms(q['p95'])}) vs default "
        f"{ms(default[1]['p50'])} ({default[1]['p50'] / q['p50']:.2f}x); cpu_threads 2 vs 1 (batch 1): p50 "
        f"{ms(two['p50'])} vs {ms(one['p50'])} ({two['p50'] / one['p50']:.2f}x), CPU per detection "
        f"{two['cpu_per_detection']:.3f} s vs {one['cpu_per_detection']:.3f} s. "
        "Ranking by K=1 p50: " + ", ".join(f"{label} {ms(by_config[label][1]['p50'])}" for label in k1) + ".")
    if gc_runs:
        off = next(run for run in gc_runs if not run["gc"])
        on = next(run for run in gc_runs if run["gc"])
        grow_off = off["rss"]["end"] - off["rss"]["tenth"]
        grow_on = on["rss"]["end"] - on["rss"]["tenth"]
        if grow_off <= 8 * 2**20:
            verdict = "does not grow (8 MiB or less)"
        elif grow_off > 2 * max(grow_on, 0) + 8 * 2**20:
            verdict = "grows, more than with it"
        else:
            verdict = "grows about as much as with it: the explicit gc does not hold it back"
        lines.append(
            f"- Without gc.collect() RSS {verdict}: {signed_mib(grow_off)} from 10 % to the end of {off['n']} "
            f"detections (with: {signed_mib(grow_on)}; a last gc.collect() then freed {off['collected_at_end']} "
            f"objects without, {on['collected_at_end']} with); time per detection {ms(med(off['times']), 1)} without, "
            f"{ms(med(on['times']), 1)} with ({med(on['times']) / med(off['times']):.3f}x).")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, action="append", default=None,
                        help="a manifest.csv (repeatable); default: eval, eval-more and eval-extra")
    parser.add_argument("--quick", action="store_true", help="one clip per language, 2 passes of 12, 60 gc detections")
    parser.add_argument("--passes", type=int, default=None, help="passes over the cells (default 4; --quick 2)")
    parser.add_argument("--detections", type=int, default=None, help="detections per cell (default 32; --quick 12)")
    parser.add_argument("--gc-detections", type=int, default=None, help="detections per gc run (default 400; --quick 60)")
    parser.add_argument("--budget", type=float, default=None, help="minutes for part 1 (default 8.5; --quick 2.2)")
    parser.add_argument("--json", type=Path, default=None, help="dump the figures to this JSON file")
    parser.add_argument("--gc-child", choices=("on", "off"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    manifests = args.manifest or default_sets()
    gc_n = args.gc_detections or (60 if args.quick else 400)

    if args.gc_child:
        print(json.dumps(gc_child(args.gc_child == "on", gc_n, manifests, args.quick)), flush=True)
        return 0

    t_start = time.monotonic()
    passes = args.passes or (2 if args.quick else 4)
    detections = args.detections or (12 if args.quick else 32)
    budget = 60 * (args.budget or (2.2 if args.quick else 8.5))
    info = machine()
    from benchkit import model_path

    backend = describe_backend(ct2_backend(model_path()))
    print(f"## Engine thread split, batching and gc ({PROG})\n")
    print(f"machine: {info['affinity_cpus']} cores, {info['cpu_model']}, {info['ram_gib']:.1f} GiB; python "
          f"{info['python']}; load average at start {' '.join(f'{x:.2f}' for x in info['loadavg_start'])}; {backend}; "
          f"numpy BLAS threads {len(BLAS_THREADS) + 1} (OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})")

    settings = settings_for_local()
    cuts = decode_and_cut(speech_clips(manifests, args.quick), settings)
    random.Random(7).shuffle(cuts)  # lengths (window sizes) mixed along the list
    log(f"{len(cuts)} clips decoded and cut to their speech; loading 7 engines")
    configs = make_configs(settings)
    windows = [window_seconds(cut, configs[0].engine) for cut in cuts]
    warm_up(configs, cuts)
    log("part 1: warmed up")
    cell_passes = bench_split(configs, cuts, passes, detections, budget)
    rows = summarize(cell_passes, configs)
    for config in configs:
        config.engine.close()
    configs_done = time.monotonic()

    share8 = sum(w == 8 for w in windows) / len(windows)
    print(f"\n### 1. Thread split and batching ({len(cuts)} speech clips of {', '.join(p.parent.name for p in manifests)}; "
          f"speech median {med([len(c.audio) / SAMPLE_RATE for c in cuts]):.1f} s; windows: {100 * share8:.0f} % 8 s, "
          f"the rest 9-12 s; {len(cell_passes)} passes x {detections} detections per cell; medians over the passes)\n")
    print("w = CTranslate2 workers (num_workers, inter_threads), t = cpu_threads (intra_threads), b = max_batch; "
          "K = concurrent requester threads; w2 t1 b1 is the server's default on 2 cores.\n")
    print(table(
        ["config", "K", "det/s", "det/s range", "p50", "p95", "CPU s/det", "of which BLAS", "mean batch"],
        [[row["config"] + (" (default)" if row["default"] else ""), row["k"], f"{row['per_second']:.2f}",
          f"{row['per_second_min']:.2f}-{row['per_second_max']:.2f}", ms(row["p50"]), ms(row["p95"]),
          f"{row['cpu_per_detection']:.3f}", f"{row['blas_per_detection']:.3f}", f"{row['mean_batch']:.2f}"]
         for row in rows],
    ))

    gc_runs = run_gc_children(gc_n, manifests, args.quick)
    gc_rows = []
    for run in gc_runs:
        rss = run["rss"]
        gc_rows.append([
            "with gc.collect()" if run["gc"] else "without", run["n"], ms(med(run["times"]), 1), ms(p95(run["times"]), 1),
            mib(rss["start"]), mib(rss["tenth"]), mib(rss["end"]), signed_mib(rss["end"] - rss["tenth"]),
            signed_mib(rss["end"] - rss["start"]), run["collected_at_end"],
        ])
    print(f"\n### 2. gc.collect() after each detection (the server's engine: cpu_threads {gc_runs[0]['threads']}, "
          f"max_batch {gc_runs[0]['max_batch']}; one caller; {gc_runs[0]['clips']} clips in turn; one subprocess each, "
          "without first)\n")
    print(table(
        ["run", "detections", "time/det p50", "p95", "RSS start", "RSS at 10 %", "RSS end", "growth 10 %-end",
         "growth start-end", "objects a final gc.collect() freed"],
        gc_rows,
    ))

    end_load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print("\n### 3. Conclusion\n")
    print("\n".join(conclusion(rows, gc_runs)))
    print(f"\nWhole run {time.monotonic() - t_start:.0f} s (part 1 {configs_done - t_start:.0f} s); "
          f"load average at the end {end_load} (other processes on these cores inflate and scatter the figures).")
    if args.json:
        write_json(args.json, {
            "machine": info, "backend": backend, "clips": len(cuts), "windows": windows,
            "passes": len(cell_passes), "detections_per_cell": detections, "rows": rows,
            "gc": [{key: value for key, value in run.items()} for run in gc_runs],
            "loadavg_end": os.getloadavg(),
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
