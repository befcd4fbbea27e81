"""The services a computer runs: MSExchangePOP3 (Client Access role), MSExchangePOP3BE and
MSExchangeDelivery (Mailbox role)."""

from __future__ import annotations

from popgate.services._catalog import (
    BACKEND,
    DELIVERY,
    FRONTEND,
    SERVICES,
    ServiceInfo,
    find_service,
)

__all__ = ["BACKEND", "DELIVERY", "FRONTEND", "SERVICES", "ServiceInfo", "find_service"]
