"""Markdown output shared by the scripts."""

from __future__ import annotations


def pct(num: int, den: int) -> str:
    return f"{100.0 * num / den:.1f} %" if den else "n/a"


def table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
