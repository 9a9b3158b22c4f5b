"""``python -m wsfast``: the command line (see :mod:`wsfast.cli`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .cli import main as _cli_main

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m wsfast`` and of the ``wsfast`` console script."""
    return _cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
