"""The host's control API (FastAPI): list, start, stop, restart and configure services.

One app serves two doors. On the Unix socket under the data directory the caller is the
peer's OS user (SO_PEERCRED): root, the host's own user and members of ``popgate-admins``
act as Organization Management, everyone else is refused. Over HTTPS the caller logs in
with a directory account (HTTP Basic) and its role groups decide (exchange-pop3.md section
4): Organization Management and Server Management control, View-Only Organization
Management reads. Every control, allowed or refused, goes to the audit log. The management
endpoints of the Exchange cmdlets (POP3 settings, mailboxes, role groups, servers) are in
``_api_admin``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import grp
import logging
import os
import pwd
import secrets
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from popgate import __version__
from popgate.directory import Directory, InvalidSetting, RoleGroup
from popgate.home import Home
from popgate.host._common import (
    API_PREFIX,
    ERROR_ACCESS_DENIED,
    ERROR_INVALID_PARAMETER,
    ERROR_LOGON_FAILURE,
    ERROR_NOT_FOUND,
)
from popgate.host._host import Host, ServiceControlError
from popgate.host._move import Mover
from popgate.host._peers import (
    ON_BEHALF_HEADER,
    PEER_PREFIX,
    OnBehalf,
    PeerError,
    PeerHosts,
    peer_server,
)
from popgate.host._process import ServiceProcess
from popgate.host._recovery import RecoveryAction, RecoveryStep
from popgate.host._sessions import SESSION_COOKIE, SessionStore
from popgate.host._states import StartupType
from popgate.services._throttle import LoginThrottle

__all__ = [
    "ADMIN_GROUP",
    "ApiError",
    "Caller",
    "CallerDep",
    "ControlContext",
    "ErrorResponse",
    "PeerCredentials",
    "audit",
    "create_app",
    "elsewhere",
    "error_responses",
    "foreign_origin",
    "on_behalf",
    "require_change",
    "require_read",
]

logger = logging.getLogger("popgate.host")

_T = TypeVar("_T")

#: The header an admin center page sends its session's CSRF token in.
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: Members of this OS group administer the local host like root.
ADMIN_GROUP = "popgate-admins"

CONTROL_GROUPS = frozenset({RoleGroup.ORGANIZATION_MANAGEMENT, RoleGroup.SERVER_MANAGEMENT})
READ_GROUPS = CONTROL_GROUPS | {RoleGroup.VIEW_ONLY_ORGANIZATION_MANAGEMENT}


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """The process at the other end of the Unix socket (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, from where, and the role groups they act in."""

    name: str
    origin: str
    role_groups: frozenset[RoleGroup]
    #: A directory account (every host knows its role groups) rather than a local OS user.
    directory_account: bool = False
    #: Set when another host of the organization calls as itself, on behalf of nobody.
    peer_server: str | None = None

    def in_any(self, groups: Collection[RoleGroup]) -> bool:
        """Whether the caller acts in at least one of ``groups``."""
        return not self.role_groups.isdisjoint(groups)

    @property
    def may_read(self) -> bool:
        """May list services and read the log."""
        return self.in_any(READ_GROUPS)

    @property
    def may_control(self) -> bool:
        """May start, stop and configure services."""
        return self.in_any(CONTROL_GROUPS)


@dataclass
class ControlContext:
    """What the API works on: the host, the directory (logins, audit) and the host log."""

    host: Host
    directory: Directory
    log_file: Path
    #: Re-reads GracefulStopTimeout before a stop (the host kills a service after it).
    refresh_stop_timeout: Callable[[], Awaitable[None]]
    throttle: LoginThrottle
    #: This computer's data directory: its server name, its mail store.
    home: Home
    #: The admin center's logged-in browsers.
    sessions: SessionStore = field(default_factory=SessionStore)
    #: The organization's other hosts, called for remote management.
    peers: PeerHosts = field(init=False)
    #: The mailbox moves to this computer, and its side of the moves from it.
    mover: Mover = field(init=False)

    def __post_init__(self) -> None:
        self.peers = PeerHosts(self.directory, self.home)
        self.mover = Mover(self.directory, self.home, self.peers)


class ApiError(Exception):
    """A refusal with an HTTP status and a Windows-style error code."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


# --- response and request bodies -----------------------------------------------------------


class ErrorDetail(BaseModel):
    """Why a request was refused."""

    code: int = Field(description="The Windows error number net.exe and PowerShell report.")
    message: str


class ErrorResponse(BaseModel):
    """Every refusal of the API has this body, whatever its status."""

    error: ErrorDetail


#: What each refusal means, for the OpenAPI document.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body cannot be read: an upload that is not valid form data, or ended early.",
    401: "Not logged in, or the user name or password is incorrect.",
    403: "The caller's role groups do not allow this, an admin center session sent no valid "
    "CSRF token, or another site's page sent the change (its Origin is not this host).",
    404: "There is no such service, mailbox, server, role group or member.",
    409: "The current state does not allow it: the service is already running, disabled or "
    "not active; the object already exists; or the mailbox's mail is on another server.",
    413: "The upload is larger than one request may be.",
    422: "A parameter or the body is invalid; the message names it.",
    429: "Too many failed logins from this address or for this account; try again later.",
    503: "The other server named by `server` has no control API other computers can reach, "
    "or does not answer.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI documentation of the refusals ``statuses``: all :class:`ErrorResponse`."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[status]}
        if status == 401:
            entry["headers"] = {
                "WWW-Authenticate": {
                    "description": "The HTTP Basic challenge.",
                    "schema": {"type": "string"},
                }
            }
        documented[status] = entry
    return documented


