"""The services popgate knows: their key names, display names, roles and descriptions."""

from __future__ import annotations

from dataclasses import dataclass

from popgate.directory import Role

__all__ = ["BACKEND", "DELIVERY", "FRONTEND", "SERVICES", "ServiceInfo", "find_service"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceInfo:
    """One service as the Windows service control manager would list it."""

    name: str
    display_name: str
    description: str
    role: Role
    #: Installed with startup type Automatic (it starts with the host) rather than Manual.
    automatic: bool = False


FRONTEND = ServiceInfo(
    name="MSExchangePOP3",
    display_name="Microsoft Exchange POP3",
    description="Provides Post Office Protocol version 3 service to clients and proxies "
    "their sessions to the POP3 Backend service on the Mailbox server.",
    role=Role.CLIENT_ACCESS,
)
BACKEND = ServiceInfo(
    name="MSExchangePOP3BE",
    display_name="Microsoft Exchange POP3 Backend",
    description="Receives proxied client connections from the POP3 service on Client Access "
    "servers and serves the maildrop.",
    role=Role.MAILBOX,
)
DELIVERY = ServiceInfo(
    name="MSExchangeDelivery",
    display_name="Microsoft Exchange Mailbox Transport Delivery",
    description="Receives messages by LMTP from the local mail transfer agent and delivers "
    "them to the mailboxes on this Mailbox server.",
    role=Role.MAILBOX,
    automatic=True,
)
SERVICES: tuple[ServiceInfo, ...] = (FRONTEND, BACKEND, DELIVERY)


def find_service(name: str) -> ServiceInfo | None:
    """The service whose key name or display name is ``name``, in any case (like net start)."""
    wanted = name.strip().casefold()
    for service in SERVICES:
        if wanted in (service.name.casefold(), service.display_name.casefold()):
            return service
    return None
