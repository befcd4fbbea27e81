"""The popgate directory: mailboxes, servers, role groups, POP3 settings and the audit log.

Stored in SQLite for one computer or PostgreSQL when several share it, through SQLAlchemy
Core's asyncio extension; the schema is managed by the Alembic migrations in ``migrations/``.
"""

from __future__ import annotations

from ._directory import DEFAULT_DOMAIN, Directory
from ._errors import (
    AlreadyExists,
    DirectoryError,
    DirectoryUnavailable,
    InvalidName,
    InvalidSetting,
    NotFound,
)
from ._model import AuditEntry, Mailbox, MoveRequest, MoveStatus, Role, RoleGroup, Server
from ._names import validate_address, validate_domain, validate_mailbox_name
from ._settings import (
    CalendarItemRetrievalOption,
    CasMailboxSettings,
    ExtendedProtectionPolicy,
    LoginType,
    MimeFormat,
    MultiValueEdit,
    PopSettings,
    RollOver,
    SortOrder,
    format_setting,
    format_size,
    parse_bool,
    parse_setting,
    parse_size,
    settings_without_effect,
)

__all__ = [
    "DEFAULT_DOMAIN",
    "AlreadyExists",
    "AuditEntry",
    "CalendarItemRetrievalOption",
    "CasMailboxSettings",
    "Directory",
    "DirectoryError",
    "DirectoryUnavailable",
    "ExtendedProtectionPolicy",
    "InvalidName",
    "InvalidSetting",
    "LoginType",
    "Mailbox",
    "MimeFormat",
    "MoveRequest",
    "MoveStatus",
    "MultiValueEdit",
    "NotFound",
    "PopSettings",
    "Role",
    "RoleGroup",
    "RollOver",
    "Server",
    "SortOrder",
    "format_setting",
    "format_size",
    "parse_bool",
    "parse_setting",
    "parse_size",
    "settings_without_effect",
    "validate_address",
    "validate_domain",
    "validate_mailbox_name",
]