#: Refusals every HTTPS call may meet: no login or a wrong one, a throttled one.
LOGIN_ERRORS = (401, 429)
#: An endpoint that checks role groups and takes parameters adds these (422 replaces
#: FastAPI's default, whose body is not the API's).
READ_ERRORS = (*LOGIN_ERRORS, 403, 422)
#: An endpoint on one named service adds "no such service".
SERVICE_ERRORS = (*READ_ERRORS, 404)
#: An endpoint that may act on another computer (``?server=``) adds "unknown server" and
#: "that computer does not answer".
PEER_ERRORS = (404, 503)

#: ``?server=MBX1``: act on that computer's host (remote management); default this one.
ServerQuery = Annotated[
    str | None,
    Query(
        max_length=253,
        description="Another server of the organization to act on (Get-Service "
        "-ComputerName); this computer when omitted.",
    ),
]


class RecoveryActionModel(BaseModel):
    """One failure action: restart after ``delay`` seconds, or none."""

    action: RecoveryAction
    delay: float = Field(0.0, ge=0, le=86_400)


class RecoveryOptions(BaseModel):
    """First, second and subsequent failure actions, and the failure-count reset period."""

    actions: list[RecoveryActionModel] = Field(max_length=3)
    reset_after: float = Field(86_400.0, ge=0)


class ServiceStatus(BaseModel):
    """One service as ``popgate status`` and Get-Service show it."""

    name: str
    display_name: str
    description: str
    role: str
    status: str
    state: int
    pid: int | None
    startup_type: StartupType
    since: datetime.datetime
    last_error: str | None
    recovery: RecoveryOptions


class StartupTypeChange(BaseModel):
    """Set-Service -StartupType."""

    startup_type: StartupType


class WhoAmI(BaseModel):
    """The caller as the host sees it."""

    name: str
    origin: str
    role_groups: list[str]
    may_read: bool
    may_control: bool


class LogTail(BaseModel):
    """The last lines of the host's log."""

    lines: list[str]


class AuditRecord(BaseModel):
    """One audit log entry."""

    at: datetime.datetime
    actor: str
    origin: str
    action: str
    target: str
    result: str
    detail: str


