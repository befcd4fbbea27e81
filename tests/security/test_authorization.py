"""Authorization (issue 10, part 6): every route and page as every role; sessions and CSRF.

The routes are read from the app itself (``create_app``), so a route added later is walked
without being named here, and the walk fails until :func:`api_table` or :data:`PAGES` says
who may call it. The expectations are written out from the role rules (exchange-pop3.md
section 4, docs/design.md "Two doors"), not imported from the code they check.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.cookies import Morsel, SimpleCookie
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from popgate.directory import Mailbox, MoveRequest, MoveStatus, RoleGroup
from popgate.host._api import create_app
from popgate.host._ecp import LOGIN_COOKIE
from popgate.host._sessions import SESSION_COOKIE
from popgate.host.openapi import inert_context, openapi_document
from tests.e2e.conftest import Installation, insecure_client_context, installed
from tests.e2e.test_admin_api import add_server, client_of
from tests.e2e.test_backend import PASSWORD
from tests.e2e.test_control import directory_call

#: One directory account per role group, and one in none (a plain mailbox user).
ACCOUNTS: dict[str, RoleGroup | None] = {
    "viewer": RoleGroup.VIEW_ONLY_ORGANIZATION_MANAGEMENT,
    "recipients": RoleGroup.RECIPIENT_MANAGEMENT,
    "operator": RoleGroup.SERVER_MANAGEMENT,
    "orgadmin": RoleGroup.ORGANIZATION_MANAGEMENT,
    "nobody": None,
}
ANONYMOUS = "anonymous"
CALLERS = (ANONYMOUS, *ACCOUNTS)

# Who may do what, from the role rules (not from the code's own sets).
EVERY_ACCOUNT = frozenset(ACCOUNTS)
#: POP3 settings, services, logs, servers, Test-PopConnectivity: the three POP3 role groups.
READ = frozenset({"viewer", "operator", "orgadmin"})
#: Start, stop, configure services and POP3 settings: View-Only excepted.
CONTROL = frozenset({"operator", "orgadmin"})
#: Mailboxes and moves are read by the POP3 role groups and Recipient Management...
RECIPIENT_READ = READ | {"recipients"}
#: ...and changed by Organization and Recipient Management.
RECIPIENT_CHANGE = frozenset({"recipients", "orgadmin"})
#: Role-group membership hands out every right: Organization Management only.
ORGANIZATION = frozenset({"orgadmin"})
#: The maildrop endpoints serve only the target server's host of a move (``server/<name>``
#: with the proxy secret), never a person, whatever their role groups.
SERVERS_ONLY: frozenset[str] = frozenset()

#: A service kept Disabled and stopped, so that Start, Stop and Restart are refused (409)
#: for those allowed: the walk reaches the rights check and changes nothing.
DISABLED = "MSExchangePOP3BE"
#: A mailbox held by another (registered, unreachable) server, with a completed move here.
MOVING = "moving"
OTHER_SERVER = "mbx9"
NO_SUCH = "no-such-mailbox"
MAILDROP = "/api/v1/maildrops/0b7f3c2e-5d7a-4a5b-9a51-3f0e6f3c2d11"
ONE_MESSAGE = {"files": ("walk.eml", b"Subject: walk\r\n\r\nwalk\r\n", "message/rfc822")}
#: What the host says to a change from another site's page.
FOREIGN = "https://evil.example"


@dataclass(frozen=True)
class Call:
    """How the walk calls one API route with harmless arguments, and who may call it."""

    allowed: frozenset[str]
    #: The answer to an allowed caller: 404, 409 or 422 when the arguments name nothing.
    status: int
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    #: Anonymous callers too: the OpenAPI document and the admin center's static files.
    public: bool = False
    #: Run before each call: a removal needs its object back.
    prepare: Callable[[Installation], None] | None = None


def completed_move(installation: Installation) -> None:
    """Make sure the mailbox MOVING has a Completed move to this server."""
    mailbox = directory_call(installation, "get_mailbox", MOVING)
    assert isinstance(mailbox, Mailbox)
    if directory_call(installation, "get_move_request", mailbox.guid) is None:
        server = installation.layout.server_name
        request = directory_call(installation, "add_move_request", MOVING, server, "walk")
        assert isinstance(request, MoveRequest)
    directory_call(installation, "set_move_status", mailbox.guid, MoveStatus.COMPLETED, "Done.")


def api_table(server: str, recovery: dict[str, Any]) -> dict[str, Call]:
    """The expected outcome of every control API route: who may, and with which arguments."""
    service = f"/api/v1/services/{DISABLED}"
    return {
        "GET /api/v1/openapi.json": Call(EVERY_ACCOUNT, 200, "/api/v1/openapi.json", public=True),
        "GET /openapi.json": Call(EVERY_ACCOUNT, 200, "/openapi.json", public=True),
        "GET /ecp/static/{path}": Call(EVERY_ACCOUNT, 200, "/ecp/static/ecp.css", public=True),
        "GET /api/v1/whoami": Call(EVERY_ACCOUNT, 200, "/api/v1/whoami"),
        # Services (Get-Service, Start-/Stop-/Restart-/Set-Service).
        "GET /api/v1/services": Call(READ, 200, "/api/v1/services"),
        "GET /api/v1/services/{name}": Call(READ, 200, service),
        "POST /api/v1/services/{name}/start": Call(CONTROL, 409, f"{service}/start"),
        "POST /api/v1/services/{name}/stop": Call(CONTROL, 409, f"{service}/stop"),
        "POST /api/v1/services/{name}/restart": Call(CONTROL, 409, f"{service}/restart"),
        "PUT /api/v1/services/{name}/startup-type": Call(
            CONTROL, 200, f"{service}/startup-type", json={"startup_type": "Disabled"}
        ),
        "PUT /api/v1/services/{name}/recovery": Call(
            CONTROL, 200, f"{service}/recovery", json=recovery
        ),
        # Logs and counters.
        "GET /api/v1/log": Call(READ, 200, "/api/v1/log", {"lines": "5"}),
        "GET /api/v1/audit": Call(READ, 200, "/api/v1/audit", {"limit": "5"}),
        "GET /metrics": Call(READ, 200, "/metrics"),
        "GET /api/v1/metrics": Call(READ, 200, "/api/v1/metrics"),
        "GET /api/v1/protocol-log": Call(READ, 200, "/api/v1/protocol-log", {"lines": "5"}),
        # POP3 settings.
        "GET /api/v1/pop-settings": Call(READ, 200, "/api/v1/pop-settings"),
        "PATCH /api/v1/pop-settings": Call(
            CONTROL,
            404,
            "/api/v1/pop-settings",
            {"server": "no-such-server"},
            json={"changes": {"Banner": "walked"}},
        ),
        # Mailboxes.
        "GET /api/v1/mailboxes": Call(RECIPIENT_READ, 200, "/api/v1/mailboxes"),
        "GET /api/v1/mailboxes/{identity}": Call(RECIPIENT_READ, 200, "/api/v1/mailboxes/nobody"),
        "POST /api/v1/mailboxes": Call(
            RECIPIENT_CHANGE, 409, "/api/v1/mailboxes", json={"name": "nobody", "password": "x"}
        ),
        "DELETE /api/v1/mailboxes/{identity}": Call(
            RECIPIENT_CHANGE, 404, f"/api/v1/mailboxes/{NO_SUCH}"
        ),
        "PUT /api/v1/mailboxes/{identity}/password": Call(
            RECIPIENT_CHANGE, 404, f"/api/v1/mailboxes/{NO_SUCH}/password", json={"password": "x"}
        ),
        "PUT /api/v1/mailboxes/{identity}/quota": Call(
            RECIPIENT_CHANGE,
            404,
            f"/api/v1/mailboxes/{NO_SUCH}/quota",
            json={"prohibit_send_receive_quota": "unlimited"},
        ),
        "GET /api/v1/mailboxes/{identity}/cas": Call(
            RECIPIENT_READ, 200, "/api/v1/mailboxes/nobody/cas"
        ),
        "PATCH /api/v1/mailboxes/{identity}/cas": Call(
            RECIPIENT_CHANGE,
            404,
            f"/api/v1/mailboxes/{NO_SUCH}/cas",
            json={"changes": {"PopEnabled": True}},
        ),
        "POST /api/v1/mailboxes/{identity}/import": Call(
            RECIPIENT_CHANGE, 404, f"/api/v1/mailboxes/{NO_SUCH}/import", files=ONE_MESSAGE
        ),
        # Role groups and servers.
        "GET /api/v1/role-groups/{group}/members": Call(
            READ, 200, "/api/v1/role-groups/Organization%20Management/members"
        ),
        "POST /api/v1/role-groups/{group}/members": Call(
            ORGANIZATION,
            404,
            "/api/v1/role-groups/No%20Such%20Group/members",
            json={"member": "nobody"},
        ),
        "DELETE /api/v1/role-groups/{group}/members/{member}": Call(
            ORGANIZATION, 404, "/api/v1/role-groups/No%20Such%20Group/members/nobody"
        ),
        "GET /api/v1/servers": Call(READ, 200, "/api/v1/servers"),
        "POST /api/v1/test-pop-connectivity": Call(
            READ, 422, "/api/v1/test-pop-connectivity", json={"connection_type": "Walk"}
        ),
        # Mailbox moves.
        "GET /api/v1/move-requests": Call(RECIPIENT_READ, 200, "/api/v1/move-requests"),
        "POST /api/v1/move-requests": Call(
            RECIPIENT_CHANGE,
            404,
            "/api/v1/move-requests",
            json={"identity": NO_SUCH, "target_server": server},
        ),
        "GET /api/v1/move-requests/{identity}": Call(
            RECIPIENT_READ, 200, f"/api/v1/move-requests/{MOVING}"
        ),
        "POST /api/v1/move-requests/{identity}/resume": Call(
            RECIPIENT_CHANGE, 202, f"/api/v1/move-requests/{MOVING}/resume"
        ),
        "DELETE /api/v1/move-requests/{identity}": Call(
            RECIPIENT_CHANGE, 200, f"/api/v1/move-requests/{MOVING}", prepare=completed_move
        ),
        # The source's maildrop, for the target server's host only.
        "GET /api/v1/maildrops/{guid}/manifest": Call(SERVERS_ONLY, 0, f"{MAILDROP}/manifest"),
        "GET /api/v1/maildrops/{guid}/index": Call(SERVERS_ONLY, 0, f"{MAILDROP}/index"),
        "GET /api/v1/maildrops/{guid}/files/{path}": Call(
            SERVERS_ONLY, 0, f"{MAILDROP}/files/new/x"
        ),
        "POST /api/v1/maildrops/{guid}/freeze": Call(SERVERS_ONLY, 0, f"{MAILDROP}/freeze"),
        "DELETE /api/v1/maildrops/{guid}/freeze": Call(SERVERS_ONLY, 0, f"{MAILDROP}/freeze"),
        "DELETE /api/v1/maildrops/{guid}": Call(SERVERS_ONLY, 0, MAILDROP),
    }


@dataclass(frozen=True)
class Page:
    """How the walk calls one admin center route, and what each caller gets."""

    path: str
    #: Status and Location for a browser without a session.
    anonymous: tuple[int, str | None]
    #: Status and Location for every signed-in account.
    signed_in: tuple[int, str | None]
    form: dict[str, str] | None = None
    #: Server-rendered text that only ``shown_to`` may see.
    shows: str | None = None
    shown_to: frozenset[str] = frozenset()


PAGES: dict[str, Page] = {
    "GET /ecp/": Page("/ecp/", (303, "/ecp/services"), (303, "/ecp/services")),
    "GET /ecp/login": Page("/ecp/login", (200, None), (200, None)),
    # The sign-in form without its double-submit token: refused, whoever sends it (signing
    # in itself is what the fixtures below do for every account).
    "POST /ecp/login": Page(
        "/ecp/login", (403, None), (403, None), form={"username": "nobody", "password": PASSWORD}
    ),
    # Sign-out without the session's token: nothing to end for anonymous; refused otherwise.
    "POST /ecp/logout": Page("/ecp/logout", (303, "/ecp/login?bye=1"), (403, None), form={}),
    # Services are listed only to the role groups the API lets read them.
    "GET /ecp/services": Page(
        "/ecp/services",
        (303, "/ecp/login?next=/ecp/services"),
        (200, None),
        shows='data-name="MSExchangePOP3"',
        shown_to=READ,
    ),
    "GET /ecp/servers": Page("/ecp/servers", (303, "/ecp/login?next=/ecp/servers"), (200, None)),
    "GET /ecp/pop3": Page("/ecp/pop3", (303, "/ecp/login?next=/ecp/pop3"), (200, None)),
    "GET /ecp/mailboxes": Page(
        "/ecp/mailboxes", (303, "/ecp/login?next=/ecp/mailboxes"), (200, None)
    ),
    "GET /ecp/monitoring": Page(
        "/ecp/monitoring", (303, "/ecp/login?next=/ecp/monitoring"), (200, None)
    ),
}


def app_routes() -> set[str]:
    """Every route of the host's app as ``METHOD /path``: its own routes, the included
    routers', the mounted static files, and every operation of its OpenAPI document."""
    app = create_app(inert_context())
    routes: set[str] = set()
    for route in iter_route_contexts(app.routes):
        methods = (route.methods or {"GET"}) - {"HEAD"}  # a Mount serves GET
        routes |= {f"{method} {route.path_format}" for method in methods}
    for path, item in openapi_document()["paths"].items():
        routes |= {f"{method.upper()} {path}" for method in item}
    return routes


