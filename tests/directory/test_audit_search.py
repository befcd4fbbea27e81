"""Searching the audit log (Search-AdminAuditLog): cmdlets, users, dates, result size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from popgate.directory import AuditEntry, Directory, InvalidSetting

from .conftest import Runner

#: (actor, action) of the seeded entries, oldest first.
SEEDED = [
    ("Administrator", "Set-PopSettings"),
    ("alice", "New-Mailbox"),
    ("bob", "Set-PopSettings"),
    ("Alice", "Start-Service"),
    ("carol", "set-popsettings"),
    ("alice", "Remove-Mailbox"),
]


async def seeded(d: Directory) -> list[AuditEntry]:
    """Write SEEDED and return every entry, newest first."""
    for actor, action in SEEDED:
        await d.audit(actor=actor, origin="local", action=action, target="mbx01", result="Success")
    return await d.list_audit()


def pairs(entries: list[AuditEntry]) -> list[tuple[str, str]]:
    """(actor, action) of ``entries`` in their order."""
    return [(entry.actor, entry.action) for entry in entries]


def test_cmdlets_and_users_match_ignoring_case_newest_first(run: Runner) -> None:
    async def body(d: Directory) -> dict[str, list[AuditEntry]]:
        await seeded(d)
        return {
            "cmdlet": await d.list_audit(actions=["SET-POPSETTINGS"]),
            "cmdlets": await d.list_audit(actions=["new-mailbox", "Remove-Mailbox"]),
            "user": await d.list_audit(actors=["ALICE"]),
            "both": await d.list_audit(actions=["Start-Service"], actors=["alice", "bob"]),
            "none": await d.list_audit(actions=["Get-Mailbox"]),
            "empty": await d.list_audit(actions=[]),
            "limited": await d.list_audit(actions=["Set-PopSettings"], limit=2),
        }

    found = run(body)
    assert pairs(found["cmdlet"]) == [
        ("carol", "set-popsettings"),
        ("bob", "Set-PopSettings"),
        ("Administrator", "Set-PopSettings"),
    ]
    assert pairs(found["cmdlets"]) == [("alice", "Remove-Mailbox"), ("alice", "New-Mailbox")]
    assert pairs(found["user"]) == [
        ("alice", "Remove-Mailbox"),
        ("Alice", "Start-Service"),
        ("alice", "New-Mailbox"),
    ]
    assert pairs(found["both"]) == [("Alice", "Start-Service")]
    assert found["none"] == found["empty"] == []
    # The limit counts matching entries, and keeps the newest.
    assert pairs(found["limited"]) == [("carol", "set-popsettings"), ("bob", "Set-PopSettings")]


def test_dates_bound_the_search_inclusively_in_any_time_zone(run: Runner) -> None:
    async def body(d: Directory) -> tuple[list[AuditEntry], ...]:
        everything = await seeded(d)
        assert len({entry.at for entry in everything}) == len(SEEDED)
        oldest_first = everything[::-1]
        second, fourth = oldest_first[1].at, oldest_first[3].at
        plus_two = timezone(timedelta(hours=2))
        return (
            await d.list_audit(start=second, end=fourth),
            await d.list_audit(start=second.astimezone(plus_two), end=fourth.astimezone(plus_two)),
            await d.list_audit(start=fourth),
            await d.list_audit(end=second),
            await d.list_audit(start=second, end=second, actors=["alice"]),
            await d.list_audit(start=oldest_first[-1].at + timedelta(seconds=1)),
        )

    between, shifted, since, until, exactly, later = run(body)
    assert pairs(between) == [
        ("Alice", "Start-Service"),
        ("bob", "Set-PopSettings"),
        ("alice", "New-Mailbox"),
    ]
    assert shifted == between
    assert pairs(since) == [
        ("alice", "Remove-Mailbox"),
        ("carol", "set-popsettings"),
        ("Alice", "Start-Service"),
    ]
    assert pairs(until) == [("alice", "New-Mailbox"), ("Administrator", "Set-PopSettings")]
    assert pairs(exactly) == [("alice", "New-Mailbox")]
    assert later == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"start": datetime(2025, 1, 1)}, "The start date needs a time zone"),
        ({"end": datetime(2025, 1, 1)}, "The end date needs a time zone"),
        (
            {
                "start": datetime(2025, 1, 2, tzinfo=UTC),
                "end": datetime(2025, 1, 1, tzinfo=UTC),
            },
            r"The start date 2025-01-02T00:00:00\+00:00 is after the end date",
        ),
        ({"limit": 0}, "at least 1"),
    ],
)
def test_impossible_searches_are_refused(
    run: Runner, arguments: dict[str, object], message: str
) -> None:
    async def body(d: Directory) -> None:
        with pytest.raises(InvalidSetting, match=message):
            await d.list_audit(**arguments)  # type: ignore[arg-type]

    run(body)
