"""The corpus mode's rows: one per input, with the fields and the honesty rule of POST /detect's answer
(`protocol.answer_data`), and their Parquet schema.

`status` is `ok` (a language named, or `language: null` with `reason: uncertain`), `no_speech` (no or too
little speech: `reason` says which) or `error` (`error` says why). With a label the row also has `label`
and `agrees` (the named language is the label; null when no language is named).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ..protocol import Identification, answer_data
from .inputs import Item

NO_SPEECH_REASONS = ("no_speech", "too_short")

_CANDIDATE = pa.struct([("language", pa.string()), ("language_name", pa.string()), ("probability", pa.float64())])
SCHEMA = pa.schema([
    ("id", pa.string()),
    ("path", pa.string()),
    ("status", pa.string()),
    ("language", pa.string()),
    ("language_name", pa.string()),
    ("confidence", pa.float64()),
    ("confident", pa.bool_()),
    ("likely", pa.list_(pa.string())),
    ("top", pa.list_(_CANDIDATE)),
    ("reason", pa.string()),
    ("fallback", pa.bool_()),
    ("speech_seconds", pa.float64()),
    ("duration", pa.float64()),
    ("truncated", pa.bool_()),
    ("offset", pa.float64()),
    ("error", pa.string()),
    ("model", pa.string()),
    ("label", pa.string()),
    ("agrees", pa.bool_()),
])


def answer_row(item: Item, result: Identification, top_k: int, model: str, truncated: bool) -> dict[str, Any]:
    """The row of an input that was decoded and judged."""
    data = answer_data(result, "corpus", top_k)
    row = _base(item, model) | {
        "status": "no_speech" if result.reason in NO_SPEECH_REASONS else "ok",
        "language": data["language"],
        "language_name": data["language_name"],
        "confidence": data["confidence"],
        "confident": data["confident"],
        "likely": data["likely"],
        "top": data["top"],
        "reason": data.get("reason"),
        "speech_seconds": data["speech_duration"],
        "duration": data["audio_duration"],
    }
    if data.get("fallback"):
        row["fallback"] = True
    if truncated:
        row["truncated"] = True  # as POST /detect says it: the answer rests on the first MAX_UPLOAD_SECONDS
    return _labelled(item, row)


def error_row(item: Item, message: str, model: str) -> dict[str, Any]:
    """The row of an input that could not be read or decoded."""
    return _labelled(item, _base(item, model) | {
        "status": "error", "language": None, "language_name": None, "confidence": None, "confident": False,
        "likely": [], "top": [], "speech_seconds": None, "duration": None, "error": message,
    })


def _base(item: Item, model: str) -> dict[str, Any]:
    row: dict[str, Any] = {"id": item.id, "path": item.path, "model": model}
    if item.offset is not None:
        row["offset"] = item.offset
    return row


def _labelled(item: Item, row: dict[str, Any]) -> dict[str, Any]:
    if item.label is not None:
        row["label"] = item.label
        row["agrees"] = None if row["language"] is None else row["language"] == item.label
    return row