# --- talking to the host -------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """An admin center sign-in: the session cookie's value and the page's CSRF token."""

    token: str
    csrf: str


@dataclass
class Org:
    """The running installation, its server's name and the walk's sessions."""

    installation: Installation
    server: str
    recovery: dict[str, Any]
    sessions: dict[str, Session] = field(default_factory=dict)

    @property
    def base(self) -> str:
        """The host's HTTPS address."""
        return f"https://127.0.0.1:{self.installation.https_port}"


def basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    """An HTTP Basic Authorization header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def with_session(session: Session, *, csrf: str | None = None) -> dict[str, str]:
    """What the admin center's scripts send: the cookie and the CSRF token header."""
    token = session.csrf if csrf is None else csrf
    return {"Cookie": f"{SESSION_COOKIE}={session.token}", "X-CSRF-Token": token}


def send(
    web: httpx.Client, method: str, path: str, headers: dict[str, str], **kwargs: Any
) -> httpx.Response:
    """One request with exactly ``headers``' credentials: no cookie of an earlier answer."""
    web.cookies.clear()
    return web.request(method, path, headers=headers, **kwargs)


def set_cookies(answer: httpx.Response) -> dict[str, Morsel[str]]:
    """The cookies an answer sets, with their attributes."""
    jar: SimpleCookie = SimpleCookie()
    for header in answer.headers.get_list("set-cookie"):
        jar.load(header)
    return dict(jar)


