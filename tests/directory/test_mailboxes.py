"""Mailboxes: creation, lookup, removal, passwords and SCRAM verifiers."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from popgate.directory import (
    AlreadyExists,
    Directory,
    InvalidName,
    InvalidSetting,
    Mailbox,
    NotFound,
    Role,
    RoleGroup,
    _passwords,
)
from popgate.directory._schema import mailboxes
from popgate.protocol._scram_keys import derive_scram_credentials

from .conftest import Runner


def test_add_mailbox_defaults(run: Runner) -> None:
    async def body(d: Directory) -> Mailbox:
        return await d.add_mailbox("alice")

    before = datetime.now(UTC)
    mailbox = run(body)
    assert mailbox.name == "alice"
    assert mailbox.address == "alice@localhost"
    assert mailbox.pop_enabled is True
    assert mailbox.server is None
    assert mailbox.is_administrator is False
    assert mailbox.guid.version == 4
    assert before - timedelta(seconds=1) <= mailbox.created <= datetime.now(UTC)


def test_get_mailbox_by_name_or_address_ignoring_case(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await d.set_default_domain("Contoso.com")
        assert await d.get_default_domain() == "contoso.com"
        added = await d.add_mailbox("Alice.Smith", is_administrator=True)
        assert added.address == "Alice.Smith@contoso.com"
        for key in ("Alice.Smith", "alice.smith", "ALICE.SMITH", "alice.smith@CONTOSO.com"):
            assert await d.get_mailbox(key) == added, key
        assert await d.get_mailbox("bob") is None
        assert await d.get_mailbox("alice.smith@fabrikam.com") is None
        assert await d.get_mailbox("alice.smith")
        stored = await d.get_mailbox("alice.smith")
        assert stored is not None
        assert stored.is_administrator is True
        assert isinstance(stored.guid, uuid.UUID)
        assert stored.created.tzinfo is not None

    run(body)


def test_explicit_address_and_server(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await d.add_server("MBX01", fqdn="mbx01.contoso.com", roles=[Role.MAILBOX])
        mailbox = await d.add_mailbox("bob", address="Robert@Contoso.com", server="MBX01")
        assert mailbox.address == "Robert@Contoso.com"
        assert mailbox.server == "mbx01"
        assert await d.get_mailbox("robert@contoso.com") == mailbox
        with pytest.raises(NotFound, match="no server 'mbx02'"):
            await d.add_mailbox("carol", server="mbx02")
        assert await d.get_mailbox("carol") is None

    run(body)


def test_duplicates_are_refused_ignoring_case(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await d.add_mailbox("alice", address="alice@contoso.com")
        with pytest.raises(AlreadyExists, match="named 'alice' already exists"):
            await d.add_mailbox("ALICE", address="other@contoso.com")
        with pytest.raises(AlreadyExists, match="already belongs to mailbox 'alice'"):
            await d.add_mailbox("alice2", address="Alice@Contoso.COM")
        assert [m.name for m in await d.list_mailboxes()] == ["alice"]

    run(body)


@pytest.mark.parametrize("name", ["../x", "", "a\x00b", "x" * 65, "a@b"])
def test_add_mailbox_refuses_invalid_names(run: Runner, name: str) -> None:
    async def body(d: Directory) -> None:
        with pytest.raises(InvalidName):
            await d.add_mailbox(name)
        assert await d.list_mailboxes() == []

    run(body)


def test_add_mailbox_refuses_invalid_address_and_empty_password(run: Runner) -> None:
    async def body(d: Directory) -> None:
        with pytest.raises(InvalidName, match="exactly one '@'"):
            await d.add_mailbox("alice", address="alice")
        with pytest.raises(InvalidSetting, match="must not be empty"):
            await d.add_mailbox("alice", password="")
        assert await d.list_mailboxes() == []

    run(body)


def test_list_mailboxes_is_sorted_by_name(run: Runner) -> None:
    async def body(d: Directory) -> list[str]:
        for name in ("carol", "Bob", "alice", "dave"):
            await d.add_mailbox(name)
        return [m.name for m in await d.list_mailboxes()]

    assert run(body) == ["alice", "Bob", "carol", "dave"]


def test_remove_mailbox(run: Runner) -> None:
    async def body(d: Directory) -> None:
        added = await d.add_mailbox("alice", password="secret")
        await d.add_role_group_member(RoleGroup.ORGANIZATION_MANAGEMENT, "alice")
        await d.add_role_group_member(RoleGroup.ORGANIZATION_MANAGEMENT, "root")
        assert await d.remove_mailbox("ALICE") == added
        assert await d.get_mailbox("alice") is None
        # A new mailbox of the same name must not inherit the old one's permissions.
        assert await d.role_groups_of("alice") == set()
        assert await d.role_group_members(RoleGroup.ORGANIZATION_MANAGEMENT) == ["root"]
        with pytest.raises(NotFound, match="no mailbox 'alice'"):
            await d.remove_mailbox("alice")
        again = await d.add_mailbox("alice")
        assert again.guid != added.guid
        assert await d.verify_password("alice", "secret") is None

    run(body)


def test_set_pop_enabled_and_server(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await d.add_server("mbx01", fqdn="mbx01.contoso.com", roles=[Role.MAILBOX])
        await d.add_mailbox("alice")
        await d.set_pop_enabled("alice", False)
        await d.set_mailbox_server("Alice@localhost", "MBX01")
        mailbox = await d.get_mailbox("alice")
        assert mailbox is not None
        assert mailbox.pop_enabled is False
        assert mailbox.server == "mbx01"
        await d.set_pop_enabled("alice", True)
        assert await d.get_mailbox("alice") == dataclasses.replace(mailbox, pop_enabled=True)
        with pytest.raises(NotFound):
            await d.set_pop_enabled("nobody", False)
        with pytest.raises(NotFound, match="no server 'mbx02'"):
            await d.set_mailbox_server("alice", "mbx02")
        with pytest.raises(NotFound, match="no mailbox 'nobody'"):
            await d.set_mailbox_server("nobody", "mbx01")

    run(body)


def test_verify_password_right_wrong_unknown_and_unset(run: Runner) -> None:
    async def body(d: Directory) -> None:
        added = await d.add_mailbox("alice", password="correct horse")
        await d.add_mailbox("nopass")
        assert await d.verify_password("alice", "correct horse") == added
        assert await d.verify_password("ALICE@localhost", "correct horse") == added
        assert await d.verify_password("alice", "Correct horse") is None
        assert await d.verify_password("alice", "") is None
        assert await d.verify_password("mallory", "correct horse") is None
        assert await d.verify_password("nopass", "") is None
        assert await d.verify_password("nopass", "anything") is None

    run(body)


def test_set_password_replaces_hash_and_scram(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await d.add_mailbox("alice", password="old password")
        before = await d.scram_credentials("alice")
        await d.set_password("alice", "new password")
        assert await d.verify_password("alice", "old password") is None
        assert await d.verify_password("alice", "new password") is not None
        after = await d.scram_credentials("alice")
        assert before is not None
        assert after is not None
        assert after[1] != before[1]
        with pytest.raises(InvalidSetting, match="must not be empty"):
            await d.set_password("alice", "")
        with pytest.raises(NotFound):
            await d.set_password("nobody", "x")

    run(body)


def test_password_is_never_stored(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await d.add_mailbox("alice", password="Tr0ub4dor&3-unique")
        async with d._engine.connect() as conn:
            row = (await conn.execute(mailboxes.select())).one()
        assert row.password_hash.startswith("$argon2id$")
        assert "Tr0ub4dor" not in repr(tuple(row))

    run(body)


def test_scram_credentials_match_derivation_with_stored_salt(run: Runner) -> None:
    async def body(d: Directory) -> None:
        added = await d.add_mailbox("alice", password="pencil")
        found = await d.scram_credentials("Alice")
        assert found is not None
        mailbox, credentials = found
        assert mailbox == added
        assert len(credentials.salt) >= 16
        assert credentials.iterations >= 4096
        expected = derive_scram_credentials(
            "pencil", salt=credentials.salt, iterations=credentials.iterations
        )
        assert credentials == expected
        assert await d.scram_credentials("nobody") is None
        await d.add_mailbox("nopass")
        assert await d.scram_credentials("nopass") is None

    run(body)


def test_unknown_user_still_pays_for_a_hash_verification(
    run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str | None] = []
    real = _passwords.verify_hash

    def spy(password_hash: str | None, password: str) -> bool:
        calls.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(_passwords, "verify_hash", spy)

    async def body(d: Directory) -> None:
        await d.add_mailbox("nopass")
        assert await d.verify_password("mallory", "guess") is None
        assert await d.verify_password("nopass", "guess") is None

    run(body)
    # Both went through argon2 (against the dummy hash), so timing does not reveal which
    # users exist or have a password.
    assert calls == [None, None]
