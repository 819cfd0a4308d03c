"""`python -m src.corpus ...`: the corpus command (src/corpus/command.py)."""

from __future__ import annotations

import sys

from .command import main

if __name__ == "__main__":
    sys.exit(main())
