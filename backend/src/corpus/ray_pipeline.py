"""The corpus mode on a Ray cluster (`--ray [ADDRESS]`): the same work as the local pool, as a Ray Data
pipeline: the items are read into a dataset, `map_batches` runs them through an actor pool (one
`CorpusDetector`, so one engine, per actor, each actor sized by `num_cpus` or `num_gpus`; every item's
failure is caught inside the actor and becomes its error row), and the driver writes the rows as they come
(the same resumable output as a local run).

This package goes to the cluster with the job (Ray's `py_modules`), and so do the settings in this
process's environment; the nodes need the Python requirements (and the model packages) installed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

from .detector import CorpusDetector, DetectOptions
from .inputs import Item

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the application package, shipped to the cluster


class RayDetector:
    """A Ray Data actor: one engine, loaded once; a batch of items in, their rows (JSON) out."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.detector = CorpusDetector(DetectOptions(**options))
        self.detector.load()

    def __call__(self, batch: Any) -> dict[str, list[str]]:
        items = [Item(**record) for record in batch.to_pylist()]
        return {"row": [json.dumps(row, ensure_ascii=False) for row in self.detector.run(items)]}


def _environment() -> dict[str, str]:
    """This process's settings (and CTranslate2's switches), for the actors."""
    from ..config.settings import Settings

    return {name: value for name, value in os.environ.items()
            if name in Settings.model_fields or name.startswith("CT2_")}


def run_ray(items: list[Item], address: str | None, options: DetectOptions, actors: int | None,
            num_gpus: float = 0.0) -> Iterator[dict[str, Any]]:
    """Rows of the items from an actor pool on the Ray cluster at `address` (None: the one `ray start`
    left on this machine, or a new local one), in the order they are done."""
    import ray

    ray.init(address=address, runtime_env={"py_modules": [str(PACKAGE_DIR)], "env_vars": _environment()},
             log_to_driver=False, configure_logging=False)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        if actors is None:
            per_actor = num_gpus or options.threads
            key = "GPU" if num_gpus else "CPU"
            actors = max(1, int(ray.cluster_resources().get(key, 1) // per_actor))
        if not items:
            return
        dataset = ray.data.from_items([item.as_dict() for item in items],
                                      override_num_blocks=max(1, min(len(items) // options.batch_size, 64)))
        rows = dataset.map_batches(
            RayDetector, fn_constructor_kwargs={"options": asdict(options)}, batch_size=options.batch_size,
            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=0 if num_gpus else options.threads,
            num_gpus=num_gpus or None,
        )
        for batch in rows.iter_batches(batch_size=None, batch_format="pyarrow"):
            for text in batch.column("row").to_pylist():
                yield json.loads(text)
    finally:
        ray.shutdown()
