"""SIGKILL of MSExchangePOP3BE, MSExchangePOP3 and ``popgate host`` at random points of
sessions that DELE and QUIT, while LMTP deliveries run to the same mailboxes (issue 10).

A ledger records what the clients were told: messages acknowledged by LMTP (250), messages
refused (4xx/5xx), deliveries whose answer was lost, and deletions confirmed by a QUIT +OK.
At the end every maildrop is fetched and compared with it.
"""

from __future__ import annotations

import functools
import os
import poplib
import random
import signal
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from popgate.host._client import HostClient
from popgate.host._common import control_socket_path
from tests.e2e.conftest import Installation, installed
from tests.faults.conftest import (
    PASSWORD,
    message,
    message_id_of,
    retrieve_all,
    wait_until,
)

SEED = int(os.environ.get("POPGATE_FAULTS_SEED", "0")) or random.SystemRandom().randrange(1 << 30)
MAILBOXES = ("alice", "bob")
ROUNDS = 3
POP3_SERVICES = ("MSExchangePOP3BE", "MSExchangePOP3")
ALL_SERVICES = (*POP3_SERVICES, "MSExchangeDelivery")
#: Time for the host to notice a death, restart the service and see it ready; generous on a
#: loaded 2-core machine.
RECOVERY_SECONDS = 60


@dataclass
class Ledger:
    """What the clients were told, guarded by a lock (several threads write it)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Message-ID -> mailbox, for deliveries answered 250.
    acknowledged: dict[str, str] = field(default_factory=dict)
    #: Deliveries answered 4xx/5xx: the sender keeps (or bounces) them; never stored.
    refused: set[str] = field(default_factory=set)
    #: Deliveries that broke before DATA (the service was down): never stored.
    never_sent: set[str] = field(default_factory=set)
    #: Deliveries whose answer to DATA never came (the connection broke): at most once.
    unanswered: set[str] = field(default_factory=set)
    #: DELE'd in a session whose QUIT got +OK: gone.
    deleted: set[str] = field(default_factory=set)
    #: DELE'd in a session whose QUIT was sent but not answered: gone or not, never twice.
    maybe_deleted: set[str] = field(default_factory=set)
    #: Sessions that ended, by how.
    sessions: Counter[str] = field(default_factory=Counter)
    #: Unexpected answers, for the failure message.
    oddities: list[str] = field(default_factory=list)

    def note(self, kind: str) -> None:
        """Count one session's ending."""
        with self.lock:
            self.sessions[kind] += 1


def deliverer(installation: Installation, ledger: Ledger, stop: threading.Event, tag: str) -> None:
    """LMTP deliveries, one connection each, alternating between the mailboxes."""
    number = 0
    while not stop.is_set():
        number += 1
        mailbox = MAILBOXES[number % len(MAILBOXES)]
        message_id = f"{tag}-{number}@faults"
        data_sent = False
        try:
            with smtplib.LMTP("127.0.0.1", installation.lmtp_port, timeout=30) as client:
                client.ehlo()
                client.mail("sender@example.net")
                code, text = client.rcpt(mailbox)
                if code == 250:
                    data_sent = True
                    code, text = client.data(message(message_id))
        except (OSError, smtplib.SMTPException):
            # Before DATA the message never left the sender; after it, it may be stored.
            with ledger.lock:
                (ledger.unanswered if data_sent else ledger.never_sent).add(message_id)
            time.sleep(0.1)
            continue
        with ledger.lock:
            if code == 250:
                ledger.acknowledged[message_id] = mailbox
            else:
                ledger.refused.add(message_id)
                if code >= 500:
                    ledger.oddities.append(f"{message_id}: {code} {text!r}")


def popper(
    installation: Installation, ledger: Ledger, stop: threading.Event, user: str, seed: int
) -> None:
    """Sessions through the front end that read a few messages, DELE some and QUIT."""
    rng = random.Random(seed)
    while not stop.is_set():
        marked: list[str] = []
        quit_sent = False
        try:
            client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=30)
        except OSError:
            ledger.note("connect refused")
            time.sleep(0.1)
            continue
        try:
            client.user(user)
            client.pass_(PASSWORD)
            count = client.stat()[0]
            for number in rng.sample(range(1, count + 1), min(count, rng.randint(0, 3))):
                marked.append(message_id_of(client.top(number, 0)[1]))
                client.dele(number)
            time.sleep(rng.uniform(0, 0.1))
            quit_sent = True
            answer = client.quit()
        except (poplib.error_proto, OSError) as error:
            # -ERR [IN-USE] while the other session on this maildrop winds down, [SYS/TEMP]
            # while the backend restarts, or EOF or a reset when a process died under it.
            if isinstance(error, OSError):
                ledger.note("connection lost")
            else:
                ledger.note("quit error" if quit_sent else f"error {error.args[0][:20]!r}")
            if quit_sent:
                with ledger.lock:
                    ledger.maybe_deleted.update(marked)
            client.close()
            time.sleep(0.05)
            continue
        if answer.startswith(b"+OK"):
            ledger.note("quit")
            with ledger.lock:
                ledger.deleted.update(marked)


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie awaiting its reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def none_alive(pids: list[int]) -> bool:
    """Whether every one of ``pids`` has ended."""
    return not any(alive(pid) for pid in pids)


