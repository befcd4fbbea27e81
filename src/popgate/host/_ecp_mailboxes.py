"""The admin center's Mailboxes page: list, search, create, remove, passwords, POP3 access,
per-mailbox POP3 settings and importing .eml and .mbox files.

The page only renders the frame; ``mailboxes.js`` does the rest through ``/api/v1``, which
decides every permission and audits every change. The page knows the caller's rights only to
disable what the API would refuse anyway, and to say why.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from popgate.host._api_admin import MAX_IMPORT_BYTES, RECIPIENT_CHANGE, RECIPIENT_READ
from popgate.host._ecp import ECP_PREFIX, page_caller, render_page, signed_in
from popgate.host._sessions import Session

__all__ = ["pages"]

#: PopMessagesRetrievalMimeFormat's values (as Get-CASMailbox spells them) and their labels.
MIME_FORMATS = [
    ("TextOnly", "Text only"),
    ("HtmlOnly", "HTML only"),
    ("HtmlAndTextAlternative", "HTML and alternative text"),
    ("TextEnrichedOnly", "Enriched text only"),
    ("TextEnrichedAndTextAlternative", "Enriched text and alternative text"),
    ("BestBodyFormat", "Best body format"),
    ("Tnef", "TNEF"),
]


def pages() -> APIRouter:
    """The routes of the Mailboxes page."""
    router = APIRouter(prefix=ECP_PREFIX, include_in_schema=False)

    @router.get("/mailboxes")
    async def mailboxes(request: Request) -> Response:
        session = signed_in(request)
        if not isinstance(session, Session):
            return session
        caller = page_caller(session)
        return render_page(
            request,
            session,
            "mailboxes.html",
            "mailboxes",
            may_read=caller.in_any(RECIPIENT_READ),
            may_change=caller.in_any(RECIPIENT_CHANGE),
            max_upload=MAX_IMPORT_BYTES,
            mime_formats=MIME_FORMATS,
        )

    return router
