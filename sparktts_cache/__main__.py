"""``python -m sparktts_cache``: the same as the ``sparktts-cache`` command."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