def login_form(web: httpx.Client) -> str:
    """Load the sign-in page as a browser does; its double-submit token."""
    page = send(web, "GET", "/ecp/login", {})
    assert page.status_code == 200, page.text
    return set_cookies(page)[LOGIN_COOKIE].value


def post_sign_in(
    web: httpx.Client, user: str, *, cookie: str = "", origin: str | None = None
) -> httpx.Response:
    """Submit the sign-in form (after loading it) with ``cookie`` added; the answer."""
    token = login_form(web)
    headers = {"Cookie": f"{LOGIN_COOKIE}={token}" + (f"; {cookie}" if cookie else "")}
    if origin is not None:
        headers["Origin"] = origin
    form = {"username": user, "password": PASSWORD, "csrf": token, "next": "/ecp/services"}
    return send(web, "POST", "/ecp/login", headers, data=form)


def sign_in(web: httpx.Client, user: str) -> Session:
    """Sign in to the admin center; the session and its page's CSRF token."""
    answer = post_sign_in(web, user)
    assert answer.status_code == 303, answer.text
    token = set_cookies(answer)[SESSION_COOKIE].value
    page = send(web, "GET", "/ecp/services", {"Cookie": f"{SESSION_COOKIE}={token}"})
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    assert found is not None, page.text
    return Session(token, found.group(1))


