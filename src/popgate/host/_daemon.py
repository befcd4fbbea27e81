"""``popgate host``: the service host process, with its control API on two doors.

It holds a lock so that one host runs per data directory, logs to ``logs/host.log``, serves
the control API on ``run/host.sock`` (any local user may connect; the API decides by the
peer's credentials) and, unless disabled, over HTTPS, starts the Automatic services, tells
systemd it is ready, and on SIGTERM or SIGINT stops every service gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import logging.handlers
import os
import signal
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from popgate._setup import register_endpoint
from popgate.directory import Directory
from popgate.home import Home
from popgate.host._api import ControlContext, PeerCredentials, create_app
from popgate.host._common import (
    DEFAULT_HTTPS_BINDING,
    HostError,
    control_socket_path,
    parse_https_binding,
)
from popgate.host._host import Host
from popgate.services import SERVICES
from popgate.services._logformat import configured_log_format, make_formatter
from popgate.services._metrics import reset_metrics_dir
from popgate.services._notify import notify
from popgate.services._runner import listen_reason
from popgate.services._throttle import LoginThrottle

__all__ = ["RunningHost", "run_host"]

logger = logging.getLogger("popgate.host")

#: Seconds added to GracefulStopTimeout before a stopping service is killed.
STOP_MARGIN = 30.0


def _lock_path(home: Home) -> Path:
    return home.run_dir / "host.lock"


@dataclass(frozen=True, slots=True)
class RunningHost:
    """What ``popgate up`` needs once the host is up."""

    host: Host
    home: Home
    server_name: str
    directory: Directory
    https_url: str | None
    control_socket: Path


class _PeerAwareH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol that hands each request its Unix-socket peer.

    The peer goes into the per-connection copy of the lifespan state, which Starlette
    exposes as ``request.state``; TCP connections carry no peer and must log in.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Record SO_PEERCRED of the connecting process."""
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is None or sock.family != socket.AF_UNIX:
            return
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", raw)
        self.app_state = dict(self.app_state, peer=PeerCredentials(pid=pid, uid=uid, gid=gid))


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the host."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The host owns SIGTERM and SIGINT: it stops the services before the API."""
        yield


