"""Service states keep Windows' numbers and PowerShell's names."""

from __future__ import annotations

from popgate.host import ServiceState, StartupType


def test_states_have_the_service_control_manager_numbers_and_names() -> None:
    assert [(state.value, state.label) for state in sorted(ServiceState)] == [
        (1, "Stopped"),
        (2, "StartPending"),
        (3, "StopPending"),
        (4, "Running"),
    ]


def test_startup_types() -> None:
    assert [kind.value for kind in StartupType] == ["Automatic", "Manual", "Disabled"]
