"""The soak run (issue 10): minutes of mixed load on a real ``popgate host``, with a ledger.

    .venv/bin/python -m bench.soak --minutes 10 [--json FILE]

One throw-away installation (tests/e2e/conftest.py's ``installed``, on loopback, its ports
below the ephemeral range so that a restarted service finds its port free) runs ``popgate host``
with MSExchangePOP3, MSExchangePOP3BE and MSExchangeDelivery (LMTP on a TCP port). At the
same time, until the time is up:

- POP3 workers (poplib threads) run sessions on their own mailboxes, in turn in plain text,
  with STLS and on the implicit-TLS port: USER/PASS, STAT, UIDL, RETR of some messages, DELE
  of most of those, QUIT; now and then a session drops its connection after DELE instead of
  QUIT, which must delete nothing;
- an LMTP client (smtplib.LMTP) delivers messages with unique Message-IDs and bodies derived
  from them into the same mailboxes;
- every ``--restart-every`` seconds both POP3 services are stopped and started through the
  host's control API (front end first, or backend first, in turn). A refused connection
  (or one reset before the greeting) or ``-ERR [SYS/TEMP]`` while a restart is under way is
  expected and counted apart; anything else is an error;
- every few seconds the resident memory (VmRSS) and open descriptors of the host and of each
  service process are sampled from /proc (service pids from the host's API).

A ledger records every delivery acknowledged with 250, every message retrieved (its body
checked against its Message-ID, its UIDL against earlier sessions), and every DELE confirmed
by QUIT +OK. At the end every mailbox is read whole: what remains must be exactly what was
acknowledged and not deleted, each message once, nothing else. The run exits non-zero if any
guarantee fails: a good client's error outside a restart, an unbalanced ledger, no restart,
or memory or descriptors growing once warm beyond the tolerances below.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import poplib
import random
import secrets
import signal
import smtplib
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.suite import interrupted
from popgate.host._client import HostClient
from popgate.host._common import control_socket_path
from tests.e2e.conftest import (
    Installation,
    insecure_client_context,
    installed,
    open_descriptors,
    resident_kib,
)

BACKEND = "MSExchangePOP3BE"
FRONTEND = "MSExchangePOP3"
DELIVERY = "MSExchangeDelivery"
HOST = "host"
#: The name failures of the control API (restarts, sampling) are recorded under.
CONTROL = "control API"
PASSWORD = "Soak-password-1"
#: Seconds a POP3 or LMTP client waits for any answer: far above any healthy reply here.
CLIENT_TIMEOUT = 30.0
#: A failure this long after a restart's services are Running again still belongs to it: a
#: connection attempt already under way when the front end came back.
RESTART_GRACE = 2.0
#: Where a session is before the server's greeting (and, on port 995, the TLS handshake).
GREETING = "connect and greeting"
#: A connection closed or reset before any greeting: a stopping service closed its listener
#: with the connection still in the kernel's accept queue, never accepted, and the kernel
#: reset it; or (port 995) its TLS handshake was under way when the front end exited: asyncio
#: runs the handshake before the session exists, so the graceful stop does not wait for it.
#: To the client either is a refused connection that took a little longer.
RESET_UNGREETED = "reset before the greeting"
#: Failures a good client may meet while a restart is under way, and only then.
RESTART_KINDS = frozenset({"refused", RESET_UNGREETED, "-ERR [SYS/TEMP]"})
#: Mailboxes are kept about this full: sessions delete more when they hold more, so memory
#: reflects a steady state rather than ever larger maildrops.
STEADY_MESSAGES = 25
#: Share of retrieved messages a session deletes, below and above STEADY_MESSAGES, and of
#: sessions that drop the connection after DELE instead of sending QUIT.
DELETE_SHARE = (0.3, 0.9)
ABANDON_SHARE = 0.05
#: "No growth once warm": between two instants a healthy process's memory differs by what
#: its in-flight sessions buffer (messages of up to 256 KiB, TLS records, relay chunks) and by
#: what the allocator keeps of that; trial runs showed under 2 MiB. Allowed:
#: MEMORY_TOLERANCE_MIB or MEMORY_TOLERANCE_SHARE of the warm figure, whichever is larger
#: (4-5 MiB for these 80-110 MiB processes). Over the warm nine minutes of a 10-minute run
#: (about 6,000 deliveries; over 1,000 sessions in each one-minute life of a POP3 service)
#: that catches a leak of about 1 KiB per delivery, or 4 KiB per session, or any growth
#: that carries over from one life of a POP3 service to the next.
MEMORY_TOLERANCE_MIB = 4.0
MEMORY_TOLERANCE_SHARE = 0.05
#: Open descriptors may differ by the connections open at the sampled instant: two per
#: client connection in the front end (client and backend side), plus a file being written.
FD_PER_CONNECTION = 2
FD_SLACK = 4

Transport = Literal["plain", "stls", "tls"]
TRANSPORTS: tuple[Transport, ...] = ("plain", "stls", "tls")


@dataclass(frozen=True)
class SoakOptions:
    """How long and how hard: the command line's options."""

    seconds: float = 600.0
    restart_every: float = 60.0
    #: Samples from this moment on count as warm (the first minute warms every cache).
    warm_after: float = 60.0
    sample_every: float = 5.0
    pop3_workers: int = 4
    #: Two per worker: a worker alternates between its own two, so none waits on a lock.
    mailboxes_per_worker: int = 2
    #: Pause between one worker's sessions and between deliveries: the machine's two cores
    #: are shared with the servers, and a soak is about time under load, not peak rate.
    think_seconds: float = 0.1
    delivery_pause: float = 0.05
    seed: int = 10


