"""Running a service in the foreground: listeners, readiness, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import signal
import ssl
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from popgate.directory import Directory, PopSettings, Server
from popgate.home import Home
from popgate.net import server_context
from popgate.protocol import Err, ResponseCode, ServerConnection
from popgate.services._backend import BackendConfig, BackendSession
from popgate.services._catalog import BACKEND, DELIVERY, ServiceInfo
from popgate.services._delivery import start_delivery
from popgate.services._frontend import ConnectionLimits, FrontendConfig, FrontendSession
from popgate.services._metrics import ServiceMetrics, metrics_dir_of_environment, process_ended
from popgate.services._notify import SUPERVISOR_PID_VARIABLE, die_with_supervisor, notify
from popgate.services._protocol_log import open_protocol_log
from popgate.services._throttle import LoginThrottle
from popgate.store import MaildirStore

__all__ = [
    "ServiceStartError",
    "listen_error",
    "listen_reason",
    "parse_binding",
    "run_service",
]

logger = logging.getLogger("popgate.service")


class ServiceStartError(Exception):
    """The service cannot start; the message says why and what to change."""


class SessionTracker:
    """Remembers live session tasks so a stop can wait for them, then cancel the rest."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[object]] = set()

    def start(self, session: Coroutine[Any, Any, object]) -> None:
        """Run ``session`` as a tracked task."""
        task = asyncio.ensure_future(session)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self, grace: float) -> int:
        """Wait up to ``grace`` seconds for sessions to end; cancel the rest. Returns how many.

        Sessions that start meanwhile are waited for too: a TLS handshake accepted before the
        listeners closed becomes a session during the stop, and must not be cut off when the
        sessions that were there before it end.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.tasks and (remaining := deadline - loop.time()) > 0:
            await asyncio.wait(set(self.tasks), timeout=remaining)
        leftover = set(self.tasks)
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.wait(leftover, timeout=10)
        return len(leftover)


def listen_error(error: OSError, what: str, setting: str, port: int) -> ServiceStartError:
    """Why a service could not listen on ``what``, and the setting that moves it."""
    higher = port + 1000 if port < 1024 else port + 1
    example = f"'popgate settings set {setting} " + (
        f"{higher}'" if setting == "ProxyTargetPort" else f"{what.rsplit(':', 1)[0]}:{higher}'"
    )
    if error.errno == errno.EACCES:
        return ServiceStartError(
            f"cannot listen on {what}: permission denied; ports below 1024 need root or "
            "CAP_NET_BIND_SERVICE. Run the host as root, or as a user granted it "
            f"('popgate install-systemd --user USER' does), or move the service: {example}"
        )
    reason = listen_reason(error)
    if error.errno == errno.EADDRINUSE:
        reason += "; stop that program"
    return ServiceStartError(f"cannot listen on {what}: {reason}, or move the service: {example}")


def listen_reason(error: OSError) -> str:
    """Why binding a listening socket failed, in words (shared by the services and host)."""
    if error.errno == errno.EADDRINUSE:
        return "the address is already in use by another program"
    if error.errno == errno.EACCES:
        return "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    return error.strerror or str(error)


def _tls_context(home: Home, settings: PopSettings) -> ssl.SSLContext:
    """The certificate named by X509CertificateName, else the computer's self-signed one."""
    name = settings.x509_certificate_name
    if name is None:
        return server_context(home.certificate, home.private_key)
    certificate, key = home.named_certificate(name.lower())
    if not certificate.exists():
        raise ServiceStartError(
            f"X509CertificateName is {name!r}, but no certificate was imported under that "
            f"name; run 'popgate certificate import {name} --cert FILE --key FILE'"
        )
    return server_context(certificate, key)


Connected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], None]


@dataclass(frozen=True, slots=True)
class Started:
    """A service's open listeners and a one-line description of where it listens."""

    listeners: Sequence[asyncio.AbstractServer]
    where: str
    #: The Unix socket the service listens on, removed when it stops.
    socket_path: Path | None = None
    #: What a stop waits for, besides sessions (up to GracefulStopTimeout).
    quiesce: Callable[[], Coroutine[Any, Any, object]] | None = None


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return the soft limit now.

    Each client holds a descriptor (two on the front end once proxied), and the soft limit
    services start with (1,024 under systemd and most shells) would turn clients away long
    before MaxConnections; the hard limit is the administrator's real cap.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as error:  # an unlimited hard limit cannot be the soft one
        logger.info("open files limit stays at %d: %s", soft, error)
        return soft
    return hard


