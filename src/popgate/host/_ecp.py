"""The admin center (``/ecp/``): server-rendered pages over the control API.

Pages are Jinja2 templates with a little hand-written JavaScript that calls ``/api/v1``
with the session cookie and the page's CSRF token; every permission and audit decision
stays in the API. Sign-in uses a directory account and the API's throttled login.
"""

from __future__ import annotations

import logging
import secrets
from importlib.resources import files
from pathlib import Path
from typing import Annotated, cast
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from popgate.host._api import (
    ApiError,
    Caller,
    ControlContext,
    ServiceStatus,
    foreign_origin,
    login,
    on_behalf,
    service_status,
)
from popgate.host._common import API_PREFIX
from popgate.host._peers import PeerError, refusal_of
from popgate.host._sessions import SESSION_COOKIE, Session

__all__ = [
    "ECP_PREFIX",
    "PAGES",
    "ecp_router",
    "ecp_static",
    "page_caller",
    "render_page",
    "signed_in",
]

logger = logging.getLogger("popgate.host")

ECP_PREFIX = "/ecp"
#: Double-submit token of the sign-in form (there is no session yet to hold one).
LOGIN_COOKIE = "popgate_login"
#: The navigation: (path under /ecp/, label). Each page module adds its router to the app.
PAGES: list[tuple[str, str]] = [
    ("services", "Services"),
    ("servers", "Servers"),
    ("pop3", "POP3 settings"),
    ("mailboxes", "Mailboxes"),
    ("monitoring", "Monitoring"),
]
#: What the snap-in says for the pending states (services.js keeps the same words).
STATUS_TEXT = {"StartPending": "Starting", "StopPending": "Stopping"}
#: Windows shows the account a service runs as; popgate's services run as the host's user.
LOGON_AS = "Local System"

_ASSETS = Path(str(files("popgate.host") / "ecp"))
_templates = Environment(
    loader=FileSystemLoader(_ASSETS / "templates"),
    autoescape=select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
)


def ecp_static() -> StaticFiles:
    """The admin center's CSS and scripts."""
    return StaticFiles(directory=_ASSETS / "static")


def _render(name: str, status: int = 200, /, **values: object) -> HTMLResponse:
    html = _templates.get_template(name).render(prefix=ECP_PREFIX, pages=PAGES, **values)
    response = HTMLResponse(html, status_code=status)
    # The pages are never framed and never cached: they show live state and hold a token.
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'"
    )
    return response


def _context(request: Request) -> ControlContext:
    return cast("ControlContext", request.app.state.context)


def _session(request: Request) -> Session | None:
    return _context(request).sessions.get(request.cookies.get(SESSION_COOKIE))


def signed_in(request: Request) -> Session | RedirectResponse:
    """The page's session, or the redirect to the sign-in page that the page should return."""
    session = _session(request)
    if session is None:
        return RedirectResponse(f"{ECP_PREFIX}/login?next={request.url.path}", status_code=303)
    return session


def page_caller(session: Session) -> Caller:
    """The session as the API's caller (its rights: ``may_read``, ``may_control``, ...)."""
    return Caller(session.name, session.origin, session.role_groups, directory_account=True)


def render_page(
    request: Request, session: Session, template: str, page: str, **values: object
) -> HTMLResponse:
    """A page of the admin center with its navigation, identity and CSRF token."""
    return _render(
        template,
        200,
        session=session,
        page=page,
        groups_text=_groups_text(session),
        server=_context(request).home.server_name,
        **values,
    )


async def _remote_services(
    context: ControlContext, caller: Caller, server: str
) -> tuple[list[ServiceStatus], str]:
    """Another computer's services, through its host; or why they cannot be shown."""
    path = f"{API_PREFIX}/services"
    try:
        answer = await context.peers.call(server, on_behalf(caller), "GET", path)
    except PeerError as error:
        return [], error.message
    if answer.status_code != 200:
        return [], f"{server}: {refusal_of(answer)}"
    return [ServiceStatus.model_validate(item) for item in answer.json()], ""


