"""Abuse of a running front end (issue 10, abuse): it stays bounded and keeps serving."""

from __future__ import annotations

import poplib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Installation, installed

PASSWORD = "Abuse-resistant-1"
GIGABYTE = 1 << 30
CHUNK = b"A" * (1 << 20)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """Both services; a good client's mailbox; passwords allowed on the plain-text port."""
    with installed(tmp_path_factory.mktemp("abuse")) as installation:
        installation.set("LoginType", "PlainTextLogin")
        installation.add_mailbox("good", PASSWORD)
        installation.start_backend()
        installation.start_frontend()
        yield installation


def resident_kib(pid: int) -> int:
    """The process's resident memory (VmRSS), KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))


def good_session(port: int) -> float:
    """Seconds for a well-behaved login, STAT and QUIT."""
    started = time.perf_counter()
    client = poplib.POP3("127.0.0.1", port, timeout=30)
    client.user("good")
    client.pass_(PASSWORD)
    assert client.stat() == (0, 0)
    client.quit()
    return time.perf_counter() - started


def test_a_one_gigabyte_command_line_is_dropped_in_bounded_memory_while_others_are_served(
    served: Installation,
) -> None:
    front_end = served.processes[-1].pid
    baseline = resident_kib(front_end)
    sent = 0
    answer = b""

    def flood() -> None:
        nonlocal sent, answer
        with socket.create_connection(("127.0.0.1", served.plain_port), timeout=60) as raw:
            raw.recv(1024)  # the greeting
            try:
                while sent < GIGABYTE:
                    raw.sendall(CHUNK)
                    sent += len(CHUNK)
                raw.sendall(b"\r\n")
                answer = raw.recv(1024)
            except (BrokenPipeError, ConnectionResetError):
                answer = b"(closed by the server)"

    flooding = threading.Thread(target=flood)
    flooding.start()
    latencies = []
    while flooding.is_alive():
        latencies.append(good_session(served.plain_port))
    flooding.join()
    grown_mib = (resident_kib(front_end) - baseline) / 1024
    assert sent == GIGABYTE or answer == b"(closed by the server)"
    assert answer.startswith((b"-ERR", b"(closed")), answer
    assert grown_mib < 64, f"the front end grew by {grown_mib:.0f} MiB"
    assert latencies, "no good session ran during the flood"
    assert max(latencies) < 5, latencies
    assert good_session(served.plain_port) < 5
