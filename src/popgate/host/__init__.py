"""The service host: popgate's service control manager, one per computer.

The names below are imported when first used, so that ``popgate net`` can use the host's
client (``popgate.host._client``) without importing the host itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

_MODULES = {
    "Host": "_host",
    "ServiceControlError": "_host",
    "ServiceProcess": "_process",
    "RecoveryAction": "_recovery",
    "RecoveryPolicy": "_recovery",
    "RecoveryStep": "_recovery",
    "ServiceState": "_states",
    "StartupType": "_states",
}


def __getattr__(name: str) -> object:
    """Import ``name`` from its module on first use (PEP 562)."""
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
