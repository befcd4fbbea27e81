"""Path traversal (issue 10, part 6): hostile names never reach a file outside the mail store.

Mailbox names and logins such as ``../x``, ``/etc``, ``%2e%2e%2f``, backslashes, NUL, very
long names and Unicode look-alikes go to every door that takes a name: ``popgate mailbox
add``, New-Mailbox and the mailbox routes of the API, USER/PASS and AUTH PLAIN on the front
end and the backend, and LMTP RCPT TO on MSExchangeDelivery; file names of an import
upload and raw paths under the admin center's static files get the same treatment. Sentinel
maildrops planted where those names would lead, were they joined to a path, must stay
untouched (not written, not listed, not read: their access times are set in the past, so a
read would move them), each name must be refused clearly, and the mail store must hold only
mailboxes by GUID.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from popgate.directory import Mailbox
from popgate.host._client import HostControlError
from popgate.store._maildir import LOCKS_DIR
from tests.e2e.conftest import Installation, insecure_client_context, installed
from tests.e2e.test_admin_api import client_of
from tests.e2e.test_backend import PASSWORD, RawSession
from tests.e2e.test_control import directory_call

#: What the sentinel maildrops hold; no answer of any service may ever contain it.
SECRET = b"SENTINEL-7f1d0c: this message lives outside the mail store"
#: Two days: an access time this far before the modification time is moved by any read
#: (relatime), so an unchanged one proves the file was not read.
LONG_AGO_NS = 2 * 86_400 * 10**9
#: The planted message's file name, in a sentinel's new/.
SENTINEL_MESSAGE = "1700000000.M1P1.sentinel"


def hostile_names(root: Path) -> list[str]:
    """Names that would escape the mail folder if they were ever joined to a path."""
    return [
        "../x", "..", ".", "a/../../b", "../../sentinel", "/etc", "/etc/passwd",
        f"{root}/sentinel",  # an absolute path to the sentinel itself
        "%2e%2e%2f", "%2e%2e%2f%2e%2e%2fsentinel", "..%c0%af..%c0%afsentinel",
        "..\\..\\sentinel", "back\\slash", "nul\x00byte", "sentinel\x00.txt",
        "a" * 65, "b" * 5000,
        "\u0430dmin",  # Cyrillic a
        "\uff53\uff45\uff4e\uff54\uff49\uff4e\uff45\uff4c",  # fullwidth "sentinel"
        "\u2024\u2024\u2215sentinel",  # one-dot leaders and a division slash: "../sentinel"
        "sentinel\u200b",  # a zero-width space
        "\u202esentinel",  # right-to-left override
    ]  # fmt: skip


@dataclass(frozen=True)
class Sentinels:
    """Planted maildrops and files outside the mail store, and their untouched state."""

    paths: tuple[Path, ...]
    #: (inode, size, mtime, ctime, atime) of every planted path at plant time.
    planted: dict[Path, tuple[int, int, int, int, int]]

    def changed(self) -> list[str]:
        """The planted paths that were written, listed, read or removed since."""
        return [
            f"{path}: {self.planted[path]} -> {state}"
            for path in self.paths
            if (state := _state(path)) != self.planted[path]
        ]


def _state(path: Path) -> tuple[int, int, int, int, int] | None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_atime_ns)


def plant(folders: list[Path]) -> Sentinels:
    """A maildrop holding SECRET in each of ``folders``, every path's access time long ago."""
    paths: list[Path] = []
    for folder in folders:
        for sub in ("tmp", "new", "cur"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        message = folder / "new" / SENTINEL_MESSAGE
        message.write_bytes(b"Subject: sentinel\r\n\r\n" + SECRET + b"\r\n")
        (folder / "passwd").write_bytes(SECRET + b"\n")
        paths += [folder, folder / "tmp", folder / "new", folder / "cur", message]
        paths.append(folder / "passwd")
    planted = {}
    for path in paths:
        info = path.stat()
        os.utime(path, ns=(info.st_mtime_ns - LONG_AGO_NS, info.st_mtime_ns))
        state = _state(path)
        assert state is not None
        planted[path] = state
    return Sentinels(tuple(paths), planted)


@dataclass
class Served:
    """The running installation, its planted sentinels and the names to throw at it."""

    installation: Installation
    sentinels: Sentinels
    names: list[str]
    domain: str

    def assert_untouched(self) -> None:
        """The sentinels as planted, nothing at the system paths the names point at, and
        the mail folder holding maildrops of existing mailboxes only, by GUID."""
        assert self.sentinels.changed() == []
        for folder in ("/etc", "/etc/passwd"):
            assert not any(Path(folder, sub).exists() for sub in ("tmp", "new", "cur"))
        mail_root = self.installation.layout.mail_root
        # The store's own delivery locks are named by GUID too (<guid>.deliver).
        entries = [*mail_root.iterdir(), *(mail_root / LOCKS_DIR).glob("*")]
        for entry in entries:
            if entry == mail_root / LOCKS_DIR:
                continue
            guid = uuid.UUID(entry.name.split(".")[0])  # raises for a name that is no GUID
            found = directory_call(self.installation, "get_mailbox_by_guid", guid)
            assert isinstance(found, Mailbox), entry


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Host (API, mail delivery), backend and front end; a mailbox ``good``; sentinels beside
    the data directory and inside it, outside its mail folder."""
    root = tmp_path_factory.mktemp("traversal")
    with installed(root) as installation:
        installation.set(
            "LoginType", "PlainTextLogin",
            # Every hostile login is a failure: none may be refused unchecked, or slowly.
            "LoginFailureDelay", "0", "LoginFailureMaxDelay", "0",
            "LoginFailureLockout", "100000",
        )  # fmt: skip
        installation.start_host()
        installation.start_backend()
        installation.start_frontend()
        with client_of(installation) as admin:
            address = str(admin.new_mailbox("good", PASSWORD)["address"])
        # Where "../x", "a/../../b", "../../sentinel" and the like lead from the mail folder.
        sentinels = plant(
            [root / "sentinel", root / "x", root / "b", root / "etc", installation.home / "x"]
        )
        yield Served(installation, sentinels, hostile_names(root), address.split("@", 1)[1])


def mail_folders(installation: Installation) -> set[str]:
    """The names in the mail folder."""
    return {entry.name for entry in installation.layout.mail_root.iterdir()}


def test_the_sentinels_show_a_read_a_listing_and_a_write(tmp_path: Path) -> None:
    """The instrument itself: on this file system a read, a listing or a write of a planted
    path changes what :meth:`Sentinels.changed` compares (atime, mtime, ctime)."""
    for touch in (
        lambda folder: (folder / "new" / SENTINEL_MESSAGE).read_bytes(),
        lambda folder: list((folder / "new").iterdir()),
        lambda folder: (folder / "cur" / "added").touch(),
    ):
        folder = tmp_path / str(uuid.uuid4())
        sentinels = plant([folder])
        assert sentinels.changed() == []
        touch(folder)
        assert sentinels.changed() != []


def test_the_cli_refuses_hostile_mailbox_names_of_every_kind(served: Served) -> None:
    installation = served.installation
    before = mail_folders(installation)
    # The CLI and the API reach the same check (Directory.add_mailbox), which the API test
    # gives every name; here one of each kind, as each popgate command is a Python of its
    # own. (An argument list cannot hold NUL at all: execve ends the string there.)
    names = [
        "a/../../b", str(served.sentinels.paths[0]), "%2e%2e%2f", "..\\..\\sentinel",
        "\u2024\u2024\u2215sentinel",
    ]  # fmt: skip

    def add(name: str) -> tuple[str, int, str]:
        result = installation.popgate(
            "mailbox", "add", name, "--password-stdin", input_text=PASSWORD + "\n", check=False
        )
        return name, result.returncode, result.stdout + result.stderr

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(add, names))
    for name, status, output in results:
        assert status != 0, (name, output)
        assert "mailbox name" in output, (name, output)
        assert "Traceback" not in output, (name, output)
    assert mail_folders(installation) == before
    served.assert_untouched()


def test_the_api_refuses_every_hostile_mailbox_name_and_finds_none(served: Served) -> None:
    installation = served.installation
    before = mail_folders(installation)
    with client_of(installation) as admin:
        for name in served.names:
            with pytest.raises(HostControlError) as refused:
                admin.new_mailbox(name, PASSWORD)
            assert refused.value.status == 422, (name, refused.value)
            assert "mailbox name" in str(refused.value), (name, refused.value)
            # The names as identities, URL-encoded into the path: nothing there to show,
            # change or remove (the dangerous one: Remove-Mailbox deletes mail).
            for call in (admin.mailbox, admin.remove_mailbox, admin.cas_mailbox):
                if name in (".", ".."):
                    continue  # a URL path segment "." or ".." is the folder itself, not a name
                with pytest.raises(HostControlError) as missing:
                    call(name)
                assert missing.value.status == 404, (name, call, missing.value)
        assert {mailbox["name"] for mailbox in admin.mailboxes()} >= {"good", "Administrator"}
    assert directory_call(installation, "get_mailbox", "../x") is None
    assert mail_folders(installation) == before
    served.assert_untouched()


def test_uploaded_file_names_never_lead_outside_the_import_folder(served: Served) -> None:
    """New-MailboxImportRequest keeps only the base name of what a client calls its files."""
    installation = served.installation
    message = b"Subject: imported\r\n\r\nimported\r\n"
    uploads = [
        ("files", ("../../../sentinel/new/evil.eml", message, "message/rfc822")),
        ("files", ("..\\..\\..\\x\\evil.eml", message, "message/rfc822")),
        ("files", (f"{served.sentinels.paths[0]}/cur/evil.eml", message, "message/rfc822")),
    ]
    password = installation.layout.administrator_password_file.read_text().strip()
    url = f"https://127.0.0.1:{installation.https_port}/api/v1/mailboxes/good/import"
    with httpx.Client(verify=insecure_client_context(), timeout=60) as web:
        answer = web.post(url, files=uploads, auth=("Administrator", password))
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["imported"] == 3
    assert [file["file"] for file in result["files"]] == ["evil.eml"] * 3
    served.assert_untouched()


def pop3_front_end(port: int) -> tuple[socket.socket, Iterator[bytes]]:
    """A plain-text connection to the front end, its greeting read."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    lines = iter(raw.makefile("rb"))
    assert next(lines).startswith(b"+OK")
    return raw, lines


def plain(authzid: str, authcid: str, password: str) -> bytes:
    """An AUTH PLAIN initial response."""
    return base64.b64encode(f"{authzid}\x00{authcid}\x00{password}".encode())


def attempts(name: str) -> list[tuple[str, list[bytes]]]:
    """The logins that name ``name``: USER/PASS and AUTH PLAIN as it on the front end, AUTH
    PLAIN as ``good`` acting for it (an authorization identity), and, for names shaped like
    paths, USER/PASS on the backend, which holds the maildrops (the two services share their
    login code, and each failure costs an argon2 check)."""
    encoded = name.encode("utf-8", "surrogatepass")
    user_pass = [b"USER " + encoded, f"PASS {PASSWORD}".encode()]
    tried = [
        ("front end", user_pass),
        ("front end", [b"AUTH PLAIN " + plain("", name, PASSWORD)]),
        ("front end", [b"AUTH PLAIN " + plain(name, "good", PASSWORD)]),
    ]
    if any(mark in name for mark in ("/", "\\", "..", "\x00", "%")):
        tried.append(("backend", user_pass))
    return tried


def test_pop3_logins_with_hostile_names_are_refused_on_the_front_end_and_backend(
    served: Served,
) -> None:
    installation = served.installation
    tried = [attempt for name in served.names for attempt in attempts(name)]
    # Several at once: each failure costs an argon2 check of a dummy hash, in either service.
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda attempt: login(installation, *attempt), tried))
    problems = [
        f"{door} {commands!r}: {replies!r}"
        for (door, commands), replies in zip(tried, answers, strict=True)
        if not replies[-1].startswith(b"-ERR") or SECRET in b"".join(replies)
    ]
    assert problems == [], "\n".join(problems)
    # The services still serve a real mailbox.
    good = login(installation, "front end", [b"USER good", f"PASS {PASSWORD}".encode()])
    assert good[-1].startswith(b"+OK"), good
    served.assert_untouched()


