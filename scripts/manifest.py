"""The evaluation manifest (file,lang,seconds,... with the clips in clips/ beside it), for the scripts."""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_manifest() -> Path:
    base = os.environ.get("LANGSHAZAM_EVAL_DIR")
    return Path(base) / "manifest.csv" if base else REPO_ROOT.parent / "shared" / "eval" / "manifest.csv"


def default_more_manifest() -> Path:
    """The second set (eval-more, with a `kind` column): $LANGSHAZAM_EVAL_MORE_DIR, else beside the first."""
    base = os.environ.get("LANGSHAZAM_EVAL_MORE_DIR")
    return Path(base) / "manifest.csv" if base else default_manifest().parent.parent / "eval-more" / "manifest.csv"


@dataclass(frozen=True)
class Clip:
    file: str
    lang: str
    seconds: float
    path: Path
    kind: str = "speech"  # speech, speech_unverified, code_switch, non_speech (eval-more's kinds)


def read_manifest(path: Path, prog: str) -> list[Clip]:
    """The clips of a manifest; exits with a message naming `prog` if it or a clip is missing."""
    if not path.is_file():
        sys.exit(f"{prog}: no manifest at {path} (use --manifest PATH or set LANGSHAZAM_EVAL_DIR)")
    clips_dir = path.parent / "clips"
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"file", "lang", "seconds"} - set(rows[0] if rows else {})
    if missing:
        sys.exit(f"{prog}: {path} lacks column(s) {', '.join(sorted(missing))}")
    clips = [Clip(r["file"], r["lang"].strip(), float(r["seconds"]), clips_dir / r["file"], r.get("kind") or "speech")
             for r in rows]
    absent = [c.file for c in clips if not c.path.is_file()]
    if absent:
        sys.exit(f"{prog}: {len(absent)} clip(s) missing from {clips_dir}, e.g. {absent[0]}")
    return clips