async def run_service(
    home: Home, service: ServiceInfo, *, stop: asyncio.Event | None = None, worker: bool = False
) -> None:
    """Run ``service`` until SIGTERM/SIGINT (or ``stop``), then stop gracefully.

    With WorkerProcesses > 1 the front end starts that many processes in all: this one and
    ``worker`` copies of it, each listening on the same ports (SO_REUSEPORT), the kernel
    spreading connections among them. Workers use the effective settings as they are.
    """
    raise_open_files_limit()
    if not die_with_supervisor():
        raise ServiceStartError("the process that started this service has ended")
    directory = await Directory.connect(home.directory_url)
    try:
        server = await directory.get_server(home.server_name)
        if server is None or service.role not in server.roles:
            raise ServiceStartError(
                f"{service.name} needs the {service.role} role, and server {home.server_name} "
                "does not have it; run 'popgate setup --roles ClientAccess,Mailbox'"
            )
        if worker or service is DELIVERY:
            # Mail delivery is no POP3 service: its start puts no POP3 setting into effect.
            settings = await directory.get_pop_settings(server.name, effective=True)
        else:
            # Settings are read at start, as in Exchange: configured becomes effective now.
            settings = await directory.apply_pop_settings(server.name)
        tracker = SessionTracker()
        metrics = ServiceMetrics(service.name)
        workers: list[asyncio.subprocess.Process] = []
        if service is DELIVERY:
            started = await _start_delivery(home, directory, server, tracker, metrics)
        elif service is BACKEND:
            # The proxy hop presents the server's own certificate: the one front ends pin.
            tls = server_context(home.certificate, home.private_key)
            started = await _start_backend(home, directory, server, settings, tls, tracker, metrics)
        else:
            tls = _tls_context(home, settings)
            shared = settings.worker_processes > 1
            started = await _start_frontend(
                home, directory, server, settings, tls, tracker, metrics, reuse_port=shared
            )
            if shared and not worker:
                workers = await _start_workers(service, settings.worker_processes - 1)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        logger.info(
            "%s is running: %s", service.name, started.where, extra={"event": "service_start"}
        )
        notify("READY=1")
        await stop.wait()
        notify("STOPPING=1")
        logger.info("%s is stopping", service.name, extra={"event": "service_stop"})
        for listener in started.listeners:
            listener.close()
        if started.quiesce is not None:
            tracker.start(started.quiesce())
        await _stop_workers(workers)
        cancelled = await tracker.drain(settings.graceful_stop_timeout.total_seconds())
        if cancelled:
            logger.info("closed %d sessions without UPDATE at stop", cancelled)
        if started.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                started.socket_path.unlink()
    finally:
        await directory.close()


async def _start_workers(service: ServiceInfo, count: int) -> list[asyncio.subprocess.Process]:
    """Start ``count`` worker copies of this service process."""
    # Only the service's main process speaks to its supervisor; the workers die with it.
    environment = {key: value for key, value in os.environ.items() if key != "NOTIFY_SOCKET"}
    environment[SUPERVISOR_PID_VARIABLE] = str(os.getpid())
    command = [sys.executable, "-m", "popgate.cli", "service", "run", service.name, "--worker"]
    workers = [
        await asyncio.create_subprocess_exec(*command, env=environment) for _ in range(count)
    ]
    logger.info("started %d worker processes: %s", count, ", ".join(str(w.pid) for w in workers))
    return workers


async def _stop_workers(workers: list[asyncio.subprocess.Process]) -> None:
    """Stop the workers gracefully (each drains its own sessions); kill the ones that hang."""
    for process in workers:
        if process.returncode is None:
            process.terminate()
    for process in workers:
        try:
            await asyncio.wait_for(process.wait(), 3600)
        except TimeoutError:
            process.kill()
            await process.wait()
        if process.returncode not in (0, -signal.SIGTERM):
            logger.warning("worker %d ended with status %s", process.pid, process.returncode)
        if (metrics_dir := metrics_dir_of_environment()) is not None:
            process_ended(process.pid, metrics_dir)


async def _start_backend(
    home: Home,
    directory: Directory,
    server: Server,
    settings: PopSettings,
    tls: ssl.SSLContext,
    tracker: SessionTracker,
    metrics: ServiceMetrics,
) -> Started:
    config = BackendConfig(
        directory=directory,
        store=MaildirStore(home.mail_root),
        server=server,
        settings=settings,
        metrics=metrics,
        protocol_log=open_protocol_log(home, BACKEND.name, settings),
    )

    def accept(tls_active: bool) -> Connected:
        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            metrics.connection()
            tracker.start(BackendSession(reader, writer, config, tls_active=tls_active).run())

        return connected

    listeners = await _listen(home, settings.proxy_target_port, tls, accept)
    where = f"TLS on port {settings.proxy_target_port}, Unix socket {home.backend_socket}"
    return Started(listeners, where, home.backend_socket)