@contextlib.contextmanager
def _single_host(home: Home) -> Iterator[None]:
    """Hold ``run/host.lock`` for the life of the host: one host per data directory."""
    home.run_dir.mkdir(parents=True, exist_ok=True)
    with _lock_path(home).open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise HostError(
                f"the popgate service host is already running for {home.root} (pid {holder})"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield


def _unix_listener(path: Path) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a host that died; we hold the lock
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    # Anyone may knock; the API refuses by peer credentials (and audits the refusal).
    path.chmod(0o666)
    listener.listen(128)
    return listener


def _https_listener(binding: str) -> socket.socket:
    host, port = parse_https_binding(binding)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise HostError(
            f"cannot serve the control API on {binding}: {listen_reason(error)}; "
            "choose another with 'popgate host --https ADDRESS:PORT' (or --https off)"
        ) from None
    listener.listen(128)
    return listener


def _file_logging(home: Home) -> logging.Handler:
    home.log_dir.mkdir(parents=True, exist_ok=True)
    # Rotated, so that a host that runs for years keeps a bounded log.
    handler = logging.handlers.RotatingFileHandler(
        home.log_dir / "host.log", maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"
    )
    text = "%(asctime)s %(levelname)s %(message)s"
    handler.setFormatter(make_formatter(configured_log_format(home), text))
    handler.setLevel(logging.INFO)
    logging.getLogger("popgate").addHandler(handler)
    logging.getLogger("popgate").setLevel(logging.INFO)
    return handler


async def _serve(config: uvicorn.Config, listener: socket.socket) -> tuple[uvicorn.Server, Any]:
    server = _QuietServer(config)
    task = asyncio.ensure_future(server.serve(sockets=[listener]))
    while not server.started:
        if task.done():
            task.result()
            raise HostError("the control API stopped while starting")
        await asyncio.sleep(0.01)
    return server, task


async def run_host(
    home: Home,
    *,
    https_binding: str | None = DEFAULT_HTTPS_BINDING,
    when_up: Callable[[RunningHost], Awaitable[None]] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the service host until SIGTERM/SIGINT (or ``stop``); stop every service first."""
    server_name = home.server_name  # HomeNotSetUpError if there is no setup yet
    with _single_host(home):
        handler = _file_logging(home)
        directory = await Directory.connect(home.directory_url)
        try:
            await _run(home, server_name, directory, https_binding, when_up, stop)
        finally:
            await directory.close()
            logging.getLogger("popgate").removeHandler(handler)
            handler.close()


async def _run(
    home: Home,
    server_name: str,
    directory: Directory,
    https_binding: str | None,
    when_up: Callable[[RunningHost], Awaitable[None]] | None,
    stop: asyncio.Event | None,
) -> None:
    server = await directory.get_server(server_name)
    if server is None:
        raise HostError(f"server {server_name} is not in the directory; run 'popgate setup'")
    # Other hosts find this one's control API, and the certificate to trust, in the directory.
    await register_endpoint(directory, home, server_name, https_binding)
    # SERVICES lists the front end first: shutdown stops dependents before what they use.
    installed = [service for service in SERVICES if service.role in server.roles]
    reset_metrics_dir(home.metrics_dir)
    host = Host(installed, data_dir=home.root, metrics_dir=home.metrics_dir)

    async def refresh_stop_timeout() -> None:
        settings = await directory.get_pop_settings(server_name, effective=True)
        host.kill_after = settings.graceful_stop_timeout.total_seconds() + STOP_MARGIN

    await refresh_stop_timeout()
    context = ControlContext(
        host=host,
        home=home,
        directory=directory,
        log_file=home.log_dir / "host.log",
        refresh_stop_timeout=refresh_stop_timeout,
        throttle=LoginThrottle(base=1.0, cap=30.0, lockout=10),
    )
    app = create_app(context)
    common: dict[str, Any] = {"http": _PeerAwareH11, "lifespan": "off", "log_config": None}
    common |= {"access_log": False, "timeout_graceful_shutdown": 5}
    listeners = [_unix_listener(control_socket_path(home))]
    configs = [uvicorn.Config(app, **common)]
    https_url = None
    if https_binding is not None:
        listeners.append(_https_listener(https_binding))
        configs.append(
            uvicorn.Config(
                app,
                ssl_certfile=str(home.certificate),
                ssl_keyfile=str(home.private_key),
                **common,
            )
        )
        https_url = f"https://{https_binding}/"
    served = []
    try:
        # StartPending before the first caller can ask, as Windows starts them at boot.
        automatic = host.start_automatic()
        for config, listener in zip(configs, listeners, strict=True):
            served.append(await _serve(config, listener))
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        logger.info(
            "service host for %s is up: control socket %s%s",
            server_name,
            control_socket_path(home),
            f", HTTPS {https_binding}" if https_binding else "",
        )
        await asyncio.gather(*automatic)
        await context.mover.resume_all()
        notify("READY=1")
        if when_up is not None:
            await when_up(
                RunningHost(
                    host=host,
                    home=home,
                    server_name=server_name,
                    directory=directory,
                    https_url=https_url,
                    control_socket=control_socket_path(home),
                )
            )
        await stop.wait()
    finally:
        notify("STOPPING=1")
        logger.info("service host is stopping")
        await context.mover.close()
        await host.shutdown()
        for uvicorn_server, _task in served:
            uvicorn_server.should_exit = True
        for _server, task in served:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for listener in listeners:
            listener.close()
        with contextlib.suppress(FileNotFoundError):
            control_socket_path(home).unlink()
        logger.info("service host stopped")
