"""The directory database locked by another process or unreachable (issue 10).

A login the directory cannot decide gets ``-ERR [SYS/TEMP]``, a delivery ``451 4.3.0``, the
logs say so in one line (no traceback), and both work again once the database is back.
"""

from __future__ import annotations

import poplib
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.conftest import Installation, free_port, installed
from tests.faults.conftest import (
    PASSWORD,
    backend,
    lmtp,
    message,
    retrieve_all,
)
from tests.multi.conftest import Postgres, postgres_bindir, postgres_folder

#: Every login and delivery must be answered within this, locked database or not (the SQLite
#: busy timeout is 10 s; a refused TCP connection to PostgreSQL fails at once).
ANSWER_SECONDS = 15


def frontend_login(installation: Installation) -> tuple[bytes, float]:
    """USER/PASS through MSExchangePOP3: the answer to PASS (or the error) and its time."""
    started = time.monotonic()
    client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=60)
    try:
        client.user("alice")
        try:
            answer = client.pass_(PASSWORD)
        except poplib.error_proto as error:
            answer = error.args[0]
        else:
            client.quit()
    finally:
        client.close()
    return answer, time.monotonic() - started


def backend_login(installation: Installation) -> bytes:
    """A direct login to MSExchangePOP3BE: +OK, or the -ERR it got."""
    try:
        client = backend(installation, "alice")
    except poplib.error_proto as error:
        return bytes(error.args[0])
    client.quit()
    return b"+OK"


#: Holds an exclusive transaction (with a write in it) on the database named by argv[1]
#: until its stdin closes.
HOLDER = """
import sqlite3, sys
database = sqlite3.connect(sys.argv[1], isolation_level=None)
database.execute("BEGIN EXCLUSIVE")
database.execute("UPDATE mailboxes SET pop_enabled = pop_enabled")
print("locked", flush=True)
sys.stdin.read()
"""


@contextmanager
def exclusive_writer(database: Path) -> Iterator[None]:
    """Another process holding ``BEGIN EXCLUSIVE`` on the SQLite directory."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(database)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == b"locked\n"
            yield
        finally:
            holder.kill()


def test_an_exclusive_sqlite_transaction_does_not_stop_logins_or_deliveries(
    tmp_path: Path,
) -> None:
    """The embedded directory runs in WAL mode: readers never wait for a writer, so a
    process holding an exclusive (write) transaction, however long, delays no login and no
    delivery, and nobody is refused."""
    with installed(tmp_path, "LoginType", "PlainTextLogin") as installation:
        installation.add_mailbox("alice", PASSWORD)
        installation.start_backend()
        installation.start_frontend()
        installation.start_delivery()
        with exclusive_writer(installation.home / "directory.db"):
            for n in range(3):
                answer, seconds = frontend_login(installation)
                assert answer.startswith(b"+OK"), answer
                assert seconds < 5, seconds
                code, reply = lmtp(installation, "alice", message(f"locked{n}@faults"))
                assert code == 250, reply
        assert retrieve_all(installation, "alice") == [f"locked{n}@faults" for n in range(3)]


@pytest.fixture
def on_postgres() -> Iterator[tuple[Installation, Postgres]]:
    """An installation whose directory is a PostgreSQL server of the test's own."""
    bindir = postgres_bindir()
    assert bindir is not None, "PostgreSQL's server binaries are needed (scripts/test.sh)"
    root = Path(tempfile.mkdtemp(prefix="popgate-faults-"))
    folder, owner = postgres_folder(root)
    postgres = Postgres(bindir=bindir, folder=folder, port=free_port(), owner=owner)
    try:
        postgres.start(listen=["127.0.0.1"], clients=["127.0.0.1/32"])
        password = secrets.token_hex(16)
        postgres.create_database("popgate", password)
        url = f"postgresql+asyncpg://popgate:{password}@127.0.0.1:{postgres.port}/popgate"
        with installed(root, "LoginType", "PlainTextLogin", directory_url=url) as installation:
            yield installation, postgres
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_postgresql_down_gives_temporary_errors_and_everything_recovers_when_it_is_back(
    on_postgres: tuple[Installation, Postgres],
) -> None:
    installation, postgres = on_postgres
    installation.add_mailbox("alice", PASSWORD)
    installation.start_backend()
    installation.start_frontend()
    installation.start_delivery()
    assert lmtp(installation, "alice", message("up@faults"))[0] == 250
    assert frontend_login(installation)[0].startswith(b"+OK")
    # A session that was open before the outage keeps its maildrop: it needs no directory.
    open_session = backend(installation, "alice")

    postgres.stop()
    for attempt in range(2):  # the first finds the pooled connection dead, the second none
        answer, seconds = frontend_login(installation)
        assert answer.startswith(b"-ERR [SYS/TEMP]"), (attempt, answer)
        assert seconds < ANSWER_SECONDS, seconds
        assert backend_login(installation).startswith(b"-ERR [SYS/TEMP]")
        code, reply = lmtp(installation, "alice", message(f"down{attempt}@faults"))
        assert 400 <= code < 500, (code, reply)
    assert open_session.stat()[0] == 1
    assert open_session.retr(1)[0].startswith(b"+OK")
    assert open_session.quit().startswith(b"+OK")
    assert "directory database is unavailable" in installation.frontend_log()
    assert "directory database is unavailable" in installation.delivery_log()

    postgres.as_owner(
        "pg_ctl", "-D", str(postgres.data), "-l", str(postgres.log), "-w", "-t", "60", "start"
    )
    assert frontend_login(installation)[0].startswith(b"+OK")
    assert lmtp(installation, "alice", message("back@faults"))[0] == 250
    assert retrieve_all(installation, "alice") == ["up@faults", "back@faults"]