def login(installation: Installation, door: str, commands: list[bytes]) -> list[bytes]:
    """Send ``commands`` on a new connection to the front end (plain text) or the backend
    (TLS); each reply line, or what closing the connection looked like."""
    replies: list[bytes] = []
    if door == "backend":
        with RawSession(installation.backend_port) as session:
            assert session.greeting.startswith(b"+OK")
            for command in commands:
                replies.append(session.ask(command + b"\r\n") or b"(closed)")
        return replies
    raw, lines = pop3_front_end(installation.plain_port)
    with raw:
        for command in commands:
            raw.sendall(command + b"\r\n")
            replies.append(next(lines, b"(closed)"))
    return replies


class Lmtp:
    """A raw LMTP session: one command, its whole reply."""

    def __init__(self, port: int) -> None:
        self.raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.lines = iter(self.raw.makefile("rb"))
        self.reply()  # the greeting

    def reply(self) -> bytes:
        """The next reply, every line of it."""
        text = b""
        for line in self.lines:
            text += line
            if line[3:4] != b"-":
                break
        return text

    def ask(self, command: bytes) -> bytes:
        """Send one command; its reply."""
        self.raw.sendall(command + b"\r\n")
        return self.reply()

    def close(self) -> None:
        """Close the connection."""
        self.raw.close()


