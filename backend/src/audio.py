"""Audio decoding, in one place: whatever a browser or a file sends, to 16 kHz mono float32.

Compressed audio (webm/opus, mp4/aac, ogg, wav, mp3, flac, ...) is decoded by PyAV through
faster-whisper's `decode_audio`. Chunks of a MediaRecorder stream cannot be decoded alone, so callers
decode the joined stream. Raw PCM (s16le / f32le at a given rate) is converted with numpy.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np
from faster_whisper.audio import decode_audio

SAMPLE_RATE = 16000
PCM_FORMATS = ("pcm_s16le", "pcm_f32le")


class AudioDecodeError(ValueError):
    """The bytes are not audio LangShazam can decode; the message says why, for the client."""


class AudioIncomplete(AudioDecodeError):
    """The bytes start like a known container but cannot be decoded yet (e.g. an mp4 whose index
    is at the end): more bytes may make them decodable."""


@dataclass(frozen=True)
class Container:
    name: str
    magic: tuple[tuple[int, bytes], ...]  # (offset, bytes) pairs, any of which identifies it


_CONTAINERS = (
    Container("webm/matroska", ((0, b"\x1a\x45\xdf\xa3"),)),
    Container("mp4", ((4, b"ftyp"), (4, b"moov"), (4, b"moof"), (4, b"styp"), (4, b"free"), (4, b"mdat"))),
    Container("ogg", ((0, b"OggS"),)),
    Container("wav", ((0, b"RIFF"),)),
    Container("flac", ((0, b"fLaC"),)),
    Container("mp3", ((0, b"ID3"), (0, b"\xff\xfb"), (0, b"\xff\xf3"), (0, b"\xff\xf2"), (0, b"\xff\xe3"))),
    Container("aac", ((0, b"\xff\xf1"), (0, b"\xff\xf9"))),
)


def sniff_container(data: bytes) -> str | None:
    """Name of the container the bytes start with, or None if they look like none we know."""
    for container in _CONTAINERS:
        for offset, magic in container.magic:
            if data[offset : offset + len(magic)] == magic:
                return container.name
    return None


def decode(data: bytes, *, final: bool = True) -> np.ndarray:
    """Decode compressed audio bytes to 16 kHz mono float32.

    With `final=False` the bytes are a stream still arriving: a known container that does not decode
    yet raises `AudioIncomplete` (keep buffering) instead of `AudioDecodeError`.
    """
    if not data:
        raise AudioDecodeError("no audio received")
    container = sniff_container(data)
    try:
        audio = decode_audio(io.BytesIO(data), sampling_rate=SAMPLE_RATE)
    except (av.error.FFmpegError, EOFError, ValueError, IndexError, RuntimeError) as exc:
        if container is not None and not final:
            raise AudioIncomplete(f"incomplete {container} stream: {_reason(exc)}") from None
        if container is None:
            raise AudioDecodeError(
                "could not decode audio: the bytes are not in a known audio format "
                "(expected webm/opus, mp4, ogg, wav, mp3 or flac)"
            ) from None
        raise AudioDecodeError(f"could not decode {container} audio: {_reason(exc)}") from None
    if audio.size == 0:
        if container is not None and not final:
            raise AudioIncomplete(f"incomplete {container} stream: no audio frames yet")
        what = f"{container} data" if container else "the bytes"
        raise AudioDecodeError(f"could not decode audio: {what} contained no audio frames")
    return audio


def decode_pcm(data: bytes, fmt: str, sample_rate: int) -> np.ndarray:
    """Raw little-endian mono PCM to 16 kHz float32, resampled with FFmpeg's resampler if needed."""
    if fmt not in PCM_FORMATS:
        raise AudioDecodeError(f"unknown PCM format {fmt!r}; use one of {', '.join(PCM_FORMATS)}")
    width = 2 if fmt == "pcm_s16le" else 4
    usable = len(data) - len(data) % width
    if fmt == "pcm_s16le":
        audio = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
    else:
        audio = np.frombuffer(data[:usable], dtype="<f4").astype(np.float32)
        if not np.all(np.isfinite(audio)):
            raise AudioDecodeError("pcm_f32le audio contains NaN or infinite samples")
    if sample_rate != SAMPLE_RATE and audio.size:
        audio = resample(audio, sample_rate)
    return audio