def service_status(host: Host, process: ServiceProcess) -> ServiceStatus:
    """One service as the API (and the admin center's Services page) shows it."""
    policy = host.recovery[process.info.name]
    return ServiceStatus(
        name=process.info.name,
        display_name=process.info.display_name,
        description=process.info.description,
        role=str(process.info.role),
        status=process.current_state().label,
        state=int(process.current_state()),
        pid=process.pid,
        startup_type=host.startup_types[process.info.name],
        since=process.since,
        last_error=process.last_error,
        recovery=RecoveryOptions(
            actions=[
                RecoveryActionModel(action=step.action, delay=step.delay) for step in policy.steps
            ],
            reset_after=policy.reset_after,
        ),
    )


# --- who is calling ------------------------------------------------------------------------


def local_caller(peer: PeerCredentials) -> Caller:
    """The Unix-socket caller: root, the host's user and popgate-admins administer."""
    try:
        account = pwd.getpwuid(peer.uid)
        name = account.pw_name
        groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    except KeyError:
        name, groups = f"uid {peer.uid}", {peer.gid}
    try:
        admin_gid: int | None = grp.getgrnam(ADMIN_GROUP).gr_gid
    except KeyError:
        admin_gid = None
    is_admin = peer.uid in (0, os.geteuid()) or (admin_gid is not None and admin_gid in groups)
    granted = frozenset({RoleGroup.ORGANIZATION_MANAGEMENT}) if is_admin else frozenset()
    return Caller(name=name, origin=f"local (pid {peer.pid})", role_groups=granted)


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, colon, password = decoded.partition(":")
    return (name, password) if colon else None


def foreign_origin(request: Request) -> str | None:
    """The Origin a browser named for ``request`` when another site's page sent it; None for
    this host's own pages and for clients that are no browser (they send no Origin)."""
    origin = request.headers.get("origin")
    if origin is None:
        return None
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return None if origin.lower() == own.lower() else origin


async def identify(request: Request) -> Caller:
    """The caller of ``request``: the socket peer, or the HTTPS login."""
    context: ControlContext = request.app.state.context
    peer = request.scope.get("state", {}).get("peer")
    if isinstance(peer, PeerCredentials):
        return local_caller(peer)
    origin = foreign_origin(request)
    if origin is not None and request.method not in SAFE_METHODS:
        # A browser sends the session cookie, and Basic credentials it remembers, with a form
        # another site posts here (Stop-Service needs no body): only its Origin tells.
        raise ApiError(
            403,
            ERROR_ACCESS_DENIED,
            f"The request comes from another site's page ({origin[:100]}); make changes "
            "from the admin center itself.",
        )
    address = request.client.host if request.client else "unknown"
    session = context.sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        # A browser sends its cookie to any request, so a change must also prove that it
        # comes from our own page: the CSRF token it embeds, in a header.
        if request.method not in SAFE_METHODS and not secrets.compare_digest(
            request.headers.get(CSRF_HEADER, ""), session.csrf
        ):
            raise ApiError(
                403, ERROR_ACCESS_DENIED, "The request has no valid CSRF token; reload the page."
            )
        return Caller(
            name=session.name,
            origin=session.origin,
            role_groups=session.role_groups,
            directory_account=True,
        )
    credentials = _basic_credentials(request.headers.get("authorization"))
    if credentials is None:
        raise ApiError(401, ERROR_LOGON_FAILURE, "Log in with a directory account.")
    name, password = credentials
    server = peer_server(name)
    if server is not None:
        return await _peer_caller(
            context, server, password, address, request.headers.get(ON_BEHALF_HEADER)
        )
    return await login(context, name, password, address)


async def _peer_caller(
    context: ControlContext, server: str, secret: str, address: str, on_behalf: str | None
) -> Caller:
    """Another host of the organization, calling as itself (for whom it says it acts)."""
    principal = PEER_PREFIX + server

    async def verified() -> bool | None:
        return await context.directory.verify_proxy_secret(server, secret) or None

    await _throttled(context, address, principal, verified, f"server {server!r}")
    if on_behalf is None:
        return Caller(
            name=principal, origin=f"https {address}", role_groups=frozenset(), peer_server=server
        )
    acting = OnBehalf.decode(on_behalf)
    if acting is None:
        raise ApiError(400, ERROR_INVALID_PARAMETER, f"The {ON_BEHALF_HEADER} header is malformed.")
    groups = acting.role_groups
    if acting.directory_account:
        # An account has the rights the shared directory gives it, on every computer.
        groups = frozenset(await context.directory.role_groups_of(acting.name))
    return Caller(
        name=acting.name,
        origin=f"{acting.origin} via {server}",
        role_groups=groups,
        directory_account=acting.directory_account,
    )


