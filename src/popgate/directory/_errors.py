"""Errors raised by the directory.

Every message says what was wrong and what to do about it, because the CLI, the shell and the
admin center show them to administrators as they are.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "DirectoryError",
    "DirectoryUnavailable",
    "InvalidName",
    "InvalidSetting",
    "NotFound",
]


class DirectoryError(Exception):
    """Base class of every error the directory raises on purpose."""


class InvalidName(DirectoryError):  # noqa: N818 - the API's agreed name
    """A mailbox, server, address, domain or member name is malformed."""


class AlreadyExists(DirectoryError):  # noqa: N818 - the API's agreed name
    """An object with that name (or address) already exists."""


class NotFound(DirectoryError):  # noqa: N818 - the API's agreed name
    """The named mailbox or server does not exist."""


class InvalidSetting(DirectoryError):  # noqa: N818 - the API's agreed name
    """A setting name is unknown or its value is out of range."""


class DirectoryUnavailable(DirectoryError):  # noqa: N818 - named like its siblings
    """The database cannot be reached, or stayed locked past the busy timeout: try later."""
