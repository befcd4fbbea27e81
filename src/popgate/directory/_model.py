"""Value objects the directory hands out: mailboxes, servers, role groups and audit entries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = ["AuditEntry", "Mailbox", "MoveRequest", "MoveStatus", "Role", "RoleGroup", "Server"]


class Role(StrEnum):
    """Exchange 2013 server roles that decide which POP3 services a computer runs."""

    #: Runs MSExchangePOP3, the front end that accepts clients and proxies them.
    CLIENT_ACCESS = "ClientAccess"
    #: Runs MSExchangePOP3BE, the back end that holds mailboxes.
    MAILBOX = "Mailbox"


class RoleGroup(StrEnum):
    """Management role groups that grant POP3 permissions (exchange-pop3.md section 4)."""

    ORGANIZATION_MANAGEMENT = "Organization Management"
    SERVER_MANAGEMENT = "Server Management"
    #: May view POP3 settings but change nothing.
    VIEW_ONLY_ORGANIZATION_MANAGEMENT = "View-Only Organization Management"
    #: May change per-mailbox settings such as PopEnabled.
    RECIPIENT_MANAGEMENT = "Recipient Management"


@dataclass(frozen=True, slots=True, kw_only=True)
class Mailbox:
    """One mailbox: its identity, address, POP3 switch and the server that holds it."""

    guid: uuid.UUID
    name: str
    address: str
    #: Set-CASMailbox -PopEnabled; True by default as in Exchange.
    pop_enabled: bool
    #: Name of the Mailbox server that holds the mailbox, or None if not placed yet.
    server: str | None
    #: Exchange refuses POP3 logons to the Administrator mailbox; the backend enforces this.
    is_administrator: bool
    created: datetime
    #: Set-Mailbox -ProhibitSendReceiveQuota: bytes the mailbox may hold; None is Unlimited.
    #: Delivery refuses a message that would take the mailbox past it.
    prohibit_send_receive_quota: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    """One computer of the organisation and its roles."""

    name: str
    fqdn: str
    roles: frozenset[Role]
    #: Host that front ends connect to for this server's backend (defaults to the FQDN).
    proxy_host: str
    #: The host's control API (``https://fqdn:port/``), or None if it serves only locally.
    control_url: str | None = None
    #: The host's certificate (PEM): the one other hosts trust when they connect to it.
    certificate_pem: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One line of the audit log: who did what to what, from where, and how it ended."""

    id: int
    at: datetime
    actor: str
    origin: str
    action: str
    target: str
    result: str
    detail: str


class MoveStatus(StrEnum):
    """Where a mailbox move stands (Get-MoveRequest's Status)."""

    #: Recorded; the target server's host has not begun copying.
    QUEUED = "Queued"
    #: Copying from the source; the mailbox is still served by the source.
    IN_PROGRESS = "InProgress"
    #: The mailbox is served by the target; the source's copy is still to be removed.
    COMPLETION_IN_PROGRESS = "CompletionInProgress"
    COMPLETED = "Completed"
    #: Stopped by an error that retrying cannot mend; Resume-MoveRequest tries again.
    FAILED = "Failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class MoveRequest:
    """A mailbox move between Mailbox servers (New-MoveRequest)."""

    mailbox_guid: uuid.UUID
    mailbox: str
    source_server: str
    target_server: str
    status: MoveStatus
    #: The last step done or the error met, in words.
    detail: str
    requested_by: str
    created: datetime
    updated: datetime
