"""Several Mailbox servers: where a new mailbox goes, the move requests that take it
elsewhere, the endpoints hosts register, and which role each POP3 setting governs."""

from __future__ import annotations

import pytest

from popgate.directory import (
    AlreadyExists,
    Directory,
    InvalidSetting,
    MoveStatus,
    NotFound,
    Role,
    settings_without_effect,
)

from .conftest import Runner


async def organization(d: Directory) -> None:
    await d.add_server("cas1", fqdn="cas1.contoso.com", roles=[Role.CLIENT_ACCESS])
    await d.add_server("mbx1", fqdn="mbx1.contoso.com", roles=[Role.MAILBOX])
    await d.add_server("mbx2", fqdn="mbx2.contoso.com", roles=[Role.MAILBOX])


def test_a_new_mailbox_goes_to_the_mailbox_server_holding_the_fewest(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await organization(d)
        placed = [(await d.add_mailbox(f"user{n}")).server for n in range(4)]
        # Ties go by name; never to the Client Access server.
        assert placed == ["mbx1", "mbx2", "mbx1", "mbx2"]
        await d.add_mailbox("pinned", server="MBX2")
        assert (await d.add_mailbox("next")).server == "mbx1"

    run(body)


def test_a_mailbox_cannot_be_placed_on_a_server_without_the_mailbox_role(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await organization(d)
        with pytest.raises(InvalidSetting, match="no Mailbox role"):
            await d.add_mailbox("alice", server="cas1")
        with pytest.raises(NotFound):
            await d.add_mailbox("alice", server="nowhere")
        assert await d.get_mailbox("alice") is None

    run(body)


def test_a_move_request_switches_the_mailbox_once(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await organization(d)
        alice = await d.add_mailbox("alice", server="mbx1")
        request = await d.add_move_request("Alice", "MBX2", "Administrator")
        assert (request.mailbox, request.source_server, request.target_server) == (
            "alice", "mbx1", "mbx2",
        )  # fmt: skip
        assert request.status is MoveStatus.QUEUED
        with pytest.raises(AlreadyExists, match="already has a move request"):
            await d.add_move_request("alice", "mbx2", "Administrator")
        # Not switched while Queued: only a move in progress switches.
        assert not await d.switch_mailbox_server(alice.guid, "mbx1", "mbx2")
        await d.set_move_status(alice.guid, MoveStatus.IN_PROGRESS, "Copying.")
        assert await d.switch_mailbox_server(alice.guid, "mbx1", "mbx2")
        assert not await d.switch_mailbox_server(alice.guid, "mbx1", "mbx2")
        moved = await d.get_mailbox("alice")
        assert moved is not None
        assert moved.server == "mbx2"
        switched = await d.get_move_request(alice.guid)
        assert switched is not None
        assert switched.status is MoveStatus.COMPLETION_IN_PROGRESS
        listed = await d.list_move_requests(target="mbx2", statuses=[switched.status])
        assert [m.mailbox for m in listed] == ["alice"]
        assert await d.list_move_requests(target="mbx1") == []
        await d.remove_move_request(alice.guid)
        assert await d.get_move_request(alice.guid) is None

    run(body)


def test_move_requests_are_refused_where_they_make_no_sense(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await organization(d)
        await d.add_mailbox("alice", server="mbx1")
        with pytest.raises(InvalidSetting, match="already on mbx1"):
            await d.add_move_request("alice", "mbx1", "Administrator")
        with pytest.raises(InvalidSetting, match="no Mailbox role"):
            await d.add_move_request("alice", "cas1", "Administrator")
        with pytest.raises(NotFound):
            await d.add_move_request("nobody", "mbx2", "Administrator")
        with pytest.raises(NotFound):
            await d.add_move_request("alice", "mbx9", "Administrator")

    run(body)


def test_removing_a_mailbox_removes_its_move_request(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await organization(d)
        alice = await d.add_mailbox("alice", server="mbx1")
        await d.add_move_request("alice", "mbx2", "Administrator")
        await d.remove_mailbox("alice")
        assert await d.get_move_request(alice.guid) is None

    run(body)


def test_hosts_register_their_control_api_and_certificate(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await organization(d)
        await d.set_server_endpoint(
            "MBX1", control_url="https://mbx1.contoso.com:8443/", certificate_pem="PEM"
        )
        server = await d.get_server("mbx1")
        assert server is not None
        assert (server.control_url, server.certificate_pem) == (
            "https://mbx1.contoso.com:8443/", "PEM",
        )  # fmt: skip
        with pytest.raises(NotFound):
            await d.set_server_endpoint("nowhere", control_url=None, certificate_pem="PEM")

    run(body)


def test_each_setting_takes_effect_on_the_role_that_owns_it() -> None:
    names = [
        "maxcommandsize",
        "ProxyTargetPort",
        "LoginType",
        "Banner",
        "-MessageRetrievalSortOrder",
    ]
    assert settings_without_effect(names, {Role.MAILBOX}) == ["MaxCommandSize", "Banner"]
    assert settings_without_effect(names, {Role.CLIENT_ACCESS}) == [
        "ProxyTargetPort", "MessageRetrievalSortOrder",
    ]  # fmt: skip
    assert settings_without_effect(names, set(Role)) == []
