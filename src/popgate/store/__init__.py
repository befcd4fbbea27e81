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
from ._import import (
    ImportSourceError,
    eml_messages,
    import_messages,
    maildir_count,
    maildir_messages,
    mbox_messages,
)
from ._maildir import MaildirSession, MaildirStore, uid_for_base_name

__all__ = [
    "ImportSourceError",
    "MailStore",
    "MailboxLocked",
    "MailboxNotFound",
    "MailboxSession",
    "MaildirSession",
    "MaildirStore",
    "MessageGone",
    "MessageInfo",
    "StoreError",
    "eml_messages",
    "import_messages",
    "maildir_count",
    "maildir_messages",
    "mbox_messages",
    "uid_for_base_name",
]