def on_behalf(caller: Caller) -> OnBehalf:
    """``caller`` as a host names it to another host it calls for them."""
    return OnBehalf(
        name=caller.name,
        origin=caller.origin,
        directory_account=caller.directory_account,
        role_groups=caller.role_groups,
    )


async def elsewhere(
    context: ControlContext, request: Request, caller: Caller, server: str | None
) -> Response | None:
    """Forward ``request`` to ``server``'s host for ``caller``, unless it names this computer.

    The answer, error or not, is the other host's own: it checks the caller's rights there
    and audits the call.
    """
    if context.peers.is_local(server):
        return None
    assert server is not None
    params = [(key, value) for key, value in request.query_params.multi_items() if key != "server"]
    try:
        answer = await context.peers.call(
            server,
            on_behalf(caller),
            request.method,
            request.url.path,
            params=params,
            content=await request.body() or None,
            content_type=request.headers.get("content-type"),
        )
    except PeerError as error:
        raise ApiError(error.status, error.code, error.message) from None
    return Response(
        answer.content,
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type"),
    )


async def _throttled(
    context: ControlContext,
    address: str,
    principal: str,
    check: Callable[[], Awaitable[_T | None]],
    who: str,
) -> _T:
    """Run the login ``check`` of ``principal`` from ``address`` under the login throttle;
    what it found.

    While the throttle locks them out, 429 and no check. A failed check (None) waits the
    throttle's delay, is logged as a failed login for ``who`` and answered 401; a good one
    clears the principal's failures.
    """
    wait = context.throttle.locked_for(address, principal)
    if wait > 0:
        raise ApiError(
            429, ERROR_LOGON_FAILURE, f"Too many failed logins; try again in {wait:.0f} s."
        )
    found = await check()
    if found is None:
        await asyncio.sleep(context.throttle.failed(address, principal))
        logger.warning("failed control API login for %s from %s", who, address)
        raise ApiError(401, ERROR_LOGON_FAILURE, "The user name or password is incorrect.")
    context.throttle.succeeded(principal)
    return found


async def login(context: ControlContext, name: str, password: str, address: str) -> Caller:
    """Check a directory login (throttled per address and account); the caller it makes."""
    mailbox = await _throttled(
        context,
        address,
        name,
        lambda: context.directory.verify_password(name, password),
        repr(name),
    )
    groups = frozenset(await context.directory.role_groups_of(mailbox.name))
    return Caller(
        name=mailbox.name, origin=f"https {address}", role_groups=groups, directory_account=True
    )


CallerDep = Annotated[Caller, Depends(identify)]


# --- permissions and the audit log ---------------------------------------------------------


def require_read(caller: Caller, groups: Collection[RoleGroup] = READ_GROUPS) -> None:
    """Refuse (403) a caller in none of ``groups``; reading changes nothing, so no audit."""
    if not caller.in_any(groups):
        raise ApiError(403, ERROR_ACCESS_DENIED, "Access is denied.")


async def audit(
    context: ControlContext, caller: Caller, action: str, target: str, result: str, detail: str
) -> None:
    """Append one change, allowed or refused, to the directory's audit log."""
    await context.directory.audit(
        actor=caller.name,
        origin=caller.origin,
        action=action,
        target=target,
        result=result,
        detail=detail,
    )


