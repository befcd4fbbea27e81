"""Running a service in the foreground: listeners, readiness, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from popgate.directory import Directory, Role
from popgate.home import Home
from popgate.net import server_context
from popgate.services._backend import BackendConfig, BackendSession
from popgate.services._catalog import BACKEND
from popgate.services._notify import notify
from popgate.store import MaildirStore

__all__ = ["ServiceStartError", "run_backend"]

logger = logging.getLogger("popgate.service")


class ServiceStartError(Exception):
    """The service cannot start; the message says why and what to change."""


class SessionTracker:
    """Remembers live session tasks so a stop can wait for them, then cancel the rest."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, session: Coroutine[Any, Any, None]) -> None:
        """Run ``session`` as a tracked task."""
        task = asyncio.ensure_future(session)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self, grace: float) -> int:
        """Wait up to ``grace`` seconds for sessions to end; cancel the rest. Returns how many."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=grace)
        leftover = set(self.tasks)
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.wait(leftover, timeout=10)
        return len(leftover)


def _listen_error(error: OSError, what: str, setting: str) -> ServiceStartError:
    if error.errno == errno.EADDRINUSE:
        reason = "the address is already in use by another program"
    elif error.errno == errno.EACCES:
        reason = "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    else:
        reason = error.strerror or str(error)
    return ServiceStartError(f"cannot listen on {what}: {reason}; change {setting} or free it")


async def run_backend(home: Home, *, stop: asyncio.Event | None = None) -> None:
    """Run MSExchangePOP3BE until SIGTERM/SIGINT (or ``stop``), then stop gracefully."""
    directory = await Directory.connect(home.directory_url)
    try:
        server = await directory.get_server(home.server_name)
        if server is None or Role.MAILBOX not in server.roles:
            raise ServiceStartError(
                f"{BACKEND.name} needs the Mailbox role, and server {home.server_name} does not "
                "have it; run 'popgate setup --roles ClientAccess,Mailbox'"
            )
        settings = await directory.apply_pop_settings(server.name)
        tls = server_context(home.certificate, home.private_key)
        config = BackendConfig(
            directory=directory,
            store=MaildirStore(home.mail_root),
            server=server,
            settings=settings,
        )
        tracker = SessionTracker()

        def accept(
            tls_active: bool,
        ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], None]:
            def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                tracker.start(BackendSession(reader, writer, config, tls_active=tls_active).run())

            return connected

        listeners = await _listen(home, settings.proxy_target_port, tls, accept)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        logger.info(
            "%s is running: TLS on port %d, Unix socket %s",
            BACKEND.name,
            settings.proxy_target_port,
            home.backend_socket,
        )
        notify("READY=1")
        await stop.wait()
        notify("STOPPING=1")
        logger.info("%s is stopping", BACKEND.name)
        for listener in listeners:
            listener.close()
        cancelled = await tracker.drain(settings.graceful_stop_timeout.total_seconds())
        if cancelled:
            logger.info("closed %d sessions without UPDATE at stop", cancelled)
        with contextlib.suppress(FileNotFoundError):
            home.backend_socket.unlink()
    finally:
        await directory.close()


def _prepare_socket_path(path: Path) -> Path:
    """Make the socket's folder and remove a socket left by a process that died."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return path


async def _listen(
    home: Home,
    port: int,
    tls: ssl.SSLContext,
    accept: Callable[[bool], Callable[[asyncio.StreamReader, asyncio.StreamWriter], None]],
) -> list[asyncio.Server]:
    try:
        tcp = await asyncio.start_server(
            accept(True), host=None, port=port, ssl=tls, ssl_handshake_timeout=30, backlog=1024
        )
    except OSError as error:
        raise _listen_error(error, f"port {port}", "ProxyTargetPort") from None
    socket_path = _prepare_socket_path(home.backend_socket)
    old_umask = os.umask(0o077)
    try:
        unix = await asyncio.start_unix_server(accept(False), path=str(socket_path), backlog=1024)
    finally:
        os.umask(old_umask)
    return [tcp, unix]
