"""The host's view of a service process: StartPending, Running, StopPending, Stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

from popgate.host import ServiceProcess, ServiceState
from popgate.services import BACKEND
from tests.e2e.conftest import Installation


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def state_of(service: ServiceProcess) -> ServiceState:
    """The state now (a call, so that the type checker does not carry a narrowed value)."""
    return service.state


def pid_of(service: ServiceProcess) -> int | None:
    """The PID now (a call, for the same reason)."""
    return service.pid


def test_running_only_once_ready_and_stopped_after_stop(installation: Installation) -> None:
    async def scenario() -> None:
        service = ServiceProcess(
            BACKEND, run_dir=installation.layout.run_dir, environment=installation.env
        )
        assert state_of(service) is ServiceState.STOPPED
        assert state_of(service).label == "Stopped"
        starting = service.start()
        # StartPending as soon as the control is accepted, before the process even runs.
        assert state_of(service) is ServiceState.START_PENDING
        await starting
        assert state_of(service) is ServiceState.RUNNING
        assert state_of(service).label == "Running"
        assert service.pid is not None
        # Running means listening: the service said READY=1 after binding.
        assert listening(installation.backend_port)
        await service.stop()
        assert state_of(service) is ServiceState.STOPPED
        assert pid_of(service) is None
        assert not listening(installation.backend_port)
        assert service.last_error is None

    asyncio.run(scenario())


def test_a_service_that_cannot_start_is_stopped_with_the_reason(
    installation: Installation,
) -> None:
    async def scenario() -> None:
        with socket.socket(socket.AF_INET6) as blocker:
            blocker.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            blocker.bind(("::", installation.backend_port))
            blocker.listen()
            service = ServiceProcess(
                BACKEND, run_dir=installation.layout.run_dir, environment=installation.env
            )
            await service.start()
        assert state_of(service) is ServiceState.STOPPED
        assert service.last_error is not None
        assert "already in use" in service.last_error
        assert "ProxyTargetPort" in service.last_error

    asyncio.run(scenario())


def test_an_unexpected_exit_is_seen(installation: Installation) -> None:
    async def scenario() -> None:
        service = ServiceProcess(
            BACKEND, run_dir=installation.layout.run_dir, environment=installation.env
        )
        await service.start()
        assert service.pid is not None
        os.kill(service.pid, signal.SIGKILL)
        assert await asyncio.wait_for(service.wait_exit(), 30) == -signal.SIGKILL

    asyncio.run(scenario())


def test_a_service_that_does_not_stop_in_time_is_killed_and_reported(
    installation: Installation,
) -> None:
    async def scenario() -> None:
        service = ServiceProcess(
            BACKEND, run_dir=installation.layout.run_dir, environment=installation.env
        )
        await service.start()
        pid = pid_of(service)
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # a hung service: it cannot act on SIGTERM
        stopping = service.stop(kill_after=1)
        assert state_of(service) is ServiceState.STOP_PENDING
        await stopping
        assert state_of(service) is ServiceState.STOPPED
        assert service.last_error == "did not stop within 1 s and was killed"
        assert not listening(installation.backend_port)

    asyncio.run(scenario())
