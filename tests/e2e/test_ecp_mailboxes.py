"""The admin center's Mailboxes page in Debian's chromium, against a real host and backend."""

from __future__ import annotations

import poplib
from pathlib import Path

from playwright.sync_api import FilePayload, Locator, Page, expect

from tests.e2e.conftest import Installation, screenshot, sign_in
from tests.e2e.test_admin_api import client_of, write_mbox
from tests.e2e.test_backend import MESSAGES, PASSWORD, pop3_ssl, refusal
from tests.e2e.test_control import directory_call, newest_audit_of
from tests.e2e.test_ecp import administrator_password

NEW_PASSWORD = "a fresh password from the page"


def open_mailboxes(page: Page, installation: Installation, user: str, password: str) -> None:
    """Sign in and open the Mailboxes page from the navigation."""
    sign_in(page, installation, user, password)
    page.get_by_role("navigation", name="Features").get_by_role("link", name="Mailboxes").click()
    expect(page).to_have_title("Mailboxes - popgate admin center")


def mailbox_row(page: Page, name: str) -> Locator:
    """The row of a mailbox in the list, by its name."""
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=name, exact=True))


def pop3_login(installation: Installation, password: str) -> poplib.POP3_SSL:
    """alice logged in to the backend with USER/PASS."""
    client = pop3_ssl(installation)
    client.user("alice")
    client.pass_(password)
    return client


def restart_backend(installation: Installation) -> None:
    """Stop and start MSExchangePOP3BE, as Exchange asks after a PopEnabled change."""
    assert installation.net("stop", "MSExchangePOP3BE").returncode == 0
    assert installation.net("start", "MSExchangePOP3BE").returncode == 0
    installation.wait_for_status("MSExchangePOP3BE", "Running")


