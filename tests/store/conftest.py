"""Fixtures for the store tests: a harness per :class:`~popgate.store.MailStore` implementation.

Every implementation listed in ``HARNESSES`` runs the whole contract suite in
``test_contract.py``. Tests are plain functions that call :func:`asyncio.run`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from popgate.store import MaildirStore, MailStore


@dataclass(frozen=True, slots=True)
class StoreHarness:
    """How the contract tests drive one store implementation.

    :param make: a new store instance on the same storage, as after a server restart.
    :param drop_caches: remove every derived file (indexes); the mail itself stays.
    """

    make: Callable[[], MailStore]
    drop_caches: Callable[[], None]


def _maildir_harness(root: Path) -> StoreHarness:
    def drop_caches() -> None:
        for index in root.glob("*/popgate-uidlist"):
            index.unlink()

    return StoreHarness(make=lambda: MaildirStore(root), drop_caches=drop_caches)


HARNESSES: dict[str, Callable[[Path], StoreHarness]] = {"maildir": _maildir_harness}


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> StoreHarness:
    """A harness for each store implementation, on a fresh empty root."""
    factory: Callable[[Path], StoreHarness] = HARNESSES[request.param]
    return factory(tmp_path / "store")


@pytest.fixture
def store(harness: StoreHarness) -> MailStore:
    """A store instance of each implementation."""
    return harness.make()


@pytest.fixture
def guid() -> uuid.UUID:
    """A fresh mailbox id."""
    return uuid.uuid4()
