"""The host: this computer's services, their startup types, states and recovery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from popgate.host._common import (
    ERROR_SERVICE_ALREADY_RUNNING,
    ERROR_SERVICE_DISABLED,
    ERROR_SERVICE_DOES_NOT_EXIST,
    ERROR_SERVICE_NOT_ACTIVE,
)
from popgate.host._process import ServiceProcess
from popgate.host._recovery import RecoveryAction, RecoveryPolicy, RecoveryStep
from popgate.host._states import ServiceState, StartupType
from popgate.services import ServiceInfo

__all__ = ["Host", "ServiceControlError"]

logger = logging.getLogger("popgate.host")


class ServiceControlError(Exception):
    """A control request the service's state does not allow; ``code`` is Windows' error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


#: How long a stop may take when no stop timeout is given: GracefulStopTimeout's default
#: (60 s) plus time to close the sessions it cancels.
DEFAULT_KILL_AFTER = 90.0


class Host:
    """Owns one :class:`ServiceProcess` per service installed on this computer.

    Startup types and recovery options live in ``services.json`` in the data directory:
    they belong to this computer, like the Windows service configuration. Both POP3 services
    install as Manual, MSExchangeDelivery as Automatic.
    """

    def __init__(
        self,
        services: Sequence[ServiceInfo],
        *,
        data_dir: Path,
        environment: dict[str, str] | None = None,
        recovery: Callable[[], RecoveryPolicy] = RecoveryPolicy,
        metrics_dir: Path | None = None,
    ) -> None:
        self._config_file = data_dir / "services.json"
        self.processes = {
            info.name: ServiceProcess(
                info, run_dir=data_dir / "run", environment=environment, metrics_dir=metrics_dir
            )
            for info in services
        }
        #: Seconds a stopping service may take before it is killed; the daemon keeps it at
        #: GracefulStopTimeout plus a margin.
        self.kill_after = DEFAULT_KILL_AFTER
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._controls: set[asyncio.Task[Any]] = set()
        stored = self._load()
        self.startup_types = {
            name: StartupType(stored.get(name, {}).get("StartupType", _installed_as(process)))
            for name, process in self.processes.items()
        }
        self.recovery = {
            name: _policy_from(stored.get(name, {}).get("Recovery"), recovery)
            for name in self.processes
        }

    # --- configuration --------------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            loaded = json.loads(self._config_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return {str(name): dict(entry) for name, entry in loaded.items()}

    def _save(self) -> None:
        stored = {
            name: {
                "StartupType": self.startup_types[name].value,
                "Recovery": _policy_to(self.recovery[name]),
            }
            for name in self.processes
        }
        temporary = self._config_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(stored, indent=2) + "\n", encoding="utf-8")
        temporary.replace(self._config_file)

    def find(self, name: str) -> ServiceProcess:
        """The service whose key or display name is ``name`` in any case (net start's rule)."""
        wanted = name.strip().casefold()
        for process in self.processes.values():
            if wanted in (process.info.name.casefold(), process.info.display_name.casefold()):
                return process
        raise ServiceControlError(
            ERROR_SERVICE_DOES_NOT_EXIST, f"There is no service named {name!r} on this computer."
        )

    def set_startup_type(self, name: str, startup_type: StartupType) -> None:
        """Change and persist a service's startup type."""
        self.startup_types[self.find(name).info.name] = startup_type
        self._save()

    def set_recovery(self, name: str, steps: Sequence[RecoveryStep], reset_after: float) -> None:
        """Change and persist a service's recovery options (its failure count is kept)."""
        policy = self.recovery[self.find(name).info.name]
        policy.steps = tuple(steps)
        policy.reset_after = reset_after
        self._save()

    # --- control --------------------------------------------------------------------------

    def start(self, name: str) -> asyncio.Task[ServiceProcess]:
        """Begin starting a service: refused at once, or StartPending on return.

        Await the task for the outcome: Running, or Stopped with ``last_error`` set.
        """
        service = self.find(name)
        key = service.info.name
        if self.startup_types[key] is StartupType.DISABLED:
            raise ServiceControlError(ERROR_SERVICE_DISABLED, f"{key} is disabled")
        if service.current_state() is not ServiceState.STOPPED:
            raise ServiceControlError(ERROR_SERVICE_ALREADY_RUNNING, f"{key} is already running")
        return self._track(self._finish_start(service, service.start()))

    async def _finish_start(
        self, service: ServiceProcess, starting: asyncio.Task[None]
    ) -> ServiceProcess:
        await starting
        if service.current_state() is ServiceState.RUNNING:
            self._watchers[service.info.name] = asyncio.ensure_future(self._watch(service))
        return service

    def stop(self, name: str) -> asyncio.Task[ServiceProcess]:
        """Begin stopping a running service gracefully: StopPending on return."""
        service = self.find(name)
        if service.current_state() is not ServiceState.RUNNING:
            raise ServiceControlError(
                ERROR_SERVICE_NOT_ACTIVE, f"{service.info.name} is not started"
            )
        return self._track(self._finish(service, service.stop(kill_after=self.kill_after)))

    @staticmethod
    async def _finish(service: ServiceProcess, control: asyncio.Task[None]) -> ServiceProcess:
        await control
        return service

    def restart(self, name: str) -> asyncio.Task[ServiceProcess]:
        """Stop the service if it runs, then start it (Restart-Service)."""
        service = self.find(name)
        key = service.info.name
        if self.startup_types[key] is StartupType.DISABLED:
            raise ServiceControlError(ERROR_SERVICE_DISABLED, f"{key} is disabled")
        if service.current_state() is ServiceState.STOPPED:
            return self.start(key)
        stopping = self.stop(key)

        async def then_start() -> ServiceProcess:
            await stopping
            try:
                return await self.start(key)
            except ServiceControlError as refused:
                # Started by someone else meanwhile, or disabled: the stop stands, as is.
                logger.warning("restart of %s: the start was refused: %s", key, refused)
                return service

        return self._track(then_start())

    def _track(self, control: Awaitable[ServiceProcess]) -> asyncio.Task[ServiceProcess]:
        task = asyncio.ensure_future(control)
        self.background(task)
        return task

    def background(self, task: asyncio.Task[Any]) -> None:
        """Keep ``task`` (a control or its follow-up) alive; shutdown waits for it."""
        self._controls.add(task)
        task.add_done_callback(self._controls.discard)

    def start_automatic(self) -> list[asyncio.Task[ServiceProcess]]:
        """Begin starting every service whose startup type is Automatic (nothing else starts
        itself): they are StartPending on return; the tasks end when each is started."""
        return [
            self.start(name)
            for name, startup_type in self.startup_types.items()
            if startup_type is StartupType.AUTOMATIC
        ]

    async def shutdown(self) -> None:
        """Stop every service (in the order given, dependents first) and the watchers."""
        for control in set(self._controls):
            with contextlib.suppress(Exception):
                await control
        for name, service in self.processes.items():
            if service.current_state() is ServiceState.RUNNING:
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
            step = self.recovery[service.info.name].failed()
            logger.error("%s failed: %s", service.info.name, reason)
            if step.action is RecoveryAction.NONE:
                logger.warning("recovery for %s: take no action", service.info.name)
                return
            logger.info("restarting %s in %.0f s", service.info.name, step.delay)
            await asyncio.sleep(step.delay)
            if service.current_state() is not ServiceState.STOPPED:
                return  # somebody started it meanwhile
            await service.start()
            if service.current_state() is not ServiceState.RUNNING:
                logger.error("%s could not be restarted: %s", service.info.name, service.last_error)
                return
            logger.info("%s was restarted by recovery", service.info.name)


def _policy_to(policy: RecoveryPolicy) -> dict[str, Any]:
    return {
        "Actions": [{"Action": step.action.value, "Delay": step.delay} for step in policy.steps],
        "ResetAfter": policy.reset_after,
    }


def _policy_from(
    stored: dict[str, Any] | None, default: Callable[[], RecoveryPolicy]
) -> RecoveryPolicy:
    policy = default()
    if stored is not None:
        policy.steps = tuple(
            RecoveryStep(RecoveryAction(step["Action"]), float(step["Delay"]))
            for step in stored["Actions"]
        )
        policy.reset_after = float(stored["ResetAfter"])
    return policy


def _installed_as(process: ServiceProcess) -> str:
    """The startup type a service installs with: Manual, or Automatic for mail delivery."""
    return str((StartupType.AUTOMATIC if process.info.automatic else StartupType.MANUAL).value)
