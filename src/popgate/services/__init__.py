"""The services a computer runs: MSExchangePOP3BE (Mailbox role) and, later, MSExchangePOP3."""

from __future__ import annotations

from popgate.services._catalog import BACKEND, FRONTEND, SERVICES, ServiceInfo, find_service

__all__ = ["BACKEND", "FRONTEND", "SERVICES", "ServiceInfo", "find_service"]
