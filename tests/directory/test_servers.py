"""Servers, proxy secrets and role groups."""

from __future__ import annotations

import secrets

import pytest

from popgate.directory import Directory, InvalidName, InvalidSetting, NotFound, Role, RoleGroup

from .conftest import Runner


def test_add_server_and_upsert(run: Runner) -> None:
    async def body(d: Directory) -> None:
        added = await d.add_server("CAS01", fqdn="CAS01.contoso.com", roles={Role.CLIENT_ACCESS})
        assert added.name == "cas01"
        assert added.fqdn == "cas01.contoso.com"
        assert added.roles == frozenset({Role.CLIENT_ACCESS})
        assert added.proxy_host == "cas01.contoso.com"
        assert await d.get_server("Cas01") == added
        # Setup runs again with more roles and a new FQDN: updated, not duplicated.
        again = await d.add_server(
            "cas01", fqdn="cas01.fabrikam.com", roles=[Role.MAILBOX, Role.CLIENT_ACCESS]
        )
        assert again.roles == frozenset(Role)
        assert again.proxy_host == "cas01.fabrikam.com"
        assert await d.list_servers() == [again]
        # An explicit proxy host survives later upserts that do not mention it.
        pinned = await d.add_server(
            "cas01", fqdn="cas01.fabrikam.com", roles=[Role.MAILBOX], proxy_host="10.0.0.5"
        )
        assert pinned.proxy_host == "10.0.0.5"
        kept = await d.add_server("cas01", fqdn="cas01.contoso.com", roles=[Role.MAILBOX])
        assert kept.proxy_host == "10.0.0.5"
        assert await d.get_server("cas01") == kept

    run(body)


def test_list_servers_sorted_and_unknown_server(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await d.add_server("mbx02", fqdn="mbx02.contoso.com", roles=["Mailbox"])  # type: ignore[list-item]
        await d.add_server("mbx01", fqdn="mbx01.contoso.com", roles=[Role.MAILBOX])
        assert [s.name for s in await d.list_servers()] == ["mbx01", "mbx02"]
        assert await d.get_server("nope") is None

    run(body)


def test_add_server_validation(run: Runner) -> None:
    async def body(d: Directory) -> None:
        with pytest.raises(InvalidName, match="server name"):
            await d.add_server("bad name", fqdn="x.contoso.com", roles=[Role.MAILBOX])
        with pytest.raises(InvalidName, match="domain"):
            await d.add_server("mbx01", fqdn="not valid", roles=[Role.MAILBOX])
        with pytest.raises(InvalidSetting, match="at least one role"):
            await d.add_server("mbx01", fqdn="mbx01.contoso.com", roles=[])
        with pytest.raises(ValueError, match="Frontend"):
            await d.add_server("mbx01", fqdn="mbx01.contoso.com", roles=["Frontend"])  # type: ignore[list-item]
        with pytest.raises(InvalidName, match="host"):
            await d.add_server(
                "mbx01", fqdn="mbx01.contoso.com", roles=[Role.MAILBOX], proxy_host="a b"
            )
        assert await d.list_servers() == []

    run(body)


def test_proxy_secret(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await d.add_server("mbx01", fqdn="mbx01.contoso.com", roles=[Role.MAILBOX])
        secret = secrets.token_urlsafe(32)
        assert await d.verify_proxy_secret("mbx01", secret) is False  # none set yet
        await d.set_proxy_secret("MBX01", secret)
        assert await d.verify_proxy_secret("mbx01", secret) is True
        assert await d.verify_proxy_secret("mbx01", secret + "x") is False
        assert await d.verify_proxy_secret("mbx01", "") is False
        assert await d.verify_proxy_secret("other", secret) is False
        with pytest.raises(InvalidSetting, match="at least 32"):
            await d.set_proxy_secret("mbx01", "short")
        with pytest.raises(NotFound):
            await d.set_proxy_secret("other", secret)
        # Only a digest is stored.
        server = await d.get_server("mbx01")
        assert server is not None
        assert secret not in repr(server)

    run(body)


def test_role_groups(run: Runner) -> None:
    async def body(d: Directory) -> None:
        org = RoleGroup.ORGANIZATION_MANAGEMENT
        view = RoleGroup.VIEW_ONLY_ORGANIZATION_MANAGEMENT
        await d.add_role_group_member(org, "root")
        await d.add_role_group_member(org, "root")  # idempotent
        await d.add_role_group_member(org, "administrator")
        await d.add_role_group_member(view, "auditor")
        await d.add_role_group_member(RoleGroup.SERVER_MANAGEMENT, "root")
        assert await d.role_group_members(org) == ["administrator", "root"]
        assert await d.role_group_members(RoleGroup.RECIPIENT_MANAGEMENT) == []
        assert await d.role_groups_of("root") == {org, RoleGroup.SERVER_MANAGEMENT}
        # Members are compared exactly as written: system user names are case-sensitive.
        assert await d.role_groups_of("Root") == set()
        await d.remove_role_group_member(org, "root")
        await d.remove_role_group_member(org, "root")  # nothing to remove: no error
        assert await d.role_groups_of("root") == {RoleGroup.SERVER_MANAGEMENT}
        with pytest.raises(InvalidName, match="role-group member"):
            await d.add_role_group_member(org, "two words")
        with pytest.raises(ValueError, match="Domain Admins"):
            await d.add_role_group_member("Domain Admins", "x")  # type: ignore[arg-type]

    run(body)


def test_role_group_values_are_exchange_names() -> None:
    assert {group.value for group in RoleGroup} == {
        "Organization Management",
        "Server Management",
        "View-Only Organization Management",
        "Recipient Management",
    }
