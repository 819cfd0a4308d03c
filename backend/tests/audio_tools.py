"""Test audio: real clips from the evaluation set, converted with FFmpeg's libraries (PyAV) to the
formats browsers and files use."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_EVAL_DIR = REPO_ROOT.parent / "shared" / "eval"


def eval_dir() -> Path:
    """The evaluation set: $LANGSHAZAM_EVAL_DIR, else ../shared/eval beside the project."""
    path = Path(os.environ.get("LANGSHAZAM_EVAL_DIR", DEFAULT_EVAL_DIR))
    if not (path / "manifest.csv").is_file():
        pytest.fail(
            f"the evaluation clips are missing: no manifest.csv in {path}. They live in ../shared/eval "
            "beside the project; set LANGSHAZAM_EVAL_DIR to point elsewhere.",
            pytrace=False,
        )
    return path


def eval_more_dir() -> Path:
    """The second evaluation set: $LANGSHAZAM_EVAL_MORE_DIR, else `eval-more` beside the first set."""
    path = Path(os.environ.get("LANGSHAZAM_EVAL_MORE_DIR", eval_dir().parent / "eval-more"))
    if not (path / "manifest.csv").is_file():
        pytest.fail(
            f"the second evaluation set is missing: no manifest.csv in {path}. It lives in ../shared/eval-more "
            "beside the project; set LANGSHAZAM_EVAL_MORE_DIR to point elsewhere.",
            pytrace=False,
        )
    return path


@dataclass(frozen=True)
class Clip:
    file: str
    lang: str  # ISO 639-1; "zxx" no speech; "a+b" two languages in one recording
    seconds: float
    kind: str = "speech"  # speech, speech_unverified, code_switch, non_speech (eval-more's kinds)
    base: Path | None = None  # the set's directory (None: the first set)

    @property
    def path(self) -> Path:
        return (self.base or eval_dir()) / "clips" / self.file

    def samples(self) -> np.ndarray:
        from src.audio import decode

        return decode(self.path.read_bytes())


def manifest() -> list[Clip]:
    with open(eval_dir() / "manifest.csv", newline="") as handle:
        return [Clip(row["file"], row["lang"], float(row["seconds"])) for row in csv.DictReader(handle)]


def more_manifest() -> list[Clip]:
    """The second evaluation set's clips, with their kind."""
    base = eval_more_dir()
    with open(base / "manifest.csv", newline="") as handle:
        return [Clip(row["file"], row["lang"], float(row["seconds"]), row["kind"], base)
                for row in csv.DictReader(handle)]


def clip(file: str) -> Clip:
    for item in manifest():
        if item.file == file:
            return item
    pytest.fail(f"{file} is not in the evaluation manifest", pytrace=False)


# container, codec, rate, muxer options
_FORMATS = {
    "webm": ("webm", "libopus", 48000, {}),
    "mp4": ("mp4", "aac", 44100, {"movflags": "frag_keyframe+empty_moov+default_base_moof"}),  # as MediaRecorder
    "mp4-file": ("mp4", "aac", 44100, {}),  # an ordinary mp4 file: its index (moov) is at the end
    "ogg": ("ogg", "libopus", 48000, {}),
    "wav": ("wav", "pcm_s16le", 16000, {}),
    "mp3": ("mp3", "libmp3lame", 44100, {}),
    "flac": ("flac", "flac", 16000, {}),
}
FORMATS = tuple(_FORMATS)


def encode(samples: np.ndarray, fmt: str, sample_rate: int = 16000) -> bytes:
    """Encode mono float32 samples into one of FORMATS."""
    container_format, codec, rate, options = _FORMATS[fmt]
    out = io.BytesIO()
    with av.open(out, mode="w", format=container_format, options=options) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate)
        frame = av.AudioFrame.from_ndarray(samples.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = sample_rate
        frames = resampler.resample(frame) + resampler.resample(None)
        for resampled in frames:
            resampled.pts = None
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def chunks(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def tone(seconds: float, freq: float = 440.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def join_clips(files: list[tuple[str, str]], pause: float, seed: int = 0) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """(file, language) clips trimmed to their speech (VAD) and joined with `pause` seconds of faint noise;
    returns the samples and (language, start, end) of each clip in them."""
    from src.vad import VoiceActivityDetector

    vad = VoiceActivityDetector()
    rng = np.random.default_rng(seed)
    pieces, spans, position = [], [], 0
    for index, (file, language) in enumerate(files):
        samples = clip(file).samples()
        speech = vad.find_speech(samples).audio(samples)
        if index:
            gap = rng.normal(0, 3e-4, int(pause * 16000)).astype(np.float32)
            pieces.append(gap)
            position += len(gap)
        spans.append((language, position / 16000, (position + len(speech)) / 16000))
        pieces.append(speech)
        position += len(speech)
    return np.concatenate(pieces), spans
