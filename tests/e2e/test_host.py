"""The host: startup types, control errors, and recovery after a crash."""

from __future__ import annotations

import asyncio
import os
import poplib
import signal
from pathlib import Path

import pytest

from popgate.host import (
    Host,
    RecoveryAction,
    RecoveryPolicy,
    RecoveryStep,
    ServiceControlError,
    ServiceState,
    StartupType,
)
from popgate.services import BACKEND, FRONTEND
from tests.e2e.conftest import Installation, insecure_client_context
from tests.e2e.test_backend import MESSAGES, PASSWORD


def quick_recovery() -> RecoveryPolicy:
    """Restart at once, whatever the failure count."""
    return RecoveryPolicy(steps=(RecoveryStep(RecoveryAction.RESTART, 0.2),))


def make_host(installation: Installation) -> Host:
    """A host for both services of the test installation."""
    return Host(
        (FRONTEND, BACKEND),
        data_dir=installation.home,
        environment=installation.env,
        recovery=quick_recovery,
    )


def test_both_services_install_as_manual_and_disabled_refuses_to_start(
    installation: Installation,
) -> None:
    async def scenario() -> None:
        host = make_host(installation)
        assert host.startup_types == {
            "MSExchangePOP3": StartupType.MANUAL,
            "MSExchangePOP3BE": StartupType.MANUAL,
        }
        assert host.start_automatic() == []  # nothing is Automatic: nothing starts
        assert {p.state for p in host.processes.values()} == {ServiceState.STOPPED}
        host.set_startup_type("MSExchangePOP3BE", StartupType.DISABLED)
        with pytest.raises(ServiceControlError) as refused:
            await host.start("MSExchangePOP3BE")
        assert refused.value.code == 1058
        # The startup type is kept on disk for the next host.
        assert make_host(installation).startup_types["MSExchangePOP3BE"] is StartupType.DISABLED

    asyncio.run(scenario())


def test_already_started_and_not_started_are_reported(installation: Installation) -> None:
    async def scenario() -> None:
        host = make_host(installation)
        with pytest.raises(ServiceControlError) as not_started:
            await host.stop("MSExchangePOP3BE")
        assert not_started.value.code == 1062
        await host.start("MSExchangePOP3BE")
        try:
            with pytest.raises(ServiceControlError) as again:
                await host.start("MSExchangePOP3BE")
            assert again.value.code == 1056
        finally:
            await host.shutdown()

    asyncio.run(scenario())


def test_a_killed_service_is_restarted_and_its_mail_is_intact(
    installation: Installation, tmp_path: Path
) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES, tmp_path / "eml")

    async def scenario() -> None:
        host = make_host(installation)
        backend = await host.start("MSExchangePOP3BE")
        try:
            first_pid = backend.pid
            assert first_pid is not None
            # A session in flight with a DELE that was never committed.
            client = await asyncio.to_thread(session_with_dele, installation)
            os.kill(first_pid, signal.SIGKILL)
            for _ in range(200):
                await asyncio.sleep(0.1)
                if backend.current_state() is ServiceState.RUNNING and backend.pid != first_pid:
                    break
            assert backend.current_state() is ServiceState.RUNNING
            assert backend.pid != first_pid
            client.close()
            count = await asyncio.to_thread(message_count, installation)
            assert count == len(MESSAGES)
        finally:
            await host.shutdown()

    asyncio.run(scenario())


def session_with_dele(installation: Installation) -> poplib.POP3_SSL:
    """A logged-in backend session that has marked message 1 deleted."""
    client = poplib.POP3_SSL(
        "127.0.0.1", installation.backend_port, context=insecure_client_context(), timeout=30
    )
    client.user("alice")
    client.pass_(PASSWORD)
    client.dele(1)
    return client


def message_count(installation: Installation) -> int:
    """STAT's message count in a fresh session."""
    client = poplib.POP3_SSL(
        "127.0.0.1", installation.backend_port, context=insecure_client_context(), timeout=30
    )
    client.user("alice")
    client.pass_(PASSWORD)
    count = client.stat()[0]
    client.quit()
    return count
