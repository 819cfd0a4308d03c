"""The corpus mode's output, written as rows come and resumable: `open_output(path)` reads what an earlier
run left at `path` (the ids it holds are done) and goes on appending.

JSONL (`.jsonl`): one row a line, appended and flushed, so a kill (even SIGKILL) loses at most the rows in
flight; a last line cut short by the kill is dropped when the run resumes.

Parquet (`.parquet`): rows go to a JSONL journal beside it (`OUT.parquet.partial.jsonl`, the same rules),
turned into the Parquet file (row groups, in a bounded memory) when the run ends and then removed; a
resumed run over a finished Parquet file first takes its rows back into a journal.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from .rows import SCHEMA

_ROW_GROUP = 2048  # rows per Parquet row group (and per read of the journal)


class OutputError(ValueError):
    """An output the corpus mode cannot write (an unknown suffix, an unreadable earlier file)."""


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial.jsonl") if path.suffix == ".parquet" else path


class Output:
    """Appends rows to a JSONL file (the output itself, or a Parquet output's journal)."""

    def __init__(self, path: Path, overwrite: bool = False) -> None:
        if path.suffix not in (".jsonl", ".parquet"):
            raise OutputError(f"{path}: the output must end in .jsonl or .parquet")
        self.path = path
        self.journal = journal_path(path)
        if overwrite:
            for old in {path, self.journal}:
                old.unlink(missing_ok=True)
        elif path.suffix == ".parquet" and path.exists() and not self.journal.exists():
            _parquet_to_journal(path, self.journal)
        self.done: set[str] = _recover(self.journal)
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.journal, "a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        self.done.add(row["id"])

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every row written so far, from this run and the earlier ones."""
        if not self._file.closed:
            self._file.flush()
        yield from _read_rows(self.journal)

    def close(self, finished: bool) -> None:
        """Stop writing; when `finished` (every input has its row), a Parquet output is written whole."""
        self._file.close()
        if finished and self.path.suffix == ".parquet":
            _journal_to_parquet(self.journal, self.path)


def _recover(journal: Path) -> set[str]:
    """The ids of the complete rows in a journal; a last line cut short by a kill is cut off."""
    done: set[str] = set()
    if not journal.exists():
        return done
    good = 0
    with open(journal, "rb") as handle:
        for line in handle:
            try:
                row = json.loads(line) if line.endswith(b"\n") else None
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict) or "id" not in row:
                break
            done.add(row["id"])
            good += len(line)
    if good != journal.stat().st_size:
        os.truncate(journal, good)
    return done


def _read_rows(journal: Path) -> Iterator[dict[str, Any]]:
    if journal.exists():
        with open(journal, encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)


def _journal_to_parquet(journal: Path, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    partial = path.with_name(path.name + ".writing")
    with pq.ParquetWriter(partial, SCHEMA) as writer:
        chunk: list[dict[str, Any]] = []
        groups = 0
        for row in _read_rows(journal):
            chunk.append(row)
            if len(chunk) == _ROW_GROUP:
                writer.write_table(pa.Table.from_pylist(chunk, schema=SCHEMA))
                chunk, groups = [], groups + 1
        if chunk or not groups:
            writer.write_table(pa.Table.from_pylist(chunk, schema=SCHEMA))
    os.replace(partial, path)
    journal.unlink()


def _parquet_to_journal(path: Path, journal: Path) -> None:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
        raise OutputError(f"{path}: not a Parquet file this run can resume ({exc}); use --overwrite") from None
    partial = journal.with_name(journal.name + ".writing")
    with open(partial, "w", encoding="utf-8") as handle:
        for batch in parquet.iter_batches(batch_size=_ROW_GROUP):
            for row in batch.to_pylist():
                handle.write(json.dumps({k: v for k, v in row.items() if v is not None}, ensure_ascii=False) + "\n")
    os.replace(partial, journal)
