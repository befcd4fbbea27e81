"""The popgate command line: setup, mailboxes, import, settings."""

from __future__ import annotations

import mailbox
import os
import stat
from pathlib import Path

import pytest

from tests.e2e.conftest import Installation


def test_setup_creates_state_and_is_idempotent(installation: Installation) -> None:
    layout = installation.layout
    password_file = layout.administrator_password_file
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(layout.private_key.stat().st_mode) == 0o600
    assert layout.certificate.read_text().startswith("-----BEGIN CERTIFICATE-----")
    password = password_file.read_text()
    again = installation.popgate("setup")
    assert "Already set up" in again.stdout
    assert password_file.read_text() == password
    listing = installation.popgate("mailbox", "list").stdout
    assert "Administrator" in listing


def test_setup_roles_option(installation: Installation) -> None:
    result = installation.popgate("setup", "--roles", "Mailbox")
    assert "roles Mailbox" in result.stdout
    bad = installation.popgate("setup", "--roles", "Hub", check=False)
    assert bad.returncode == 2
    assert "unknown role 'Hub'" in bad.stderr


@pytest.mark.parametrize(
    ("name", "reason"),
    [("../x", "name"), ("", "name"), ("a\x01b", "name"), ("x" * 65, "name"), ("a/b", "name")],
)
def test_invalid_mailbox_names_are_refused(
    installation: Installation, name: str, reason: str
) -> None:
    result = installation.popgate(
        "mailbox", "add", name, "--password-stdin", input_text="pw\n", check=False
    )
    assert result.returncode == 2
    assert result.stderr.startswith("popgate: error:")
    assert reason in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert not any(path.name != "mail" for path in installation.home.glob("..*"))


def test_duplicate_mailbox_is_refused(installation: Installation) -> None:
    installation.add_mailbox("alice", "pw")
    result = installation.popgate(
        "mailbox", "add", "ALICE", "--password-stdin", input_text="pw\n", check=False
    )
    assert result.returncode == 2
    assert "already" in result.stderr.lower()


def test_mailbox_folder_is_named_by_guid(installation: Installation) -> None:
    installation.add_mailbox("alice", "pw")
    shown = installation.popgate("mailbox", "show", "alice").stdout
    guid = next(
        line.split(":", 1)[1].strip() for line in shown.splitlines() if line.startswith("Guid")
    )
    assert (installation.layout.mail_root / guid / "cur").is_dir()
    assert not (installation.layout.mail_root / "alice").exists()


def test_import_maildir_mbox_and_eml_then_show(installation: Installation, tmp_path: Path) -> None:
    installation.add_mailbox("alice", "pw")
    source = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (source / sub).mkdir(parents=True)
    (source / "new" / "1.host").write_bytes(b"Subject: one\n\nbody\n")
    (source / "cur" / "2.host:2,S").write_bytes(b"Subject: two\n\nbody\n")
    installation.popgate("mailbox", "import", "alice", "--maildir", str(source))
    box = mailbox.mbox(tmp_path / "in.mbox")
    box.add(b"Subject: three\n\nbody\n")
    box.add(b"Subject: four\n\nbody\n")
    box.close()
    installation.popgate("mailbox", "import", "alice", "--mbox", str(tmp_path / "in.mbox"))
    eml = tmp_path / "five.eml"
    eml.write_bytes(b"Subject: five\r\n\r\nbody\r\n")
    result = installation.popgate("mailbox", "import", "alice", str(eml))
    assert "Imported 1 messages" in result.stdout
    shown = installation.popgate("mailbox", "show", "alice").stdout
    fields = {line.split(" : ")[0].strip(): line.split(" : ", 1)[1] for line in shown.splitlines()}
    assert fields["ItemCount"] == "5"
    assert "PopEnabled" in shown


def test_import_errors_are_clear(installation: Installation, tmp_path: Path) -> None:
    installation.add_mailbox("alice", "pw")
    result = installation.popgate(
        "mailbox", "import", "alice", "--maildir", str(tmp_path), check=False
    )
    assert result.returncode == 2
    assert "not a Maildir" in result.stderr
    result = installation.popgate("mailbox", "import", "nobody", str(tmp_path), check=False)
    assert result.returncode == 2
    assert "no mailbox 'nobody'" in result.stderr


def test_remove_and_set_password(installation: Installation) -> None:
    installation.add_mailbox("alice", "pw")
    installation.popgate("mailbox", "set-password", "alice", "--password-stdin", input_text="new\n")
    empty = installation.popgate(
        "mailbox", "set-password", "alice", "--password-stdin", input_text="\n", check=False
    )
    assert empty.returncode == 2
    installation.popgate("mailbox", "remove", "alice")
    assert "alice" not in installation.popgate("mailbox", "list").stdout
    gone = installation.popgate("mailbox", "remove", "alice", check=False)
    assert gone.returncode == 2
    admin = installation.popgate("mailbox", "remove", "Administrator", check=False)
    assert admin.returncode == 2


def test_settings_show_and_invalid_values(installation: Installation) -> None:
    shown = installation.popgate("settings", "show").stdout
    lines = {}
    for line in shown.splitlines():
        name, _, value = line.partition(" :")
        lines[name.strip()] = value.strip()
    assert lines["Banner"] == "The Microsoft Exchange POP3 service is ready."
    assert lines["LoginType"] == "SecureLogin"
    assert lines["ProxyTargetPort"] == str(installation.backend_port)
    assert lines["MaxConnectionsPerUser"] == "16"
    bad = installation.popgate("settings", "set", "MaxCommandSize", "20", check=False)
    assert bad.returncode == 2
    assert "MaxCommandSize" in bad.stderr
    unknown = installation.popgate("settings", "set", "NoSuchSetting", "1", check=False)
    assert unknown.returncode == 2


def test_commands_before_setup_say_so(tmp_path: Path) -> None:
    env = dict(os.environ, POPGATE_HOME=str(tmp_path / "nothing"))
    result = Installation(home=tmp_path / "nothing", env=env).popgate(
        "mailbox", "list", check=False
    )
    assert result.returncode == 1
    assert "run 'popgate setup' first" in result.stderr