async def require_change(
    context: ControlContext,
    caller: Caller,
    groups: Collection[RoleGroup],
    action: str,
    target: str,
) -> None:
    """Refuse (403) a caller in none of ``groups`` the change ``action`` of ``target``; the
    refusal is audited as Denied and logged."""
    if caller.in_any(groups):
        return
    await audit(context, caller, action, target, "Denied", "Access is denied.")
    logger.warning("%s by %s from %s refused: access denied", action, caller.name, caller.origin)
    raise ApiError(403, ERROR_ACCESS_DENIED, "Access is denied.")


# --- the OpenAPI document ------------------------------------------------------------------

OPENAPI_URL = f"{API_PREFIX}/openapi.json"
#: The name of the HTTP Basic scheme in the OpenAPI document.
BASIC_SCHEME = "directoryAccount"

API_DESCRIPTION = """\
The control API of popgate's service host: list, start, stop and configure this computer's \
POP3 services (MSExchangePOP3 and MSExchangePOP3BE), read the host log and the audit log, \
and the management endpoints the Exchange management shell's cmdlets call \
(Get-/Set-PopSettings, mailboxes, role groups, servers, Test-PopConnectivity).

## Two doors

* **The Unix socket** `run/host.sock` in the data directory. The caller is the peer's OS \
user (SO_PEERCRED) and sends no credentials: root, the host's own user and members of the \
`popgate-admins` group act as Organization Management; everyone else is refused (403). \
`popgate net`, `popgate status` and the management shell use this door.
* **HTTPS** (`popgate host --https ADDRESS:PORT`, 127.0.0.1:8443 unless changed; the \
computer's certificate). The caller logs in with a directory account by **HTTP Basic** on \
every request, and the account's role groups decide: Organization Management and Server \
Management control services, View-Only Organization Management reads, Recipient Management \
manages mailboxes. Failed logins are throttled per address and per account (429). The admin \
center (`/ecp/`) calls the same endpoints with its session cookie instead, and sends its \
CSRF token in the `X-CSRF-Token` header with every change.

## Errors

Every refusal has the body `{"error": {"code": 5, "message": "Access is denied."}}`: `code` \
is the Windows error number that net.exe and PowerShell report (5 access denied, 87 invalid \
parameter, 1056 already running, 1058 disabled, 1060 no such service, 1062 not active, 1326 \
logon failure, ...).

## Audit

Every change, allowed or refused, is written to the audit log (`GET /api/v1/audit`); \
passwords never are.
"""

OPENAPI_TAGS = [
    {"name": "identity", "description": "Who the host takes the caller for."},
    {"name": "services", "description": "Get-Service, Start-, Stop-, Restart- and Set-Service."},
    {"name": "logs", "description": "The host log and the audit log (Search-AdminAuditLog)."},
    {
        "name": "management",
        "description": "The Exchange cmdlets: POP3 settings, mailboxes, role groups, servers, "
        "Test-PopConnectivity.",
    },
]


