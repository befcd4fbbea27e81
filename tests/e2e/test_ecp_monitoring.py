"""The admin center's Monitoring page in Debian's chromium: the live charts of the services'
counters, the audit log, its filters, the host log, and who may read them."""

from __future__ import annotations

import poplib
import re

import httpx
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import Installation, insecure_client_context, screenshot, sign_in
from tests.e2e.test_backend import MESSAGES, PASSWORD, refusal
from tests.e2e.test_control import directory_call, newest_audit_of
from tests.e2e.test_ecp import administrator_password
from tests.e2e.test_protocol_log import disconnected, logins, rows_of, wait_for_rows


def audit_rows(page: Page) -> Locator:
    """The body rows of the audit table."""
    return page.get_by_role("table", name="Audit log entries, newest first").locator("tbody tr")


def audit_row(page: Page, cmdlet: str, user: str) -> Locator:
    """The audit rows of ``cmdlet`` by ``user``."""
    return (
        audit_rows(page)
        .filter(has=page.get_by_role("cell", name=cmdlet, exact=True))
        .filter(has=page.get_by_role("cell", name=user, exact=True))
    )


def open_monitoring(page: Page, installation: Installation) -> None:
    page.goto(f"https://127.0.0.1:{installation.https_port}/ecp/monitoring")
    expect(page).to_have_title("Monitoring - popgate admin center")


def test_the_audit_log_shows_controls_and_filters_them(
    page: Page, installation: Installation
) -> None:
    installation.start_host()
    # A start through the Unix socket, by this OS user (root) ...
    assert installation.net("start", "MSExchangePOP3BE").returncode == 0
    newest_audit_of(installation, "Start-Service", "root")
    # ... and a change over HTTPS by the Administrator.
    password = administrator_password(installation)
    base = f"https://127.0.0.1:{installation.https_port}"
    with httpx.Client(verify=insecure_client_context(), auth=("Administrator", password)) as web:
        changed = web.put(
            f"{base}/api/v1/services/MSExchangePOP3/startup-type", json={"startup_type": "Manual"}
        )
        assert changed.status_code == 200

    sign_in(page, installation, "Administrator", password)
    open_monitoring(page, installation)
    start = audit_row(page, "Start-Service", "root")
    expect(start).to_have_count(1)
    expect(start.get_by_role("cell", name="MSExchangePOP3BE", exact=True)).to_be_visible()
    expect(start.get_by_role("cell", name="Success", exact=True)).to_be_visible()
    # Newest first: the Administrator's Set-Service came after the start.
    expect(audit_rows(page).first.get_by_role("cell", name="Set-Service")).to_be_visible()
    expect(page.get_by_label("Host log, newest line last")).to_contain_text("service host for")
    screenshot(page, "monitoring")

    # Filter by cmdlet: only the starts.
    page.get_by_label("Cmdlet").fill("start-service")
    page.get_by_role("button", name="Search").click()
    expect(audit_rows(page)).to_have_count(1)
    expect(audit_row(page, "Start-Service", "root")).to_have_count(1)
    screenshot(page, "monitoring-filtered-by-cmdlet")

    # By user: the Administrator made no start, then their Set-Service alone.
    page.get_by_label("User").fill("Administrator")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("No audit entries match the filter.")).to_be_visible()
    page.get_by_label("Cmdlet").fill("")
    page.get_by_role("button", name="Search").click()
    expect(audit_rows(page)).to_have_count(1)
    expect(audit_row(page, "Set-Service", "Administrator")).to_have_count(1)
    screenshot(page, "monitoring-filtered-by-user")

    # A time range after every entry matches none; Clear shows them all again.
    page.get_by_label("From").fill("2099-01-01T00:00:00")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("No audit entries match the filter.")).to_be_visible()
    page.get_by_role("button", name="Clear").click()
    expect(audit_row(page, "Start-Service", "root")).to_have_count(1)

    # The page reads the log again on its own: a stop made elsewhere appears.
    assert installation.net("stop", "MSExchangePOP3BE", "/y").returncode == 0
    expect(audit_row(page, "Stop-Service", "root")).to_have_count(1, timeout=25_000)


