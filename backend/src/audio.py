"""Audio decoding, in one place: whatever a browser or a file sends, to 16 kHz mono float32.

Compressed audio (webm/opus, mp4/aac, ogg, wav, mp3, flac, ...) is decoded with PyAV (FFmpeg's
libraries), frame by frame, and resampled as it goes (FFmpeg's resampler, to 16-bit like faster-whisper's
`decode_audio`, whose output it reproduces). Raw PCM (s16le / f32le at a given rate) is converted with
numpy.

Every decode counts the seconds it has produced and stops at a limit: a small file holding hours of
low-bitrate audio never becomes gigabytes of samples (`AudioTooLong`, or the first seconds only with
`decode_head`).

A stream (`AudioStream`) is decoded incrementally: one demuxer and decoder per stream read a growing
input in a thread of their own, so each new chunk costs only its own decoding. The one exception is a
container that cannot be read front to back: an ordinary mp4 file keeps its index (`moov`) after the
audio (`mdat`), so nothing can be decoded before the whole file is there; such a stream is decoded as
one buffer each time it is asked for (bounded by the same limit), as are bytes in no container we know.
"""

from __future__ import annotations

import io
import logging
import threading
import weakref
from dataclasses import dataclass
from typing import BinaryIO

import av
import numpy as np

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
PCM_FORMATS = ("pcm_s16le", "pcm_f32le")
G711_FORMATS = ("pcm_mulaw", "pcm_alaw")  # 8-bit G.711 (telephony; OpenAI Realtime's audio/pcmu, audio/pcma)
_SAMPLE_WIDTH = {"pcm_s16le": 2, "pcm_f32le": 4, "pcm_mulaw": 1, "pcm_alaw": 1}
_CAUGHT_UP_TIMEOUT = 10.0  # s a stream's reader waits for its decoder to take in the bytes fed so far


class AudioDecodeError(ValueError):
    """The bytes are not audio LangShazam can decode; the message says why, for the client."""


class AudioIncomplete(AudioDecodeError):
    """The bytes start like a known container but cannot be decoded yet (e.g. an mp4 whose index
    is at the end): more bytes may make them decodable."""


class AudioTooLong(AudioDecodeError):
    """The audio lasts longer than the limit; decoding stopped there."""

    def __init__(self, limit_seconds: float) -> None:
        super().__init__(f"more than {limit_seconds:g} s of audio")
        self.limit_seconds = limit_seconds


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
_SNIFF_BYTES = 12  # enough for every magic above

_DECODE_ERRORS = (av.error.FFmpegError, EOFError, ValueError, IndexError, RuntimeError)


def sniff_container(data: bytes) -> str | None:
    """Name of the container the bytes start with, or None if they look like none we know."""
    for container in _CONTAINERS:
        for offset, magic in container.magic:
            if data[offset : offset + len(magic)] == magic:
                return container.name
    return None


def mp4_index_first(data: bytes) -> bool | None:
    """For mp4 bytes: True when the index (`moov`, or fragments `moof`) comes before the audio (`mdat`),
    so the file can be decoded as it arrives; False when the audio comes first (an ordinary mp4 file);
    None when the top-level boxes seen so far do not tell yet."""
    offset = 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        if kind in (b"moov", b"moof"):
            return True
        if kind == b"mdat":
            return False
        if size == 1:  # 64-bit size follows the type
            if offset + 16 > len(data):
                return None
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        if size < 8:  # 0 ("to the end of the file") or broken: FFmpeg will have to make sense of it
            return False
        offset += size
    return None


