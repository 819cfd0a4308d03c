"""The corpus mode's inputs: files, folders (recursive), globs and manifests (.jsonl, .csv, .parquet with a
`path` column; optional `id`, `label`, `offset`, `duration`), local paths or fsspec URLs, as `Item`s.

Items are read lazily (a manifest of millions of lines is never held whole). A manifest's relative paths
are relative to the manifest. A path that does not exist is still an item: it gets an error row.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import fsspec

from ..cli import AUDIO_SUFFIXES

MANIFEST_SUFFIXES = (".jsonl", ".csv", ".parquet")
_GLOB_CHARS = "*?["


class InputError(ValueError):
    """An input the corpus mode cannot list (a manifest without a path column, a bad offset...)."""


@dataclass(frozen=True)
class Item:
    """One input of a corpus run: the audio at `path` (a local path or an fsspec URL), from `offset` for
    `duration` seconds when given; `id` names its row (the manifest's, else the path)."""

    id: str
    path: str
    label: str | None = None
    offset: float | None = None
    duration: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_url(path: str) -> bool:
    return "://" in path


def iter_items(inputs: list[str], path_column: str = "path", label_column: str = "label") -> Iterator[Item]:
    """Every item the inputs name, in order, each id once (a later duplicate is skipped)."""
    seen: set[str] = set()
    for spec in inputs:
        for item in _items_of(spec, path_column, label_column):
            if item.id not in seen:
                seen.add(item.id)
                yield item


def _items_of(spec: str, path_column: str, label_column: str) -> Iterator[Item]:
    if spec.lower().endswith(MANIFEST_SUFFIXES):
        yield from read_manifest(spec, path_column, label_column)
    elif any(char in spec for char in _GLOB_CHARS):
        fs, _, _ = fsspec.get_fs_token_paths(spec)
        for found in sorted(fs.glob(spec)):
            if fs.isfile(found) and _is_audio(found):
                yield _file_item(fs.unstrip_protocol(found) if is_url(spec) else found)
    elif not is_url(spec) and Path(spec).is_dir():
        for found in sorted(p for p in Path(spec).rglob("*") if p.is_file() and _is_audio(str(p))):
            yield _file_item(str(found))
    else:
        yield _file_item(spec)


def _is_audio(path: str) -> bool:
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def _file_item(path: str) -> Item:
    return Item(id=path, path=path)


def read_manifest(spec: str, path_column: str = "path", label_column: str = "label") -> Iterator[Item]:
    """The items of a .jsonl, .csv or .parquet manifest (local or an fsspec URL)."""
    base = spec.rsplit("/", 1)[0] if "/" in spec else "."
    for number, record in enumerate(_records(spec), start=1):
        path = record.get(path_column)
        if not path:
            raise InputError(f"{spec}: line {number} has no {path_column!r}")
        path = str(path)
        if not is_url(path) and not Path(path).is_absolute():
            path = f"{base}/{path}" if is_url(base) else str(Path(base) / path)
        label = record.get(label_column)
        yield Item(
            id=str(record.get("id") or path),
            path=path,
            label=str(label).strip().lower() if label not in (None, "") else None,
            offset=_seconds(record.get("offset"), "offset", spec, number),
            duration=_seconds(record.get("duration"), "duration", spec, number),
        )


def _records(spec: str) -> Iterator[dict[str, Any]]:
    suffix = spec.lower().rsplit(".", 1)[-1]
    if suffix == "parquet":
        import pyarrow.parquet as pq

        with fsspec.open(spec, "rb") as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=1024):
                yield from batch.to_pylist()
        return
    with fsspec.open(spec, "rb") as handle:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        if suffix == "csv":
            yield from csv.DictReader(text)
            return
        for number, line in enumerate(text, start=1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{spec}: line {number} is not JSON: {exc}") from None
                if not isinstance(record, dict):
                    raise InputError(f"{spec}: line {number} is not a JSON object")
                yield record


def _seconds(value: Any, name: str, spec: str, number: int) -> float | None:
    if value in (None, ""):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{spec}: line {number}: {name} must be a number of seconds, not {value!r}") from None
    if not seconds >= 0:
        raise InputError(f"{spec}: line {number}: {name} must be 0 or more seconds")
    return seconds
