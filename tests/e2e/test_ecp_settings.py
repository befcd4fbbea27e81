"""The admin center's POP3 settings and Servers pages in Debian's chromium, on a real host."""

from __future__ import annotations

import asyncio
import concurrent.futures
import poplib
import re
from datetime import timedelta

import pytest
from playwright.sync_api import Locator, Page, expect

from popgate.directory import Directory, InvalidSetting, PopSettings, Role, parse_setting
from popgate.host._ecp_settings import FORM, SettingField
from tests.e2e.conftest import Installation, screenshot, sign_in
from tests.e2e.test_backend import PASSWORD
from tests.e2e.test_control import directory_call
from tests.e2e.test_ecp import administrator_password

BANNER = "popgate test server ready"


def base_url(installation: Installation) -> str:
    """The host's HTTPS address."""
    return f"https://127.0.0.1:{installation.https_port}"


def configured(page: Page, installation: Installation) -> dict[str, str]:
    """Get-PopSettings' configured copy, read with the page's own session."""
    answer = page.request.get(f"{base_url(installation)}/api/v1/pop-settings")
    assert answer.status == 200, answer.text()
    values: dict[str, str] = answer.json()["configured"]
    return values


def field(page: Page, name: str) -> Locator:
    """A setting's control, by its label (the Exchange parameter name)."""
    return page.get_by_label(name, exact=True)


def open_pop3_settings(page: Page, installation: Installation) -> None:
    """Open the POP3 settings page and wait until the form holds the settings."""
    page.get_by_role("navigation", name="Features").get_by_role(
        "link", name="POP3 settings"
    ).click()
    expect(page).to_have_title("POP3 settings - popgate admin center")
    expect(page.locator("#pop3-form")).to_have_attribute("aria-busy", "false")


def add_server(installation: Installation, name: str, fqdn: str, **settings: object) -> None:
    """Register another computer of the organization in the installation's directory, with
    ``settings`` configured (not yet in effect: that computer's services never started)."""

    async def call() -> None:
        directory = await Directory.connect(installation.layout.directory_url)
        try:
            await directory.add_server(name, fqdn=fqdn, roles=[Role.MAILBOX])
            if settings:
                await directory.set_pop_settings(name, **settings)
        finally:
            await directory.close()

    # In a thread of its own: a test driving Playwright already has an event loop running.
    with concurrent.futures.ThreadPoolExecutor(1) as worker:
        worker.submit(lambda: asyncio.run(call())).result()


# --- the form's description against the directory's parser ----------------------------------


def test_the_form_has_every_parameter_once() -> None:
    names = [item.exchange for group in FORM for item in group.fields]
    assert sorted(names) == sorted(PopSettings.EXCHANGE_NAMES.values())


@pytest.mark.parametrize(
    "item",
    [item for group in FORM for item in group.fields if item.low is not None],
    ids=lambda item: item.exchange,
)
def test_the_ranges_shown_are_the_directorys(item: SettingField) -> None:
    assert item.low is not None
    assert item.high is not None
    parse_setting(item.exchange, str(item.low))
    parse_setting(item.exchange, str(item.high))
    for outside in (item.low - 1, item.high + 1):
        if outside >= 0:
            with pytest.raises(InvalidSetting, match=item.exchange):
                parse_setting(item.exchange, str(outside))


def test_every_option_of_a_select_is_valid() -> None:
    for group in FORM:
        for item in group.fields:
            for value, label in item.options:
                assert value in label
                parse_setting(item.exchange, value)
    timeout = next(
        i for g in FORM for i in g.fields if i.exchange == "PreAuthenticatedConnectionTimeout"
    )
    assert parse_setting(timeout.exchange, "00:01:00") == timedelta(minutes=1)
    assert "Valid: 00:00:30 to 01:00:00" in timeout.help
    assert "Default: 00:01:00." in timeout.help


# --- the pages ------------------------------------------------------------------------------


def test_refused_then_saved_then_restarted(page: Page, installation: Installation) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.start_host()
    # Running services have read the configured settings: nothing waits for a restart.
    for service in ("MSExchangePOP3BE", "MSExchangePOP3"):
        assert installation.net("start", service).returncode == 0
        installation.wait_for_status(service, "Running")
    sign_in(page, installation, "Administrator", administrator_password(installation))
    open_pop3_settings(page, installation)
    banner = page.get_by_role("region", name="Restart the POP3 services to apply these changes")
    expect(banner).to_be_hidden()
    expect(field(page, "MaxCommandSize")).to_have_value("512")
    expect(field(page, "LoginType")).to_have_value("SecureLogin")
    expect(field(page, "SSLBindings")).to_have_value(f"127.0.0.1:{installation.ssl_port}")
    expect(page.get_by_role("group", name="Connections and timeouts")).to_be_visible()
    screenshot(page, "pop3-settings")

    # An invalid value, with a valid one beside it: the API refuses both, and the page says
    # why next to the field; the browser's own validation stays out of the way (novalidate).
    field(page, "Banner").fill(BANNER)
    size = field(page, "MaxCommandSize")
    size.fill("5")
    page.get_by_role("button", name="Save").click()
    message = "MaxCommandSize must be between 40 and 1024; got 5."
    expect(page.locator("#e-MaxCommandSize")).to_have_text(message)
    expect(size).to_have_attribute("aria-invalid", "true")
    expect(size).to_have_accessible_description(re.compile(re.escape(message)))
    expect(size).to_be_focused()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved")
    screenshot(page, "pop3-settings-refused")
    stored = configured(page, installation)
    assert stored["MaxCommandSize"] == "512"
    assert stored["Banner"] == PopSettings().banner

    # Corrected, and LoginType changed as well: saved, and waiting for a restart.
    size.fill("512")
    expect(size).not_to_have_attribute("aria-invalid", "true")
    field(page, "LoginType").select_option("PlainTextLogin")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text(
        "Saved LoginType, Banner. Restart the POP3 services to apply them."
    )
    stored = configured(page, installation)
    assert stored["Banner"] == BANNER
    assert stored["LoginType"] == "PlainTextLogin"
    assert stored["MaxCommandSize"] == "512"
    expect(banner).to_be_visible()
    pending = banner.get_by_role("listitem")
    expect(pending).to_have_count(2)
    expect(pending.nth(0)).to_have_text("LoginType: SecureLogin \u2192 PlainTextLogin")
    expect(pending.nth(1)).to_have_text(f"Banner: {PopSettings().banner} \u2192 {BANNER}")
    screenshot(page, "pop3-settings-restart-needed")

    banner.get_by_role("button", name="Restart POP3 services").click()
    expect(page.get_by_role("status")).to_have_text(
        "Restarted MSExchangePOP3BE and MSExchangePOP3; the configured settings are in effect.",
        timeout=90_000,
    )
    expect(banner).to_be_hidden()
    screenshot(page, "pop3-settings-restarted")

    # The new greeting, and PlainTextLogin: a login in clear on the plain port.
    client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=30)
    try:
        assert client.getwelcome() == f"+OK {BANNER}".encode()
        client.user("alice")
        client.pass_(PASSWORD)
        assert client.stat() == (0, 0)
    finally:
        client.quit()