class _Samples:
    """16 kHz mono float32 samples, appended as they are decoded, never more than `limit` of them.

    Stored in one array that grows by doubling, so that reading all of them (`view`) costs nothing.
    `size` counts every sample appended; `start` of them were released (`release`): the array holds
    samples `start`..`size` only, so a long stream that releases what it has answered holds little."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._array = np.empty(0, dtype=np.float32)
        self.size = 0
        self.start = 0
        self.over = False  # samples beyond the limit were offered (and dropped)
        self._lock = threading.Lock()

    def append(self, chunk: np.ndarray) -> bool:
        """Add samples; False (keeping only those up to the limit) once the limit is passed."""
        with self._lock:
            if self.limit is not None and self.size + len(chunk) > self.limit:
                chunk = chunk[: self.limit - self.size]
                self.over = True
            held, end = self.size - self.start, self.size - self.start + len(chunk)
            if end > len(self._array):
                capacity = max(end, 2 * len(self._array), SAMPLE_RATE * 4)
                if self.limit is not None:
                    capacity = min(capacity, self.limit - self.start)
                grown = np.empty(capacity, dtype=np.float32)
                grown[:held] = self._array[:held]
                self._array = grown
            self._array[held:end] = chunk
            self.size += len(chunk)
            return not self.over

    def view(self) -> np.ndarray:
        """The samples held (from `start`)."""
        with self._lock:
            return self._array[: self.size - self.start]

    def release(self, before: int) -> None:
        """Drop the samples before index `before` (counted from the first sample appended). The held rest
        moves to a new array, so views handed out earlier stay valid."""
        with self._lock:
            before = min(before, self.size)
            if before <= self.start:
                return
            rest = self._array[before - self.start : self.size - self.start]
            self._array = np.empty(max(len(rest), SAMPLE_RATE * 4), dtype=np.float32)
            self._array[: len(rest)] = rest
            self.start = before


def _limit_samples(max_seconds: float | None) -> int | None:
    return None if max_seconds is None else int(max_seconds * SAMPLE_RATE)


def _resampler() -> av.AudioResampler:
    # 16-bit, as faster-whisper's decode_audio: the same samples as the engine was tuned on.
    return av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)


def _append_frames(frames, resampler: av.AudioResampler, out: _Samples) -> bool:
    """Resample decoded frames (None flushes) into `out`; False once its limit is passed."""
    for frame in frames:
        if frame is not None:
            frame.pts = None  # timestamps do not matter here; gaps must not trip the resampler
        for resampled in resampler.resample(frame):
            if not out.append(resampled.to_ndarray().reshape(-1).astype(np.float32) / 32768.0):
                return False
    return True


def _decode_into(source: BinaryIO, out: _Samples) -> None:
    """Demux and decode the first audio stream of `source` into `out`, until its end or `out`'s limit.
    Packets FFmpeg finds invalid are skipped, as faster-whisper does."""
    with av.open(source, mode="r", metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise AudioDecodeError("could not decode audio: no audio stream in the data")
        stream = container.streams.audio[0]
        resampler = _resampler()
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue
            if not _append_frames(frames, resampler, out):
                return
        _append_frames([None], resampler, out)


def _decode_bytes(data: bytes, *, final: bool, limit: int | None) -> _Samples:
    if not data:
        raise AudioDecodeError("no audio received")
    container = sniff_container(data)
    out = _Samples(limit)
    try:
        _decode_into(io.BytesIO(data), out)
    except AudioDecodeError:
        raise
    except _DECODE_ERRORS as exc:
        if container is not None and not final:
            raise AudioIncomplete(f"incomplete {container} stream: {_reason(exc)}") from None
        if container is None:
            raise AudioDecodeError(
                "could not decode audio: the bytes are not in a known audio format "
                "(expected webm/opus, mp4, ogg, wav, mp3 or flac)"
            ) from None
        raise AudioDecodeError(f"could not decode {container} audio: {_reason(exc)}") from None
    # No gc.collect() here (faster-whisper runs one after each decode for its issue #390, resampler objects
    # freed only by the collector): with PyAV 18, 528 decodes without it held RSS flat, and in the server
    # the collect of its large heap was ~70 ms of every POST /detect, more than half its time besides the
    # engine's (scripts/benchmark_detect.py).
    if out.size == 0:
        if container is not None and not final:
            raise AudioIncomplete(f"incomplete {container} stream: no audio frames yet")
        what = f"{container} data" if container else "the bytes"
        raise AudioDecodeError(f"could not decode audio: {what} contained no audio frames")
    return out


def decode(data: bytes, *, final: bool = True, max_seconds: float | None = None) -> np.ndarray:
    """Decode compressed audio bytes to 16 kHz mono float32.

    With `final=False` the bytes are a stream still arriving: a known container that does not decode
    yet raises `AudioIncomplete` (keep buffering) instead of `AudioDecodeError`. Past `max_seconds`
    decoding stops and raises `AudioTooLong`.
    """
    out = _decode_bytes(data, final=final, limit=_limit_samples(max_seconds))
    if out.over:
        raise AudioTooLong(max_seconds)  # type: ignore[arg-type]
    return out.view()


def decode_head(data: bytes, max_seconds: float) -> tuple[np.ndarray, bool]:
    """The first `max_seconds` of compressed audio, decoded (decoding stops there), and whether the
    audio went on beyond them."""
    out = _decode_bytes(data, final=True, limit=_limit_samples(max_seconds))
    return out.view(), out.over


def decode_pcm(data: bytes, fmt: str, sample_rate: int) -> np.ndarray:
    """Raw little-endian mono PCM (or G.711) to 16 kHz float32, resampled with FFmpeg's resampler if needed."""
    if fmt not in _SAMPLE_WIDTH:
        raise AudioDecodeError(f"unknown PCM format {fmt!r}; use one of {', '.join(PCM_FORMATS + G711_FORMATS)}")
    width = _SAMPLE_WIDTH[fmt]
    usable = len(data) - len(data) % width
    if fmt == "pcm_s16le":
        audio = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
    elif fmt in G711_FORMATS:
        table = _MULAW if fmt == "pcm_mulaw" else _ALAW
        audio = table[np.frombuffer(data, dtype=np.uint8)]
    else:
        audio = np.frombuffer(data[:usable], dtype="<f4").astype(np.float32)
        if not np.all(np.isfinite(audio)):
            raise AudioDecodeError("pcm_f32le audio contains NaN or infinite samples")
    if sample_rate != SAMPLE_RATE and audio.size:
        audio = resample(audio, sample_rate)
    return audio