def whoami(web: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    """GET /api/v1/whoami with ``headers``."""
    return send(web, "GET", "/api/v1/whoami", headers)


def mailbox_exists(org: Org, name: str) -> bool:
    """Whether the directory has mailbox ``name``."""
    return directory_call(org.installation, "get_mailbox", name) is not None


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    """One installation and its running host; an account per role group, signed in to the
    admin center; a Disabled service; a mailbox on another server with a completed move."""
    with installed(tmp_path_factory.mktemp("authorization")) as installation:
        installation.start_host()
        add_server(installation, OTHER_SERVER)
        # Through the API as root (New-Mailbox, Add-RoleGroupMember): each popgate command
        # would start a Python of its own.
        with client_of(installation) as root:
            for name, group in ACCOUNTS.items():
                root.new_mailbox(name, PASSWORD, server=installation.layout.server_name)
                if group is not None:
                    root.add_role_group_member(group.value, name)
            root.new_mailbox(MOVING, PASSWORD, server=OTHER_SERVER)
            root.set_startup_type(DISABLED, "Disabled")
            recovery = dict(root.service(DISABLED)["recovery"])
        completed_move(installation)
        state = Org(installation, installation.layout.server_name, recovery)
        with httpx.Client(base_url=state.base, verify=insecure_client_context(), timeout=60) as web:
            state.sessions = {name: sign_in(web, name) for name in ACCOUNTS}
        yield state


@pytest.fixture
def web(org: Org) -> Iterator[httpx.Client]:
    """An HTTPS client of the host that keeps no cookies between requests."""
    with httpx.Client(base_url=org.base, verify=insecure_client_context(), timeout=60) as client:
        yield client


# --- the walk ------------------------------------------------------------------------------


def test_the_tables_name_every_route_of_the_app_and_nothing_else() -> None:
    table = set(api_table("server", {})) | set(PAGES)
    routes = app_routes()
    assert routes - table == set(), "routes the role table has no row for"
    assert table - routes == set(), "rows of the role table for routes that are gone"


def problem_with(key: str, caller: str, call: Call, answer: httpx.Response) -> str | None:
    """What is wrong with ``caller``'s answer from API route ``key``; None if it is right."""
    status, shown = answer.status_code, f"{key} as {caller}: {answer.status_code}"
    if status >= 500 or "Traceback" in answer.text:
        return f"{shown} {answer.text[:300]!r}"
    if call.public:
        return None if status == call.status else f"{shown}, expected {call.status}"
    if caller == ANONYMOUS:
        expected, code = 401, 1326
        if not answer.headers.get("www-authenticate", "").startswith("Basic "):
            return f"{shown} without a Basic challenge"
    elif caller in call.allowed:
        return None if status == call.status else f"{shown}, expected {call.status} (allowed)"
    else:
        expected, code = 403, 5
    if status != expected:
        return f"{shown}, expected {expected} {answer.text[:200]!r}"
    error = answer.json().get("error", {})
    if error.get("code") != code or not error.get("message"):
        return f"{shown} with an unclear body {answer.text[:200]!r}"
    if status == 403 and not error["message"].startswith("Access is denied."):
        return f"{shown} says {error['message']!r}"
    return None


def walk_api(org: Org, web: httpx.Client, door: Callable[[str], dict[str, str]]) -> list[str]:
    """Call every API route as every caller through ``door``; what went wrong."""
    table = api_table(org.server, org.recovery)
    problems = []
    for key in sorted(app_routes() - set(PAGES)):
        call = table.get(key)
        if call is None:
            problems.append(f"{key}: the role table has no row for it")
            continue
        method = key.split()[0]
        for caller in CALLERS:
            if call.prepare is not None:
                call.prepare(org.installation)
            answer = send(
                web, method, call.path, door(caller),
                params=call.params, json=call.json, files=call.files,
            )  # fmt: skip
            if problem := problem_with(key, caller, call, answer):
                problems.append(problem)
    return problems


def test_every_api_route_as_every_role_over_http_basic(org: Org, web: httpx.Client) -> None:
    problems = walk_api(org, web, lambda caller: {} if caller == ANONYMOUS else basic(caller))
    assert problems == [], "\n".join(problems)
    # The walk changed nothing it should not have: the accounts keep their rights.
    for name, group in ACCOUNTS.items():
        groups = [] if group is None else [group.value]
        assert whoami(web, basic(name)).json()["role_groups"] == groups


def test_every_api_route_as_every_role_with_an_admin_center_session(
    org: Org, web: httpx.Client
) -> None:
    """The same rights through the admin center's door: the session cookie and its token."""
    problems = walk_api(
        org, web, lambda caller: {} if caller == ANONYMOUS else with_session(org.sessions[caller])
    )
    assert problems == [], "\n".join(problems)


def test_a_caller_without_the_right_is_refused_before_told_whether_a_name_exists(
    org: Org, web: httpx.Client
) -> None:
    """A change of an unknown service or move: 404 only to those allowed to make it."""
    calls = {
        "/api/v1/services/NoSuchService/start": CONTROL,
        "/api/v1/services/NoSuchService/stop": CONTROL,
        f"/api/v1/move-requests/{NO_SUCH}/resume": RECIPIENT_CHANGE,
    }
    problems = []
    for path, allowed in calls.items():
        for caller in ACCOUNTS:
            answer = send(web, "POST", path, basic(caller))
            expected = 404 if caller in allowed else 403
            if answer.status_code != expected:
                problems.append(f"POST {path} as {caller}: {answer.status_code}, not {expected}")
    for caller in ACCOUNTS:
        answer = send(web, "DELETE", f"/api/v1/move-requests/{NO_SUCH}", basic(caller))
        expected = 404 if caller in RECIPIENT_CHANGE else 403
        if answer.status_code != expected:
            problems.append(f"DELETE move of {NO_SUCH} as {caller}: {answer.status_code}")
    assert problems == [], "\n".join(problems)


def test_every_admin_center_page_as_every_role(org: Org, web: httpx.Client) -> None:
    problems = []
    for key, page in PAGES.items():
        method = key.split()[0]
        for caller in CALLERS:
            if caller == ANONYMOUS:
                headers, (status, location) = {}, page.anonymous
            else:
                headers = {"Cookie": f"{SESSION_COOKIE}={org.sessions[caller].token}"}
                status, location = page.signed_in
            answer = send(web, method, page.path, headers, data=page.form)
            shown = f"{key} as {caller}: {answer.status_code} {answer.headers.get('location')}"
            if answer.status_code >= 500 or "Traceback" in answer.text:
                problems.append(f"{shown} {answer.text[:300]!r}")
            elif (answer.status_code, answer.headers.get("location")) != (status, location):
                problems.append(f"{shown}, expected {status} {location}")
            elif status == 403 and "token" not in answer.text and "expired" not in answer.text:
                problems.append(f"{shown} does not say why: {answer.text[:200]!r}")
            elif page.shows is not None and (page.shows in answer.text) != (
                caller in page.shown_to
            ):
                problems.append(f"{shown}: {page.shows!r} shown to the wrong callers")
    assert problems == [], "\n".join(problems)
    # No walked sign-out ended a session.
    for name, session in org.sessions.items():
        assert whoami(web, with_session(session)).json()["name"] == name


# --- sessions ------------------------------------------------------------------------------


def test_the_session_cookie_is_secure_httponly_samesite_strict_and_host_wide(
    org: Org, web: httpx.Client
) -> None:
    form = send(web, "GET", "/ecp/login", {})
    answer = post_sign_in(web, "viewer")
    for cookie in (set_cookies(form)[LOGIN_COOKIE], set_cookies(answer)[SESSION_COOKIE]):
        assert cookie["secure"] is True, cookie.OutputString()
        assert cookie["httponly"] is True, cookie.OutputString()
        assert cookie["samesite"].lower() == "strict", cookie.OutputString()
        assert cookie["path"] == "/", cookie.OutputString()
        assert cookie["domain"] == "", cookie.OutputString()  # this host only
        # 32 random bytes, URL-safe base64: nothing to guess.
        assert len(cookie.value) >= 43, cookie.OutputString()
    # The session ends with the browser (no Max-Age), or on the server (idle, sign-out).
    assert set_cookies(answer)[SESSION_COOKIE]["max-age"] == ""


def test_signing_in_issues_a_new_session_and_never_adopts_a_planted_one(
    org: Org, web: httpx.Client
) -> None:
    # A value an attacker chose and planted (a sibling subdomain can set cookies).
    planted = secrets.token_urlsafe(32)
    answer = post_sign_in(web, "orgadmin", cookie=f"{SESSION_COOKIE}={planted}")
    assert answer.status_code == 303
    issued = set_cookies(answer)[SESSION_COOKIE].value
    assert issued != planted
    assert whoami(web, {"Cookie": f"{SESSION_COOKIE}={planted}"}).status_code == 401
    assert whoami(web, {"Cookie": f"{SESSION_COOKIE}={issued}"}).json()["name"] == "orgadmin"

    # The attacker's own valid session, planted before an administrator signs in: the
    # administrator gets another, and the sign-in ends the planted one, so the attacker's
    # copy of it is worth nothing, let alone the administrator's rights.
    attacker = sign_in(web, "nobody")
    answer = post_sign_in(web, "orgadmin", cookie=f"{SESSION_COOKIE}={attacker.token}")
    victim = set_cookies(answer)[SESSION_COOKIE].value
    assert victim not in (attacker.token, issued)
    assert whoami(web, with_session(attacker)).status_code == 401
    refused = send(
        web, "POST", f"/api/v1/services/{DISABLED}/start", with_session(attacker)
    )  # fmt: skip
    assert refused.status_code == 401
    assert whoami(web, {"Cookie": f"{SESSION_COOKIE}={victim}"}).json()["name"] == "orgadmin"


def test_sign_out_needs_the_token_and_ends_the_session_on_the_server(
    org: Org, web: httpx.Client
) -> None:
    session = sign_in(web, "orgadmin")
    other = sign_in(web, "orgadmin")
    cookie = {"Cookie": f"{SESSION_COOKIE}={session.token}"}
    # A sign-out another site could send (no token, another session's, from its page) is
    # refused, and the session lives on.
    for form, origin in (
        ({}, None),
        ({"csrf": other.csrf}, None),
        ({"csrf": session.csrf}, FOREIGN),
    ):
        headers = cookie if origin is None else {**cookie, "Origin": origin}
        refused = send(web, "POST", "/ecp/logout", headers, data=form)
        assert refused.status_code == 403, (form, origin, refused.text)
        assert whoami(web, cookie).status_code == 200
    signed_out = send(web, "POST", "/ecp/logout", cookie, data={"csrf": session.csrf})
    assert (signed_out.status_code, signed_out.headers["location"]) == (303, "/ecp/login?bye=1")
    assert set_cookies(signed_out)[SESSION_COOKIE].value == ""  # the browser forgets it
    # A copy of the old cookie no longer works anywhere: the server ended the session.
    assert whoami(web, cookie).status_code == 401
    page = send(web, "GET", "/ecp/services", cookie)
    assert (page.status_code, page.headers["location"]) == (303, "/ecp/login?next=/ecp/services")
    change = send(web, "POST", f"/api/v1/services/{DISABLED}/start", with_session(session))
    assert change.status_code == 401
    assert whoami(web, with_session(other)).status_code == 200  # other sessions stay


# --- CSRF ------------------------------------------------------------------------------------


def test_a_change_without_the_token_with_anothers_or_from_another_site_is_refused(
    org: Org, web: httpx.Client
) -> None:
    admin = sign_in(web, "orgadmin")
    elsewhere = sign_in(web, "orgadmin")
    name = "csrf-target"
    body = {"name": name, "password": PASSWORD}
    cookie = {"Cookie": f"{SESSION_COOKIE}={admin.token}"}
    forged: list[tuple[str, dict[str, str]]] = [
        ("no token", cookie),
        ("another session's token", with_session(admin, csrf=elsewhere.csrf)),
        ("an empty token", with_session(admin, csrf="")),
        ("another site's page", {**with_session(admin), "Origin": FOREIGN}),
        ("a sandboxed page", {**with_session(admin), "Origin": "null"}),
        # A browser replays remembered Basic credentials to any site's form too.
        ("Basic from another site's page", {**basic("orgadmin"), "Origin": FOREIGN}),
    ]
    for why, headers in forged:
        refused = send(web, "POST", "/api/v1/mailboxes", headers, json=body)
        assert refused.status_code == 403, (why, refused.text)
        assert refused.json()["error"]["code"] == 5, why
        assert not mailbox_exists(org, name), why
    # The same request from the admin center's own page goes through: the refusals above
    # were for the forgery, not the request.
    own = {**with_session(admin), "Origin": org.base}
    made = send(web, "POST", "/api/v1/mailboxes", own, json=body)
    assert made.status_code == 201, made.text
    assert mailbox_exists(org, name)
    removed = send(web, "DELETE", f"/api/v1/mailboxes/{name}", own)
    assert removed.status_code == 200, removed.text


def test_a_bodiless_control_from_another_sites_form_is_refused_even_with_basic_credentials(
    org: Org, web: httpx.Client
) -> None:
    """A browser that once answered the API's Basic challenge replays the credentials to a
    form another site posts to it; Stop-Service needs no body, so only the Origin tells."""
    running = "MSExchangeDelivery"  # Automatic: the host started it
    path = f"/api/v1/services/{running}/stop"
    for origin in (FOREIGN, "null", f"https://127.0.0.1:{org.installation.https_port + 1}"):
        refused = send(web, "POST", path, {**basic("orgadmin"), "Origin": origin})
        assert refused.status_code == 403, (origin, refused.text)
        assert "another site" in refused.json()["error"]["message"], refused.text
    with client_of(org.installation) as root:
        assert root.service(running)["status"] == "Running"


def test_the_sign_in_form_needs_its_token_and_its_own_page(org: Org, web: httpx.Client) -> None:
    """Login CSRF: another site must not sign a browser in to an account of its choosing."""
    form = {"username": "nobody", "password": PASSWORD, "next": "/ecp/services"}
    token = login_form(web)
    attempts = [
        ("no token", {"Cookie": f"{LOGIN_COOKIE}={token}"}, form),
        ("no cookie", {}, {**form, "csrf": token}),
        ("another token", {"Cookie": f"{LOGIN_COOKIE}={token}"}, {**form, "csrf": "forged"}),
        (
            "another site's page",
            {"Cookie": f"{LOGIN_COOKIE}={token}", "Origin": FOREIGN},
            {**form, "csrf": token},
        ),
    ]
    for why, headers, data in attempts:
        refused = send(web, "POST", "/ecp/login", headers, data=data)
        assert refused.status_code == 403, (why, refused.text)
        assert SESSION_COOKIE not in set_cookies(refused), why
    signed_in = post_sign_in(web, "nobody", origin=org.base)
    assert signed_in.status_code == 303
    assert SESSION_COOKIE in set_cookies(signed_in)