def test_view_only_sees_the_settings_but_cannot_change_them(
    page: Page, installation: Installation
) -> None:
    installation.add_mailbox("viewer", PASSWORD)
    directory_call(
        installation, "add_role_group_member", "View-Only Organization Management", "viewer"
    )
    installation.start_host()
    sign_in(page, installation, "viewer", PASSWORD)
    open_pop3_settings(page, installation)
    expect(page.get_by_text("do not allow changing them")).to_be_visible()
    expect(field(page, "Banner")).to_have_value(PopSettings().banner)
    controls = page.locator("#pop3-form [data-kind]")
    assert controls.count() == len(PopSettings.EXCHANGE_NAMES)
    for index in range(controls.count()):
        expect(controls.nth(index)).to_be_disabled()
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    # The fixture's settings were never applied, so a restart is pending; only not by them.
    banner = page.get_by_role("region", name="Restart the POP3 services to apply these changes")
    expect(banner).to_be_visible()
    expect(banner.get_by_role("button")).to_have_count(0)
    expect(banner).to_contain_text("Your role groups do not allow restarting the services.")
    screenshot(page, "pop3-settings-view-only")


def test_servers_lists_roles_and_service_states(page: Page, installation: Installation) -> None:
    add_server(installation, "MBX2", "mbx2.contoso.com", MaxConnectionsPerUser="4")
    installation.start_host()
    assert installation.net("start", "MSExchangePOP3BE").returncode == 0
    installation.wait_for_status("MSExchangePOP3BE", "Running")
    sign_in(page, installation, "Administrator", administrator_password(installation))
    page.get_by_role("navigation", name="Features").get_by_role("link", name="Servers").click()
    expect(page).to_have_title("Servers - popgate admin center")
    name = installation.layout.server_name
    here = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=name))
    expect(here.locator(".roles")).to_have_text("ClientAccess, Mailbox")
    states = here.get_by_role("listitem")
    expect(states.filter(has_text="Microsoft Exchange POP3 Backend")).to_have_text(
        "Microsoft Exchange POP3 Backend: Running"
    )
    expect(states.filter(has_text="Microsoft Exchange POP3:")).to_have_text(
        "Microsoft Exchange POP3: Stopped"
    )
    expect(here.get_by_role("link", name="Services")).to_have_attribute("href", "/ecp/services")
    other = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="mbx2"))
    expect(other.locator(".roles")).to_have_text("Mailbox")
    # mbx2's host never registered a control API (it has never run): nothing to manage it by.
    expect(other).to_contain_text("No control API other computers can reach")
    expect(other.get_by_role("link", name="Services on mbx2")).to_have_count(0)
    screenshot(page, "servers")

    # A state change shows up without reloading the page.
    assert installation.net("stop", "MSExchangePOP3BE").returncode == 0
    expect(states.filter(has_text="Microsoft Exchange POP3 Backend")).to_have_text(
        "Microsoft Exchange POP3 Backend: Stopped"
    )
    # The other server's POP3 settings open from its row.
    other.get_by_role("link", name="POP3 settings").click()
    expect(page.get_by_role("heading", name="POP3 settings on mbx2")).to_be_visible()
    expect(page.locator("#pop3-form")).to_have_attribute("aria-busy", "false")
    expect(page.get_by_label("Server", exact=True)).to_have_value("mbx2")
    expect(field(page, "MaxConnectionsPerUser")).to_have_value("4")
    # Its services restart on its own host, which this one cannot reach: no restart button
    # here, and no link either until mbx2's host registers its control API.
    banner = page.get_by_role("region", name="Restart the POP3 services to apply these changes")
    expect(banner.get_by_role("listitem")).to_have_text(["MaxConnectionsPerUser: 16 \u2192 4"])
    expect(banner.get_by_role("button")).to_have_count(0)
    expect(banner.get_by_role("link", name="Services on mbx2")).to_have_count(0)
    screenshot(page, "pop3-settings-other-server")
