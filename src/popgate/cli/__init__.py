"""The ``popgate`` command line.

``popgate net`` is what an administrator types and then waits on, so it is dispatched before
the rest of the command line (and with it the directory: SQLAlchemy, Alembic) is imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``popgate`` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["net"]:
        from popgate.cli._net import main as net_main

        return net_main(arguments)
    from popgate.cli._commands import main as commands_main

    return commands_main(arguments)
