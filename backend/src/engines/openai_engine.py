"""The OpenAI engine: OpenAI's transcription API through the official SDK (its own retries, backoff and
timeouts), with `gpt-transcribe` (the default) or `whisper-1`.

gpt-transcribe takes the candidate languages (`languages`) and answers the languages it detected,
`languages: [{"code": ...}]`, [] when none could be reliably detected: that answer is the detection (an
empty one is `reason: "uncertain"`). whisper-1 (deprecated: OpenAI shuts it down on 2027-02-26) returns the
language as a lower-case English name ("english"). Neither gives a probability: the answer carries the ISO
code and `confidence: null` rather than an invented number.
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

WHISPER_1 = "whisper-1"
WHISPER_1_SHUTDOWN = "2027-02-26"  # OpenAI's announced shutdown date (the SDK's `model` docstring)


class OpenAIEngine:
    names_language_when_transcribing = True  # verbose_json names the language: one request, not two
    detection_seconds = None  # the API hears all of it

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        model: str = "gpt-transcribe",
        timeout: float = 30.0,
        max_retries: int = 2,
    ) -> None:
        if not api_key:
            raise EngineError("the OpenAI engine needs OPENAI_API_KEY")
        self.name = f"openai:{model}"
        self.model = model
        self._client_args = dict(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)
        self._client: openai.OpenAI | None = None

    @property
    def answers_languages(self) -> bool:
        """The model answers `languages` (gpt-transcribe and its kind); whisper-1 answers `language`."""
        return self.model != WHISPER_1

    def load(self) -> None:
        self._client = openai.OpenAI(**self._client_args)
        if not self.answers_languages:
            logger.warning("OPENAI_MODEL=%s: OpenAI deprecated it and shuts it down on %s; gpt-transcribe is "
                           "its successor", self.model, WHISPER_1_SHUTDOWN)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def detect(self, audio: np.ndarray, languages: list[str] | None = None, *,
               window_seconds: float | None = None) -> Detection:
        if audio.size == 0:
            raise EngineError("no audio to detect")
        if self.answers_languages:
            extra: dict[str, Any] = {"languages": languages} if languages else {}
            result = self._create(file=("audio.wav", to_wav(audio), "audio/wav"), response_format="json", **extra)
            return Detection(probabilities=self._languages(result, languages))
        result = self._create(file=("audio.wav", to_wav(audio), "audio/wav"), response_format="verbose_json")
        code = self._language_code(result)
        if languages and code not in languages:
            # whisper-1 heard a language outside the candidates: nothing honest to renormalise.
            return Detection(probabilities=[])
        return Detection(probabilities=[(code, None)])

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions) -> Transcript:
        """The OpenAI API's own transcription: verbose_json with whisper-1 (segments and words), json with
        gpt-transcribe (text and languages), whatever format the caller wants in the end."""
        if audio.size == 0:
            raise EngineError("no audio to transcribe")
        extra: dict[str, Any] = {}
        if options.language:
            extra["language"] = options.language
        if options.prompt:
            extra["prompt"] = options.prompt
        if options.temperature is not None:
            extra["temperature"] = options.temperature
        if options.keywords:
            extra["keywords"] = options.keywords
        if options.chunking is not None:
            extra["chunking_strategy"] = {"type": "server_vad", **{
                key: value for key, value in vars(options.chunking).items() if value is not None}}
        file = ("audio.wav", to_wav(audio), "audio/wav")
        if self.answers_languages:
            if options.languages:
                extra["languages"] = options.languages
            result = self._create(file=file, response_format="json", **extra)
            probabilities = self._languages(result, options.languages)
            return Transcript(
                text=(result.text or "").strip(), language=options.language or (probabilities[0][0] if probabilities else None),
                detection=None if options.language else Detection(probabilities=probabilities),
            )
        if options.words:
            extra["timestamp_granularities"] = ["segment", "word"]
        result = self._create(file=file, response_format="verbose_json", **extra)
        code = self._language_code(result)
        segments = [
            Segment(
                id=s.id, seek=s.seek, start=s.start, end=s.end, text=s.text, tokens=list(s.tokens),
                temperature=s.temperature, avg_logprob=s.avg_logprob, compression_ratio=s.compression_ratio,
                no_speech_prob=s.no_speech_prob,
            )
            for s in result.segments or []
        ]
        if options.on_segment is not None:
            for segment in segments:
                options.on_segment(segment)
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
    def _languages(result: Any, candidates: list[str] | None) -> list[tuple[str, float | None]]:
        """gpt-transcribe's `languages` as a detection: its codes (among the candidates), no probabilities;
        [] when it found none reliable."""
        answered = getattr(result, "languages", None)
        if answered is None:
            raise EngineError("the OpenAI API answered without languages (is OPENAI_MODEL a model that detects "
                              "them, such as gpt-transcribe?)")
        codes = []
        for item in answered:
            code = to_code(str(getattr(item, "code", "") or ""))
            if code is None:
                raise EngineError(f"the OpenAI API answered an unknown language {str(getattr(item, 'code', ''))[:40]!r}")
            if not candidates or code in candidates:
                codes.append(code)
        return [(code, None) for code in dict.fromkeys(codes)]

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