@dataclass(frozen=True)
class Account:
    """A mailbox the soak uses."""

    name: str
    address: str


class LedgerMismatchError(Exception):
    """A retrieved message is not what the ledger says it should be."""


@dataclass
class Failure:
    """One failed client operation."""

    at: float
    client: str
    kind: str
    detail: str


@dataclass
class Sample:
    """One process's figures at one instant."""

    at: float
    role: str
    pid: int
    rss_kib: int
    fds: int


@dataclass
class Ledger:
    """What the clients were told, and so what the mailboxes must hold."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Message-ID -> (mailbox, body lines), from just before DATA: a POP3 session may
    #: retrieve a message before its 250 has reached the LMTP client.
    sent: dict[str, tuple[str, int]] = field(default_factory=dict)
    acknowledged: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    #: DELEs whose QUIT was sent but never answered: the message may be gone or not.
    deleted_in_doubt: set[str] = field(default_factory=set)
    retrieved: Counter[str] = field(default_factory=Counter)
    #: (mailbox, UIDL) -> Message-ID: a UIDL must always name the same message.
    uids: dict[tuple[str, str], str] = field(default_factory=dict)
    abandoned_deletes: int = 0

    def check_retrieved(self, mailbox: str, uid: str, lines: list[bytes]) -> str:
        """Record a RETR; its Message-ID. Raises :class:`LedgerMismatchError` if it is wrong."""
        message_id = message_id_of(lines)
        with self.lock:
            known = self.sent.get(message_id)
            if known is None:
                raise LedgerMismatchError(f"{mailbox}: unknown message {message_id!r}")
            if known[0] != mailbox:
                raise LedgerMismatchError(f"{message_id} is in {mailbox}, sent to {known[0]}")
            if message_id in self.deleted:
                raise LedgerMismatchError(f"{message_id} came back after its deletion")
            before = self.uids.setdefault((mailbox, uid), message_id)
            if before != message_id:
                raise LedgerMismatchError(f"{mailbox}: UIDL {uid} was {before}, now {message_id}")
            if body_of(lines) != expected_body(message_id, known[1]):
                raise LedgerMismatchError(f"{message_id}: body differs from what was delivered")
            self.retrieved[message_id] += 1
        return message_id


def message_id_of(lines: list[bytes]) -> str:
    """The Message-ID (without angle brackets) of a message as poplib's RETR gives it."""
    for line in lines:
        if not line:
            break
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().strip(b"<>").decode("ascii", "replace")
    raise LedgerMismatchError(f"a message without Message-ID: {lines[:8]!r}")


def body_of(lines: list[bytes]) -> list[bytes]:
    """The lines after the header."""
    return lines[lines.index(b"") + 1 :] if b"" in lines else []


def expected_body(message_id: str, count: int) -> list[bytes]:
    """The body the soak delivers under ``message_id``: ``count`` lines naming it."""
    return [f"{message_id} {index:06d} the quick brown fox".encode() for index in range(count)]


