"""LangShazam: spoken language identification. Installed (`pip install .`) this package is `langshazam`:

    import langshazam
    answer = langshazam.detect("clip.mp3", languages=["en", "es"])
    answer.language, answer.confident, answer.likely, answer.to_dict()

and the `langshazam` command (`langshazam serve`, `langshazam detect PATHS...`, see commands.py). From
the source tree the same package is `src` (`cd backend && python -m src.main`).
"""

import os

# numpy's OpenBLAS keeps a second thread spinning after each matrix product (the mel spectrogram of every
# detection), on the core an inference needs: with one BLAS thread a detection took 0.14 s of CPU
# instead of 0.24 s, in the same wall time (2 cores). Set before numpy loads; the environment overrides it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"

from .library import Answer, detect  # noqa: E402  (light: the engine loads on the first detect)

__all__ = ["Answer", "__version__", "detect"]
