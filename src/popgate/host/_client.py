"""A client of the host's control API, for ``popgate net``, ``popgate status`` and the shell."""

from __future__ import annotations

import datetime
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, BinaryIO, Self, cast

import httpx

from popgate.host._common import API_PREFIX, ERROR_ACCESS_DENIED

__all__ = ["HostClient", "HostControlError", "HostNotRunningError", "ServiceView", "View"]

PENDING = ("StartPending", "StopPending")

ServiceView = dict[str, Any]
#: A JSON object of the API: a mailbox, POP3 settings, a server, an audit entry.
View = dict[str, Any]


def _segment(text: str) -> str:
    """``text`` as one path segment: names may hold spaces, addresses '@', anything '/'."""
    return urllib.parse.quote(text, safe="@")


def _iso(when: datetime.datetime | str | None) -> str | None:
    return when.isoformat() if isinstance(when, datetime.datetime) else when


#: The endpoints that act on another computer when given ``?server=``.
REMOTE_PATHS = ("/services", "/log")


class HostNotRunningError(Exception):
    """Nothing answers on the control socket."""


class HostControlError(Exception):
    """The host refused or failed a request; ``code`` is the Windows-style error number."""

    def __init__(self, code: int, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    @property
    def access_denied(self) -> bool:
        """The caller lacks the rights (System error 5)."""
        return self.code == ERROR_ACCESS_DENIED


class HostClient:
    """Talks to one service host, over its Unix socket or over HTTPS."""

    def __init__(self, client: httpx.Client, where: str, server: str | None = None) -> None:
        self._client = client
        self.where = where
        #: The computer whose services and log this client acts on; None is the host's own.
        self.server = server

    def on_server(self, server: str | None) -> HostClient:
        """The same host, acting on ``server``'s services through that computer's host.

        It shares this client's connection: close one of them only.
        """
        return HostClient(self._client, self.where, server)

    @classmethod
    def local(cls, socket_path: Path, *, timeout: float = 30) -> Self:
        """The host of this computer, through ``socket_path``."""
        transport = httpx.HTTPTransport(uds=str(socket_path))
        client = httpx.Client(transport=transport, base_url="http://popgate", timeout=timeout)
        return cls(client, str(socket_path))

    @classmethod
    def remote(
        cls, url: str, *, user: str, password: str, verify: bool | str = True, timeout: float = 30
    ) -> Self:
        """A host over HTTPS, logging in with a directory account."""
        client = httpx.Client(
            base_url=url.rstrip("/"), auth=(user, password), verify=verify, timeout=timeout
        )
        return cls(client, url)

    def close(self) -> None:
        """Close the connection."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, object] | None = None,
        params: Mapping[str, str | int | None] | None = None,
        files: Sequence[tuple[str, tuple[str, BinaryIO]]] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> object:
        given = None if params is None else {k: v for k, v in params.items() if v is not None}
        if self.server is not None and path.startswith(REMOTE_PATHS):
            given = {**(given or {}), "server": self.server}
        try:
            response = self._client.request(
                method,
                f"{API_PREFIX}{path}",
                json=body,
                params=given,
                files=files,
                timeout=timeout or self._client.timeout,
            )
        except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError) as error:
            cause = error.__cause__ or error.__context__
            if isinstance(cause, PermissionError):
                raise HostControlError(ERROR_ACCESS_DENIED, "Access is denied.", 403) from None
            raise HostNotRunningError(self.where) from None
        if response.status_code >= 400:
            try:
                problem = response.json()["error"]
                code, message = int(problem["code"]), str(problem["message"])
            except (ValueError, KeyError, TypeError):
                code, message = 0, f"HTTP {response.status_code}: {response.text[:200]}"
            raise HostControlError(code, message, response.status_code)
        return response.json()

    def whoami(self) -> dict[str, Any]:
        """The caller as the host sees it."""
        return cast("dict[str, Any]", self._call("GET", "/whoami"))

    def services(self) -> list[ServiceView]:
        """Every service of the host's computer."""
        return cast("list[ServiceView]", self._call("GET", "/services"))

    def service(self, name: str) -> ServiceView:
        """One service by key name or display name."""
        return cast("ServiceView", self._call("GET", f"/services/{name}"))

    def start(self, name: str) -> ServiceView:
        """Send the start control; the service is StartPending (or already Running) after."""
        return cast("ServiceView", self._call("POST", f"/services/{name}/start"))

    def stop(self, name: str) -> ServiceView:
        """Send the stop control."""
        return cast("ServiceView", self._call("POST", f"/services/{name}/stop"))

    def restart(self, name: str) -> ServiceView:
        """Stop (if running) then start."""
        return cast("ServiceView", self._call("POST", f"/services/{name}/restart"))

    def set_startup_type(self, name: str, startup_type: str) -> ServiceView:
        """Automatic, Manual or Disabled."""
        return cast(
            "ServiceView",
            self._call(
                "PUT", f"/services/{name}/startup-type", body={"startup_type": startup_type}
            ),
        )

    def set_recovery(
        self, name: str, actions: list[tuple[str, float]], reset_after: float
    ) -> ServiceView:
        """Failure actions (``("restart", seconds)`` or ``("none", 0)``) and reset period."""
        body = {
            "actions": [{"action": action, "delay": delay} for action, delay in actions],
            "reset_after": reset_after,
        }
        return cast("ServiceView", self._call("PUT", f"/services/{name}/recovery", body=body))

    def log(self, lines: int = 200) -> list[str]:
        """The last lines of the host's log."""
        tail = cast("dict[str, list[str]]", self._call("GET", "/log", params={"lines": lines}))
        return tail["lines"]

    def metrics(self) -> dict[str, Any]:
        """Every service's counters since the host started (the dashboard's summary)."""
        return cast("dict[str, Any]", self._call("GET", "/metrics"))

    def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest audit entries."""
        return cast("list[dict[str, Any]]", self._call("GET", "/audit", params={"limit": limit}))

    def search_audit(
        self,
        cmdlets: Sequence[str] | None = None,
        user_ids: Sequence[str] | None = None,
        start: datetime.datetime | str | None = None,
        end: datetime.datetime | str | None = None,
        result_size: int = 1000,
    ) -> list[View]:
        """Search-AdminAuditLog: newest first; names ignore case, times are ISO 8601."""
        params = {
            "cmdlets": None if cmdlets is None else ",".join(cmdlets),
            "user_ids": None if user_ids is None else ",".join(user_ids),
            "start": _iso(start),
            "end": _iso(end),
            "result_size": result_size,
        }
        return cast("list[View]", self._call("GET", "/audit", params=params))

    # --- POP3 settings, mailboxes, role groups, servers -----------------------------------

    def get_pop_settings(self, server: str | None = None) -> View:
        """Get-PopSettings: ``server``, and ``configured``/``effective`` parameter texts."""
        return cast("View", self._call("GET", "/pop-settings", params={"server": server}))

    def set_pop_settings(self, changes: Mapping[str, object], server: str | None = None) -> View:
        """Set-PopSettings: values are text, numbers, booleans, None, lists (replace a list)
        or ``{"Add": [...], "Remove": [...]}``; the answer adds ``restart_needed``."""
        return cast(
            "View",
            self._call(
                "PATCH", "/pop-settings", body={"changes": changes}, params={"server": server}
            ),
        )

    def mailboxes(self, filter: str | None = None) -> list[View]:
        """Get-Mailbox: every mailbox, or those matching a ``*``/``?`` pattern."""
        return cast("list[View]", self._call("GET", "/mailboxes", params={"filter": filter}))

    def mailbox(self, identity: str) -> View:
        """Get-Mailbox -Identity: one mailbox by name or address."""
        return cast("View", self._call("GET", f"/mailboxes/{_segment(identity)}"))

    def new_mailbox(
        self, name: str, password: str, address: str | None = None, server: str | None = None
    ) -> View:
        """New-Mailbox; the address defaults to name@<default domain>, the server to the
        host's."""
        body = {"name": name, "password": password, "address": address, "server": server}
        return cast("View", self._call("POST", "/mailboxes", body=body))

    def remove_mailbox(self, identity: str) -> View:
        """Remove-Mailbox: the mailbox and its mail; returns what it was."""
        return cast("View", self._call("DELETE", f"/mailboxes/{_segment(identity)}"))

    def set_mailbox_password(self, identity: str, password: str) -> View:
        """Set-Mailbox -Password."""
        path = f"/mailboxes/{_segment(identity)}/password"
        return cast("View", self._call("PUT", path, body={"password": password}))

    def set_mailbox_quota(self, identity: str, quota: str) -> View:
        """Set-Mailbox -ProhibitSendReceiveQuota (``500MB`` or ``unlimited``)."""
        path = f"/mailboxes/{_segment(identity)}/quota"
        body = {"prohibit_send_receive_quota": quota}
        return cast("View", self._call("PUT", path, body=body))

    def cas_mailbox(self, identity: str) -> View:
        """Get-CASMailbox: ``name``, ``address`` and the Pop* settings under Exchange's names."""
        return cast("View", self._call("GET", f"/mailboxes/{_segment(identity)}/cas"))

    def set_cas_mailbox(self, identity: str, changes: Mapping[str, object]) -> View:
        """Set-CASMailbox: Pop* parameter names to values; the new settings."""
        path = f"/mailboxes/{_segment(identity)}/cas"
        return cast("View", self._call("PATCH", path, body={"changes": changes}))

    def role_group_members(self, group: str) -> list[str]:
        """Get-RoleGroupMember: the members' names."""
        path = f"/role-groups/{_segment(group)}/members"
        return cast("list[str]", self._call("GET", path))

    def add_role_group_member(self, group: str, member: str) -> list[str]:
        """Add-RoleGroupMember: a mailbox by name or address; the members after."""
        path = f"/role-groups/{_segment(group)}/members"
        return cast("list[str]", self._call("POST", path, body={"member": member}))

    def remove_role_group_member(self, group: str, member: str) -> list[str]:
        """Remove-RoleGroupMember; the members after."""
        path = f"/role-groups/{_segment(group)}/members/{_segment(member)}"
        return cast("list[str]", self._call("DELETE", path))

    def servers(self) -> list[View]:
        """Get-ExchangeServer: ``name``, ``fqdn``, ``roles`` and ``proxy_host`` of each."""
        return cast("list[View]", self._call("GET", "/servers"))

    def new_move_request(self, identity: str, target_server: str) -> View:
        """New-MoveRequest: move a mailbox to another Mailbox server."""
        body = {"identity": identity, "target_server": target_server}
        return cast("View", self._call("POST", "/move-requests", body=body))

    def move_requests(self) -> list[View]:
        """Get-MoveRequest: every move."""
        return cast("list[View]", self._call("GET", "/move-requests"))

    def move_request(self, identity: str) -> View:
        """Get-MoveRequest -Identity: one mailbox's move."""
        return cast("View", self._call("GET", f"/move-requests/{_segment(identity)}"))

    def resume_move_request(self, identity: str) -> View:
        """Resume-MoveRequest: take a move up again where it stands."""
        return cast("View", self._call("POST", f"/move-requests/{_segment(identity)}/resume"))

    def remove_move_request(self, identity: str) -> View:
        """Remove-MoveRequest: forget a finished move or cancel one before its switch."""
        return cast("View", self._call("DELETE", f"/move-requests/{_segment(identity)}"))

    def wait_while_pending(
        self,
        name: str,
        *,
        interval: float = 0.1,
        on_tick: Callable[[], None] | None = None,
        tick_every: float = 1.0,
    ) -> ServiceView:
        """Poll until the service leaves StartPending/StopPending; ``on_tick`` each second."""
        next_tick = time.monotonic() + tick_every
        while True:
            view = self.service(name)
            if view["status"] not in PENDING:
                return view
            if on_tick is not None and time.monotonic() >= next_tick:
                on_tick()
                next_tick += tick_every
            time.sleep(interval)

    def test_pop_connectivity(self, **parameters: object) -> View:
        """Test-PopConnectivity; ``parameters`` as the API's ConnectivityTest takes them."""
        body = {key: value for key, value in parameters.items() if value is not None}
        return cast("View", self._call("POST", "/test-pop-connectivity", body=body))

    def import_messages(self, identity: str, paths: Sequence[Path | str]) -> View:
        """New-MailboxImportRequest: upload .eml and .mbox files into a mailbox whose mail is
        on the host's server; ``imported`` is how many messages were delivered."""
        # Delivering a large mbox takes a while after the upload: no read timeout.
        timeout = httpx.Timeout(self._client.timeout.connect, read=None)
        with ExitStack() as opened:
            upload = [
                ("files", (Path(path).name, opened.enter_context(Path(path).open("rb"))))
                for path in paths
            ]
            answer = self._call(
                "POST",
                f"/mailboxes/{_segment(identity)}/import",
                files=upload,
                timeout=timeout,
            )
        return cast("View", answer)
