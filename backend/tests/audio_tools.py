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


def _set_dir(variable: str, default: Path, name: str) -> Path:
    path = Path(os.environ.get(variable, default))
    if not (path / "manifest.csv").is_file():
        pytest.fail(
            f"the evaluation clips are missing: no manifest.csv in {path}. They live in ../shared/{name} "
            f"beside the project; set {variable} to point elsewhere.",
            pytrace=False,
        )
    return path


def eval_dir() -> Path:
    """The evaluation set: $LANGSHAZAM_EVAL_DIR, else ../shared/eval beside the project."""
    return _set_dir("LANGSHAZAM_EVAL_DIR", DEFAULT_EVAL_DIR, "eval")


def eval_more_dir() -> Path:
    """The second evaluation set: $LANGSHAZAM_EVAL_MORE_DIR, else `eval-more` beside the first set."""
    return _set_dir("LANGSHAZAM_EVAL_MORE_DIR", eval_dir().parent / "eval-more", "eval-more")


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


def encode(samples: np.ndarray, fmt: str, sample_rate: int = 16000, bit_rate: int | None = None) -> bytes:
    """Encode mono float32 samples into one of FORMATS (at the codec's default bit rate unless given)."""
    container_format, codec, rate, options = _FORMATS[fmt]
    out = io.BytesIO()
    with av.open(out, mode="w", format=container_format, options=options) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        if bit_rate:
            stream.bit_rate = bit_rate
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


def encode_chunks(samples: np.ndarray, chunk_seconds: float = 0.25, sample_rate: int = 16000) -> list[bytes]:
    """Encode to webm/opus as a browser's MediaRecorder streams it: one piece of bytes per `chunk_seconds`
    of audio, whatever the bitrate (compressed silence is a few bytes a second). Clusters of 20 ms (one
    Opus packet) let each piece hold the audio up to its end but ~70 ms, as a browser's recorder does."""
    out = io.BytesIO()
    bounds = []
    options = {"cluster_time_limit": "20", "flush_packets": "1", "live": "1"}  # live: no index (cues) at the end
    with av.open(out, mode="w", format="webm", options=options) as container:
        stream = container.add_stream("libopus", rate=48000, layout="mono")
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=48000)

        def mux(frames) -> None:
            for resampled in frames:
                resampled.pts = None
                for packet in stream.encode(resampled):
                    container.mux(packet)

        step = int(0.02 * sample_rate)
        next_bound = chunk_seconds
        for start in range(0, len(samples), step):
            piece = samples[start : start + step].astype(np.float32)
            frame = av.AudioFrame.from_ndarray(piece.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = sample_rate
            mux(resampler.resample(frame))
            if (start + len(piece)) / sample_rate >= next_bound - 1e-9:
                bounds.append(out.tell())
                next_bound += chunk_seconds
        mux(resampler.resample(None))
        for packet in stream.encode(None):
            container.mux(packet)
    data = out.getvalue()
    pieces, previous = [], 0
    for bound in [b for b in bounds if 0 < b < len(data)] + [len(data)]:
        if bound > previous:
            pieces.append(data[previous:bound])
            previous = bound
    return pieces


def chunks(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def tone(seconds: float, freq: float = 440.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def long_ogg_opus(samples: np.ndarray, seconds: float, bit_rate: int = 6000) -> bytes:
    """`seconds` of ogg/opus at a low `bit_rate`, as a hostile client would send: the samples encoded
    once with libopus, then their packets repeated with running timestamps (what `ffmpeg -stream_loop -1
    -c copy` does), so that two hours take about 5 MB and a second to build."""
    piece = io.BytesIO()
    with av.open(piece, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48000, layout="mono")
        stream.bit_rate = bit_rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=48000)
        frame = av.AudioFrame.from_ndarray(samples.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = 16000
        for resampled in resampler.resample(frame) + resampler.resample(None):
            resampled.pts = None
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    piece.seek(0)
    out = io.BytesIO()
    with av.open(piece) as source, av.open(out, mode="w", format="ogg") as target:
        source_stream = source.streams.audio[0]
        target_stream = target.add_stream_from_template(source_stream)
        packets = [(bytes(p), p.pts, p.duration) for p in source.demux(source_stream) if p.size]
        period = packets[-1][1] + packets[-1][2] - packets[0][1]
        repeats = int(np.ceil(seconds / float(period * source_stream.time_base)))
        for repeat in range(repeats):
            for data, pts, duration in packets:
                packet = av.Packet(data)
                packet.pts = packet.dts = pts + repeat * period
                packet.duration = duration
                packet.time_base = source_stream.time_base
                packet.stream = target_stream
                target.mux(packet)
    return out.getvalue()


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


# --- transcripts: properties that hold on any CPU ------------------------------------------------------
# The exact words Whisper writes differ between CTranslate2's int8 kernels (oneDNN on AMD, MKL on Intel) and
# with thread timing, so tests check what a transcript is (in which language, about which words of a known
# sentence) rather than its exact words.

SPANISH_CLIP = "es_cv_5.mp3"  # Common Voice: "Es un originario de lo este África Tropical y de Borneo." (5.6 s)
SPANISH_CONTENT_WORDS = ("originario", "africa", "tropical", "borneo")
_FUNCTION_WORDS = {
    "en": {"the", "of", "is", "it", "and", "this", "to", "that", "from", "was", "are", "an", "its"},
    "es": {"el", "la", "de", "es", "un", "una", "y", "lo", "los", "las", "que", "del", "su"},
}


def words(text: str) -> list[str]:
    import re
    import unicodedata

    plain = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
    return re.findall(r"[a-z0-9]+", plain)


def share_heard(text: str, content_words=SPANISH_CONTENT_WORDS) -> float:
    """The share of a known sentence's content words found in a transcript."""
    found = set(words(text))
    return sum(word in found for word in content_words) / len(content_words)


def reads_as(text: str, language: str) -> bool:
    """Does a transcript read as `language` (en or es) rather than the other: more of that language's
    function words than of the other's?"""
    other = "es" if language == "en" else "en"
    found = words(text)
    return sum(w in _FUNCTION_WORDS[language] for w in found) > sum(w in _FUNCTION_WORDS[other] for w in found)