def message_bytes(message_id: str, address: str, count: int) -> bytes:
    """A whole message (CRLF lines) with body :func:`expected_body`."""
    head = (
        f"From: soak@example.org\r\nTo: {address}\r\nSubject: soak {message_id}\r\n"
        f"Message-ID: <{message_id}>\r\n\r\n"
    ).encode()
    return head + b"".join(line + b"\r\n" for line in expected_body(message_id, count))


def body_lines(rng: random.Random) -> int:
    """Lines of a message body: mostly a few KiB, some 64 KiB, a few 256 KiB (~45 B a line)."""
    roll = rng.random()
    if roll < 0.01:
        return 5800
    if roll < 0.10:
        return 1450
    return rng.randint(10, 180)


def failure_kind(error: BaseException, step: str) -> str:
    """A short name for what went wrong at ``step``."""
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    raw = error.args[0] if isinstance(error, poplib.error_proto) and error.args else b""
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
    cut = (ConnectionResetError, ssl.SSLEOFError)
    if step == GREETING and (isinstance(error, cut) or text == "-ERR EOF"):
        return RESET_UNGREETED
    if isinstance(error, poplib.error_proto):
        if text.startswith("-ERR [SYS/TEMP]"):
            return "-ERR [SYS/TEMP]"
        return f"POP3 {text[:60]}"
    if isinstance(error, LedgerMismatchError):
        return "ledger"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"LMTP {error.smtp_code}"
    return type(error).__name__


class _Pop3(poplib.POP3):
    """poplib that hands its socket over before the greeting, so a failed one leaks none."""

    def __init__(self, port: int, opened: list[socket.socket]) -> None:
        self._opened = opened
        super().__init__("127.0.0.1", port, timeout=CLIENT_TIMEOUT)

    def _create_socket(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout)
        self._opened.append(sock)
        return sock


class _Pop3Tls(poplib.POP3_SSL):
    """The same on the implicit-TLS port."""

    def __init__(self, port: int, opened: list[socket.socket], context: ssl.SSLContext) -> None:
        self._opened = opened
        self._context = context
        super().__init__("127.0.0.1", port, timeout=CLIENT_TIMEOUT, context=context)

    def _create_socket(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout)
        # Handed over before the handshake: a failed one closes its SSLSocket itself.
        self._opened.append(sock)
        return self._context.wrap_socket(sock, server_hostname=self.host)


def process_figures(pid: int) -> tuple[int, int] | None:
    """VmRSS (KiB) and open descriptors of ``pid``; None if it has ended."""
    try:
        return resident_kib(pid), open_descriptors(pid)
    except (FileNotFoundError, ProcessLookupError, StopIteration):  # ended, or a zombie
        return None


@dataclass
class Figures:
    """One process's memory and descriptors: warm, last, max, and the verdict."""

    role: str
    warm_at_s: float
    warm_rss_mib: float
    last_rss_mib: float
    max_rss_mib: float
    rss_tolerance_mib: float
    warm_fds: int
    last_fds: int
    max_fds: int
    fd_tolerance: int
    processes: int
    no_growth: bool


