"""How every popgate command fails: a one-line message and an exit status."""

from __future__ import annotations

import sys
from typing import NoReturn

__all__ = ["RUNTIME_ERROR", "USAGE_ERROR", "CommandError", "fail"]

#: Exit status for a command the user got wrong, as argparse uses.
USAGE_ERROR = 2
RUNTIME_ERROR = 1


class CommandError(Exception):
    """A message for the user, and the exit status that goes with it."""

    def __init__(self, message: str, status: int = USAGE_ERROR) -> None:
        super().__init__(message)
        self.status = status


def fail(message: str, status: int) -> NoReturn:
    """Print ``popgate: error: MESSAGE`` on stderr and exit with ``status``."""
    sys.stderr.write(f"popgate: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(status)