def test_mailboxes_page_creates_searches_changes_imports_and_removes(
    page: Page, installation: Installation, tmp_path: Path
) -> None:
    installation.add_mailbox("bob", PASSWORD)
    installation.start_host()
    assert installation.net("start", "MSExchangePOP3BE").returncode == 0
    open_mailboxes(page, installation, "Administrator", administrator_password(installation))
    expect(mailbox_row(page, "bob")).to_be_visible()
    expect(page.get_by_text("2 mailboxes")).to_be_visible()

    # Create: the dialog takes the focus, and gives it back to the button that opened it.
    new = page.get_by_role("toolbar").get_by_role("button", name="New mailbox")
    new.click()
    dialog = page.get_by_role("dialog", name="New mailbox")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Name")).to_be_focused()
    dialog.get_by_label("Name").fill("alice")
    dialog.get_by_label("Password").fill(PASSWORD)
    dialog.get_by_label("Email address (optional)").fill("alice@contoso.com")
    screenshot(page, "mailboxes-new")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(new).to_be_focused()
    alice = mailbox_row(page, "alice")
    expect(alice.get_by_role("cell", name="alice@contoso.com")).to_be_visible()
    expect(alice.get_by_role("cell", name=installation.layout.server_name)).to_be_visible()
    expect(alice.get_by_text("Enabled", exact=True)).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("Created mailbox alice <alice@contoso.com>.")
    screenshot(page, "mailboxes")

    # Search: plain text matches anywhere in a name or address; * and ? are patterns.
    search = page.get_by_role("searchbox", name="Search")
    for text, shown, hidden in [
        ("LIC", "alice", "bob"),
        ("al*@*", "alice", "Administrator"),
        ("?ob", "bob", "alice"),
    ]:
        search.fill(text)
        expect(mailbox_row(page, hidden)).to_have_count(0)
        expect(mailbox_row(page, shown)).to_be_visible()
    search.fill("")
    expect(page.get_by_text("3 mailboxes")).to_be_visible()

    # POP3 off: the backend refuses alice's login; on again: it lets her in.
    alice.get_by_role("button", name="Disable POP3 for alice").click()
    expect(alice.get_by_text("Disabled", exact=True)).to_be_visible()
    expect(alice.get_by_role("button", name="Enable POP3 for alice")).to_be_focused()
    restart_backend(installation)
    client = pop3_ssl(installation)
    client.user("alice")
    assert "POP3 access is disabled for this mailbox" in refusal(lambda: client.pass_(PASSWORD))
    client.quit()
    alice.get_by_role("button", name="Enable POP3 for alice").click()
    expect(alice.get_by_text("Enabled", exact=True)).to_be_visible()
    restart_backend(installation)
    pop3_login(installation, PASSWORD).quit()

    # Reset the password: the two fields must agree; then only the new one logs in.
    alice.get_by_role("button", name="Reset password of alice").click()
    dialog = page.get_by_role("dialog", name="Reset password")
    expect(dialog.get_by_text("For alice <alice@contoso.com>")).to_be_visible()
    dialog.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    dialog.get_by_label("Confirm the new password").fill("something else")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.get_by_role("alert")).to_have_text(
        "The two passwords differ; type the same password twice."
    )
    dialog.get_by_label("Confirm the new password").fill(NEW_PASSWORD)
    screenshot(page, "mailboxes-password")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("status")).to_have_text("The password of alice has been reset.")
    pop3_login(installation, NEW_PASSWORD).quit()
    client = pop3_ssl(installation)
    client.user("alice")
    assert "Logon failure" in refusal(lambda: client.pass_(PASSWORD))
    client.quit()

    # POP3 settings: the mailbox's own settings apply only without the server's.
    alice.get_by_role("button", name="POP3 settings of alice").click()
    dialog = page.get_by_role("dialog", name="POP3 settings")
    use_server = dialog.get_by_label("Use the server's settings")
    expect(use_server).to_be_checked()
    expect(dialog.get_by_label("Message format (PopMessagesRetrievalMimeFormat)")).to_be_disabled()
    use_server.uncheck()
    dialog.get_by_label("Message format (PopMessagesRetrievalMimeFormat)").select_option(
        label="Text only"
    )
    dialog.get_by_label("Suppress read receipts (PopSuppressReadReceipt)").check()
    screenshot(page, "mailboxes-settings")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    with client_of(installation) as root:
        cas = root.cas_mailbox("alice")
    assert cas["PopUseProtocolDefaults"] is False
    assert cas["PopMessagesRetrievalMimeFormat"] == "TextOnly"
    assert cas["PopSuppressReadReceipt"] is True
    assert cas["PopEnabled"] is True
    assert newest_audit_of(installation, "Set-CASMailbox", "Administrator")["detail"] == (
        "PopUseProtocolDefaults=$false; PopSuppressReadReceipt=$true; "
        "PopMessagesRetrievalMimeFormat=TextOnly"
    )

    # Import an mbox of three messages through the file input, with the upload's progress.
    mbox = write_mbox(tmp_path / "three.mbox", MESSAGES[:3])
    alice.get_by_role("button", name="Import messages into alice").click()
    dialog = page.get_by_role("dialog", name="Import messages")
    expect(dialog.get_by_label("Files to import")).to_be_focused()
    dialog.get_by_label("Files to import").set_input_files(mbox)
    dialog.get_by_role("button", name="Import", exact=True).click()
    expect(dialog.get_by_role("status")).to_have_text("Imported 3 messages into alice.")
    expect(dialog.get_by_label("Progress")).to_have_js_property("position", 1)
    screenshot(page, "mailboxes-import")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(alice.get_by_role("button", name="Import messages into alice")).to_be_focused()
    client = pop3_login(installation, NEW_PASSWORD)
    assert client.stat()[0] == 3
    client.quit()
    entry = newest_audit_of(installation, "New-MailboxImportRequest", "Administrator")
    assert (entry["result"], entry["detail"]) == ("Success", "Count=3; FilePath=three.mbox")

    # Remove: the Administrator cannot be, and the dialog says so; alice can.
    administrator = mailbox_row(page, "Administrator")
    administrator.get_by_role("button", name="Remove Administrator").click()
    dialog = page.get_by_role("alertdialog", name="Remove mailbox")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    dialog.get_by_role("button", name="Remove").click()
    expect(dialog.get_by_role("alert")).to_have_text("The Administrator mailbox cannot be removed.")
    screenshot(page, "mailboxes-remove-administrator")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(administrator.get_by_role("button", name="Remove Administrator")).to_be_focused()
    alice.get_by_role("button", name="Remove alice").click()
    expect(
        dialog.get_by_text("Remove alice <alice@contoso.com> and all of its mail?")
    ).to_be_visible()
    screenshot(page, "mailboxes-remove")
    dialog.get_by_role("button", name="Remove").click()
    expect(dialog).to_be_hidden()
    expect(alice).to_have_count(0)
    expect(page.get_by_role("status")).to_have_text("Removed mailbox alice and its mail.")
    assert newest_audit_of(installation, "Remove-Mailbox", "Administrator")["target"] == "alice"


