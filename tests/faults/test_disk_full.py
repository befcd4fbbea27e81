"""A full mail store (a small tmpfs): deliveries are refused as temporary, UPDATE stays
all-or-nothing, and everything works again once space is freed (issue 10)."""

from __future__ import annotations

import errno
import os
import poplib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.conftest import Installation, installed
from tests.faults.conftest import (
    PASSWORD,
    backend,
    lmtp,
    message,
    message_id_of,
    retrieve_all,
)

STORE_SIZE = "2m"
FILLER = ".filler"


@contextmanager
def small_store(installation: Installation) -> Iterator[Path]:
    """The mail store on a tmpfs of its own, unmounted afterwards whatever happened."""
    root = installation.layout.mail_root
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={STORE_SIZE},mode=0750", "tmpfs", str(root)],
        check=True,
    )
    try:
        yield root
    finally:
        installation.stop_all()
        if subprocess.run(["umount", str(root)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(root)], check=True)


def fill(root: Path) -> int:
    """Write a filler file until the file system is full; the octets written."""
    written = 0
    with (root / FILLER).open("ab", buffering=0) as filler:
        for chunk in (1 << 16, 1 << 12, 1):
            while True:
                try:
                    written += filler.write(b"\0" * chunk)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    return written


def maildir(root: Path) -> Path:
    """The only mailbox's Maildir."""
    (mailbox,) = [path for path in root.iterdir() if not path.name.startswith(".")]
    return mailbox


def files_in(folder: Path) -> list[str]:
    """Names in a Maildir sub-folder."""
    return sorted(os.listdir(folder))


def test_a_full_store_refuses_mail_as_temporary_keeps_update_atomic_and_recovers(
    tmp_path: Path,
) -> None:
    with installed(tmp_path) as installation, small_store(installation) as root:
        installation.add_mailbox("alice", PASSWORD)
        installation.start_backend()
        installation.start_delivery()
        for n in range(3):
            code, reply = lmtp(installation, "alice", message(f"before{n}@faults"))
            assert code == 250, reply
        mailbox = maildir(root)
        stored = files_in(mailbox / "new")
        assert fill(root) > 0

        # Full: every delivery is refused with a temporary (4xx) code, and leaves nothing.
        for n in range(3):
            code, reply = lmtp(installation, "alice", message(f"full{n}@faults"))
            assert 400 <= code < 500, (code, reply)
        assert files_in(mailbox / "tmp") == []
        assert files_in(mailbox / "new") == stored
        # Nearly full: a message bigger than the space left is partly written, then refused.
        os.truncate(root / FILLER, (root / FILLER).stat().st_size - (64 << 10))
        code, reply = lmtp(installation, "alice", message("big@faults", b"y" * (256 << 10)))
        assert 400 <= code < 500, (code, reply)
        assert files_in(mailbox / "tmp") == []
        assert files_in(mailbox / "new") == stored
        fill(root)

        # UPDATE while full: either it applies fully (+OK) or it reports -ERR and deletes
        # nothing; never part of it.
        client = backend(installation, "alice")
        assert client.stat()[0] == 3
        first = message_id_of(client.retr(1)[1])
        client.dele(1)
        client.dele(2)
        second = message_id_of(client.top(3, 0)[1])
        try:
            answer = client.quit()
        except poplib.error_proto as error:
            answer = bytes(error.args[0])
        left = retrieve_all(installation, "alice")
        if answer.startswith(b"+OK"):
            assert left == [second], (answer, left)
        else:
            assert answer.startswith(b"-ERR"), answer
            assert len(left) == 3, (answer, left)
            assert first in left, (answer, left)

        # Space again: mail flows, and the store holds exactly what was acknowledged.
        (root / FILLER).unlink()
        code, reply = lmtp(installation, "alice", message("after@faults"))
        assert code == 250, reply
        assert retrieve_all(installation, "alice") == [*left, "after@faults"]
        assert files_in(mailbox / "tmp") == []