def _safe_next(target: str) -> str:
    """Only a path of the admin center itself: never an open redirect."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(f"{ECP_PREFIX}/"):
        return f"{ECP_PREFIX}/services"
    return parts.path


def _groups_text(session: Session) -> str:
    return ", ".join(sorted(group.value for group in session.role_groups)) or "no role group"


def _set_cookie(response: Response, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, secure=True, httponly=True, samesite="strict", path="/"
    )


def ecp_router() -> APIRouter:
    """The admin center's pages."""
    router = APIRouter(prefix=ECP_PREFIX, include_in_schema=False)

    @router.get("/")
    async def home() -> RedirectResponse:
        return RedirectResponse(f"{ECP_PREFIX}/services", status_code=303)

    @router.get("/login")
    async def login_page(request: Request, next: str = "", bye: str = "") -> HTMLResponse:
        token = secrets.token_urlsafe(32)
        response = _render(
            "login.html",
            session=None,
            login_csrf=token,
            next=_safe_next(next),
            username="",
            message="",
            signed_out=bool(bye),
        )
        _set_cookie(response, LOGIN_COOKIE, token, max_age=3600)
        return response

    @router.post("/login")
    async def sign_in(
        request: Request,
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        csrf: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "",
    ) -> Response:
        context = _context(request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        address = request.client.host if request.client else "unknown"

        def again(message: str, status: int) -> HTMLResponse:
            token = secrets.token_urlsafe(32)
            response = _render(
                "login.html",
                status,
                session=None,
                login_csrf=token,
                next=_safe_next(next),
                username=username,
                message=message,
                signed_out=False,
            )
            _set_cookie(response, LOGIN_COOKIE, token, max_age=3600)
            return response

        if foreign_origin(request) is not None:
            return again("The sign-in form was sent from another site's page; sign in here.", 403)
        if not expected or not secrets.compare_digest(expected, csrf):
            return again("The sign-in form has expired; sign in again.", 403)
        try:
            caller: Caller = await login(context, username, password, address)
        except ApiError as error:
            return again(str(error), error.status)
        # The browser's previous session ends here: a sign-in replaces it, whoever held it.
        context.sessions.end(request.cookies.get(SESSION_COOKIE))
        session = context.sessions.create(caller.name, f"https {address}", caller.role_groups)
        logger.info("admin center sign-in by %s from %s", caller.name, address)
        response = RedirectResponse(_safe_next(next), status_code=303)
        _set_cookie(response, SESSION_COOKIE, session.token)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    @router.post("/logout")
    async def sign_out(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        session = _session(request)
        if session is not None:
            if foreign_origin(request) is not None:
                return HTMLResponse(
                    "The sign-out request comes from another site's page.", status_code=403
                )
            if not secrets.compare_digest(session.csrf, csrf):
                return HTMLResponse("The request has no valid CSRF token.", status_code=403)
            _context(request).sessions.end(session.token)
            logger.info("admin center sign-out by %s", session.name)
        response = RedirectResponse(f"{ECP_PREFIX}/login?bye=1", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @router.get("/services")
    async def services(request: Request, server: str = "") -> Response:
        session = signed_in(request)
        if not isinstance(session, Session):
            return session
        context = _context(request)
        caller = page_caller(session)
        remote = None if context.peers.is_local(server or None) else server.strip().lower()
        unreachable = ""
        if not caller.may_read:
            # The API refuses these role groups the list (403); its page must not show it.
            shown = []
            unreachable = "Access is denied: your role groups do not allow viewing services."
        elif remote is None:
            host = context.host
            shown = [service_status(host, process) for process in host.processes.values()]
        else:
            shown, unreachable = await _remote_services(context, caller, remote)
        return render_page(
            request,
            session,
            "services.html",
            "services",
            may_read=caller.may_read,
            may_control=caller.may_control,
            logon_as=LOGON_AS,
            services=shown,
            status_text=STATUS_TEXT,
            target=remote or context.home.server_name,
            remote=remote,
            unreachable=unreachable,
        )

    return router
