"""Print the control API's OpenAPI document: ``python -m popgate.host.openapi > docs/openapi.json``.

The document depends on the code alone, so it is built from an app over an inert context: no
data directory is read, no database is opened and no service is started. A test checks that
the copy committed in docs/ equals what this prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from popgate.directory import Directory
from popgate.home import Home
from popgate.host._api import ControlContext, create_app
from popgate.host._host import Host
from popgate.services._throttle import LoginThrottle

__all__ = ["inert_context", "main", "openapi_document", "openapi_text"]

#: A path that is never read: the document needs the routes, not the state behind them.
_NOWHERE = Path("/nonexistent/popgate")


async def _nothing() -> None:
    """The stop-timeout refresh of a host that never stops a service."""


def inert_context() -> ControlContext:
    """A context that holds nothing: no services, a directory never connected to."""
    # An engine connects lazily, on first use, and nothing here uses it.
    directory = Directory(create_async_engine("sqlite+aiosqlite://"))
    return ControlContext(
        host=Host([], data_dir=_NOWHERE),
        directory=directory,
        log_file=_NOWHERE / "host.log",
        refresh_stop_timeout=_nothing,
        throttle=LoginThrottle(base=1.0, cap=30.0, lockout=10),
        home=Home(_NOWHERE),
    )


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document that ``popgate host`` serves at /api/v1/openapi.json."""
    return create_app(inert_context()).openapi()


def openapi_text() -> str:
    """The document as committed in docs/openapi.json: indented JSON, key order kept."""
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    """Write the document to standard output."""
    sys.stdout.write(openapi_text())


if __name__ == "__main__":
    main()