def _document_security(app: FastAPI) -> None:
    """Declare HTTP Basic in the app's OpenAPI document: FastAPI's own ``HTTPBasic``
    dependency would answer a malformed header in its own error shape, and decodes only
    ASCII, so the API keeps its own parsing and the document says it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[BASIC_SCHEME] = {
            "type": "http",
            "scheme": "basic",
            "description": "A directory account (a mailbox name or address and its password); "
            "the Unix socket needs none.",
        }
        document["security"] = [{BASIC_SCHEME: []}]
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _operation_id(route: APIRoute) -> str:
    return route.name


def create_app(context: ControlContext) -> FastAPI:
    """The control API app over ``context``."""
    app = FastAPI(
        title="popgate service host",
        summary="Start, stop and configure this computer's POP3 services.",
        description=API_DESCRIPTION,
        version=__version__,
        openapi_url=OPENAPI_URL,
        openapi_tags=OPENAPI_TAGS,
        license_info={"name": "MIT", "identifier": "MIT"},
        # Operation ids are the endpoints' function names (get_service, new_mailbox, ...),
        # which stay stable and read well in generated clients.
        generate_unique_id_function=_operation_id,
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = context
    _document_security(app)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document() -> JSONResponse:
        """FastAPI's usual address of the document, for tools that look there."""
        return JSONResponse(app.openapi())

    # The admin center: imported here because its pages use this module's login.
    from popgate.host import _ecp_mailboxes, _ecp_monitoring, _ecp_settings
    from popgate.host._ecp import ECP_PREFIX, ecp_router, ecp_static

    app.mount(f"{ECP_PREFIX}/static", ecp_static(), name="ecp-static")
    app.include_router(ecp_router())
    for module in (_ecp_settings, _ecp_mailboxes, _ecp_monitoring):
        app.include_router(module.pages())

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="popgate"'} if error.status == 401 else None
        body = {"error": {"code": error.code, "message": str(error)}}
        return JSONResponse(body, status_code=error.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'][1:]) or 'body'}: {problem['msg']}"
            for problem in error.errors()
        )
        body = {"error": {"code": ERROR_INVALID_PARAMETER, "message": problems}}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        """Refusals of the framework (an unknown path, a body it cannot read) in the API's
        error shape, so that every answer of /api/v1 is one the document describes."""
        if not request.url.path.startswith(f"{API_PREFIX}/"):
            return await http_exception_handler(request, error)
        status, code = error.status_code, ERROR_INVALID_PARAMETER
        if status == 400:
            # A body that is not UTF-8: invalid input, answered like a body that is not JSON.
            status = 422
        elif status == 404:
            code = ERROR_NOT_FOUND
        body = {"error": {"code": code, "message": f"{error.detail}."}}
        return JSONResponse(body, status_code=status, headers=error.headers)

    async def controlled(caller: Caller, action: str, name: str) -> ServiceProcess:
        """The service to act on, once the caller is known to be allowed; refusals audited."""
        try:
            process = context.host.find(name)
        except ServiceControlError as error:
            # Refused before told: an account that may control nothing must not learn
            # which names exist.
            await require_change(context, caller, CONTROL_GROUPS, action, name)
            raise ApiError(404, error.code, str(error)) from None
        await require_change(context, caller, CONTROL_GROUPS, action, process.info.name)
        return process

    def control_refused(error: ServiceControlError) -> ApiError:
        return ApiError(409, error.code, str(error))

    def follow(
        caller: Caller, action: str, target: str, control: asyncio.Task[ServiceProcess]
    ) -> None:
        """Audit the outcome of a control once it has finished."""

        async def report() -> None:
            try:
                process = await control
            except ServiceControlError as error:
                logger.warning("%s %s refused: %s", action, target, error)
                await audit(context, caller, action, target, "Refused", str(error))
                return
            except Exception as error:
                logger.exception("%s failed", action)
                await audit(context, caller, action, target, "Failed", str(error))
                return
            state = process.current_state().label
            result = "Failed" if process.last_error else "Success"
            await audit(
                context, caller, action, process.info.name, result, process.last_error or state
            )

        task = asyncio.ensure_future(report())
        context.host.background(task)

    @app.get(f"{API_PREFIX}/whoami", tags=["identity"], responses=error_responses(*LOGIN_ERRORS))
    async def whoami(caller: CallerDep) -> WhoAmI:
        """The caller's identity and rights."""
        return WhoAmI(
            name=caller.name,
            origin=caller.origin,
            role_groups=sorted(group.value for group in caller.role_groups),
            may_read=caller.may_read,
            may_control=caller.may_control,
        )

    @app.get(
        f"{API_PREFIX}/services",
        tags=["services"],
        response_model=list[ServiceStatus],
        responses=error_responses(*READ_ERRORS, *PEER_ERRORS),
    )
    async def list_services(
        request: Request, caller: CallerDep, server: ServerQuery = None
    ) -> list[ServiceStatus] | Response:
        """Every service of this computer, or of ``server``."""
        if remote := await elsewhere(context, request, caller, server):
            return remote
        require_read(caller)
        return [
            service_status(context.host, process) for process in context.host.processes.values()
        ]

    @app.get(
        f"{API_PREFIX}/services/{{name}}",
        tags=["services"],
        response_model=ServiceStatus,
        responses=error_responses(*SERVICE_ERRORS, *PEER_ERRORS),
    )
    async def get_service(
        name: str, request: Request, caller: CallerDep, server: ServerQuery = None
    ) -> ServiceStatus | Response:
        """One service, by key name or display name."""
        if remote := await elsewhere(context, request, caller, server):
            return remote
        require_read(caller)
        try:
            return service_status(context.host, context.host.find(name))
        except ServiceControlError as error:
            raise ApiError(404, error.code, str(error)) from None

    async def act(
        caller: Caller,
        action: str,
        name: str,
        begin: Callable[[str], asyncio.Task[ServiceProcess]],
    ) -> JSONResponse:
        process = await controlled(caller, action, name)
        await context.refresh_stop_timeout()
        try:
            control = begin(process.info.name)
        except ServiceControlError as error:
            await audit(context, caller, action, process.info.name, "Refused", str(error))
            raise control_refused(error) from None
        logger.info("%s %s by %s from %s", action, process.info.name, caller.name, caller.origin)
        follow(caller, action, process.info.name, control)
        body = service_status(context.host, process).model_dump(mode="json")
        return JSONResponse(body, status_code=202)

    @app.post(
        f"{API_PREFIX}/services/{{name}}/start",
        status_code=202,
        response_model=ServiceStatus,
        tags=["services"],
        responses=error_responses(*SERVICE_ERRORS, *PEER_ERRORS, 409),
    )
    async def start_service(
        name: str, request: Request, caller: CallerDep, server: ServerQuery = None
    ) -> Response:
        """Start: 202 with StartPending; poll the service until Running or Stopped."""
        if remote := await elsewhere(context, request, caller, server):
            return remote
        return await act(caller, "Start-Service", name, context.host.start)

    @app.post(
        f"{API_PREFIX}/services/{{name}}/stop",
        status_code=202,
        response_model=ServiceStatus,
        tags=["services"],
        responses=error_responses(*SERVICE_ERRORS, *PEER_ERRORS, 409),
    )
    async def stop_service(
        name: str, request: Request, caller: CallerDep, server: ServerQuery = None
    ) -> Response:
        """Stop gracefully: 202 with StopPending; poll the service until Stopped."""
        if remote := await elsewhere(context, request, caller, server):
            return remote
        return await act(caller, "Stop-Service", name, context.host.stop)

    @app.post(
        f"{API_PREFIX}/services/{{name}}/restart",
        status_code=202,
        response_model=ServiceStatus,
        tags=["services"],
        responses=error_responses(*SERVICE_ERRORS, *PEER_ERRORS, 409),
    )
    async def restart_service(
        name: str, request: Request, caller: CallerDep, server: ServerQuery = None
    ) -> Response:
        """Stop if running, then start."""
        if remote := await elsewhere(context, request, caller, server):
            return remote
        return await act(caller, "Restart-Service", name, context.host.restart)

    @app.put(
        f"{API_PREFIX}/services/{{name}}/startup-type",
        tags=["services"],
        response_model=ServiceStatus,
        responses=error_responses(*SERVICE_ERRORS, *PEER_ERRORS),
    )
    async def set_startup_type(
        name: str,
        change: StartupTypeChange,
        request: Request,
        caller: CallerDep,
        server: ServerQuery = None,
    ) -> ServiceStatus | Response:
        """Set-Service -StartupType Automatic|Manual|Disabled."""
        if remote := await elsewhere(context, request, caller, server):
            return remote
        process = await controlled(caller, "Set-Service", name)
        context.host.set_startup_type(process.info.name, change.startup_type)
        await audit(
            context,
            caller,
            "Set-Service",
            process.info.name,
            "Success",
            f"StartupType {change.startup_type.value}",
        )
        return service_status(context.host, process)

    @app.put(
        f"{API_PREFIX}/services/{{name}}/recovery",
        tags=["services"],
        response_model=ServiceStatus,
        responses=error_responses(*SERVICE_ERRORS, *PEER_ERRORS),
    )
    async def set_recovery(
        name: str,
        options: RecoveryOptions,
        request: Request,
        caller: CallerDep,
        server: ServerQuery = None,
    ) -> ServiceStatus | Response:
        """The recovery options: up to three failure actions and the reset period."""
        if remote := await elsewhere(context, request, caller, server):
            return remote
        process = await controlled(caller, "Set-ServiceRecovery", name)
        steps = [RecoveryStep(action.action, action.delay) for action in options.actions]
        context.host.set_recovery(process.info.name, steps, options.reset_after)
        summary = ", ".join(f"{step.action.value}/{step.delay:g}s" for step in steps) or "none"
        await audit(
            context,
            caller,
            "Set-ServiceRecovery",
            process.info.name,
            "Success",
            f"{summary}; reset after {options.reset_after:g} s",
        )
        return service_status(context.host, process)

    @app.get(
        f"{API_PREFIX}/log",
        tags=["logs"],
        response_model=LogTail,
        responses=error_responses(*READ_ERRORS, *PEER_ERRORS),
    )
    async def read_log(
        request: Request,
        caller: CallerDep,
        lines: Annotated[int, Query(ge=1, le=10_000)] = 200,
        server: ServerQuery = None,
    ) -> LogTail | Response:
        """The last ``lines`` lines of the host's log (of ``server``'s host, if given)."""
        if remote := await elsewhere(context, request, caller, server):
            return remote
        require_read(caller)
        try:
            text = context.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        return LogTail(lines=text.splitlines()[-lines:])

    @app.get(f"{API_PREFIX}/audit", tags=["logs"], responses=error_responses(*READ_ERRORS))
    async def read_audit(
        caller: CallerDep,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        cmdlets: str | None = None,
        user_ids: str | None = None,
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
        result_size: Annotated[int | None, Query(ge=1, le=250_000)] = None,
    ) -> list[AuditRecord]:
        """The newest audit entries, newest first; Search-AdminAuditLog's filters narrow them.

        ``cmdlets`` and ``user_ids`` are comma lists matched ignoring case; ``start`` and
        ``end`` bound the time, read in the host's time zone when they carry none, as
        Exchange reads dates; ``result_size`` is Search-AdminAuditLog's name for ``limit``.
        """
        require_read(caller)
        try:
            entries = await context.directory.list_audit(
                limit=limit if result_size is None else result_size,
                actions=_comma_list(cmdlets),
                actors=_comma_list(user_ids),
                start=None if start is None else _aware(start),
                end=None if end is None else _aware(end),
            )
        except InvalidSetting as error:
            raise ApiError(422, ERROR_INVALID_PARAMETER, str(error)) from None
        return [
            AuditRecord(
                at=entry.at,
                actor=entry.actor,
                origin=entry.origin,
                action=entry.action,
                target=entry.target,
                result=entry.result,
                detail=entry.detail,
            )
            for entry in entries
        ]

    # They build on this module's helpers.
    from popgate.host._api_admin import admin_router
    from popgate.host._api_metrics import metrics_router
    from popgate.host._api_move import move_router
    from popgate.host._api_protocol_log import protocol_log_router

    # Every management endpoint logs in, checks role groups and validates its input; the
    # refusals particular to some (404, 409) are documented on those endpoints.
    app.include_router(
        admin_router(context), tags=["management"], responses=error_responses(*READ_ERRORS)
    )
    app.include_router(
        move_router(context), tags=["management"], responses=error_responses(*READ_ERRORS)
    )
    app.include_router(metrics_router(context))
    app.include_router(protocol_log_router(context))
    return app


def _comma_list(text: str | None) -> list[str] | None:
    """``a, b`` as ``["a", "b"]``; None when nothing is named."""
    items = [item.strip() for item in (text or "").split(",") if item.strip()]
    return items or None


def _aware(when: datetime.datetime) -> datetime.datetime:
    return when if when.tzinfo is not None else when.astimezone()
