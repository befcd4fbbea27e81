"""One service run as a child process of the host, its state known through sd_notify.

The child is ``popgate service run NAME``. It is StartPending until it sends ``READY=1`` on
the notify socket the host gives it (the same protocol systemd uses), Running after that,
StopPending once asked to stop, and Stopped when its process has ended. A service that exits
before it is ready leaves its last error line as the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from popgate.host._states import ServiceState
from popgate.services import ServiceInfo
from popgate.services._logformat import CHILD, child_line
from popgate.services._metrics import METRICS_DIR_VARIABLE, process_ended
from popgate.services._notify import SUPERVISOR_PID_VARIABLE

__all__ = ["ServiceProcess"]

logger = logging.getLogger("popgate.host")

#: Lines of a service's stderr kept to explain a failure.
KEPT_LINES = 20
ERROR_PREFIX = "popgate: error: "


class ServiceProcess:
    """Starts, watches and stops one service process."""

    def __init__(
        self,
        info: ServiceInfo,
        *,
        run_dir: Path,
        environment: dict[str, str] | None = None,
        command: Sequence[str] | None = None,
        metrics_dir: Path | None = None,
    ) -> None:
        self.info = info
        self.state = ServiceState.STOPPED
        self.since = datetime.datetime.now(datetime.UTC)
        self.last_error: str | None = None
        self._run_dir = run_dir
        self._environment = dict(os.environ if environment is None else environment)
        #: Where the service counts (prometheus-client multiprocess mode), if anywhere.
        self._metrics_dir = metrics_dir
        if metrics_dir is not None:
            self._environment[METRICS_DIR_VARIABLE] = str(metrics_dir)
        self._command = list(
            command or [sys.executable, "-m", "popgate.cli", "service", "run", info.name]
        )
        self._process: asyncio.subprocess.Process | None = None
        self._stderr: deque[str] = deque(maxlen=KEPT_LINES)
        self._exited = asyncio.Event()
        self._follower: asyncio.Future[None] | None = None

    @property
    def pid(self) -> int | None:
        """The service process's PID while it runs."""
        if self._process is None or self._process.returncode is not None:
            return None
        return self._process.pid

    def current_state(self) -> ServiceState:
        """The state now: a call, so that code awaiting in between reads it afresh."""
        return self.state

    def _set(self, state: ServiceState) -> None:
        self.state = state
        self.since = datetime.datetime.now(datetime.UTC)

    def start(self, ready_within: float = 60) -> asyncio.Task[None]:
        """Begin starting: StartPending at once; the task ends Running, or Stopped with a reason.

        The state changes before this returns, so a caller that answers at once (the control
        API) already reports StartPending.
        """
        if self.state is not ServiceState.STOPPED:
            raise RuntimeError(f"{self.info.name} is {self.state.label}, not Stopped")
        self._set(ServiceState.START_PENDING)
        self.last_error = None
        return asyncio.ensure_future(self._start(ready_within))

    async def _start(self, ready_within: float) -> None:
        self._stderr.clear()
        self._exited.clear()
        self._run_dir.mkdir(parents=True, exist_ok=True)
        notify_path = self._run_dir / f"{self.info.name}.notify"
        with contextlib.suppress(FileNotFoundError):
            notify_path.unlink()
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        notify.bind(str(notify_path))
        notify.setblocking(False)
        try:
            environment = dict(
                self._environment,
                NOTIFY_SOCKET=str(notify_path),
                **{SUPERVISOR_PID_VARIABLE: str(os.getpid())},
            )
            self._process = await asyncio.create_subprocess_exec(
                *self._command,
                env=environment,
                stdin=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                # Out of the host's process group, as a Windows service is out of the
                # console: Ctrl-C reaches the host alone, which stops the services in order.
                # Signalled together, a service ended before the host had begun stopping
                # it, and the host reported it as failed.
                start_new_session=True,
            )
            self._follower = asyncio.ensure_future(self._follow(self._process))
            ready = await self._wait_ready(notify, ready_within)
        finally:
            notify.close()
            with contextlib.suppress(FileNotFoundError):
                notify_path.unlink()
        if ready:
            self._set(ServiceState.RUNNING)
            logger.info("%s is running (pid %d)", self.info.name, self._process.pid)
            return
        if self._process.returncode is None:
            self.last_error = f"did not report ready within {ready_within:.0f} s"
            await self._terminate(grace=5)
        else:
            self.last_error = self._reason()
        self._set(ServiceState.STOPPED)
        logger.warning("%s could not start: %s", self.info.name, self.last_error)

    async def _wait_ready(self, notify: socket.socket, within: float) -> bool:
        loop = asyncio.get_running_loop()
        exited = asyncio.ensure_future(self._exited.wait())
        try:
            deadline = loop.time() + within
            while True:
                received = asyncio.ensure_future(loop.sock_recv(notify, 4096))
                done, _ = await asyncio.wait(
                    {received, exited},
                    timeout=max(0.0, deadline - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if received not in done:
                    received.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await received
                    return False
                if b"READY=1" in received.result().split(b"\n"):
                    return True
        finally:
            exited.cancel()

    async def _follow(self, process: asyncio.subprocess.Process) -> None:
        """Keep the last stderr lines (and log them); note when the process ends."""
        assert process.stderr is not None
        while line := await process.stderr.readline():
            text = line.decode("utf-8", "replace").rstrip()
            self._stderr.append(text)
            # A JSON line (POPGATE_LOG_FORMAT=json) is relayed whole by the JSON formatter.
            extra = {"service": self.info.name, CHILD: child_line(text)}
            logger.info("%s: %s", self.info.name, text, extra=extra)
        await process.wait()
        if self._metrics_dir is not None:
            process_ended(process.pid, self._metrics_dir)
        self._exited.set()

    def _reason(self) -> str:
        for line in reversed(self._stderr):
            if line.startswith(ERROR_PREFIX):
                return line.removeprefix(ERROR_PREFIX)
        status = self._process.returncode if self._process else None
        return f"the service process ended with status {status}"

    def stop(self, kill_after: float = 3600) -> asyncio.Task[None]:
        """Begin stopping (SIGTERM): StopPending at once; the task ends when it is Stopped.

        A service that outlives ``kill_after`` seconds is killed, and ``last_error`` says so.
        """
        if self.state is not ServiceState.RUNNING:
            raise RuntimeError(f"{self.info.name} is {self.state.label}, not Running")
        self._set(ServiceState.STOP_PENDING)
        self.last_error = None
        return asyncio.ensure_future(self._stop(kill_after))

    async def _stop(self, kill_after: float) -> None:
        await self._terminate(grace=kill_after)
        self._set(ServiceState.STOPPED)
        logger.info("%s is stopped", self.info.name)

    async def _terminate(self, grace: float) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self._exited.wait(), grace)
        except TimeoutError:
            logger.warning("%s did not stop in %.0f s; killing it", self.info.name, grace)
            self.last_error = f"did not stop within {grace:.0f} s and was killed"
            process.kill()
            await self._exited.wait()

    def mark_failed(self) -> str:
        """The process ended while Running: Stopped, with the reason recorded and returned."""
        status = self._process.returncode if self._process else None
        self.last_error = f"the service process ended unexpectedly (status {status})"
        self._set(ServiceState.STOPPED)
        return self.last_error

    async def wait_exit(self) -> int | None:
        """Wait until the service process ends; its exit status."""
        await self._exited.wait()
        return self._process.returncode if self._process else None
