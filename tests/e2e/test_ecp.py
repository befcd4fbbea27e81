"""The admin center in Debian's chromium: the seed's GUI procedure, permissions, CSRF."""

from __future__ import annotations

import poplib

import httpx
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import Installation, insecure_client_context, screenshot, sign_in
from tests.e2e.test_backend import MESSAGES, PASSWORD
from tests.e2e.test_control import directory_call, newest_audit_of


def administrator_password(installation: Installation) -> str:
    """The Administrator password setup generated."""
    return installation.layout.administrator_password_file.read_text().strip()


def row(page: Page, display_name: str) -> Locator:
    """The Services row of a service, by its display name."""
    return page.get_by_role("row").filter(
        has=page.get_by_role("cell", name=display_name, exact=True)
    )


def test_the_seeds_gui_procedure(page: Page, installation: Installation) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES, installation.home / "eml")
    installation.start_host()
    sign_in(page, installation, "Administrator", administrator_password(installation))
    expect(page).to_have_title("Services - popgate admin center")
    pop3 = row(page, "Microsoft Exchange POP3")
    backend = row(page, "Microsoft Exchange POP3 Backend")
    expect(pop3.get_by_role("cell", name="Stopped")).to_be_visible()
    expect(pop3.get_by_role("cell", name="Manual")).to_be_visible()
    # Mail delivery is listed like the POP3 services, and runs already: it is Automatic.
    delivery = row(page, "Microsoft Exchange Mailbox Transport Delivery")
    expect(delivery.get_by_role("cell", name="Running")).to_be_visible()
    expect(delivery.get_by_role("cell", name="Automatic")).to_be_visible()
    screenshot(page, "services-stopped")

    # Right-click Microsoft Exchange POP3, and then click Start.
    pop3.get_by_role("cell", name="Microsoft Exchange POP3", exact=True).click(button="right")
    menu = page.get_by_role("menu", name="Service")
    expect(menu).to_be_visible()
    screenshot(page, "services-context-menu")
    menu.get_by_role("menuitem", name="Start", exact=True).click()
    expect(pop3.get_by_role("cell", name="Running")).to_be_visible()
    # The same for the Backend.
    backend.get_by_role("cell", name="Microsoft Exchange POP3 Backend").click(button="right")
    menu.get_by_role("menuitem", name="Start", exact=True).click()
    expect(backend.get_by_role("cell", name="Running")).to_be_visible()
    screenshot(page, "services-running")

    client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=30)
    client.stls(insecure_client_context())
    client.user("alice")
    client.pass_(PASSWORD)
    assert client.stat()[0] == len(MESSAGES)
    client.quit()

    # Stop both from the toolbar.
    for service in (pop3, backend):
        service.get_by_role("cell").first.click()
        page.get_by_role("toolbar").get_by_role("button", name="Stop", exact=True).click()
        expect(service.get_by_role("cell", name="Stopped")).to_be_visible()
    screenshot(page, "services-stopped-again")
    assert newest_audit_of(installation, "Stop-Service", "Administrator")["result"] == "Success"


def test_view_only_sees_but_cannot_start(page: Page, installation: Installation) -> None:
    installation.add_mailbox("viewer", PASSWORD)
    directory_call(
        installation, "add_role_group_member", "View-Only Organization Management", "viewer"
    )
    installation.start_host()
    sign_in(page, installation, "viewer", PASSWORD)
    expect(page.get_by_text("your role groups do not allow starting or stopping")).to_be_visible()
    pop3 = row(page, "Microsoft Exchange POP3")
    pop3.get_by_role("cell").first.click()
    expect(
        page.get_by_role("toolbar").get_by_role("button", name="Start", exact=True)
    ).to_be_disabled()
    pop3.get_by_role("cell").first.click(button="right")
    start = page.get_by_role("menu", name="Service").get_by_role(
        "menuitem", name="Start", exact=True
    )
    expect(start).to_have_attribute("aria-disabled", "true")
    screenshot(page, "services-view-only")
    # The API refuses it too, even when the page is bypassed with the session's own token.
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    answer = page.request.post(
        f"https://127.0.0.1:{installation.https_port}/api/v1/services/MSExchangePOP3/start",
        headers={"X-CSRF-Token": token or ""},
    )
    assert answer.status == 403
    assert newest_audit_of(installation, "Start-Service", "viewer")["result"] == "Denied"


def test_the_keyboard_alone_starts_a_service(page: Page, installation: Installation) -> None:
    installation.start_host()
    sign_in(page, installation, "Administrator", administrator_password(installation))
    page.keyboard.press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    screenshot(page, "help-overlay")
    page.keyboard.press("Escape")
    first = page.get_by_role("row").nth(1)  # the header row is row 0
    first.focus()
    page.keyboard.press("ArrowDown")  # MSExchangePOP3BE (the hosts lists the front end first)
    page.keyboard.press("Shift+F10")
    menu = page.get_by_role("menu", name="Service")
    expect(menu).to_be_visible()
    expect(menu.get_by_role("menuitem", name="Start", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    backend = row(page, "Microsoft Exchange POP3 Backend")
    expect(backend.get_by_role("cell", name="Running")).to_be_visible()
    backend.focus()
    page.keyboard.press("t")  # Stop
    expect(backend.get_by_role("cell", name="Stopped")).to_be_visible()


def test_changes_without_the_csrf_token_are_refused_and_logout_ends_the_session(
    page: Page, installation: Installation
) -> None:
    installation.start_host()
    sign_in(page, installation, "Administrator", administrator_password(installation))
    base = f"https://127.0.0.1:{installation.https_port}"
    # The session cookie alone does not make a change: another site could send that.
    refused = page.request.post(f"{base}/api/v1/services/MSExchangePOP3BE/start")
    assert refused.status == 403
    assert "CSRF" in refused.json()["error"]["message"]
    forged = page.request.post(
        f"{base}/api/v1/services/MSExchangePOP3BE/start", headers={"X-CSRF-Token": "forged"}
    )
    assert forged.status == 403
    assert page.request.get(f"{base}/api/v1/services").status == 200  # reading needs no token
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    assert page.request.get(f"{base}/api/v1/services").status == 401
    page.goto(f"{base}/ecp/services")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "signed-out")


def test_sign_in_refuses_a_wrong_password_and_a_forged_form(installation: Installation) -> None:
    installation.start_host()
    base = f"https://127.0.0.1:{installation.https_port}"
    with httpx.Client(verify=insecure_client_context(), timeout=30) as web:
        form = web.get(f"{base}/ecp/login")
        assert form.status_code == 200
        assert form.headers["x-frame-options"] == "DENY"
        forged = web.post(
            f"{base}/ecp/login",
            data={"username": "Administrator", "password": "x", "csrf": "forged"},
        )
        assert forged.status_code == 403
        token = web.cookies["popgate_login"]
        wrong = web.post(
            f"{base}/ecp/login",
            data={"username": "Administrator", "password": "wrong", "csrf": token},
        )
        assert wrong.status_code == 401
        assert "The user name or password is incorrect." in wrong.text
