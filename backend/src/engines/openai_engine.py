"""The OpenAI engine: whisper-1 through the official SDK (its own retries, backoff and timeouts).

whisper-1 returns the language as a lower-case English name ("english") and no probability: the
answer carries the ISO code and `confidence: null` rather than an invented number.
"""

from __future__ import annotations

import io
import logging
import wave
from typing import Any

import numpy as np
import openai

from ..audio import SAMPLE_RATE
from ..languages import WHISPER_LANGUAGES, to_code
from .base import Detection, EngineError, Segment, TranscribeOptions, Transcript, Word

logger = logging.getLogger(__name__)


class OpenAIEngine:
    names_language_when_transcribing = True  # verbose_json names the language: one request, not two

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        model: str = "whisper-1",
        timeout: float = 30.0,
        max_retries: int = 2,
    ) -> None:
        if not api_key:
            raise EngineError("the OpenAI engine needs OPENAI_API_KEY")
        self.name = f"openai:{model}"
        self.model = model
        self._client_args = dict(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)
        self._client: openai.OpenAI | None = None

    def load(self) -> None:
        self._client = openai.OpenAI(**self._client_args)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def detect(self, audio: np.ndarray, languages: list[str] | None = None) -> Detection:
        if audio.size == 0:
            raise EngineError("no audio to detect")
        result = self._create(file=("audio.wav", to_wav(audio), "audio/wav"), response_format="verbose_json")
        code = self._language_code(result)
        if languages and code not in languages:
            # whisper-1 heard a language outside the candidates: nothing honest to renormalise.
            return Detection(probabilities=[])
        return Detection(probabilities=[(code, None)])

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions) -> Transcript:
        """The OpenAI API's own transcription (verbose_json, whatever format the caller wants in the end)."""
        if audio.size == 0:
            raise EngineError("no audio to transcribe")
        extra: dict[str, Any] = {}
        if options.language:
            extra["language"] = options.language
        if options.prompt:
            extra["prompt"] = options.prompt
        if options.temperature is not None:
            extra["temperature"] = options.temperature
        if options.words:
            extra["timestamp_granularities"] = ["segment", "word"]
        result = self._create(
            file=("audio.wav", to_wav(audio), "audio/wav"), response_format="verbose_json", **extra
        )
        code = self._language_code(result)
        segments = [
            Segment(
                id=s.id, seek=s.seek, start=s.start, end=s.end, text=s.text, tokens=list(s.tokens),
                temperature=s.temperature, avg_logprob=s.avg_logprob, compression_ratio=s.compression_ratio,
                no_speech_prob=s.no_speech_prob,
            )
            for s in result.segments or []
        ]
        words = [Word(w.word, w.start, w.end) for w in result.words or []] if options.words else None
        return Transcript(
            text=(result.text or "").strip(),
            language=code,
            segments=segments,
            words=words,
            detection=None if options.language else Detection(probabilities=[(code, None)]),
        )

    def languages(self) -> list[str]:
        return list(WHISPER_LANGUAGES)

    def _create(self, **arguments: Any) -> Any:
        """One transcription request; the SDK's failures become EngineErrors meant for the client."""
        if self._client is None:
            raise EngineError("the OpenAI client is not started")
        try:
            return self._client.audio.transcriptions.create(model=self.model, **arguments)
        except openai.APITimeoutError:
            raise EngineError("the OpenAI API did not answer in time") from None
        except openai.RateLimitError:
            raise EngineError("the OpenAI API is rate-limiting requests (HTTP 429)") from None
        except openai.AuthenticationError:
            raise EngineError("the OpenAI API refused the API key (HTTP 401)") from None
        except openai.APIStatusError as exc:
            raise EngineError(f"the OpenAI API answered HTTP {exc.status_code}") from None
        except openai.APIConnectionError:
            raise EngineError("could not reach the OpenAI API") from None

    @staticmethod
    def _language_code(result: Any) -> str:
        name = getattr(result, "language", None)
        if not name:
            raise EngineError("the OpenAI API answered without a language")
        code = to_code(str(name))
        if code is None:
            raise EngineError(f"the OpenAI API answered an unknown language {str(name)[:40]!r}")
        return code


def to_wav(audio: np.ndarray) -> bytes:
    """16 kHz mono float32 to a 16-bit WAV file in memory."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()
