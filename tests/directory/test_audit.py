"""The audit log and small directory settings."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from popgate.directory import AuditEntry, Directory, InvalidName, InvalidSetting

from .conftest import Runner


def test_audit_newest_first_with_limit(run: Runner) -> None:
    async def body(d: Directory) -> list[AuditEntry]:
        assert await d.list_audit() == []
        for n in range(5):
            await d.audit(
                actor=f"user{n}",
                origin="unix:uid=0",
                action="Set-PopSettings",
                target="mbx01",
                result="Success",
                detail=f"MaxCommandSize={100 + n}" if n else "",
            )
        assert len(await d.list_audit(limit=2)) == 2
        with pytest.raises(InvalidSetting, match="at least 1"):
            await d.list_audit(limit=0)
        return await d.list_audit()

    start = datetime.now(UTC)
    entries = run(body)
    assert [e.actor for e in entries] == ["user4", "user3", "user2", "user1", "user0"]
    assert [e.id for e in entries] == sorted((e.id for e in entries), reverse=True)
    assert entries[-1].detail == ""
    assert entries[0] == AuditEntry(
        id=entries[0].id,
        at=entries[0].at,
        actor="user4",
        origin="unix:uid=0",
        action="Set-PopSettings",
        target="mbx01",
        result="Success",
        detail="MaxCommandSize=104",
    )
    assert all(start <= e.at <= datetime.now(UTC) for e in entries)
    assert all(a.at >= b.at for a, b in itertools.pairwise(entries))


def test_audit_keeps_long_and_unicode_text(run: Runner) -> None:
    async def body(d: Directory) -> AuditEntry:
        await d.audit(
            actor="ädmin", origin="https:203.0.113.9", action="x", target="t" * 5000, result="ok"
        )
        return (await d.list_audit(limit=1))[0]

    entry = run(body)
    assert entry.actor == "ädmin"
    assert entry.target == "t" * 5000


def test_default_domain(run: Runner) -> None:
    async def body(d: Directory) -> None:
        assert await d.get_default_domain() == "localhost"
        await d.set_default_domain("contoso.com")
        await d.set_default_domain("Fabrikam.COM")
        assert await d.get_default_domain() == "fabrikam.com"
        with pytest.raises(InvalidName, match="not a valid DNS name"):
            await d.set_default_domain("not a domain")
        assert (await d.add_mailbox("alice")).address == "alice@fabrikam.com"

    run(body)
