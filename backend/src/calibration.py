"""The honesty rule's numbers for one model: its calibration file, or the conservative rule without one.

The thresholds of src/confidence.py (temperature, confident, uncertain, the likely set's conformal
thresholds) were measured on Whisper base's probabilities (README, "Accuracy" and "Likely languages");
another model's probabilities are not Whisper base's. So a model carries its calibration, a small JSON
file keyed by the model, written by `scripts/evaluate.py --write-calibration PATH` from the dev sets:

    {"model": "whisper-base", "temperature": 1.0, "final_probability": 0.85, "final_margin": 0.5,
     "uncertain_below": 0.55, "likely_thresholds": "0.8:0.413,...", "measured_on": "..."}

It is looked for, in order: `langshazam-calibration.json` in the model's directory (WHISPER_MODEL a
directory); `<key>.json` in CALIBRATION_DIR; `<key>.json` in this package's calibrations/ folder. The key
is the model's (engines/model_source.model_key): `whisper-base` for the embedded model, the repo id with
`/` as `--` for a model by name (`Systran--faster-whisper-small`).

Without one, the **conservative rule**: no answer is confident, no language is named under 0.8
(`reason: "uncertain"`), and a likely set lists the fewest languages (at most 3) holding 0.99 of the
model's own probability, with no coverage measured. A setting given explicitly (FINAL_PROBABILITY=...)
overrides the file or the conservative rule.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config.settings import Settings

PACKAGE_DIR = Path(__file__).resolve().parent / "calibrations"
MODEL_DIR_FILE = "langshazam-calibration.json"
# The rule's numbers and the settings that override them.
FIELDS = {
    "temperature": "CALIBRATION_TEMPERATURE",
    "final_probability": "FINAL_PROBABILITY",
    "final_margin": "FINAL_MARGIN",
    "uncertain_below": "UNCERTAIN_BELOW",
    "likely_thresholds": "LIKELY_THRESHOLDS",
}


class CalibrationError(ValueError):
    """A calibration file LangShazam cannot use; the message names the file."""


@dataclass(frozen=True)
class Calibration:
    model: str
    temperature: float
    final_probability: float
    final_margin: float
    uncertain_below: float
    likely_thresholds: str  # coverage:threshold pairs, as LIKELY_THRESHOLDS
    source: str  # the file it came from; "conservative" without one; "settings" for the OpenAI engine

    @property
    def calibrated(self) -> bool:
        return self.source != "conservative"

    def describe(self) -> str:
        if not self.calibrated:
            return (f"no calibration for {self.model}: the conservative rule (never confident, no language named "
                    f"under {self.uncertain_below:g}, likely sets on 0.99 of the model's probability)")
        return f"calibration of {self.model} from {self.source}"


def conservative(model: str) -> Calibration:
    return Calibration(model, 1.0, math.inf, 0.5, 0.8, "0.999:0.99", "conservative")


def key_file_name(key: str) -> str:
    return key.replace("/", "--") + ".json"


def load(path: str | os.PathLike[str]) -> Calibration:
    try:
        data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
        return Calibration(
            model=str(data["model"]), temperature=float(data["temperature"]),
            final_probability=float(data["final_probability"]), final_margin=float(data["final_margin"]),
            uncertain_below=float(data["uncertain_below"]), likely_thresholds=str(data["likely_thresholds"]),
            source=str(path),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CalibrationError(f"calibration file {path}: {type(exc).__name__}: {exc}") from None


def write(path: str | os.PathLike[str], calibration: Calibration, **about: Any) -> None:
    """Write a calibration file (`about`: how it was measured, kept for the reader)."""
    fields = {name: getattr(calibration, name) for name in FIELDS}
    Path(path).write_text(json.dumps({"model": calibration.model, **fields, **about}, indent=2) + "\n",
                          encoding="utf-8")


def find(key: str, model_dir: str | None = None, extra_dir: str = "") -> Calibration:
    """The calibration of the model `key` (see the module's docstring), or the conservative rule."""
    candidates = [Path(model_dir) / MODEL_DIR_FILE] if model_dir else []
    candidates += [Path(extra_dir).expanduser() / key_file_name(key)] if extra_dir else []
    candidates.append(PACKAGE_DIR / key_file_name(key))
    for path in candidates:
        if path.is_file():
            return load(path)
    return conservative(key)


def for_settings(settings: "Settings") -> Calibration:
    """The calibration of the model the settings name, with the settings given explicitly on top."""
    if settings.ENGINE != "local":  # OpenAI's engine: the settings' numbers, as they are
        found = Calibration(settings.OPENAI_MODEL, settings.CALIBRATION_TEMPERATURE, settings.FINAL_PROBABILITY,
                            settings.FINAL_MARGIN, settings.UNCERTAIN_BELOW, settings.LIKELY_THRESHOLDS, "settings")
    else:
        from .engines.model_source import model_key

        name = settings.WHISPER_MODEL
        directory = os.path.expanduser(name) if name and os.path.isdir(os.path.expanduser(name)) else None
        found = find(model_key(name), directory, settings.CALIBRATION_DIR)
    explicit = {field: getattr(settings, setting) for field, setting in FIELDS.items()
                if setting in settings.model_fields_set}
    if not explicit:
        return found
    values = {field: getattr(found, field) for field in FIELDS} | explicit
    return Calibration(found.model, source=found.source, **values)
