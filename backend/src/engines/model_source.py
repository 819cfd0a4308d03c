"""Which Whisper model WHISPER_MODEL names, and its directory.

- empty: the embedded Whisper base (model_files.py), joined once into MODEL_CACHE_DIR;
- a directory: a faster-whisper (CTranslate2) model there;
- a faster-whisper size name (`tiny`, `base`, `small`, `medium`, `large-v3`, `turbo`, `distil-large-v3`,
  ...) or a Hugging Face repo id of a CTranslate2 Whisper (`Systran/faster-whisper-small`): resolved by
  faster-whisper's own `download_model` through the Hugging Face cache (HF_HOME, HF_HUB_CACHE), so it is
  downloaded once where there is a network and read from the cache after, offline too (HF_HUB_OFFLINE=1).

`model_key` names a model for its calibration (calibration.py) without loading or downloading anything.
"""

from __future__ import annotations

import logging
import os

from .base import EngineError
from .model_files import MODEL_NAME, ensure_model

logger = logging.getLogger(__name__)


def _sizes() -> dict[str, str]:
    from faster_whisper.utils import _MODELS  # faster-whisper's own table of size names and repo ids

    return dict(_MODELS)


def _looks_like_repo_id(name: str) -> bool:
    owner, slash, repo = name.partition("/")
    return bool(slash and owner and repo and "/" not in repo and not name.startswith((".", "/", "~")))


def model_key(name: str) -> str:
    """The model's name for its calibration: `whisper-base` for the embedded one, the repo id for a size
    name or repo id, the directory (absolute) for a directory."""
    if not name:
        return MODEL_NAME
    if os.path.isdir(os.path.expanduser(name)):
        return os.path.abspath(os.path.expanduser(name))
    return _sizes().get(name, name)


def resolve(name: str, cache_dir: str) -> str:
    """The directory of the model `name` names (see the module's docstring); EngineError saying how to
    provide it when it cannot be found."""
    if not name:
        return str(ensure_model(cache_dir))
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return path
    sizes = _sizes()
    if name not in sizes and not _looks_like_repo_id(name):
        raise EngineError(
            f"WHISPER_MODEL={name!r} is neither a directory, a faster-whisper size name ({', '.join(sizes)}) "
            "nor a Hugging Face repo id (owner/name)"
        )
    from faster_whisper.utils import download_model

    try:
        return download_model(name)
    except Exception as exc:  # huggingface_hub's errors: offline and not cached, no such repo, network
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        repo = sizes.get(name, name)
        raise EngineError(
            f"WHISPER_MODEL={name!r}: the model {repo} is not in the Hugging Face cache"
            + (" and HF_HUB_OFFLINE is set" if offline else " and could not be downloaded")
            + f" ({type(exc).__name__}). Provide it: run once with network access (it is cached for later), "
            f"or `hf download {repo}` where there is one and copy its cache (HF_HOME), or set "
            "WHISPER_MODEL to the model's directory"
        ) from None