@dataclass
class SoakReport:
    """Everything the soak found; ``passed`` says whether every guarantee held."""

    duration_s: float
    sessions_completed: int
    sessions_by_transport: dict[str, int]
    sessions_abandoned: int
    good_client_errors: int
    errors: list[str]
    #: Restarts or samples the host's API failed: the soak could not do what it promises.
    control_errors: list[str]
    restart_failures: dict[str, int]
    deliveries_acknowledged: int
    messages_retrieved: int
    messages_deleted: int
    messages_remaining: int
    messages_accounted_for: int
    deletes_in_doubt: int
    ledger_problems: list[str]
    ledger_balanced: bool
    restarts: int
    restart_seconds_median: float
    figures: list[Figures]
    memory_tolerance: str
    passed: bool
    #: Every sample, for a closer look (the JSON file has them; the printout does not).
    samples: list[Sample]

    def lines(self) -> list[str]:
        """The report as printed."""
        by_transport = ", ".join(f"{k} {v:,}" for k, v in self.sessions_by_transport.items())
        during = ", ".join(f"{k} {v:,}" for k, v in sorted(self.restart_failures.items()))
        out = [
            f"duration: {self.duration_s / 60:.1f} min ({self.duration_s:.0f} s)",
            f"POP3 sessions completed (QUIT +OK): {self.sessions_completed:,} ({by_transport}); "
            f"dropped after DELE without QUIT on purpose: {self.sessions_abandoned:,}",
            f"good-client errors outside restarts: {self.good_client_errors}",
            f"control API errors (restarts, sampling): {len(self.control_errors)}",
            f"failures while a restart was under way (expected): {during or 'none'}",
            f"deliveries acknowledged (LMTP 250): {self.deliveries_acknowledged:,}",
            f"messages retrieved (RETR, body checked): {self.messages_retrieved:,}",
            f"messages deleted (DELE confirmed by QUIT +OK): {self.messages_deleted:,}; "
            f"in doubt (QUIT unanswered): {self.deletes_in_doubt}",
            f"messages remaining at the end: {self.messages_remaining:,}",
            f"messages accounted for: {self.messages_accounted_for:,} of "
            f"{self.deliveries_acknowledged:,}; ledger (remaining = acknowledged - deleted, "
            f"each once, nothing else): {'balanced' if self.ledger_balanced else 'NOT BALANCED'}",
            f"restarts of {FRONTEND} + {BACKEND}: {self.restarts} (median "
            f"{self.restart_seconds_median:.2f} s from the first stop to both Running)",
            f"memory (VmRSS) and open descriptors, first warm sample vs last, max; tolerance: "
            f"{self.memory_tolerance}:",
        ]
        out += [
            (
                f"  {f.role}: RSS {f.warm_rss_mib:.1f} MiB (at {f.warm_at_s:.0f} s) -> "
                f"{f.last_rss_mib:.1f} MiB, max {f.max_rss_mib:.1f} MiB "
                f"(tolerance {f.rss_tolerance_mib:.1f}); fds {f.warm_fds} -> {f.last_fds}, "
                f"max {f.max_fds} (tolerance {f.fd_tolerance}); {f.processes} process(es); "
                f"no growth once warm: {'yes' if f.no_growth else 'NO'}"
            )
            for f in self.figures
        ]
        out += [f"  error: {text}" for text in self.errors[:20]]
        out += [f"  control API error: {text}" for text in self.control_errors[:20]]
        out += [f"  ledger: {text}" for text in self.ledger_problems[:20]]
        out.append(f"verdict: {'PASS' if self.passed else 'FAIL'}")
        return out


