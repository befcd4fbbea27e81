"""How popgate's processes format their log lines: text for people, or JSON lines for machines.

``popgate setup --log-format json`` stores ``"log_format": "json"`` in popgate.json; the
environment variable ``POPGATE_LOG_FORMAT`` overrides it for one process and its children.
A JSON line is one object: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message`` and,
when the record knows them, ``session``, ``client``, ``user``, ``event`` (a short machine
name such as ``login_failed``) and a few more (:data:`FIELDS`); ``exception`` holds a
traceback. The service host logs its services' stderr lines; a line that is a JSON object is
passed through as it is, with ``service`` added, so ``host.log`` stays one object per line.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from typing import Final, TextIO

from popgate.home import Home, HomeNotSetUpError

__all__ = [
    "CHILD",
    "ENVIRONMENT_VARIABLE",
    "FIELDS",
    "LOG_FORMATS",
    "JsonFormatter",
    "child_line",
    "configured_log_format",
    "make_formatter",
    "stderr_handler",
]

LOG_FORMATS: Final = ("text", "json")
ENVIRONMENT_VARIABLE: Final = "POPGATE_LOG_FORMAT"
#: Record attributes (set with ``extra=``) that a JSON line carries when they are set.
FIELDS: Final = ("session", "client", "user", "event", "service", "frontend_session", "pid")
#: The record attribute that holds a service's own JSON line, relayed by the host.
CHILD: Final = "child_record"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line (a relayed service line as it was, plus ``service``)."""
        child = getattr(record, CHILD, None)
        if isinstance(child, dict):
            service = getattr(record, "service", None)
            return json.dumps({**child, "service": service} if service else child)
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry: dict[str, object] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # ensure_ascii: a line stays ASCII whatever a client typed, so no terminal or log
        # shipper misreads it; the text is unchanged once parsed.
        return json.dumps(entry, default=str)


def configured_log_format(home: Home | None = None) -> str:
    """``POPGATE_LOG_FORMAT``, else popgate.json's ``log_format``, else ``text``.

    An unknown value falls back to text rather than stopping a service over its logs.
    """
    chosen = os.environ.get(ENVIRONMENT_VARIABLE)
    if not chosen and home is not None:
        try:
            chosen = home.read_config().get("log_format")
        except HomeNotSetUpError:
            chosen = None
    chosen = (chosen or "text").strip().lower()
    return chosen if chosen in LOG_FORMATS else "text"


def make_formatter(log_format: str, text_format: str) -> logging.Formatter:
    """The formatter of ``log_format``; ``text_format`` is the %-style line for ``text``."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(text_format)


def stderr_handler(log_format: str, text_format: str) -> logging.StreamHandler[TextIO]:
    """A handler writing to stderr in ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format, text_format))
    return handler


def child_line(line: str) -> dict[str, object] | None:
    """A service's stderr line as a JSON object when it is one, else None."""
    if not line.startswith("{"):
        return None
    try:
        parsed = json.loads(line)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