def test_view_only_reads_the_audit_log_and_recipient_management_is_refused(
    page: Page, installation: Installation
) -> None:
    installation.add_mailbox("viewer", PASSWORD)
    installation.add_mailbox("recipients", PASSWORD)
    directory_call(
        installation, "add_role_group_member", "View-Only Organization Management", "viewer"
    )
    directory_call(installation, "add_role_group_member", "Recipient Management", "recipients")
    installation.start_host()
    base = f"https://127.0.0.1:{installation.https_port}"
    # Recipient Management may not start services: the refusal is audited as Denied.
    with httpx.Client(verify=insecure_client_context(), auth=("recipients", PASSWORD)) as web:
        assert web.post(f"{base}/api/v1/services/MSExchangePOP3/start").status_code == 403

    sign_in(page, installation, "recipients", PASSWORD)
    open_monitoring(page, installation)
    expect(page.locator("#no-access")).to_contain_text("do not allow reading the audit log")
    expect(page.locator("#audit-status")).to_have_text(
        "You can't read the audit log: Access is denied."
    )
    expect(page.locator("#log-status")).to_have_text(
        "You can't read the host log: Access is denied."
    )
    expect(page.locator("#protocol-status")).to_have_text(
        "You can't read the protocol log: Access is denied."
    )
    expect(audit_rows(page)).to_have_count(0)
    expect(page.locator("#charts-status")).to_have_text(
        "You can't read the counters: Access is denied."
    )
    screenshot(page, "monitoring-recipient-management")
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, installation, "viewer", PASSWORD)
    open_monitoring(page, installation)
    expect(page.locator("#no-access")).to_have_count(0)
    denied = audit_row(page, "Start-Service", "recipients")
    expect(denied.get_by_role("cell", name="Denied", exact=True)).to_be_visible()
    page.get_by_label("Result").select_option("Success")
    expect(denied).to_have_count(0)
    page.get_by_label("Result").select_option("Denied")
    expect(audit_rows(page)).to_have_count(1)
    expect(denied).to_have_count(1)
    screenshot(page, "monitoring-view-only")


def counter_cell(page: Page, service: str, field: str) -> Locator:
    """One number of the counters table."""
    return page.locator(f'#counters tr[data-service="{service}"] td[data-field="{field}"]')


def test_the_live_charts_follow_real_sessions(page: Page, installation: Installation) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES, installation.home / "eml")
    installation.start_host()
    for name in ("MSExchangePOP3BE", "MSExchangePOP3"):
        assert installation.net("start", name).returncode == 0
    sign_in(page, installation, "Administrator", administrator_password(installation))
    open_monitoring(page, installation)
    live = page.locator("#live")
    expect(live).to_have_attribute("data-readings", re.compile(r"^[1-9]"))
    expect(page.locator("#chart-legend li")).to_have_text(
        ["MSExchangePOP3", "MSExchangePOP3BE", "MSExchangeDelivery"]
    )
    for chart in ("Current sessions", "Logins per second", "Failed logins per second",
                  "RETR bytes per second", "Errors per second"):  # fmt: skip
        expect(page.get_by_role("img", name=chart, exact=True)).to_be_visible()

    # A wrong password, then a session that reads every message and stays open.
    client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=30)
    client.stls(insecure_client_context())
    client.user("alice")
    assert "[AUTH]" in refusal(lambda: client.pass_("wrong"))
    client.user("alice")
    client.pass_(PASSWORD)
    retrieved = sum(len(b"\r\n".join(client.retr(n)[1])) for n in range(1, len(MESSAGES) + 1))
    assert retrieved > 0

    expect(page.locator("#chart-sessions-now")).to_have_text(
        "MSExchangePOP3: 1 open · MSExchangePOP3BE: 1 open · MSExchangeDelivery: 0 open",
        timeout=15_000,
    )
    expect(counter_cell(page, "MSExchangePOP3", "logins")).to_have_text("1")
    expect(counter_cell(page, "MSExchangePOP3", "failed_logins")).to_have_text("1")
    expect(counter_cell(page, "MSExchangePOP3BE", "sessions_current")).to_have_text("1")
    # A rate needs a reading before and after: the peaks are above zero once both exist.
    not_zero = re.compile(r"^(?!0$)")
    for chart in ("logins", "failed-logins", "retr-bytes"):
        canvas = page.locator(f"#chart-{chart} canvas")
        expect(canvas).to_have_attribute("data-peak", not_zero, timeout=15_000)
    expect(page.locator("#chart-errors canvas")).to_have_attribute("data-peak", "0")
    screenshot(page, "monitoring-live-charts")

    client.quit()
    expect(page.locator("#chart-sessions-now")).to_have_text(
        "MSExchangePOP3: 0 open · MSExchangePOP3BE: 0 open · MSExchangeDelivery: 0 open",
        timeout=15_000,
    )
    expect(counter_cell(page, "MSExchangePOP3BE", "sessions")).to_have_text("1")

    # Pause stops the readings until Resume.
    pause = page.get_by_role("button", name="Pause")
    pause.click()
    expect(page.get_by_role("button", name="Resume")).to_have_attribute("aria-pressed", "true")
    paused_at = live.get_attribute("data-readings")
    page.wait_for_timeout(4_500)
    expect(live).to_have_attribute("data-readings", paused_at or "")
    page.get_by_role("button", name="Resume").click()
    expect(live).not_to_have_attribute("data-readings", paused_at or "")