class Soak:
    """The clients, the restarter and the sampler around one running installation."""

    def __init__(
        self,
        installation: Installation,
        host_pid: int,
        options: SoakOptions,
        progress: Callable[[str], None],
    ) -> None:
        self.inst = installation
        self.host_pid = host_pid
        self.options = options
        self.progress = progress
        self.socket_path = control_socket_path(installation.layout)
        self.context = insecure_client_context()
        self.ledger = Ledger()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.failures: list[Failure] = []
        self.windows: list[tuple[float, float]] = []
        self.restart_seconds: list[float] = []
        self.samples: list[Sample] = []
        self.completed: Counter[str] = Counter()
        self.abandoned = 0
        self.started = time.monotonic()
        self.accounts: list[Account] = []
        self.run_tag = secrets.token_hex(4)
        self.serial = itertools.count(1)

    def now(self) -> float:
        """Seconds since the load began."""
        return time.monotonic() - self.started

    def fail(self, client: str, error: BaseException, step: str = "") -> None:
        """Record a failure at this instant, at ``step`` of the client's work."""
        detail = f"{step}: {error!r}"[:300] if step else repr(error)[:300]
        with self.lock:
            self.failures.append(Failure(self.now(), client, failure_kind(error, step), detail))

    # --- set-up -----------------------------------------------------------------------------

    def create_mailboxes(self) -> None:
        """The workers' mailboxes, through the host's API (New-Mailbox)."""
        count = self.options.pop3_workers * self.options.mailboxes_per_worker
        with HostClient.local(self.socket_path) as client:
            for index in range(count):
                view = client.new_mailbox(f"soak{index:02d}", PASSWORD)
                self.accounts.append(Account(view["name"], view["address"]))

    def ensure_pop3_running(self) -> None:
        """Start whichever POP3 service is stopped, both at once; both must end Running."""
        with HostClient.local(self.socket_path) as client:
            self.start_both(client)

    def start_both(self, client: HostClient) -> None:
        """Send both start controls, then wait for Running (the front end needs no backend
        to start: until the backend runs its logins get -ERR [SYS/TEMP])."""
        for name in (BACKEND, FRONTEND):
            if client.service(name)["status"] == "Stopped":
                client.start(name)
        for name in (BACKEND, FRONTEND):
            self.expect(client, name, "Running")

    # --- the clients ------------------------------------------------------------------------

    def pop3_worker(self, index: int) -> None:
        """Sessions on this worker's own mailboxes until the time is up."""
        rng = random.Random(self.options.seed * 1000 + index)
        per = self.options.mailboxes_per_worker
        mine = self.accounts[index * per : (index + 1) * per]
        for turn in itertools.count():
            if self.stop.is_set():
                return
            transport = TRANSPORTS[(turn + index) % len(TRANSPORTS)]
            self.pop3_session(rng, mine[turn % len(mine)], transport)
            self.stop.wait(rng.uniform(0, 2 * self.options.think_seconds))

    def connect(self, transport: Transport, opened: list[socket.socket]) -> poplib.POP3:
        """A greeted POP3 client over ``transport`` (STLS is the caller's next step)."""
        if transport == "tls":
            return _Pop3Tls(self.inst.ssl_port, opened, self.context)
        return _Pop3(self.inst.plain_port, opened)

    def pop3_session(self, rng: random.Random, account: Account, transport: Transport) -> None:
        """One session; the ledger learns what it retrieved and what its QUIT deleted."""
        opened: list[socket.socket] = []
        client: poplib.POP3 | None = None
        marked: list[str] = []
        quit_sent = False
        step = GREETING
        try:
            client = self.connect(transport, opened)
            if transport == "stls":
                step = "STLS"
                client.stls(self.context)
            step = "USER/PASS"
            client.user(account.name)
            client.pass_(PASSWORD)
            step = "STAT/UIDL"
            count, _ = client.stat()
            _, listing, _ = client.uidl()
            uids = dict(entry.decode().split(" ", 1) for entry in listing)
            if len(uids) != count:
                raise LedgerMismatchError(f"{account.name}: STAT {count}, UIDL {len(uids)} lines")
            extra = min(10, max(0, count - STEADY_MESSAGES))
            wanted = rng.sample(range(1, count + 1), min(count, rng.randint(0, 3) + extra))
            share = DELETE_SHARE[count > STEADY_MESSAGES]
            step = "RETR/DELE"
            for number in sorted(wanted):
                _, lines, _ = client.retr(number)
                message_id = self.ledger.check_retrieved(account.name, uids[str(number)], lines)
                if rng.random() < share:
                    client.dele(number)
                    marked.append(message_id)
            if marked and rng.random() < ABANDON_SHARE:
                client.close()  # no QUIT: no UPDATE state, every message must stay
                with self.lock:
                    self.abandoned += 1
                return
            step, quit_sent = "QUIT", True
            client.quit()
            with self.ledger.lock:
                self.ledger.deleted.update(marked)
            with self.lock:
                self.completed[transport] += 1
        except Exception as error:  # noqa: BLE001 - whatever it is, it is this client's failure
            if quit_sent and marked:
                with self.ledger.lock:
                    self.ledger.deleted_in_doubt.update(marked)
            self.fail(f"POP3 {transport} {account.name}", error, step)
        finally:
            if client is not None:
                client.close()
            for sock in opened:
                sock.close()

    def lmtp_worker(self) -> None:
        """Deliver into random mailboxes until the time is up, a new connection now and then."""
        rng = random.Random(self.options.seed)
        lmtp: smtplib.LMTP | None = None
        try:
            while not self.stop.is_set():
                account = rng.choice(self.accounts)
                message_id = f"soak-{self.run_tag}-{next(self.serial)}@popgate.test"
                count = body_lines(rng)
                try:
                    if lmtp is None:
                        lmtp = smtplib.LMTP("127.0.0.1", self.inst.lmtp_port,
                                            timeout=CLIENT_TIMEOUT)  # fmt: skip
                        lmtp.ehlo()
                    self.deliver(lmtp, account, message_id, count)
                    if rng.random() < 0.02:
                        lmtp.quit()
                        lmtp.close()
                        lmtp = None
                except Exception as error:  # noqa: BLE001 - whatever it is, it is a failure
                    self.fail(f"LMTP {account.name}", error)
                    if lmtp is not None:
                        lmtp.close()
                        lmtp = None
                self.stop.wait(rng.uniform(0, 2 * self.options.delivery_pause))
        finally:
            if lmtp is not None:
                with contextlib.suppress(OSError, smtplib.SMTPException):
                    lmtp.quit()
                lmtp.close()

    def deliver(self, lmtp: smtplib.LMTP, account: Account, message_id: str, count: int) -> None:
        """One transaction, one recipient; the ledger learns of its 250."""
        code, reply = lmtp.mail("soak@example.org")
        if code != 250:
            raise smtplib.SMTPResponseException(code, reply)
        code, reply = lmtp.rcpt(account.address)
        if code != 250:
            raise smtplib.SMTPResponseException(code, reply)
        with self.ledger.lock:
            self.ledger.sent[message_id] = (account.name, count)
        code, reply = lmtp.data(message_bytes(message_id, account.address, count))
        if code != 250:
            raise smtplib.SMTPResponseException(code, reply)
        with self.ledger.lock:
            self.ledger.acknowledged.add(message_id)

    # --- the restarter and the sampler -------------------------------------------------------

    def restarter(self) -> None:
        """Stop and start both POP3 services every ``restart_every`` seconds."""
        every = self.options.restart_every
        with HostClient.local(self.socket_path) as client:
            # The last restart leaves a whole period before the end: the last samples of
            # the POP3 services then come from as long a life as the others.
            for number in itertools.count(1):
                due = number * every
                if due > self.options.seconds - every + 1e-6:
                    return
                if self.stop.wait(max(0.0, due - self.now())):
                    return
                order = [FRONTEND, BACKEND] if number % 2 else [BACKEND, FRONTEND]
                began = self.now()
                try:
                    for name in order:
                        client.stop(name)
                        self.expect(client, name, "Stopped")
                    self.start_both(client)
                except Exception as error:  # noqa: BLE001 - a failed restart fails the run
                    self.fail(CONTROL, error)
                    return
                finally:
                    with self.lock:
                        self.windows.append((began, self.now()))
                self.restart_seconds.append(self.now() - began)
                self.progress(f"{self.now():5.0f} s: restart {number} ({' then '.join(order)} "
                              f"stopped, both Running again) in {self.restart_seconds[-1]:.2f} s; "
                              f"{sum(self.completed.values()):,} sessions, "
                              f"{len(self.ledger.acknowledged):,} deliveries so far")  # fmt: skip

    @staticmethod
    def expect(client: HostClient, name: str, status: str) -> None:
        """Wait out the pending state; ``status`` it must end in."""
        view = client.wait_while_pending(name, interval=0.05)
        if view["status"] != status:
            raise RuntimeError(f"{name} is {view['status']}, not {status}: {view['last_error']}")

    def sampler(self) -> None:
        """Every ``sample_every`` seconds: RSS and descriptors of the host and its services."""
        with HostClient.local(self.socket_path) as client:
            while True:
                at = self.now()
                pids = {HOST: self.host_pid}
                try:
                    views = client.services()
                except Exception as error:  # noqa: BLE001 - the host must answer throughout
                    self.fail(CONTROL, error)
                    views = []
                for view in views:
                    # A stopping service has closed its listeners and drains: not comparable.
                    if view["status"] == "Running" and isinstance(view["pid"], int):
                        pids[view["name"]] = view["pid"]
                for role, pid in pids.items():
                    figures = process_figures(pid)
                    if figures is not None:
                        self.samples.append(Sample(at, role, pid, *figures))
                if self.stop.wait(self.options.sample_every):
                    return

    # --- the run and the final count ---------------------------------------------------------

    def run(self) -> None:
        """All clients, the restarter and the sampler, for ``seconds``."""
        threads = [
            threading.Thread(target=self.pop3_worker, args=(index,), name=f"pop3-{index}")
            for index in range(self.options.pop3_workers)
        ]
        threads += [
            threading.Thread(target=self.lmtp_worker, name="lmtp"),
            threading.Thread(target=self.restarter, name="restarter"),
            threading.Thread(target=self.sampler, name="sampler"),
        ]
        self.started = time.monotonic()
        for thread in threads:
            thread.start()
        try:
            self.stop.wait(self.options.seconds)
        finally:
            self.stop.set()
            for thread in threads:
                thread.join()

    def remaining(self) -> dict[str, list[str]]:
        """Every mailbox's messages (Message-IDs) now, read whole and left in place."""
        found: dict[str, list[str]] = {}
        for account in self.accounts:
            client = poplib.POP3("127.0.0.1", self.inst.plain_port, timeout=CLIENT_TIMEOUT)
            try:
                client.user(account.name)
                client.pass_(PASSWORD)
                count, _ = client.stat()
                found[account.name] = [
                    message_id_of(client.retr(number)[1]) for number in range(1, count + 1)
                ]
                client.quit()
            finally:
                client.close()
        return found

    def reconcile(self, found: dict[str, list[str]]) -> list[str]:
        """What is wrong with the mailboxes' contents according to the ledger."""
        ledger = self.ledger
        problems = []
        where = {message_id: mailbox for mailbox, ids in found.items() for message_id in ids}
        counts = Counter(message_id for ids in found.values() for message_id in ids)
        problems += [f"{m} found {n} times" for m, n in counts.items() if n > 1]
        for message_id in ledger.acknowledged:
            mailbox = ledger.sent[message_id][0]
            if message_id in ledger.deleted:
                if message_id in counts:
                    problems.append(f"{message_id} is still there after its confirmed DELE")
            elif message_id in ledger.deleted_in_doubt:
                continue
            elif message_id not in counts:
                problems.append(f"{message_id} (acknowledged, never deleted) is missing")
            elif where[message_id] != mailbox:
                problems.append(f"{message_id} is in {where[message_id]}, not {mailbox}")
        problems += [
            f"{message_id} was never acknowledged"
            for message_id in counts
            if message_id not in ledger.acknowledged
        ]
        problems += [
            f"{message_id} was deleted but never acknowledged"
            for message_id in ledger.deleted - ledger.acknowledged
        ]
        return problems

    def report(self, duration: float, found: dict[str, list[str]]) -> SoakReport:
        """The figures, the ledger's balance and the verdicts."""
        ledger = self.ledger
        problems = self.reconcile(found)
        errors, control, during = [], [], Counter[str]()
        for failure in self.failures:
            if failure.client == CONTROL:
                control.append(f"{failure.at:.1f} s: {failure.detail}")
            elif (
                failure.client.startswith("POP3")  # mail delivery is never restarted
                and failure.kind in RESTART_KINDS
                and self.in_restart(failure.at)
            ):
                during[failure.kind] += 1
            else:
                errors.append(f"{failure.at:.1f} s {failure.client}: {failure.kind}: "
                              f"{failure.detail}")  # fmt: skip
        remaining = sum(len(ids) for ids in found.values())
        remaining_ids = {m for ids in found.values() for m in ids}
        # A DELE whose QUIT went unanswered is explained either way: gone, or still there.
        explained = ledger.deleted | remaining_ids | ledger.deleted_in_doubt
        accounted = len(ledger.acknowledged & explained)
        figures = [self.figures(role) for role in (HOST, DELIVERY, BACKEND, FRONTEND)]
        balanced = not problems and accounted == len(ledger.acknowledged)
        restarts = len(self.restart_seconds)
        passed = (
            not errors
            and not control
            and balanced
            and restarts >= 1
            and all(f.no_growth for f in figures)
            and sum(self.completed.values()) > 0
            and len(ledger.acknowledged) > 0
        )
        return SoakReport(
            duration_s=duration,
            sessions_completed=sum(self.completed.values()),
            sessions_by_transport={t: self.completed[t] for t in TRANSPORTS},
            sessions_abandoned=self.abandoned,
            good_client_errors=len(errors),
            errors=errors,
            control_errors=control,
            restart_failures=dict(during),
            deliveries_acknowledged=len(ledger.acknowledged),
            messages_retrieved=sum(ledger.retrieved.values()),
            messages_deleted=len(ledger.deleted),
            messages_remaining=remaining,
            messages_accounted_for=accounted,
            deletes_in_doubt=len(ledger.deleted_in_doubt),
            ledger_problems=problems,
            ledger_balanced=balanced,
            restarts=restarts,
            restart_seconds_median=statistics.median(self.restart_seconds or [0.0]),
            figures=figures,
            memory_tolerance=(
                f"RSS +{MEMORY_TOLERANCE_MIB:g} MiB or +{MEMORY_TOLERANCE_SHARE:.0%}, whichever "
                f"is larger; fds +{FD_PER_CONNECTION} per client connection "
                f"({self.options.pop3_workers + 1}) +{FD_SLACK}"
            ),
            passed=passed,
            samples=self.samples,
        )

    def in_restart(self, at: float) -> bool:
        """Whether a restart was under way at ``at`` (or had just ended)."""
        return any(began <= at <= ended + RESTART_GRACE for began, ended in self.windows)

    def figures(self, role: str) -> Figures:
        """Warm vs last vs max for one role.

        The host and MSExchangeDelivery run throughout: first sample at or after
        ``warm_after`` vs the last. The POP3 services get a new process at each restart,
        every one living one period under the same load: the last sample of the first
        process whose life ended once warm vs the last sample of the final process.
        """
        mine = [sample for sample in self.samples if sample.role == role]
        if not mine:
            raise SystemExit(f"no sample of {role}")
        lives: dict[int, list[Sample]] = {}
        for sample in mine:
            lives.setdefault(sample.pid, []).append(sample)
        if role in (FRONTEND, BACKEND):
            ends = [life[-1] for life in lives.values()]
            warm = next((s for s in ends if s.at >= self.options.warm_after), ends[-1])
            last = ends[-1]
        else:
            warm = next((s for s in mine if s.at >= self.options.warm_after), mine[-1])
            last = mine[-1]
        rss_tolerance = max(MEMORY_TOLERANCE_MIB, MEMORY_TOLERANCE_SHARE * warm.rss_kib / 1024)
        fd_tolerance = FD_PER_CONNECTION * (self.options.pop3_workers + 1) + FD_SLACK
        grew = (last.rss_kib - warm.rss_kib) / 1024 > rss_tolerance
        grew = grew or last.fds - warm.fds > fd_tolerance
        return Figures(
            role=role,
            warm_at_s=warm.at,
            warm_rss_mib=warm.rss_kib / 1024,
            last_rss_mib=last.rss_kib / 1024,
            max_rss_mib=max(s.rss_kib for s in mine) / 1024,
            rss_tolerance_mib=rss_tolerance,
            warm_fds=warm.fds,
            last_fds=last.fds,
            max_fds=max(s.fds for s in mine),
            fd_tolerance=fd_tolerance,
            processes=len(lives),
            no_growth=not grew,
        )


