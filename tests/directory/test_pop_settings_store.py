"""POP3 settings in the directory: configured copy, effective copy, per server."""

from __future__ import annotations

from datetime import timedelta

import pytest

from popgate.directory import Directory, InvalidSetting, LoginType, NotFound, PopSettings, Role

from .conftest import Runner


async def _server(d: Directory, name: str = "mbx01") -> None:
    await d.add_server(name, fqdn=f"{name}.contoso.com", roles=[Role.MAILBOX, Role.CLIENT_ACCESS])


def test_defaults_when_never_set(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await _server(d)
        assert await d.get_pop_settings("mbx01") == PopSettings()
        assert await d.get_pop_settings("MBX01", effective=True) == PopSettings()

    run(body)


def test_unknown_server(run: Runner) -> None:
    async def body(d: Directory) -> None:
        with pytest.raises(NotFound, match="no server 'ghost'"):
            await d.get_pop_settings("ghost")
        with pytest.raises(NotFound):
            await d.set_pop_settings("ghost", max_command_size=100)
        with pytest.raises(NotFound):
            await d.apply_pop_settings("ghost")

    run(body)


def test_set_writes_configured_only_and_apply_copies_it(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await _server(d)
        configured = await d.set_pop_settings(
            "mbx01", max_command_size=100, LoginType="PlainTextLogin"
        )
        assert configured.max_command_size == 100
        assert configured.login_type is LoginType.PLAIN_TEXT_LOGIN
        assert await d.get_pop_settings("mbx01") == configured
        # Exchange reads settings at service start: the running copy is unchanged.
        assert await d.get_pop_settings("mbx01", effective=True) == PopSettings()
        effective = await d.apply_pop_settings("mbx01")
        assert effective == configured
        assert await d.get_pop_settings("mbx01", effective=True) == configured
        # Later changes accumulate on the configured copy; effective waits for a restart.
        second = await d.set_pop_settings(
            "mbx01", authenticated_connection_timeout=timedelta(hours=1)
        )
        assert second.max_command_size == 100
        assert second.authenticated_connection_timeout == timedelta(hours=1)
        assert await d.get_pop_settings("mbx01", effective=True) == configured
        assert await d.set_pop_settings("mbx01") == second  # no changes: unchanged

    run(body)


def test_settings_are_per_server(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await _server(d, "mbx01")
        await _server(d, "cas01")
        await d.set_pop_settings("cas01", banner="Hello from CAS01")
        assert (await d.get_pop_settings("cas01")).banner == "Hello from CAS01"
        assert (await d.get_pop_settings("mbx01")).banner == PopSettings().banner
        # add_server again (setup re-run) keeps what was configured.
        await _server(d, "cas01")
        assert (await d.get_pop_settings("cas01")).banner == "Hello from CAS01"

    run(body)


def test_invalid_changes_leave_stored_settings_alone(run: Runner) -> None:
    async def body(d: Directory) -> None:
        await _server(d)
        await d.set_pop_settings("mbx01", max_command_size=100)
        with pytest.raises(
            InvalidSetting, match=r"MaxCommandSize must be between 40 and 1024; got 20\."
        ):
            await d.set_pop_settings("mbx01", max_command_size=20, banner="changed")
        with pytest.raises(InvalidSetting, match="not a POP3 setting"):
            await d.set_pop_settings("mbx01", max_comand_size=100)
        configured = await d.get_pop_settings("mbx01")
        assert configured.max_command_size == 100
        assert configured.banner == PopSettings().banner

    run(body)
