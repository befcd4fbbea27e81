"""The host: this computer's services, their startup types, states and recovery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from popgate.host._process import ServiceProcess
from popgate.host._recovery import RecoveryAction, RecoveryPolicy
from popgate.host._states import ServiceState, StartupType
from popgate.services import ServiceInfo

__all__ = ["Host", "ServiceControlError"]

logger = logging.getLogger("popgate.host")


class ServiceControlError(Exception):
    """A control request the service's state does not allow; ``code`` is Windows' error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


#: Windows error numbers that net.exe and PowerShell report.
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_DISABLED = 1058
ERROR_SERVICE_NOT_ACTIVE = 1062


class Host:
    """Owns one :class:`ServiceProcess` per service installed on this computer.

    Startup types live in ``services.json`` in the data directory: they belong to this
    computer, like the Windows service configuration. Both POP3 services install as Manual.
    """

    def __init__(
        self,
        services: Sequence[ServiceInfo],
        *,
        data_dir: Path,
        environment: dict[str, str] | None = None,
        recovery: Callable[[], RecoveryPolicy] = RecoveryPolicy,
    ) -> None:
        self._config_file = data_dir / "services.json"
        self.processes = {
            info.name: ServiceProcess(info, run_dir=data_dir / "run", environment=environment)
            for info in services
        }
        self._recovery = {info.name: recovery() for info in services}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self.startup_types = self._load_startup_types()

    def _load_startup_types(self) -> dict[str, StartupType]:
        try:
            stored = json.loads(self._config_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            stored = {}
        return {
            name: StartupType(stored.get(name, StartupType.MANUAL.value)) for name in self.processes
        }

    def set_startup_type(self, name: str, startup_type: StartupType) -> None:
        """Change and persist a service's startup type."""
        self.startup_types[self._known(name)] = startup_type
        temporary = self._config_file.with_suffix(".tmp")
        temporary.write_text(
            json.dumps({key: value.value for key, value in self.startup_types.items()}, indent=2)
        )
        temporary.replace(self._config_file)

    def _known(self, name: str) -> str:
        if name not in self.processes:
            raise KeyError(name)
        return name

    async def start(self, name: str) -> ServiceProcess:
        """Start a service; Running on return, or Stopped with ``last_error`` set."""
        service = self.processes[self._known(name)]
        if self.startup_types[name] is StartupType.DISABLED:
            raise ServiceControlError(ERROR_SERVICE_DISABLED, f"{name} is disabled")
        if service.state is not ServiceState.STOPPED:
            raise ServiceControlError(ERROR_SERVICE_ALREADY_RUNNING, f"{name} is already running")
        await service.start()
        if service.current_state() is ServiceState.RUNNING:
            self._watchers[name] = asyncio.ensure_future(self._watch(service))
        return service

    async def stop(self, name: str) -> ServiceProcess:
        """Stop a running service gracefully."""
        service = self.processes[self._known(name)]
        if service.state is not ServiceState.RUNNING:
            raise ServiceControlError(ERROR_SERVICE_NOT_ACTIVE, f"{name} is not started")
        await service.stop()
        return service

    async def start_automatic(self) -> None:
        """Start every service whose startup type is Automatic (nothing else starts itself)."""
        for name, startup_type in self.startup_types.items():
            if startup_type is StartupType.AUTOMATIC:
                await self.start(name)

    async def shutdown(self) -> None:
        """Stop every running service and the watchers."""
        for name, service in self.processes.items():
            if service.state is ServiceState.RUNNING:
                await self.stop(name)
        for watcher in self._watchers.values():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch(self, service: ServiceProcess) -> None:
        """Restart a service whose process dies while Running, per its recovery options."""
        while True:
            await service.wait_exit()
            if service.current_state() is not ServiceState.RUNNING:
                return  # it was asked to stop
            reason = service.mark_failed()
            step = self._recovery[service.info.name].failed()
            logger.error("%s failed: %s", service.info.name, reason)
            if step.action is RecoveryAction.NONE:
                return
            logger.info("restarting %s in %.0f s", service.info.name, step.delay)
            await asyncio.sleep(step.delay)
            if service.current_state() is not ServiceState.STOPPED:
                return  # somebody started it meanwhile
            await service.start()
            if service.current_state() is not ServiceState.RUNNING:
                return
