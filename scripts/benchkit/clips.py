"""The evaluation sets (manifest.csv: file, lang, seconds[, kind]; the clips in clips/ beside it) and the
clips converted as a browser sends them (webm/opus, with trailing silence when asked)."""

from __future__ import annotations

import csv
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_RATE = 16000
SPEECH_KINDS = ("speech", "speech_unverified")


def default_manifest() -> Path:
    """The first set: $LANGSHAZAM_EVAL_DIR, else ../shared/eval beside the project."""
    base = os.environ.get("LANGSHAZAM_EVAL_DIR")
    return Path(base) / "manifest.csv" if base else REPO_ROOT.parent / "shared" / "eval" / "manifest.csv"


def default_more_manifest() -> Path:
    """The second set (eval-more, with a `kind` column): $LANGSHAZAM_EVAL_MORE_DIR, else beside the first."""
    base = os.environ.get("LANGSHAZAM_EVAL_MORE_DIR")
    return Path(base) / "manifest.csv" if base else default_manifest().parent.parent / "eval-more" / "manifest.csv"


def default_manifests() -> list[Path]:
    return [default_manifest(), default_more_manifest()]


@dataclass(frozen=True)
class Clip:
    file: str
    lang: str  # ISO 639-1; "zxx" no speech; "a+b" two languages in one recording
    seconds: float
    path: Path
    kind: str = "speech"  # speech, speech_unverified, code_switch, non_speech (eval-more's kinds)

    @property
    def set(self) -> str:
        """The set's name: its directory's (eval, eval-more)."""
        return self.path.parent.parent.name

    def samples(self) -> np.ndarray:
        """Mono float32 at 16 kHz, decoded as the server decodes."""
        from src.audio import decode

        return decode(self.path.read_bytes())


def read_manifest(path: Path, prog: str, kinds: tuple[str, ...] | None = None, skip_missing: bool = False) -> list[Clip]:
    """The clips of a manifest (only those of `kinds` when given); exits with a message naming `prog` if
    it is missing, or a clip is (unless skip_missing: then absent clips are left out)."""
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
    if skip_missing:
        clips = [c for c in clips if c.path.is_file()]
    elif absent:
        sys.exit(f"{prog}: {len(absent)} clip(s) missing from {clips_dir}, e.g. {absent[0]}")
    if not clips:
        sys.exit(f"{prog}: no clip of {path} found in {clips_dir}")
    return [c for c in clips if kinds is None or c.kind in kinds]


def read_set(directory: Path, prog: str, **options) -> list[Clip]:
    """read_manifest on DIR/manifest.csv (scripts that take a set's directory rather than its manifest)."""
    return read_manifest(directory / "manifest.csv", prog, **options)


def one_per_language(clips: list[Clip]) -> list[Clip]:
    seen, out = set(), []
    for clip in clips:
        if clip.lang not in seen:
            seen.add(clip.lang)
            out.append(clip)
    return out


def round_robin(clips: list[Clip], n: int) -> list[Clip]:
    """n clips, languages interleaved (first clip of each language, then the second of each, ...)."""
    by_lang: dict[str, list[Clip]] = {}
    for clip in clips:
        by_lang.setdefault(clip.lang, []).append(clip)
    out: list[Clip] = []
    depth = 0
    while len(out) < n and any(len(v) > depth for v in by_lang.values()):
        out += [v[depth] for v in by_lang.values() if len(v) > depth]
        depth += 1
    return out[:n]


# --- conversion -----------------------------------------------------------------------------------------


def to_webm(path: Path) -> tuple[bytes, float]:
    """Decode any file PyAV reads and encode it as mono webm/opus at 48 kHz; returns the bytes and seconds."""
    import av

    out = io.BytesIO()
    samples = 0
    with av.open(str(path)) as source, av.open(out, mode="w", format="webm") as target:
        stream = target.add_stream("libopus", rate=48000, layout="mono")
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=48000)
        decoded = list(source.decode(audio=0))
        for frame in decoded + [None]:
            for resampled in resampler.resample(frame):
                resampled.pts = None
                samples += resampled.samples
                for packet in stream.encode(resampled):
                    target.mux(packet)
        for packet in stream.encode(None):
            target.mux(packet)
    return out.getvalue(), samples / 48000


def samples_to_webm(samples: np.ndarray) -> tuple[bytes, float]:
    """16 kHz samples as webm/opus in one piece (audio_tools.encode), and their seconds."""
    from audio_tools import encode

    return encode(samples, "webm"), len(samples) / SAMPLE_RATE


def with_silence(samples: np.ndarray, seconds: float, rng: np.random.Generator, level: float = 0.001) -> np.ndarray:
    """The samples followed by `seconds` of a quiet room (Gaussian noise at `level`, about -60 dBFS)."""
    tail = rng.normal(0, level, int(seconds * SAMPLE_RATE)).astype(np.float32)
    return np.concatenate([samples, tail])


@dataclass
class Encoded:
    """A clip as a browser would send it: webm/opus bytes and their seconds."""

    file: str
    lang: str
    seconds: float  # of the encoded webm
    webm: bytes

    def frames(self, chunk_seconds: float = 0.25) -> list[bytes]:
        """The webm cut into pieces of about `chunk_seconds` of audio each (as the tests' stream_exchange)."""
        from benchkit.stream import split_frames

        return split_frames(self.webm, self.seconds, chunk_seconds)


def encode_clips(clips: list[Clip]) -> list[Encoded]:
    """Each clip's file re-encoded as webm/opus (to_webm)."""
    out = []
    for clip in clips:
        webm, seconds = to_webm(clip.path)
        out.append(Encoded(clip.file, clip.lang, seconds, webm))
    return out