async def _start_delivery(
    home: Home,
    directory: Directory,
    server: Server,
    tracker: SessionTracker,
    metrics: ServiceMetrics,
) -> Started:
    binding = home.lmtp_binding()
    try:
        opened = await start_delivery(
            home, directory, server, MaildirStore(home.mail_root), metrics
        )
    except OSError as error:
        raise ServiceStartError(
            f"cannot listen for LMTP on {binding or home.lmtp_socket}: {listen_reason(error)}; "
            "move it with 'popgate setup --lmtp ADDRESS:PORT' (or 'off' for the Unix socket only)"
        ) from None
    # A stop waits for the deliveries under way: a message accepted is a message saved.
    return Started(opened.listeners, opened.where, home.lmtp_socket, opened.handler.idle.wait)


async def _start_frontend(
    home: Home,
    directory: Directory,
    server: Server,
    settings: PopSettings,
    tls: ssl.SSLContext,
    tracker: SessionTracker,
    metrics: ServiceMetrics,
    *,
    reuse_port: bool,
) -> Started:
    try:
        secret = home.proxy_secret_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ServiceStartError(
            f"the proxy secret {home.proxy_secret_file} is missing; run 'popgate setup'"
        ) from None
    config = FrontendConfig(
        directory=directory,
        server=server,
        settings=settings,
        home=home,
        tls=tls,
        proxy_secret=secret,
        limits=ConnectionLimits(
            max_connections=settings.max_connections,
            max_per_address=settings.max_connection_from_single_ip,
            max_per_user=settings.max_connections_per_user,
        ),
        throttle=LoginThrottle(
            base=settings.login_failure_delay.total_seconds(),
            cap=settings.login_failure_max_delay.total_seconds(),
            lockout=settings.login_failure_lockout,
        ),
        metrics=metrics,
        # With workers, every front-end process writes files of its own (pid in the name).
        protocol_log=open_protocol_log(
            home,
            "MSExchangePOP3",
            settings,
            pid=os.getpid() if settings.worker_processes > 1 else None,
        ),
    )

    def accept(implicit_tls: bool) -> Connected:
        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peername")
            address = str(peer[0]) if isinstance(peer, tuple) else "local"
            refused = config.limits.admit(address)
            metrics.connection(refused=refused is not None)
            if refused is not None:
                tracker.start(_refuse(writer, address, refused))
                return
            session = FrontendSession(reader, writer, config, implicit_tls=implicit_tls)
            tracker.start(_counted(session.run(), config.limits, address))

        return connected

    wanted = [(binding, "UnencryptedOrTLSBindings", False) for binding in
              settings.unencrypted_or_tls_bindings]  # fmt: skip
    wanted += [(binding, "SSLBindings", True) for binding in settings.ssl_bindings]
    listeners: list[asyncio.Server] = []
    try:
        for binding, setting, implicit_tls in wanted:
            context = tls if implicit_tls else None
            server_socket = await _bind(
                binding, setting, accept(implicit_tls), ssl_context=context, reuse_port=reuse_port
            )
            listeners.append(server_socket)
    except ServiceStartError:
        for listener in listeners:
            listener.close()
        raise
    plain = ", ".join(settings.unencrypted_or_tls_bindings)
    implicit = ", ".join(settings.ssl_bindings)
    return Started(listeners, f"plain text and STLS on {plain}; implicit TLS on {implicit}")


async def _counted(
    session: Coroutine[Any, Any, None], limits: ConnectionLimits, address: str
) -> None:
    try:
        await session
    finally:
        limits.release(address)


async def _refuse(writer: asyncio.StreamWriter, address: str, limit: str) -> None:
    logger.warning("connection from %s refused: %s reached", address, limit)
    reply = Err(f"Too many connections ({limit}); try again later.", ResponseCode.SYS_TEMP)
    with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
        writer.write(ServerConnection.encode_reply(reply))
        await writer.drain()
        writer.close()
        await writer.wait_closed()


def parse_binding(binding: str) -> tuple[str, int]:
    """``0.0.0.0:110`` or ``[::]:110`` as (host, port)."""
    host, _, port = binding.rpartition(":")
    return host.strip("[]"), int(port)


async def _bind(
    binding: str,
    setting: str,
    connected: Connected,
    *,
    ssl_context: ssl.SSLContext | None,
    reuse_port: bool,
) -> asyncio.Server:
    host, port = parse_binding(binding)
    try:
        return await asyncio.start_server(
            connected,
            host=host,
            port=port,
            ssl=ssl_context,
            ssl_handshake_timeout=30 if ssl_context else None,
            backlog=1024,
            reuse_address=True,
            reuse_port=reuse_port,
        )
    except OSError as error:
        raise listen_error(error, binding, setting, port) from None


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
        raise listen_error(error, f"port {port}", "ProxyTargetPort", port) from None
    socket_path = _prepare_socket_path(home.backend_socket)
    old_umask = os.umask(0o077)
    try:
        unix = await asyncio.start_unix_server(accept(False), path=str(socket_path), backlog=1024)
    finally:
        os.umask(old_umask)
    return [tcp, unix]
