"""The corpus mode on one machine: `--workers N` processes, each with its engine loaded once
(`CorpusDetector`). In each process a thread reads and decodes the next items (and finds their speech)
while the engine works on a batch of the ones decoded before; rows come back to the parent, which writes
them. Items go out a few at a time, so memory stays flat whatever the corpus size.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import threading
from typing import Any, Iterable, Iterator

from .detector import CorpusDetector, DetectOptions, Prepared
from .inputs import Item

logger = logging.getLogger(__name__)

_AHEAD = 3  # batches of items queued per worker ahead of the engine


class WorkerDied(RuntimeError):
    """A worker process ended without being asked to (killed, or out of memory)."""


def run_local(items: Iterable[Item], workers: int, options: DetectOptions) -> Iterator[dict[str, Any]]:
    """Rows of the items, in the order they are done, from `workers` processes."""
    context = mp.get_context("spawn")  # no fork of a parent holding threads
    todo: Any = context.Queue()
    done: Any = context.Queue()
    processes = [context.Process(target=_serve, args=(todo, done, options, os.getpid()), name=f"corpus-worker-{index}",
                                 daemon=True) for index in range(workers)]
    for process in processes:
        process.start()
    limit = workers * options.batch_size * _AHEAD
    pending = 0
    source = iter(items)
    exhausted = False
    try:
        while True:
            while not exhausted and pending < limit:
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                todo.put(item)
                pending += 1
            if exhausted and pending == 0:
                return
            try:
                rows = done.get(timeout=1.0)
            except queue.Empty:
                for process in processes:
                    if not process.is_alive():
                        raise WorkerDied(f"{process.name} ended with exit code {process.exitcode}")
                continue
            if isinstance(rows, str):  # the worker could not start
                raise WorkerDied(rows)
            pending -= len(rows)
            yield from rows
    finally:
        for _ in processes:
            todo.put(None)
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


def _serve(todo: Any, done: Any, options: DetectOptions, parent: int) -> None:
    """A worker process: load the engine, then answer items until told to stop (None)."""
    done.cancel_join_thread()  # the parent takes every row before it says stop; if it is gone, exit anyway
    try:
        detector = CorpusDetector(options)
        detector.load()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops the run
        done.put(f"a worker could not load the engine: {exc}")
        return
    ready: queue.Queue[Prepared | dict[str, Any] | None] = queue.Queue(maxsize=options.batch_size * 2)
    threading.Thread(target=_prepare_all, args=(todo, ready, detector, parent), daemon=True).start()
    while True:
        collected = [ready.get()]
        while len(collected) < options.batch_size:  # and whatever else is decoded already, up to a batch
            try:
                collected.append(ready.get_nowait())
            except queue.Empty:
                break
        rows = [got for got in collected if isinstance(got, dict)]
        done.put(rows + detector.detect([got for got in collected if isinstance(got, Prepared)]))
        if any(got is None for got in collected):
            break
    detector.close()


def _prepare_all(todo: Any, ready: queue.Queue, detector: CorpusDetector, parent: int) -> None:
    """The decoding thread: items from the parent, decoded, to the engine's queue; the end (None) when
    the parent says so, or is gone (killed: its queue breaks, or this process has another parent)."""
    while True:
        try:
            item = todo.get(timeout=2.0)
        except queue.Empty:
            if os.getppid() == parent:
                continue
            item = None
        except (EOFError, OSError):
            item = None
        if item is None:
            ready.put(None)
            return
        ready.put(detector.prepare(item))