def soak(root: Path, options: SoakOptions, progress: Callable[[str], None]) -> SoakReport:
    """Set up popgate in ``root``, run the soak, count what remains; the report.

    The installation is stopped before this returns, and its logs must hold no traceback
    (``installed`` asserts it).
    """
    with installed(root) as installation:
        installation.set("LoginType", "PlainTextLogin")
        host = installation.start_host()
        installation.wait_for_status(DELIVERY, "Running")
        run = Soak(installation, host.pid, options, progress)
        run.create_mailboxes()
        run.ensure_pop3_running()
        progress(f"popgate host running (pid {host.pid}); {len(run.accounts)} mailboxes, "
                 f"{options.pop3_workers} POP3 workers, one LMTP client; "
                 f"{options.seconds:.0f} s of load ...")  # fmt: skip
        run.run()
        duration = run.now()
        # The last restart ended a period ago, but a failed one would leave a service down.
        run.ensure_pop3_running()
        found = run.remaining()
        return run.report(duration, found)


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A temporary folder for the installation."""
    with tempfile.TemporaryDirectory(prefix="popgate-soak-") as folder:
        yield Path(folder)


def main() -> None:
    """Parse the options, soak, print (and write) the report; exit 1 if a guarantee failed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10, help="length of the load")
    parser.add_argument("--restart-every", type=float, default=60, help="seconds")
    parser.add_argument("--workers", type=int, default=4, help="concurrent POP3 clients")
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    seconds = args.minutes * 60
    if seconds < 2 * args.restart_every or args.workers < 1:
        parser.error("--minutes must allow two restart periods; --workers at least 1")
    signal.signal(signal.SIGTERM, interrupted)
    options = SoakOptions(
        seconds=seconds,
        restart_every=args.restart_every,
        warm_after=min(60.0, args.restart_every),
        pop3_workers=args.workers,
    )
    with scratch() as root:
        report = soak(root, options, lambda line: print(line, flush=True))
    print()
    for line in report.lines():
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(dataclasses.asdict(report), indent=1) + "\n")
    sys.exit(0 if report.passed else 1)


if __name__ == "__main__":
    main()
