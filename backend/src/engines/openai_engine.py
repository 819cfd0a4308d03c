"""The OpenAI engine: whisper-1 through the official SDK (its own retries, backoff and timeouts).

whisper-1 returns the language as a lower-case English name ("english") and no probability: the
answer carries the ISO code and `confidence: null` rather than an invented number.
"""

from __future__ import annotations

import io
import logging
import wave

import numpy as np
import openai

from ..audio import SAMPLE_RATE
from ..languages import to_code
from .base import Detection, EngineError

logger = logging.getLogger(__name__)


class OpenAIEngine:
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
        if self._client is None:
            raise EngineError("the OpenAI client is not started")
        if audio.size == 0:
            raise EngineError("no audio to detect")
        try:
            result = self._client.audio.transcriptions.create(
                model=self.model,
                file=("audio.wav", to_wav(audio), "audio/wav"),
                response_format="verbose_json",
            )
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
        name = getattr(result, "language", None)
        if not name:
            raise EngineError("the OpenAI API answered without a language")
        code = to_code(str(name))
        if code is None:
            raise EngineError(f"the OpenAI API answered an unknown language {str(name)[:40]!r}")
        if languages and code not in languages:
            # whisper-1 heard a language outside the candidates: nothing honest to renormalise.
            return Detection(probabilities=[])
        return Detection(probabilities=[(code, None)])


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