def resample(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample mono float32 audio to 16 kHz with FFmpeg's resampler (PyAV)."""
    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = sample_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


class AudioStream:
    """Audio arriving in chunks: bytes in, 16 kHz mono float32 samples out.

    Raw PCM is converted as it arrives. Compressed streams (webm, ogg, fragmented mp4, ...) cannot be
    decoded chunk by chunk, so the joined bytes are decoded again when more audio is wanted; the last
    result is kept, and `new_seconds()` estimates from the byte rate how much audio arrived since, so
    callers decode only when it is worth it.
    """

    def __init__(self, fmt: str | None = None, sample_rate: int | None = None) -> None:
        if fmt is not None and fmt not in PCM_FORMATS:
            raise AudioDecodeError(f"unknown format {fmt!r}; raw audio must be one of {', '.join(PCM_FORMATS)}")
        if fmt is not None and not sample_rate:
            raise AudioDecodeError(f"{fmt} audio needs a sample_rate")
        self.format = fmt
        self.sample_rate = sample_rate
        self.bytes_received = 0
        self._data = bytearray()
        self._pcm_parts: list[np.ndarray] = []
        self._samples = np.zeros(0, dtype=np.float32)
        self._decoded_bytes = 0
        self._resampler = None
        if fmt is not None and sample_rate != SAMPLE_RATE:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    @property
    def is_pcm(self) -> bool:
        return self.format is not None

    def feed(self, data: bytes) -> None:
        self.bytes_received += len(data)
        self._data += data
        if self.is_pcm:
            width = 2 if self.format == "pcm_s16le" else 4
            usable = len(self._data) - len(self._data) % width
            if usable:
                chunk = decode_pcm(bytes(self._data[:usable]), self.format, SAMPLE_RATE)
                del self._data[:usable]
                if self._resampler is not None:
                    frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
                    frame.sample_rate = self.sample_rate
                    chunk = np.concatenate(
                        [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)] or [chunk[:0]]
                    )
                self._pcm_parts.append(chunk.astype(np.float32, copy=False))

    def new_seconds(self) -> float:
        """Seconds of audio received and not decoded yet (estimated for compressed streams; inf before
        the first successful decode)."""
        if self.is_pcm:
            return sum(len(part) for part in self._pcm_parts) / SAMPLE_RATE
        new_bytes = self.bytes_received - self._decoded_bytes
        if new_bytes == 0:
            return 0.0
        if self._samples.size == 0:
            return float("inf")
        bytes_per_second = self._decoded_bytes / (self._samples.size / SAMPLE_RATE)
        return new_bytes / bytes_per_second

    def samples(self, *, final: bool = False) -> np.ndarray:
        """All the audio so far, decoded (may raise AudioIncomplete unless final, or AudioDecodeError)."""
        if self.is_pcm:
            if self._pcm_parts:
                self._samples = np.concatenate([self._samples, *self._pcm_parts])
                self._pcm_parts.clear()
            return self._samples
        if self._decoded_bytes != self.bytes_received or (final and self._samples.size == 0):
            # Runs in a worker thread while feed() may add bytes: count only those that were decoded.
            received = self.bytes_received
            self._samples = decode(bytes(self._data), final=final)
            self._decoded_bytes = received
        return self._samples


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # PyAV puts the (meaningless, in-memory) file name after a colon: keep FFmpeg's own words.
    if isinstance(exc, av.error.FFmpegError) and getattr(exc, "strerror", None):
        text = exc.strerror
    return text
