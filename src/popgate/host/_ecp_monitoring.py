"""The admin center's Monitoring page: the audit log (Search-AdminAuditLog), the host log.

The page renders the frame; ``monitoring.js`` reads ``/api/v1/audit`` and ``/api/v1/log``,
which decide who may read them (Organization Management, Server Management, View-Only
Organization Management): a caller without one of those sees the API's refusal. The live
charts of sessions, logins and bytes wait for the services' metrics counters.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from popgate.host._ecp import ECP_PREFIX, page_caller, render_page, signed_in
from popgate.host._sessions import Session

__all__ = ["AUDIT_RESULTS", "CMDLETS", "REFRESH_SECONDS", "pages"]

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
#: The host log lines the page can show.
LOG_LINES = (50, 200, 1000)


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
        )

    return router
