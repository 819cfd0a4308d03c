"""The corpus mode's summary (files, audio hours, wall and CPU time, errors, counts by language; with
labels, the audit: where the speech disagrees with its label, most confident first) and the manifest of
the files to keep (`--keep agrees|disagrees` with `--min-confidence`).
"""

from __future__ import annotations

import csv
import heapq
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

AUDIT_SHOWN = 100  # disagreements listed in the summary (the output holds them all)
ERRORS_SHOWN = 20


@dataclass
class Summary:
    files: int = 0
    new: int = 0  # rows written by this run (the others were there already: resumed)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    languages: Counter = field(default_factory=Counter)
    errors: list[dict[str, str]] = field(default_factory=list)
    labelled: int = 0
    agree: int = 0
    disagree: int = 0
    unnamed: int = 0  # labelled files whose speech names no language
    disagreements: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)  # a heap

    def add(self, row: dict[str, Any]) -> None:
        self.files += 1
        self.statuses[row["status"]] += 1
        self.audio_seconds += row.get("duration") or 0.0
        if row["status"] == "ok":
            self.languages[row.get("language") or "uncertain"] += 1
        if row["status"] == "error" and len(self.errors) < ERRORS_SHOWN:
            self.errors.append({"id": row["id"], "error": row.get("error") or ""})
        if row.get("label") is not None:
            self.labelled += 1
            if row.get("agrees"):
                self.agree += 1
            elif row.get("agrees") is None:
                self.unnamed += 1
            else:
                self.disagree += 1
                entry = (row.get("confidence") or 0.0, row["id"], {
                    "id": row["id"], "path": row["path"], "label": row["label"], "language": row["language"],
                    "confidence": row.get("confidence"), "confident": row.get("confident", False)})
                if len(self.disagreements) < AUDIT_SHOWN:
                    heapq.heappush(self.disagreements, entry)
                else:
                    heapq.heappushpop(self.disagreements, entry)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "files": self.files,
            "new": self.new,
            "audio_hours": round(self.audio_seconds / 3600, 4),
            "wall_seconds": round(self.wall_seconds, 2),
            "cpu_seconds": round(self.cpu_seconds, 2),
            "files_per_second": round(self.new / self.wall_seconds, 2) if self.wall_seconds else None,
            "ok": self.statuses["ok"],
            "no_speech": self.statuses["no_speech"],
            "errors": self.statuses["error"],
            "languages": dict(self.languages.most_common()),
            "first_errors": self.errors,
        }
        if self.labelled:
            out["labelled"] = self.labelled
            out["agree"] = self.agree
            out["disagree"] = self.disagree
            out["unnamed"] = self.unnamed
            out["disagreements"] = [entry for _, _, entry in sorted(self.disagreements, key=lambda e: (-e[0], e[1]))]
        return out

    def text(self) -> str:
        data = self.as_dict()
        lines = [
            f"{data['files']} files ({data['new']} this run) in {data['wall_seconds']:.1f} s wall, "
            f"{data['cpu_seconds']:.1f} s CPU; {data['audio_hours']:.3f} h of audio",
            f"ok {data['ok']}, no speech {data['no_speech']}, errors {data['errors']}",
            "languages: " + (", ".join(f"{code} {count}" for code, count in data["languages"].items()) or "none"),
        ]
        lines += [f"error: {e['id']}: {e['error']}" for e in data["first_errors"]]
        if self.labelled:
            lines.append(f"labels: {data['agree']} of {self.labelled} agree, {data['disagree']} disagree, "
                         f"{data['unnamed']} name no language"
                         + (", most confident first:" if data["disagreements"] else ""))
            lines += [f"  {d['id']}: label {d['label']}, heard {d['language']} "
                      f"({d['confidence'] if d['confidence'] is not None else '-'})" for d in data["disagreements"][:20]]
        return "\n".join(lines)


def summarise(rows: Iterable[dict[str, Any]]) -> Summary:
    summary = Summary()
    for row in rows:
        summary.add(row)
    return summary


def write_keep(rows: Iterable[dict[str, Any]], path: Path, keep: str, min_confidence: float) -> int:
    """The manifest (.jsonl or .csv, by `path`'s suffix) of the labelled files whose named language agrees
    (or disagrees) with their label at `min_confidence` or more; the number of files in it."""
    columns = ["id", "path", "label", "language", "confidence", "offset", "duration"]
    kept = 0
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore") if path.suffix == ".csv" else None
        if writer is not None:
            writer.writeheader()
        for row in rows:
            if row.get("agrees") is None or (row.get("confidence") or 0.0) < min_confidence:
                continue
            if row["agrees"] != (keep == "agrees"):
                continue
            record = {key: row.get(key) for key in columns if row.get(key) is not None}
            if row.get("truncated"):
                record.pop("duration", None)  # the file goes on: its row's duration is the part heard
            if writer is not None:
                writer.writerow(record)
            else:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            kept += 1
    return kept