def _g711_table(law: str) -> np.ndarray:
    """The 256 float32 values of G.711 mu-law or A-law bytes (ITU-T G.711)."""
    codes = np.arange(256, dtype=np.int32)
    if law == "mulaw":
        inverted = ~codes & 0xFF
        exponent, mantissa = (inverted >> 4) & 0x07, inverted & 0x0F
        magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
        values = np.where(inverted & 0x80, -magnitude, magnitude)
    else:
        toggled = codes ^ 0x55
        exponent, mantissa = (toggled >> 4) & 0x07, toggled & 0x0F
        magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
        values = np.where(toggled & 0x80, magnitude, -magnitude)
    return (values / 32768.0).astype(np.float32)


_MULAW, _ALAW = _g711_table("mulaw"), _g711_table("alaw")


class PcmConverter:
    """Raw audio arriving in pieces (PCM_FORMATS or G711_FORMATS at any rate) to 16 kHz mono float32, piece
    by piece: a sample split between two pieces waits for the next, and one resampler follows the whole
    stream (no edge at each piece)."""

    def __init__(self, fmt: str, sample_rate: int) -> None:
        if fmt not in _SAMPLE_WIDTH:
            raise AudioDecodeError(f"unknown format {fmt!r}; raw audio must be one of {', '.join(PCM_FORMATS)}")
        if not sample_rate or sample_rate <= 0:
            raise AudioDecodeError(f"{fmt} audio needs a sample_rate")
        self.format, self.sample_rate = fmt, sample_rate
        self._width = _SAMPLE_WIDTH[fmt]
        self._pending = bytearray()
        self._resampler = None
        if sample_rate != SAMPLE_RATE:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    def convert(self, data: bytes) -> np.ndarray:
        """The 16 kHz samples of these bytes (and of those left over from the last piece)."""
        self._pending += data
        usable = len(self._pending) - len(self._pending) % self._width
        chunk = decode_pcm(bytes(self._pending[:usable]), self.format, SAMPLE_RATE)
        del self._pending[:usable]
        if self._resampler is not None and chunk.size:
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = self.sample_rate
            chunk = np.concatenate([f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)] or [chunk[:0]])
        return chunk.astype(np.float32, copy=False)


