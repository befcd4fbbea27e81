"""Abuse of a running front end (issue 10, abuse): it stays bounded and keeps serving."""

from __future__ import annotations

import poplib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
        installation.set(
            "LoginType", "PlainTextLogin",
            "LoginFailureDelay", "1", "LoginFailureMaxDelay", "2", "LoginFailureLockout", "10",
            "PreAuthenticatedConnectionTimeout", "30",  # the least Exchange allows
        )  # fmt: skip
        installation.add_mailbox("good", PASSWORD)
        installation.add_mailbox("victim", PASSWORD)
        installation.start_backend()
        installation.start_frontend()
        yield installation


def resident_kib(pid: int) -> int:
    """The process's resident memory (VmRSS), KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))


class POP3From(poplib.POP3):
    """poplib from a chosen local address (any of 127.0.0.0/8 reaches the loopback)."""

    def __init__(self, host: str, port: int, source: str) -> None:
        self.source = source
        super().__init__(host, port, timeout=30)

    def _create_socket(self, timeout: float) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, (self.source, 0))


def good_session(port: int, source: str = "127.0.0.1") -> float:
    """Seconds for a well-behaved login, STAT and QUIT."""
    started = time.perf_counter()
    client = POP3From("127.0.0.1", port, source)
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


def guess(port: int, password: str) -> str:
    """One login attempt as the victim from 127.0.0.1; the first line of PASS's answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
        reader = raw.makefile("rb")
        reader.readline()  # greeting
        raw.sendall(b"USER victim\r\n")
        reader.readline()
        raw.sendall(f"PASS {password}\r\n".encode())
        return reader.readline().decode()


def test_a_thousand_guesses_from_one_address_lock_it_out_and_spare_everyone_else(
    served: Installation,
) -> None:
    port = served.plain_port
    # The right password comes late in the run: by then it must not even be checked.
    passwords = [f"guess-{n}" for n in range(1000)]
    passwords[700] = PASSWORD
    answers: list[str] = []
    # The good client has logged in before (its password check is remembered). A first login
    # during the flood waits behind the attackers' first 50 argon2id checks: up to 6 s here.
    good_session(port, source="127.0.0.2")
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=50) as pool:
        running = pool.map(lambda password: guess(port, password), passwords)
        latencies = []
        collecting = threading.Thread(target=lambda: answers.extend(running))
        collecting.start()
        while collecting.is_alive():
            latencies.append(good_session(port, source="127.0.0.2"))
        collecting.join()
    elapsed = time.perf_counter() - started
    kinds = Counter(answer.split("]")[0] + "]" for answer in answers)
    assert len(answers) == 1000
    assert not any(answer.startswith("+OK") for answer in answers)
    assert set(kinds) <= {"-ERR [AUTH]", "-ERR [LOGIN-DELAY]"}, kinds
    # Once ten failures were answered the rest were refused unchecked: the 50 in flight
    # at that moment, and little more, ever reached the password check.
    assert kinds["-ERR [AUTH]"] <= 100, kinds
    assert elapsed < 120, elapsed
    assert latencies
    assert max(latencies) < 5, latencies
    # LoginFailureMaxDelay after the last failure, the owner logs in again.
    time.sleep(2.5)
    assert guess(port, PASSWORD).startswith("+OK")


def test_slowloris_connections_are_cut_at_the_pre_authentication_deadline(
    served: Installation,
) -> None:
    """500 connections that send a byte a second and never a whole line: the deadline runs
    from the connection's start (trickling does not reset it), so all of them are closed 30 s
    in, and a good client is served meanwhile."""
    port = served.plain_port
    opened = time.monotonic()
    trickling = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(500)]
    for connection in trickling:
        connection.setblocking(False)  # one thread tends to all of them
    closed_after: list[float] = []

    def trickle() -> None:
        alive = list(trickling)
        while alive and time.monotonic() - opened < 45:
            for connection in list(alive):
                try:
                    if connection.recv(4096) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass  # nothing from the server: still open
                except OSError:
                    closed_after.append(time.monotonic() - opened)
                    alive.remove(connection)
                    continue
                try:
                    connection.send(b"U")
                except OSError:
                    closed_after.append(time.monotonic() - opened)
                    alive.remove(connection)
            time.sleep(1)

    trickler = threading.Thread(target=trickle)
    trickler.start()
    latencies = []
    try:
        while trickler.is_alive():
            latencies.append(good_session(port))
            time.sleep(0.5)
    finally:
        trickler.join()
        for connection in trickling:
            connection.close()
    assert len(closed_after) == 500, f"{500 - len(closed_after)} trickling connections live on"
    assert min(closed_after) >= 29, sorted(closed_after)[:5]
    assert max(closed_after) <= 40, sorted(closed_after)[-5:]
    assert latencies
    assert max(latencies) < 5, latencies
