"""Mail storage behind the POP3 back end: the store protocols and the Maildir store."""

from __future__ import annotations

from ._base import (
    MailboxLocked,
    MailboxNotFound,
    MailboxSession,
    MailStore,
    MessageGone,
    MessageInfo,
    StoreError,
)
from ._maildir import MaildirSession, MaildirStore, uid_for_base_name

__all__ = [
    "MailStore",
    "MailboxLocked",
    "MailboxNotFound",
    "MailboxSession",
    "MaildirSession",
    "MaildirStore",
    "MessageGone",
    "MessageInfo",
    "StoreError",
    "uid_for_base_name",
]