def resample(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample mono float32 audio to 16 kHz with FFmpeg's resampler (PyAV)."""
    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = sample_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


# --- incremental decoding of a stream ------------------------------------------------------------------


class _GrowingInput:
    """A file-like object for FFmpeg over bytes still arriving: `read` waits until there are some, or
    until the input ends (then it returns b"", the end of the stream). Bytes are dropped once read."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending = bytearray()
        self._ended = False
        self._waiting = False  # the reader waits for bytes: it has taken in everything written

    def write(self, data: bytes) -> None:
        with self._cond:
            if not self._ended:
                self._pending += data
                self._cond.notify_all()

    def end(self, *, drop: bool = False) -> None:
        """No more bytes will come: the reader gets what is pending (unless `drop`), then the end."""
        with self._cond:
            self._ended = True
            if drop:
                self._pending.clear()
            self._cond.notify_all()

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            while not self._pending and not self._ended:
                self._waiting = True
                self._cond.notify_all()
                self._cond.wait()
            self._waiting = False
            if size < 0:
                size = len(self._pending)
            out = bytes(self._pending[:size])
            del self._pending[:size]
            return out

    def wait_caught_up(self, done: threading.Event, timeout: float) -> bool:
        """Wait until the reader has taken in every byte written so far, or `done` is set."""
        with self._cond:
            return self._cond.wait_for(lambda: done.is_set() or (self._waiting and not self._pending), timeout)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class _StreamDecoder:
    """One demuxer and decoder over a growing input, in a thread of their own: every byte written is
    demuxed and decoded once, as it arrives."""

    def __init__(self, out: _Samples) -> None:
        self.input = _GrowingInput()
        self.out = out
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audio-decoder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            _decode_into(self.input, self.out)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - reported to whoever asks for the samples
            self.error = exc
        finally:
            self.input.end(drop=True)  # nothing more will be read: drop what is pending, refuse the rest
            self.done.set()
            self.input.wake()

    def catch_up(self) -> None:
        """Wait until every byte written so far is decoded (as far as it can be before more arrive)."""
        if not self.input.wait_caught_up(self.done, _CAUGHT_UP_TIMEOUT):
            logger.warning("audio decoder still busy after %.0f s: answering on what it has", _CAUGHT_UP_TIMEOUT)

    def finish(self) -> None:
        """The stream has ended: decode what is left and wait for the decoder to be done."""
        self.input.end()
        if not self.done.wait(_CAUGHT_UP_TIMEOUT * 3):
            logger.warning("audio decoder still busy at the end of the stream: answering on what it has")

    def abandon(self) -> None:
        self.input.end(drop=True)


class AudioStream:
    """Audio arriving in chunks: bytes in, 16 kHz mono float32 samples out, at most `max_seconds` of them
    (`AudioTooLong` from `feed` or `samples` past it).

    Raw PCM is converted as it arrives. Compressed streams (webm, ogg, fragmented mp4, wav, mp3, flac,
    ...) are decoded incrementally by a `_StreamDecoder` started on the first bytes; `samples()` waits
    until the bytes fed so far are decoded, and returns all the samples (no copy). An mp4 whose `mdat`
    comes before its `moov`, and bytes in no container we know, are kept and decoded as one buffer when
    samples are asked for (the cost then grows with the stream). `new_seconds()` estimates from the byte
    rate how much audio arrived since the last `samples()`, so callers ask only when it is worth it.

    `feed` and `samples` may be called from different threads. `close()` (or dropping the last
    reference) stops the decoder thread.
    """

    def __init__(self, fmt: str | None = None, sample_rate: int | None = None, *, max_seconds: float | None = None) -> None:
        if fmt is not None and fmt not in PCM_FORMATS:
            raise AudioDecodeError(f"unknown format {fmt!r}; raw audio must be one of {', '.join(PCM_FORMATS)}")
        if fmt is not None and not sample_rate:
            raise AudioDecodeError(f"{fmt} audio needs a sample_rate")
        self.format = fmt
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.bytes_received = 0
        self.mode: str | None = "pcm" if fmt is not None else None  # then "incremental" or "whole"
        self._data = bytearray()  # PCM not converted yet; compressed bytes before the mode is known; "whole"
        self._out = _Samples(_limit_samples(max_seconds))
        self._whole: np.ndarray | None = None  # the last whole-buffer decode
        self._decoder: _StreamDecoder | None = None
        self._container = ""  # the sniffed container of an incremental stream
        self._finalizer: weakref.finalize | None = None
        self._seen_samples = 0  # samples decoded up to the end of the last samples() (released ones too)
        self._seen_bytes = 0  # bytes received at the last samples()
        self._pcm = PcmConverter(fmt, sample_rate) if fmt is not None else None  # type: ignore[arg-type]
        self._lock = threading.Lock()  # feed() and samples() may run in different threads

    @property
    def is_pcm(self) -> bool:
        return self.format is not None

    def feed(self, data: bytes) -> None:
        with self._lock:
            self.bytes_received += len(data)
            if self.mode == "incremental":
                self._check_decoder()
                self._decoder.input.write(data)  # type: ignore[union-attr]
                return
            self._data += data
            if self.mode == "pcm":
                self._feed_pcm()
            elif self.mode is None:
                self._choose_mode(final=False)

    def _feed_pcm(self) -> None:
        chunk = self._pcm.convert(bytes(self._data))  # type: ignore[union-attr]
        self._data.clear()
        if chunk.size and not self._out.append(chunk):
            raise AudioTooLong(self.max_seconds)  # type: ignore[arg-type]

    def _choose_mode(self, *, final: bool) -> None:
        """Incremental decoding when the container can be read front to back; else whole-buffer."""
        if len(self._data) < _SNIFF_BYTES and not final:
            return
        container = sniff_container(bytes(self._data[:_SNIFF_BYTES]))
        if container is None:
            self.mode = "whole"
            return
        if container == "mp4":
            index_first = mp4_index_first(bytes(self._data))
            if index_first is None and not final:
                return
            if not index_first:
                self.mode = "whole"
                return
        self.mode = "incremental"
        self._container = container
        self._decoder = _StreamDecoder(self._out)
        self._finalizer = weakref.finalize(self, self._decoder.abandon)
        self._decoder.input.write(bytes(self._data))
        self._data = bytearray()

    def _check_decoder(self) -> None:
        if self._out.over:
            raise AudioTooLong(self.max_seconds)  # type: ignore[arg-type]

    def new_seconds(self) -> float:
        """Seconds of audio received since the last `samples()` (estimated for compressed streams; inf
        before the first samples)."""
        if self.mode == "pcm":
            return (self._out.size - self._seen_samples) / SAMPLE_RATE
        new_bytes = self.bytes_received - self._seen_bytes
        if new_bytes == 0:
            return 0.0
        if self._seen_samples == 0:
            return float("inf")
        bytes_per_second = self._seen_bytes / (self._seen_samples / SAMPLE_RATE)
        return new_bytes / bytes_per_second

    def samples(self, *, final: bool = False) -> np.ndarray:
        """All the audio so far, decoded (may raise AudioIncomplete unless final, AudioTooLong, or
        AudioDecodeError)."""
        with self._lock:
            fed = self.bytes_received
            if self.mode is None:
                self._choose_mode(final=final)
                if self.mode is None:
                    container = sniff_container(bytes(self._data)) or "audio"
                    raise AudioIncomplete(f"incomplete {container} stream: too few bytes yet")
            whole = bytes(self._data) if self.mode == "whole" else b""
        if self.mode == "pcm":
            samples = self._out.view()
        elif self.mode == "whole":
            if self._whole is None or self._seen_bytes != fed or final:
                self._whole = decode(whole, final=final, max_seconds=self.max_seconds)
            samples = self._whole
        else:
            samples = self._decoded_samples(final)
        self._seen_samples, self._seen_bytes = self.base + len(samples), fed
        return samples

    def _decoded_samples(self, final: bool) -> np.ndarray:
        decoder = self._decoder
        assert decoder is not None
        if final:
            decoder.finish()
        else:
            decoder.catch_up()
        self._check_decoder()
        samples = self._out.view()
        error = decoder.error
        if error is not None and (samples.size == 0 or not final):
            if isinstance(error, AudioDecodeError):
                raise error
            raise AudioDecodeError(f"could not decode {self._container} audio: {_reason(error)}") from None
        if samples.size == 0:
            if not final:
                raise AudioIncomplete(f"incomplete {self._container} stream: no audio frames yet")
            raise AudioDecodeError(f"could not decode audio: {self._container} data contained no audio frames")
        return samples

    @property
    def base(self) -> int:
        """Index (counted from the stream's first sample) of the first sample `samples()` returns: 0
        unless `release` dropped the audio before it."""
        return self._out.start if self.mode != "whole" else 0

    @property
    def decoded_samples(self) -> int:
        """Samples decoded so far, released ones included."""
        if self.mode == "whole":
            return len(self._whole) if self._whole is not None else 0
        return self._out.size

    def release(self, before: int) -> None:
        """Let go of the decoded audio before sample `before` (counted from the stream's first sample):
        `samples()` then starts there (see `base`). A long stream that answers as it goes (continuous
        mode) holds only the audio it still needs. Whole-buffer streams keep everything (they are
        decoded again from their bytes each time)."""
        if self.mode != "whole":
            self._out.release(before)

    def kept(self) -> np.ndarray:
        """The samples decoded and kept so far (at most `max_seconds`), without waiting or raising: what
        a stream past its limit can still be answered on."""
        if self.mode == "whole":
            return self._whole if self._whole is not None else np.zeros(0, dtype=np.float32)
        return self._out.view()

    def close(self) -> None:
        """Stop decoding (the decoder thread ends); the stream takes no more bytes."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> "AudioStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # PyAV puts the (meaningless, in-memory) file name after a colon: keep FFmpeg's own words.
    if isinstance(exc, av.error.FFmpegError) and getattr(exc, "strerror", None):
        text = exc.strerror
    return text