def test_view_only_sees_everything_and_recipient_management_changes(
    page: Page, installation: Installation
) -> None:
    for name in ("viewer", "recipients"):
        installation.add_mailbox(name, PASSWORD)
    directory_call(
        installation, "add_role_group_member", "View-Only Organization Management", "viewer"
    )
    directory_call(installation, "add_role_group_member", "Recipient Management", "recipients")
    installation.start_host()
    open_mailboxes(page, installation, "viewer", PASSWORD)
    expect(page.get_by_text("do not allow changing them")).to_be_visible()
    expect(page.get_by_role("button", name="New mailbox")).to_be_disabled()
    recipients = mailbox_row(page, "recipients")
    expect(recipients.get_by_role("button", name="Remove recipients")).to_be_disabled()
    screenshot(page, "mailboxes-view-only")
    for label in (
        "Disable POP3 for recipients",
        "Reset password of recipients",
        "Import messages into recipients",
        "Remove recipients",
    ):
        expect(recipients.get_by_role("button", name=label)).to_be_disabled()
    # The settings can be looked at, not changed.
    recipients.get_by_role("button", name="POP3 settings of recipients").click()
    dialog = page.get_by_role("dialog", name="POP3 settings")
    expect(dialog.get_by_label("Enable POP3 for this mailbox")).to_be_checked()
    expect(dialog.get_by_label("Enable POP3 for this mailbox")).to_be_disabled()
    expect(dialog.get_by_role("button", name="Save")).to_be_disabled()
    screenshot(page, "mailboxes-view-only-settings")
    dialog.get_by_role("button", name="Close").click()

    # The API refuses the changes too, even with the session's own CSRF token.
    token = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    base = f"https://127.0.0.1:{installation.https_port}/api/v1/mailboxes/recipients"
    headers = {"X-CSRF-Token": token}
    changed = page.request.patch(
        f"{base}/cas", headers=headers, data={"changes": {"PopEnabled": False}}
    )
    assert changed.status == 403
    upload: FilePayload = {"name": "one.eml", "mimeType": "message/rfc822", "buffer": MESSAGES[0]}
    imported = page.request.post(f"{base}/import", headers=headers, multipart={"files": upload})
    assert imported.status == 403
    assert newest_audit_of(installation, "New-MailboxImportRequest", "viewer")["result"] == "Denied"

    # Recipient Management may do everything here.
    page.get_by_role("button", name="Sign out").click()
    open_mailboxes(page, installation, "recipients", PASSWORD)
    expect(page.get_by_text("do not allow changing them")).to_have_count(0)
    page.get_by_role("button", name="New mailbox").click()
    dialog = page.get_by_role("dialog", name="New mailbox")
    dialog.get_by_label("Name").fill("carol")
    dialog.get_by_label("Password").fill(PASSWORD)
    dialog.get_by_role("button", name="Save").click()
    carol = mailbox_row(page, "carol")
    carol.get_by_role("button", name="Disable POP3 for carol").click()
    expect(carol.get_by_text("Disabled", exact=True)).to_be_visible()
    assert newest_audit_of(installation, "Set-CASMailbox", "recipients")["result"] == "Success"
