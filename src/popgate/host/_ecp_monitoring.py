"""The admin center's Monitoring page: live charts, the audit log, the host and protocol logs.

The page renders the frame; ``charts.js`` reads ``/api/v1/metrics`` (the counters behind
``/metrics``) every few seconds and draws them, ``monitoring.js`` reads ``/api/v1/audit``,
``/api/v1/log`` and ``/api/v1/protocol-log``. The API decides who may read them
(Organization Management, Server Management, View-Only Organization Management): a caller
without one of those sees the API's refusal.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response

from popgate.host._ecp import ECP_PREFIX, page_caller, render_page, signed_in
from popgate.host._sessions import Session

__all__ = ["AUDIT_RESULTS", "CHARTS", "CHART_SECONDS", "CMDLETS", "REFRESH_SECONDS", "pages"]


@dataclass(frozen=True, slots=True)
class Chart:
    """One live chart: a field of the counters summary, one line per service."""

    key: str
    title: str
    #: The summary's field (``ServiceCounters``) drawn.
    field: str
    #: ``level`` draws the value itself (a gauge); ``rate`` its change per second.
    kind: str
    unit: str


#: The dashboard, in the order of issue 6: sessions, logins, failed logins, bytes, errors.
CHARTS = (
    Chart("sessions", "Current sessions", "sessions_current", "level", "open"),
    Chart("logins", "Logins per second", "logins", "rate", "logins/s"),
    Chart("failed-logins", "Failed logins per second", "failed_logins", "rate", "failures/s"),
    Chart("retr-bytes", "RETR bytes per second", "retr_bytes", "rate", "bytes/s"),
    Chart("errors", "Errors per second", "errors", "rate", "errors/s"),
)
#: Seconds between two readings of the counters, and how many readings a chart keeps.
CHART_SECONDS = 2
CHART_POINTS = 90

#: The cmdlets the API audits, offered as suggestions for the Cmdlet filter (the script adds
#: any other it meets in the log).
CMDLETS = [
    "Start-Service",
    "Stop-Service",
    "Restart-Service",
    "Set-Service",
    "Set-ServiceRecovery",
    "Set-PopSettings",
    "New-Mailbox",
    "Remove-Mailbox",
    "Set-Mailbox",
    "Set-CASMailbox",
    "New-MailboxImportRequest",
    "Add-RoleGroupMember",
    "Remove-RoleGroupMember",
    "Test-PopConnectivity",
]
#: The outcomes the audit log records.
AUDIT_RESULTS = ["Success", "Failed", "Denied", "Refused"]
#: How often the page reads the logs again on its own.
REFRESH_SECONDS = 10
#: The host log lines (and protocol log rows) the page can show.
LOG_LINES = (50, 200, 1000)
#: The services whose protocol log the page reads, and what each logs.
PROTOCOL_SERVICES = (
    ("MSExchangePOP3", "front end: connect to login"),
    ("MSExchangePOP3BE", "backend: login to quit"),
)


def pages() -> APIRouter:
    """The routes of the Monitoring page."""
    router = APIRouter(prefix=ECP_PREFIX, include_in_schema=False)

    @router.get("/monitoring")
    async def monitoring(request: Request) -> Response:
        session = signed_in(request)
        if not isinstance(session, Session):
            return session
        return render_page(
            request,
            session,
            "monitoring.html",
            "monitoring",
            may_read=page_caller(session).may_read,
            cmdlets=CMDLETS,
            results=AUDIT_RESULTS,
            refresh_seconds=REFRESH_SECONDS,
            log_lines=LOG_LINES,
            protocol_services=PROTOCOL_SERVICES,
            charts=CHARTS,
            chart_seconds=CHART_SECONDS,
            chart_points=CHART_POINTS,
        )

    return router
