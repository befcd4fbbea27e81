"""Message files removed or truncated behind popgate's back during a session (issue 10)."""

from __future__ import annotations

import itertools
import os
import poplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Installation, installed
from tests.faults.conftest import (
    PASSWORD,
    backend,
    message,
    message_id_of,
    retrieve_all,
)

_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """The backend, shared by the module's tests (each has a mailbox of its own)."""
    with installed(tmp_path_factory.mktemp("vanished")) as installation:
        installation.start_backend()
        yield installation


@pytest.fixture
def user(served: Installation, tmp_path: Path) -> str:
    """A new mailbox holding five messages, <user>-m1@faults to <user>-m5@faults."""
    name = f"user{next(_numbers)}"
    served.add_mailbox(name, PASSWORD)
    served.import_messages(name, [message(f"{name}-m{n}@faults") for n in range(1, 6)], tmp_path)
    return name


def message_files(installation: Installation, user: str) -> dict[str, Path]:
    """Each message file of ``user``'s maildir by its Message-ID (m1 to m5)."""
    files = {}
    for path in installation.layout.mail_root.glob("*/*/*"):
        if path.parent.name in ("new", "cur"):
            found = message_id_of(path.read_bytes().splitlines())
            if found.startswith(f"{user}-"):
                files[found.removeprefix(f"{user}-")] = path
    return files


def test_a_file_removed_between_stat_and_retr_gets_a_temporary_error_and_the_session_goes_on(
    served: Installation, user: str
) -> None:
    client = backend(served, user)
    assert client.stat()[0] == 5
    message_files(served, user)["m2@faults"].unlink()
    with pytest.raises(poplib.error_proto) as refused:
        client.retr(2)
    assert refused.value.args[0].startswith(b"-ERR [SYS/TEMP]"), refused.value
    # The session is still usable, and the other messages are all there.
    assert message_id_of(client.retr(3)[1]) == f"{user}-m3@faults"
    assert client.quit().startswith(b"+OK")
    assert retrieve_all(served, user) == [f"{user}-m{n}@faults" for n in (1, 3, 4, 5)]
    assert "vanished from the store" in served.backend_log()


def test_a_file_truncated_between_list_and_retr_is_served_as_it_now_is_and_logged(
    served: Installation, user: str
) -> None:
    client = backend(served, user)
    listed = dict(client.list()[1][n].split() for n in range(5))
    path = message_files(served, user)["m4@faults"]
    whole = path.read_bytes()
    with path.open("r+b") as stream:
        stream.truncate(len(whole) // 2)
    response, lines, _ = client.retr(4)
    # The RETR answers with what the file holds now (never bytes of another message), the
    # terminating dot keeps the framing intact, and the next command is answered normally.
    assert response.startswith(b"+OK " + listed[b"4"])
    retrieved = b"\r\n".join(lines)
    assert whole[: len(whole) // 2].startswith(retrieved)
    assert len(retrieved) >= len(whole) // 2 - 2
    assert message_id_of(client.retr(5)[1]) == f"{user}-m5@faults"
    assert client.quit().startswith(b"+OK")
    assert "changed on disk" in served.backend_log()
    assert len(retrieve_all(served, user)) == 5


@pytest.mark.parametrize("fault", ["removed", "truncated"])
def test_a_file_changed_between_list_and_dele_quit_is_deleted_and_nothing_else_is_lost(
    served: Installation, user: str, fault: str
) -> None:
    client = backend(served, user)
    client.list()
    path = message_files(served, user)["m1@faults"]
    if fault == "removed":
        path.unlink()
    else:
        os.truncate(path, 10)
    assert client.dele(1).startswith(b"+OK")
    assert client.dele(3).startswith(b"+OK")
    assert client.quit().startswith(b"+OK")
    assert retrieve_all(served, user) == [f"{user}-m{n}@faults" for n in (2, 4, 5)]
    # A new session gets the maildrop at once: the lock went with the QUIT.
    assert backend(served, user).quit().startswith(b"+OK")