def control(installation: Installation) -> HostClient:
    """A client of the host's control socket."""
    return HostClient.local(control_socket_path(installation.layout))


def pids(installation: Installation) -> dict[str, int | None]:
    """Each service's process id, None unless it runs."""
    with control(installation) as client:
        return {
            view["name"]: view["pid"] if view["status"] == "Running" else None
            for view in client.services()
        }


def all_running(installation: Installation, old: dict[str, int | None]) -> bool:
    """Whether every service runs, each killed one (``old``) in a new process."""
    try:
        now = pids(installation)
    except OSError:
        return False  # the host is restarting
    return all(now[name] is not None and now[name] != old.get(name) for name in old) and all(
        now[name] is not None for name in ALL_SERVICES
    )


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """``popgate host`` running all three services, each restarted 0.1 s after a failure and
    started with the host (Automatic), with two mailboxes; shared by the module's tests."""
    with installed(tmp_path_factory.mktemp("kill"), "LoginType", "PlainTextLogin") as installation:
        for name in MAILBOXES:
            installation.add_mailbox(name, PASSWORD)
        installation.start_host()
        with control(installation) as client:
            for name in ALL_SERVICES:
                client.set_recovery(name, [("restart", 0.1)], 86_400)
            for name in POP3_SERVICES:
                client.set_startup_type(name, "Automatic")
                client.start(name)
        wait_until(lambda: all_running(installation, {}), RECOVERY_SECONDS, "services up")
        yield installation


@pytest.mark.parametrize("target", ["MSExchangePOP3BE", "MSExchangePOP3", "host"])
def test_sigkill_at_random_points_loses_no_acknowledged_mail_and_deletes_only_after_quit(
    hosted: Installation, target: str
) -> None:
    rng = random.Random(f"{SEED}-{target}")
    context = f"seed {SEED} (POPGATE_FAULTS_SEED={SEED} reruns it), target {target}"
    ledger = Ledger()
    # Mail left by the module's earlier tests: theirs to account for.
    earlier = {user: set(retrieve_all(hosted, user)) for user in MAILBOXES}
    stop = threading.Event()
    workers = [
        threading.Thread(target=deliverer, args=(hosted, ledger, stop, f"{target}-{SEED}")),
        *(
            threading.Thread(target=popper, args=(hosted, ledger, stop, user, rng.random()))
            for user in MAILBOXES
        ),
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in range(ROUNDS):
            time.sleep(rng.uniform(0.3, 2.0))
            before = pids(hosted)
            if target == "host":
                host = hosted.processes[-1]
                host.kill()
                host.wait()
                # Its services die with it (they would hold the ports the next host needs).
                orphans = [pid for pid in before.values() if pid is not None]
                wait_until(
                    functools.partial(none_alive, orphans),
                    RECOVERY_SECONDS,
                    f"the services of the killed host ended ({context})",
                )
                # systemd's Restart=on-failure: a new host, which starts the Automatic ones.
                hosted.start_host()
                wait_until(
                    lambda: all_running(hosted, {}), RECOVERY_SECONDS, f"host back ({context})"
                )
            else:
                pid = before[target]
                assert pid is not None, context
                os.kill(pid, signal.SIGKILL)
                wait_until(
                    functools.partial(all_running, hosted, {target: pid}),
                    RECOVERY_SECONDS,
                    f"{target} restarted ({context})",
                )
        time.sleep(1)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=120)
    assert not any(worker.is_alive() for worker in workers), context

    found: dict[str, Counter[str]] = {}
    for user in MAILBOXES:
        # No lock stays stale: the first new session gets each maildrop.
        found[user] = Counter(retrieve_all(hosted, user))
    summary = (
        f"{context}: {len(ledger.acknowledged)} acknowledged, {len(ledger.refused)} refused, "
        f"{len(ledger.never_sent)} not sent (service down), {len(ledger.unanswered)} "
        f"unanswered, {len(ledger.deleted)} deleted by QUIT, "
        f"{len(ledger.maybe_deleted)} QUIT unanswered; sessions {dict(ledger.sessions)}; "
        f"oddities {ledger.oddities[:5]}"
    )
    assert ledger.sessions["quit"] >= ROUNDS, summary
    assert ledger.deleted, summary
    for user, counts in found.items():
        duplicated = [mid for mid, n in counts.items() if n > 1]
        assert not duplicated, f"{user} holds copies of {duplicated[:5]}; {summary}"
        unknown = set(counts) - set(ledger.acknowledged) - ledger.unanswered - earlier[user]
        assert not unknown, f"{user} holds mail never delivered: {sorted(unknown)[:5]}; {summary}"
    for message_id, user in ledger.acknowledged.items():
        present = found[user][message_id]
        if message_id in ledger.deleted:
            assert present == 0, f"{message_id} was deleted by QUIT +OK yet is there; {summary}"
        elif message_id not in ledger.maybe_deleted:
            assert present == 1, f"acknowledged {message_id} is missing; {summary}"
    for message_id in ledger.refused | ledger.never_sent:
        assert all(message_id not in counts for counts in found.values()), summary
    assert not ledger.oddities, summary
    print(summary)  # shown with -s: what the run exercised
