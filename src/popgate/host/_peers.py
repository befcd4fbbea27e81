"""The other hosts of the organization: their control APIs, called as this server.

With the roles on several computers, an administrator manages every computer from any one of
them (``Get-Service -ComputerName MBX1``, ``popgate net start NAME --server MBX1``, the admin
center). The host they talk to calls the other host's control API for them:

* over HTTPS at the address that host registered in the directory, trusting exactly the
  certificate it registered there (no name or CA is involved, so no impostor gets through);
* logged in as this server: HTTP Basic with ``server/<name>`` and this server's proxy secret,
  which the other host checks against the shared directory;
* on behalf of the caller, named in the ``X-Popgate-On-Behalf-Of`` header. The other host
  re-reads a directory account's role groups itself and applies them, so an account has the
  same rights on every computer; a local administrator of this computer (an OS user, who is
  no directory account) keeps the rights this host gave it. The other host writes the audit
  record, under the caller's name, with the origin ``<origin> via <this server>``.
"""

from __future__ import annotations

import base64
import binascii
import json
import ssl
from collections.abc import Collection
from dataclasses import dataclass

import httpx

from popgate.directory import Directory, RoleGroup
from popgate.home import Home
from popgate.host._common import ERROR_NOT_FOUND
from popgate.net import pinned_context

__all__ = [
    "ON_BEHALF_HEADER",
    "PEER_PREFIX",
    "OnBehalf",
    "Peer",
    "PeerError",
    "PeerHosts",
    "peer_server",
    "refusal_of",
]

#: The user name a host logs in with at another host: ``server/<its server name>``.
PEER_PREFIX = "server/"
ON_BEHALF_HEADER = "X-Popgate-On-Behalf-Of"
#: Windows' RPC_S_SERVER_UNAVAILABLE, as ``sc \\MBX1 query`` reports an unreachable computer.
ERROR_SERVER_UNAVAILABLE = 1722
#: A service start or stop answers at once (202); this bounds a computer that hangs.
PEER_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class PeerError(Exception):
    """Another host cannot be reached or is unknown; ``status`` and ``code`` for the API."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class OnBehalf:
    """The caller a host acts for when it calls another host."""

    name: str
    origin: str
    #: A directory account (the other host re-reads its role groups) or a local OS user.
    directory_account: bool
    role_groups: frozenset[RoleGroup]

    def encode(self) -> str:
        """The header value: base64url of a JSON object (names may hold any character)."""
        document = {
            "name": self.name,
            "origin": self.origin,
            "directory_account": self.directory_account,
            "role_groups": sorted(self.role_groups),
        }
        return base64.urlsafe_b64encode(json.dumps(document).encode("utf-8")).decode("ascii")

    @classmethod
    def decode(cls, value: str) -> OnBehalf | None:
        """The caller in a header value, or None if it is malformed."""
        try:
            document = json.loads(base64.urlsafe_b64decode(value.encode("ascii")))
            groups = frozenset(RoleGroup(group) for group in document["role_groups"])
            name, origin = document["name"], document["origin"]
            account = document["directory_account"]
        except (binascii.Error, UnicodeError, ValueError, KeyError, TypeError):
            return None
        if not (isinstance(name, str) and isinstance(origin, str) and isinstance(account, bool)):
            return None
        return cls(name=name, origin=origin, directory_account=account, role_groups=groups)


def refusal_of(answer: httpx.Response) -> str:
    """The message of another host's error answer (the API's one error shape)."""
    try:
        return str(answer.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {answer.status_code}"


def peer_server(user: str) -> str | None:
    """The server name in a host's login name ``server/<name>``, or None for anyone else."""
    if user.lower().startswith(PEER_PREFIX):
        return user[len(PEER_PREFIX) :].lower() or None
    return None


@dataclass(frozen=True, slots=True)
class Peer:
    """Another host: its server name, control API and certificate."""

    name: str
    control_url: str
    certificate_pem: str


class PeerHosts:
    """Calls the control APIs of the organization's other hosts as this server."""

    def __init__(self, directory: Directory, home: Home) -> None:
        self._directory = directory
        self._home = home
        self._contexts: dict[str, ssl.SSLContext] = {}
        # Calls as the server itself (a mailbox move's hundreds of file reads) share one
        # connection per other host; calls for a caller carry its name and are one-off.
        self._own: dict[Peer, httpx.AsyncClient] = {}

    def is_local(self, server: str | None) -> bool:
        """Whether ``server`` (None: unspecified) names this computer."""
        return server is None or server.lower() == self._home.server_name.lower()

    async def find(self, server: str) -> Peer:
        """The host of that server, with a control API to call; :class:`PeerError` if none."""
        found = await self._directory.get_server(server)
        if found is None:
            names = ", ".join(known.name for known in await self._directory.list_servers())
            raise PeerError(
                404, ERROR_NOT_FOUND, f"There is no server {server!r}; the servers are {names}."
            )
        if found.control_url is None or found.certificate_pem is None:
            raise PeerError(
                503,
                ERROR_SERVER_UNAVAILABLE,
                f"Server {found.name} has no control API other computers can reach; on it, "
                "run 'popgate setup --https ADDRESS:PORT' and restart its host.",
            )
        return Peer(found.name, found.control_url, found.certificate_pem)

    def client(self, server: Peer, caller: OnBehalf | None) -> httpx.AsyncClient:
        """An HTTP client for ``server``'s control API, logged in as this server."""
        context = self._contexts.get(server.certificate_pem)
        if context is None:
            context = self._contexts[server.certificate_pem] = pinned_context(
                server.certificate_pem
            )
        secret = self._home.proxy_secret_file.read_text(encoding="utf-8").strip()
        headers = {} if caller is None else {ON_BEHALF_HEADER: caller.encode()}
        return httpx.AsyncClient(
            base_url=server.control_url.rstrip("/"),
            auth=(PEER_PREFIX + self._home.server_name.lower(), secret),
            headers=headers,
            verify=context,
            timeout=PEER_TIMEOUT,
        )

    async def call(
        self,
        server_name: str,
        caller: OnBehalf | None,
        method: str,
        path: str,
        *,
        params: Collection[tuple[str, str]] = (),
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> httpx.Response:
        """Send one request to ``server_name``'s control API; its answer, whatever the status.

        :raises PeerError: the server is unknown, has no control API, or does not answer.
        """
        server = await self.find(server_name)
        headers = {} if content_type is None else {"content-type": content_type}
        try:
            if caller is None:
                client = self._own.get(server)
                if client is None:
                    client = self._own[server] = self.client(server, None)
                return await client.request(
                    method, path, params=list(params), content=content, headers=headers
                )
            async with self.client(server, caller) as client:
                return await client.request(
                    method, path, params=list(params), content=content, headers=headers
                )
        except (httpx.TransportError, ssl.SSLError, OSError) as error:
            raise PeerError(
                503,
                ERROR_SERVER_UNAVAILABLE,
                f"Server {server.name} does not answer at {server.control_url} ({error}); "
                "is its host running ('popgate host' on it)?",
            ) from None

    async def close(self) -> None:
        """Close the connections kept to other hosts."""
        clients, self._own = list(self._own.values()), {}
        for client in clients:
            await client.aclose()
