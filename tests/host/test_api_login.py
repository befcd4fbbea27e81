"""The control API's logins over HTTPS (``popgate.host._api``): a directory account and
another host calling as itself share one throttle: 401 for a wrong password or secret, after
a short wait, 429 while locked out, and a good login clears the account's failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import cast

import pytest

from popgate.directory import RoleGroup
from popgate.host._api import ApiError, Caller, ControlContext, _peer_caller, login
from popgate.services._throttle import LoginThrottle

ADDRESS = "192.0.2.7"


@dataclass
class FakeDirectory:
    """The directory calls a login makes, and how many of each."""

    checks: list[str] = field(default_factory=list)

    async def verify_password(self, name: str, password: str) -> SimpleNamespace | None:
        self.checks.append(name)
        return SimpleNamespace(name="alice") if password == "right" else None

    async def verify_proxy_secret(self, server: str, secret: str) -> bool:
        self.checks.append(f"server/{server}")
        return secret == "shared"

    async def role_groups_of(self, name: str) -> list[RoleGroup]:
        return [RoleGroup.ORGANIZATION_MANAGEMENT] if name == "alice" else []


def context_with(directory: FakeDirectory) -> ControlContext:
    throttle = LoginThrottle(base=0.0, cap=60.0, lockout=3)
    return cast("ControlContext", SimpleNamespace(directory=directory, throttle=throttle))


def refusal(call: Coroutine[object, object, Caller]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        asyncio.run(call)
    return caught.value


def test_a_directory_login_is_throttled(caplog: pytest.LogCaptureFixture) -> None:
    directory = FakeDirectory()
    context = context_with(directory)
    caplog.set_level(logging.WARNING, logger="popgate.host")
    caller = asyncio.run(login(context, "Alice", "right", ADDRESS))
    assert caller == Caller(
        name="alice",
        origin=f"https {ADDRESS}",
        role_groups=frozenset({RoleGroup.ORGANIZATION_MANAGEMENT}),
        directory_account=True,
    )
    for _ in range(3):
        wrong = refusal(login(context, "Alice", "wrong", ADDRESS))
        assert (wrong.status, wrong.code) == (401, 1326)
        assert str(wrong) == "The user name or password is incorrect."
    assert [record.getMessage() for record in caplog.records] == [
        f"failed control API login for 'Alice' from {ADDRESS}"
    ] * 3
    locked = refusal(login(context, "Alice", "right", ADDRESS))
    assert (locked.status, locked.code) == (429, 1326)
    assert str(locked) == "Too many failed logins; try again in 60 s."
    assert directory.checks == ["Alice"] * 4  # locked out: the password is not checked


def test_a_peer_login_is_throttled_alike(caplog: pytest.LogCaptureFixture) -> None:
    directory = FakeDirectory()
    context = context_with(directory)
    caplog.set_level(logging.WARNING, logger="popgate.host")
    caller = asyncio.run(_peer_caller(context, "mbx1", "shared", ADDRESS, None))
    assert caller == Caller(
        name="server/mbx1",
        origin=f"https {ADDRESS}",
        role_groups=frozenset(),
        peer_server="mbx1",
    )
    for _ in range(3):
        wrong = refusal(_peer_caller(context, "mbx1", "guess", ADDRESS, None))
        assert (wrong.status, wrong.code) == (401, 1326)
        assert str(wrong) == "The user name or password is incorrect."
    assert [record.getMessage() for record in caplog.records] == [
        f"failed control API login for server 'mbx1' from {ADDRESS}"
    ] * 3
    locked = refusal(_peer_caller(context, "mbx1", "shared", ADDRESS, None))
    assert (locked.status, str(locked)) == (429, "Too many failed logins; try again in 60 s.")
    assert directory.checks == ["server/mbx1"] * 4