def protocol_rows(page: Page) -> Locator:
    """The body rows of the protocol log table."""
    return page.get_by_role("table", name="Protocol log rows, newest last").locator("tbody tr")


def show_protocol_log(page: Page) -> None:
    """Read the protocol log with the filter as it is."""
    page.get_by_role("button", name="Show", exact=True).click()


def test_the_protocol_log_viewer_follows_one_session(
    page: Page, installation: Installation
) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.add_mailbox("bob", PASSWORD)
    installation.import_messages("alice", MESSAGES, installation.home / "eml")
    installation.start_host()
    sign_in(page, installation, "Administrator", administrator_password(installation))
    open_monitoring(page, installation)
    expect(page.locator("#protocol-status")).to_have_text(
        "Protocol logging is off: Set-PopSettings -ProtocolLogEnabled $true, then restart the "
        "POP3 services."
    )
    expect(protocol_rows(page)).to_have_count(0)

    installation.set("ProtocolLogEnabled", "$true")
    for name in ("MSExchangePOP3BE", "MSExchangePOP3"):
        assert installation.net("start", name).returncode == 0
    for user in ("alice", "bob"):
        client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=30)
        client.stls(insecure_client_context())
        client.user(user)
        client.pass_(PASSWORD)
        client.stat()
        if user == "alice":
            client.retr(1)
        client.quit()
    folder = installation.layout.log_dir / "pop3"
    alice, bob = logins(wait_for_rows(folder, "POP3", lambda rows: len(logins(rows)) >= 2))
    wait_for_rows(folder, "POP3BE", disconnected(bob))

    show_protocol_log(page)
    expect(protocol_rows(page).filter(has_text="Msg=disconnect;R=proxied")).to_have_count(2)
    expect(page.locator("#protocol-status")).to_contain_text("newest last")
    screenshot(page, "monitoring-protocol-log")

    # One session: the front end's rows up to the login ...
    page.get_by_label("Session ID", exact=True).fill(alice)
    show_protocol_log(page)
    front = [r for r in rows_of(folder, "POP3") if r["sessionId"] == alice]
    expect(protocol_rows(page)).to_have_count(len(front))
    expect(protocol_rows(page).locator("td:nth-child(6)")).to_have_text(
        [r["command"] for r in front]
    )
    expect(page.locator(f'#protocol-log tbody tr:not([data-session="{alice}"])')).to_have_count(0)
    # ... and the backend's, from XCLIENT to QUIT, under the same id.
    page.get_by_label("Service", exact=True).select_option("MSExchangePOP3BE")
    expect(protocol_rows(page).locator("td:nth-child(6)")).to_have_text(
        ["", "xclient", "auth", "stat", "retr", "quit", ""]
    )
    expect(protocol_rows(page).filter(has_text="PLAIN *****")).to_have_count(1)
    expect(page.get_by_text(PASSWORD)).to_have_count(0)
    screenshot(page, "monitoring-protocol-log-one-session")

    # By mailbox: bob's backend session alone; a session id button narrows to it again.
    page.get_by_role("button", name="Reset", exact=True).click()
    page.get_by_label("Service", exact=True).select_option("MSExchangePOP3BE")
    page.get_by_label("Mailbox", exact=True).fill("BOB")
    show_protocol_log(page)
    expect(protocol_rows(page)).to_have_count(6)
    expect(page.locator(f'#protocol-log tbody tr:not([data-session="{bob}"])')).to_have_count(0)
    page.get_by_label("Mailbox", exact=True).fill("")
    page.get_by_role("button", name=f"Only session {bob}").first.click()
    expect(page.get_by_label("Session ID", exact=True)).to_have_value(bob)
    expect(protocol_rows(page)).to_have_count(6)
