"""Per-mailbox POP3 settings (Get-/Set-CASMailbox): defaults, round trip, validation."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection

from popgate.directory import (
    CasMailboxSettings,
    Directory,
    InvalidSetting,
    MimeFormat,
    NotFound,
)
from popgate.directory._migrate import alembic_config
from popgate.directory._schema import mailboxes

from .conftest import Runner

DEFAULTS = CasMailboxSettings(
    pop_enabled=True,
    pop_use_protocol_defaults=True,
    pop_messages_retrieval_mime_format=MimeFormat.BEST_BODY_FORMAT,
    pop_enable_exact_rfc822_size=False,
    pop_force_ical_for_calendar_retrieval_option=False,
    pop_suppress_read_receipt=False,
)


async def stored_column(d: Directory, name: str) -> object:
    """The raw cas_settings column of mailbox ``name``."""
    async with d._engine.connect() as conn:
        return (
            await conn.execute(
                sa.select(mailboxes.c.cas_settings).where(mailboxes.c.name_key == name)
            )
        ).scalar_one()


def test_a_new_mailbox_has_exchanges_defaults(run: Runner) -> None:
    async def body(d: Directory) -> tuple[CasMailboxSettings, object]:
        await d.add_mailbox("alice")
        return await d.get_cas_settings("ALICE"), await stored_column(d, "alice")

    settings, stored = run(body)
    assert settings == CasMailboxSettings() == DEFAULTS
    assert stored is None
    assert set(CasMailboxSettings.EXCHANGE_NAMES.values()) == {
        "PopEnabled",
        "PopUseProtocolDefaults",
        "PopMessagesRetrievalMimeFormat",
        "PopEnableExactRFC822Size",
        "PopForceICalForCalendarRetrievalOption",
        "PopSuppressReadReceipt",
    }


def test_changes_round_trip_by_name_or_address_in_any_case(run: Runner) -> None:
    async def body(d: Directory) -> tuple[CasMailboxSettings, ...]:
        await d.add_mailbox("alice", address="alice@contoso.com")
        changed = await d.set_cas_settings(
            "Alice@Contoso.com",
            popusEProtocolDefaults="$false",
            PopMessagesRetrievalMimeFormat="TextOnly",
            **{"-PopEnableExactRFC822Size": True},
            pop_suppress_read_receipt="true",
            PopForceICalForCalendarRetrievalOption=True,
            PopEnabled=False,
        )
        read = await d.get_cas_settings("alice")
        mailbox = await d.get_mailbox("alice")
        assert mailbox is not None
        assert mailbox.pop_enabled is False
        # The older single-setting method and this one share the PopEnabled column.
        await d.set_pop_enabled("alice", True)
        reenabled = await d.get_cas_settings("alice")
        by_number = await d.set_cas_settings("alice", PopMessagesRetrievalMimeFormat=2)
        alias = await d.set_cas_settings("alice", PopMessagesRetrievalMimeFormat="textenriched")
        return changed, read, reenabled, by_number, alias

    changed, read, reenabled, by_number, alias = run(body)
    expected = CasMailboxSettings(
        pop_enabled=False,
        pop_use_protocol_defaults=False,
        pop_messages_retrieval_mime_format=MimeFormat.TEXT_ONLY,
        pop_enable_exact_rfc822_size=True,
        pop_force_ical_for_calendar_retrieval_option=True,
        pop_suppress_read_receipt=True,
    )
    assert changed == read == expected
    assert reenabled.pop_enabled is True
    assert reenabled.pop_messages_retrieval_mime_format is MimeFormat.TEXT_ONLY
    assert by_number.pop_messages_retrieval_mime_format is MimeFormat.HTML_AND_TEXT_ALTERNATIVE
    assert alias.pop_messages_retrieval_mime_format is MimeFormat.TEXT_ENRICHED_ONLY


def test_only_differences_from_the_defaults_are_stored(run: Runner) -> None:
    async def body(d: Directory) -> tuple[object, object]:
        await d.add_mailbox("alice")
        await d.set_cas_settings("alice", PopSuppressReadReceipt=True, PopEnabled=False)
        changed = await stored_column(d, "alice")
        await d.set_cas_settings("alice", PopSuppressReadReceipt=False)
        return changed, await stored_column(d, "alice")

    changed, back = run(body)
    assert changed == '{"pop_suppress_read_receipt": true}'
    assert back is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"PopEnabeld": "$false"}, r"'PopEnabeld' is not a POP3 setting of mailboxes\. Did you "),
        ({"LoginType": "SecureLogin"}, "Get-CASMailbox lists them all"),
        ({"PopEnabled": "maybe"}, r"PopEnabled must be \$true or \$false; got 'maybe'"),
        ({"PopEnabled": None}, r"PopEnabled must have a value"),
        ({"PopEnabled": 1}, r"PopEnabled must be \$true or \$false; got a int"),
        (
            {"PopMessagesRetrievalMimeFormat": "Rtf"},
            "PopMessagesRetrievalMimeFormat must be one of 0 TextOnly, .* 6 Tnef; got 'Rtf'",
        ),
        ({"PopMessagesRetrievalMimeFormat": 7}, "must be one of"),
        ({"PopSuppressReadReceipt": "$true", "PopUseProtocolDefaults": "no"}, r"\$true or \$false"),
    ],
)
def test_invalid_changes_are_refused_and_change_nothing(
    run: Runner, changes: dict[str, object], message: str
) -> None:
    async def body(d: Directory) -> CasMailboxSettings:
        await d.add_mailbox("alice")
        with pytest.raises(InvalidSetting, match=message):
            await d.set_cas_settings("alice", **changes)
        return await d.get_cas_settings("alice")

    assert run(body) == DEFAULTS


def test_the_did_you_mean_hint_names_the_parameter(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await d.add_mailbox("alice")
        with pytest.raises(InvalidSetting, match=r"Did you mean PopEnabled\?"):
            await d.set_cas_settings("alice", PopEnabeld=False)

    run(body)


def test_unknown_mailboxes_are_not_found(run: Runner) -> None:
    async def body(d: Directory) -> None:
        with pytest.raises(NotFound, match="There is no mailbox 'ghost'"):
            await d.get_cas_settings("ghost")
        with pytest.raises(NotFound, match=r"There is no mailbox 'ghost@contoso\.com'"):
            await d.set_cas_settings("ghost@contoso.com", PopEnabled=False)

    run(body)


def test_a_recreated_mailbox_starts_from_the_defaults(run: Runner) -> None:
    async def body(d: Directory) -> CasMailboxSettings:
        await d.add_mailbox("alice")
        await d.set_cas_settings("alice", PopUseProtocolDefaults=False, PopEnabled=False)
        await d.remove_mailbox("alice")
        await d.add_mailbox("Alice")
        return await d.get_cas_settings("alice")

    assert run(body) == DEFAULTS


def test_mailboxes_from_before_the_migration_read_the_defaults(run: Runner) -> None:
    def to(connection: Connection, revision: str, up: bool) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        (command.upgrade if up else command.downgrade)(config, revision)

    async def body(d: Directory) -> tuple[CasMailboxSettings, bool]:
        await d.add_mailbox("alice")
        await d.set_cas_settings("alice", PopSuppressReadReceipt=True, PopEnabled=False)
        async with d._engine.begin() as connection:
            await connection.run_sync(to, "0001", False)
        assert await d.needs_upgrade()
        await d.add_mailbox("bob")  # written by a release that knows no cas_settings
        await d.upgrade()
        alice, bob = await d.get_cas_settings("alice"), await d.get_cas_settings("bob")
        # Only PopEnabled survives a downgrade: it has been a column since 0001.
        assert alice == CasMailboxSettings(pop_enabled=False)
        return bob, await d.needs_upgrade()

    assert run(body) == (DEFAULTS, False)


def test_settings_objects_validate_and_convert() -> None:
    assert CasMailboxSettings().with_changes({"PopEnabled": "$FALSE"}).pop_enabled is False
    assert CasMailboxSettings.from_json({"pop_enable_exact_rfc822_size": True, "new": 1}) == (
        CasMailboxSettings(pop_enable_exact_rfc822_size=True)
    )
    assert CasMailboxSettings(pop_messages_retrieval_mime_format=MimeFormat.TNEF).to_json() == {
        "pop_messages_retrieval_mime_format": "Tnef"
    }
    assert CasMailboxSettings().to_json(full=True)["pop_use_protocol_defaults"] is True
    with pytest.raises(InvalidSetting, match="PopSuppressReadReceipt"):
        CasMailboxSettings(pop_suppress_read_receipt="yes")  # type: ignore[arg-type]
