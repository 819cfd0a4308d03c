"""LangShazam's server package."""

import os

# numpy's OpenBLAS keeps a second thread spinning after each matrix product (the mel spectrogram of every
# detection), on the core an inference needs: with one BLAS thread a detection took 0.14 s of CPU
# instead of 0.24 s, in the same wall time (2 cores). Set before numpy loads; the environment overrides it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
