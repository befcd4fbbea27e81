"""The service host: popgate's service control manager, one per computer."""

from __future__ import annotations

from popgate.host._host import Host, ServiceControlError
from popgate.host._process import ServiceProcess
from popgate.host._recovery import RecoveryAction, RecoveryPolicy, RecoveryStep
from popgate.host._states import ServiceState, StartupType

__all__ = [
    "Host",
    "RecoveryAction",
    "RecoveryPolicy",
    "RecoveryStep",
    "ServiceControlError",
    "ServiceProcess",
    "ServiceState",
    "StartupType",
]