def test_lmtp_recipients_with_hostile_names_are_refused_and_a_real_one_still_gets_mail(
    served: Served,
) -> None:
    installation = served.installation
    session = Lmtp(installation.lmtp_port)
    try:
        assert session.ask(b"LHLO walk.example").startswith(b"250")
        assert session.ask(b"MAIL FROM:<walker@example.com>").startswith(b"250")
        problems = []
        for name in served.names:
            encoded = name.encode("utf-8", "surrogatepass")
            for recipient in (encoded + b"@" + served.domain.encode(), encoded):
                reply = session.ask(b"RCPT TO:<" + recipient + b">")
                # 550 5.1.1 for no such mailbox, 5xx for a malformed path: a clear refusal,
                # never an acceptance or a temporary failure.
                if not reply.startswith(b"5"):
                    problems.append(f"RCPT TO:<{recipient!r}>: {reply!r}")
        assert problems == [], "\n".join(problems)
        assert session.ask(f"RCPT TO:<good@{served.domain}>".encode()).startswith(b"250")
        assert session.ask(b"DATA").startswith(b"354")
        delivered = session.ask(b"Subject: after the walk\r\n\r\nstill delivering\r\n.")
        assert delivered.startswith(b"250"), delivered
        assert session.ask(b"QUIT").startswith(b"221")
    finally:
        session.close()
    served.assert_untouched()


def http_get(port: int, raw_path: str) -> tuple[int, bytes]:
    """GET ``raw_path`` exactly as written (no client normalises it); status and body."""
    context: ssl.SSLContext = insecure_client_context()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw) as tls,
    ):
        request = f"GET {raw_path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
        tls.sendall(request.encode() + b"\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "raw_path",
    [
        "/ecp/static/../../_api.py",
        "/ecp/static/..%2f..%2f_api.py",
        "/ecp/static/%2e%2e/%2e%2e/_api.py",
        "/ecp/static/..%5c..%5c_api.py",
        "/ecp/static/%2fetc%2fpasswd",
        "/ecp/static//etc/passwd",
        "/ecp/static/..%2f..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/ecp/static/..%00/ecp.css",
    ],
)
def test_the_admin_centers_static_files_serve_nothing_outside_their_folder(
    served: Served, raw_path: str
) -> None:
    port = served.installation.https_port
    assert http_get(port, "/ecp/static/ecp.css")[0] == 200
    status, body = http_get(port, raw_path)
    assert status in (400, 404), (status, body[:200])
    assert b"def create_app" not in body
    assert b"root:" not in body
    assert SECRET not in body
    served.assert_untouched()
