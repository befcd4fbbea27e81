"""Fuzz a running MSExchangePOP3 front end over the network (popgate issue 10).

A bounded, seeded, generation- and mutation-based fuzzer: each case opens one or more
connections to the plain-text port (with STLS) or the implicit-TLS port and sends malformed
command sequences (valid commands in invalid states, bad arguments, binary bytes, NULs, bare
CR or LF, lines at and over MaxCommandSize, pipelined bursts, broken SASL exchanges, STLS
abuse and plaintext injection, half-closed sockets, TLS garbage and truncated handshakes,
mutated transcripts from ``tests/protocol/transcripts``).

Properties checked:

* every reply is a well-formed ``+OK``/``-ERR`` line (or SASL ``+`` challenge, or a properly
  terminated multi-line block), never more replies than lines sent, and the server closes
  the connection soon after the client's EOF; where a case knows its replies (STLS abuse,
  commands before a half-close) exactly those arrive;
* plaintext sent behind STLS is never executed (CVE-2011-0411);
* every ``--check-every`` cases a well-behaved poplib client (USER/PASS, STAT, RETR 1, QUIT)
  succeeds, on the plain, STLS and TLS ports in turn;
* at the end the front end and backend are alive, their logs hold no Traceback, and their
  open descriptors and resident memory are back near the baseline.

Run: ``python -m fuzz.fuzz_network --seconds 60 --seed 1 [--json FILE]`` from the repository
starts its own installation in a temporary folder (front end, backend, delivery; fuzz
mailboxes are topped up by LMTP as fuzzed DELE and QUIT empty them).
``--host/--port/--ssl-port/--user/--password`` (and ``--fuzz-account``, ``--lmtp-socket``,
``--frontend-pid``, ``--backend-pid``) target a running one instead. Each case is generated
from the seed and its index alone. Failing cases go to ``--failures FILE`` (JSON, default
``test-artifacts/netfuzz-failures.json``); ``--replay FILE`` runs them again, one by one.
CI runs it bounded from ``tests/security/test_network_fuzz.py``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import poplib
import random
import re
import smtplib
import socket
import ssl
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tests.e2e.conftest import insecure_client_context, installed, resident_kib

__all__ = [
    "Case",
    "CaseResult",
    "FuzzReport",
    "Step",
    "Target",
    "generate_case",
    "good_client",
    "install",
    "load_cases",
    "main",
    "run_case",
    "run_fuzz",
]

CRLF: Final = b"\r\n"
#: Seconds the server may take to close after the client's EOF (two busy shared cores).
CLOSE_DEADLINE: Final = 20.0
#: Seconds to wait for the replies a sync point expects.
SYNC_DEADLINE: Final = 8.0
TRANSCRIPTS: Final = Path(__file__).resolve().parent.parent / "tests/protocol/transcripts"

# --- cases ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One thing a case does on its connection.

    ``op`` is one of: ``send`` (write ``data``, through TLS when it is up), ``raw`` (write
    ``data`` to the TCP socket even under TLS), ``tls`` (a full TLS handshake now),
    ``hello`` (send the first ``size`` bytes of a real ClientHello, then ``data``),
    ``partial_handshake`` (ClientHello, read the server's flight, send ``size`` bytes of the
    client's answer), ``starttls`` (wait for pending replies, send ``STLS`` and ``data`` in
    one write, handshake on ``+OK``), ``sync`` (wait for pending replies), ``expect`` (sync,
    then the last reply starts with ``data`` and there is no extra reply), ``pause``
    (``size`` milliseconds) and ``half_close`` (shut down the sending side).
    """

    op: str
    data: bytes = b""
    size: int = 0

    def to_json(self) -> dict[str, object]:
        """A JSON-friendly form (bytes as hex)."""
        return {"op": self.op, "data": self.data.hex(), "size": self.size}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Step:
        """The inverse of :meth:`to_json`."""
        return cls(str(value["op"]), bytes.fromhex(str(value["data"])), int(value["size"]))


@dataclass(frozen=True, slots=True)
class Case:
    """A fuzz case: where to connect, what to do, and how the connection ends.

    ``ending`` is ``eof`` (half-close, then read until the server closes) or ``abort``
    (reset the connection without reading further). ``connections`` > 1 repeats the steps
    on that many simultaneous connections.
    """

    kind: str
    port: str
    steps: tuple[Step, ...]
    ending: str = "eof"
    connections: int = 1
    #: Where the case came from (seed and index), to regenerate it.
    origin: str = ""

    def to_json(self) -> dict[str, object]:
        """A JSON-friendly form, for the failures file."""
        return {
            "kind": self.kind,
            "port": self.port,
            "ending": self.ending,
            "connections": self.connections,
            "origin": self.origin,
            "steps": [step.to_json() for step in self.steps],
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Case:
        """The inverse of :meth:`to_json`."""
        return cls(
            kind=str(value["kind"]),
            port=str(value["port"]),
            steps=tuple(Step.from_json(step) for step in value["steps"]),
            ending=str(value["ending"]),
            connections=int(value["connections"]),
            origin=str(value.get("origin", "")),
        )


def load_cases(path: Path) -> list[Case]:
    """The cases of a failures file written by :func:`run_fuzz`."""
    data = json.loads(path.read_text())
    return [Case.from_json(entry["case"]) for entry in data]


# --- the target -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A running front end, and accounts the fuzzer may use there."""

    host: str
    plain_port: int
    ssl_port: int
    #: The well-behaved client's account; its mailbox holds ``good_message`` first.
    user: str
    password: str
    good_message: bytes | None = None
    #: Accounts the fuzz cases log on to (their own, so the good client is never IN-USE).
    fuzz_accounts: tuple[tuple[str, str], ...] = ()
    max_command_size: int = 512
    #: Where the good client connects from: another loopback address than the fuzzer's
    #: (its failed logins must not throttle the good client); "" for any.
    good_source: str = "127.0.0.2"
    #: Processes whose liveness, descriptors and memory are watched, with their log files.
    frontend_pid: int | None = None
    backend_pid: int | None = None
    logs: tuple[Path, ...] = ()
    #: MSExchangeDelivery's LMTP socket: fuzz mailboxes that DELE and QUIT are topped up.
    lmtp_socket: Path | None = None

    @property
    def accounts(self) -> tuple[tuple[str, str], ...]:
        """The accounts fuzz cases log on to."""
        return self.fuzz_accounts or ((self.user, self.password),)


# --- checking replies -------------------------------------------------------------------

_STATUS_TEXT: Final = re.compile(r"[^\x00-\x1f\x7f]*")
_CHALLENGE: Final = re.compile(
    rb"\+(?: (?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?)?"
)


class ReplyChecker:
    """Parses what a server sent on one segment (plaintext, or TLS) and notes what is wrong.

    The fuzz mailboxes hold no line that starts with ``+`` or ``-``, so any such line outside
    a multi-line block is a status line, and a block is recognisable without knowing which
    command a reply answers.
    """

    def __init__(self, *, greeting: bool, label: str) -> None:
        self.label = label
        self.expect_greeting = greeting
        self.buffer = bytearray()
        self.statuses: list[bytes] = []
        self.problems: list[str] = []
        self._after_ok = False
        self._in_block = False

    def feed(self, data: bytes) -> None:
        """Take received bytes; whole lines are checked at once."""
        self.buffer += data
        while (end := self.buffer.find(b"\n")) >= 0:
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 1]
            if not line.endswith(b"\r"):
                self._problem(f"line ends in a bare LF: {line[:80]!r}")
            else:
                line = line[:-1]
            self._line(line)

    def _problem(self, text: str) -> None:
        if len(self.problems) < 10:
            self.problems.append(f"{self.label}: {text}")

    def _line(self, line: bytes) -> None:
        if b"\r" in line or b"\0" in line:
            self._problem(f"CR or NUL inside a reply line: {line[:80]!r}")
        if self._in_block:
            if line == b".":
                self._in_block = False
            elif line.startswith(b".") and not line.startswith(b".."):
                self._problem(f"a block line starting with a dot is not stuffed: {line[:80]!r}")
            return
        if line.startswith((b"+", b"-")):
            self._status(line)
            return
        if self._after_ok:
            # The +OK began a multi-line reply: this is its first line.
            self._after_ok = False
            self._in_block = True
            self._line(line)
            return
        self._problem(f"not a status line: {line[:80]!r}")

    def _status(self, line: bytes) -> None:
        self._after_ok = False
        # An -ERR greeting is how a server refuses a connection (limits): allowed.
        if self.expect_greeting and not self.statuses and not line.startswith((b"+OK", b"-ERR")):
            self._problem(f"greeting is not a status line: {line[:80]!r}")
        self.statuses.append(line)
        if line.startswith((b"+OK", b"-ERR")):
            keyword, _, text = line.partition(b" ")
            if keyword not in (b"+OK", b"-ERR"):
                self._problem(f"malformed status keyword: {line[:80]!r}")
            try:
                decoded = text.decode("utf-8")
            except UnicodeDecodeError:
                self._problem(f"status text is not UTF-8: {line[:80]!r}")
                return
            if not _STATUS_TEXT.fullmatch(decoded):
                self._problem(f"control characters in status text: {line[:80]!r}")
            self._after_ok = keyword == b"+OK"
        elif not _CHALLENGE.fullmatch(line):
            self._problem(f"malformed status or challenge line: {line[:80]!r}")

    def finish(self) -> None:
        """The server closed: nothing may be left half-sent."""
        if self.buffer:
            self._problem(f"connection closed mid-line: {bytes(self.buffer[:80])!r}")
        if self._in_block:
            self._problem("connection closed inside a multi-line reply")


@dataclass
class Segment:
    """One stretch of a connection: plaintext, or after a TLS handshake."""

    checker: ReplyChecker | None
    #: Line ends sent in this segment (each may earn one reply).
    lines_sent: int = 0
    greeting: bool = False
    raw: bytearray = field(default_factory=bytearray)

    @property
    def statuses(self) -> int:
        """Status lines received so far."""
        return len(self.checker.statuses) if self.checker is not None else 0

    @property
    def expected(self) -> int:
        """Status lines due once everything sent so far is answered."""
        return self.lines_sent + (1 if self.greeting else 0)


class ServerClosedError(Exception):
    """The server closed the connection (or reset it)."""


class Wire:
    """A client connection with an optional TLS layer over memory BIOs.

    The TLS layer is ours (``ssl.SSLObject``), not ``SSLSocket``, so the fuzzer can still
    write raw bytes under TLS, half-close the TCP connection and keep reading decrypted data.
    """

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self.context = context
        self.tls: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.segments: list[Segment] = []
        self.eof = False
        #: The client has sent its FIN (without TLS close_notify: a TLS server may abort).
        self.half_closed = False
        self.problems: list[str] = []

    @property
    def segment(self) -> Segment:
        """The segment bytes arrive in now."""
        return self.segments[-1]

    def new_segment(self, *, checked: bool, greeting: bool) -> None:
        """Start a segment (after a handshake, replies begin afresh)."""
        label = f"segment {len(self.segments)} ({'tls' if self.tls else 'plain'})"
        checker = ReplyChecker(greeting=greeting, label=label) if checked else None
        self.segments.append(Segment(checker=checker, greeting=greeting))

    # -- output --

    def write(self, data: bytes) -> None:
        """Send application data (encrypted when TLS is up)."""
        self.segment.lines_sent += data.count(b"\n")
        if self.tls is None:
            self.write_raw(data)
            return
        view = memoryview(data)
        while view:
            written = self.tls.write(view[:16384])
            view = view[written:]
            self._flush()

    def write_raw(self, data: bytes) -> None:
        """Send bytes on the TCP connection as they are."""
        try:
            self.sock.sendall(data)
        except OSError as error:
            self.eof = True
            raise ServerClosedError from error

    def _flush(self) -> None:
        if pending := self._outgoing.read():
            self.write_raw(pending)

    def half_close(self) -> None:
        """Shut down the sending side (FIN); reading goes on."""
        self.half_closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    # -- input --

    def receive(self, timeout: float) -> bool:
        """Read what arrives within ``timeout``; False when nothing did."""
        if self.eof:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            raw = self.sock.recv(65536)
        except TimeoutError:
            return False
        except OSError:
            raw = b""
        if not raw:
            self.eof = True
            if self.tls is not None:
                self._incoming.write_eof()
                self._decrypt()
            return True
        if self.tls is None:
            self._deliver(raw)
        else:
            self._incoming.write(raw)
            self._decrypt()
        return True

    def _decrypt(self) -> None:
        assert self.tls is not None
        while True:
            try:
                data = self.tls.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.eof = True
                break
            except ssl.SSLError as error:
                # A TLS alert or a close without close_notify: the connection is over. After
                # the client's bare FIN that is the server's right answer (truncation).
                self.eof = True
                if not self.half_closed:
                    self.problems.append(f"tls read ended: {error.reason or error}")
                break
            if not data:
                self.eof = True
                break
            self._deliver(data)
        with contextlib.suppress(ServerClosedError):
            self._flush()

    def _deliver(self, data: bytes) -> None:
        segment = self.segment
        segment.raw += data
        if segment.checker is not None:
            segment.checker.feed(data)

    def wait_for(self, condition: Callable[[], bool], deadline: float) -> bool:
        """Read until ``condition()`` holds, the server closes, or ``deadline``."""
        while not condition():
            if self.eof:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.receive(min(remaining, 0.5))
        return True

    def poll(self) -> None:
        """Take whatever is already there, without waiting."""
        while self.receive(0.001) and not self.eof:
            pass

    # -- TLS --

    def handshake(self, deadline: float) -> str | None:
        """A full TLS handshake; None on success, else why it failed."""
        self.tls = self.context.wrap_bio(self._incoming, self._outgoing)
        while True:
            try:
                self.tls.do_handshake()
                self._flush()
                return None
            except ssl.SSLWantReadError:
                try:
                    self._flush()
                except ServerClosedError:
                    return "connection closed during the handshake"
                if self.eof:
                    return "connection closed during the handshake"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "handshake timed out"
                self.sock.settimeout(remaining)
                try:
                    raw = self.sock.recv(65536)
                except (TimeoutError, OSError) as error:
                    return f"handshake read failed: {error!r}"
                if not raw:
                    self.eof = True
                    return "connection closed during the handshake"
                self._incoming.write(raw)
            except ssl.SSLError as error:
                return f"handshake failed: {error.reason or error}"


def client_hello(context: ssl.SSLContext) -> bytes:
    """The bytes of a real ClientHello from ``context``."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


# --- running a case ---------------------------------------------------------------------


@dataclass
class CaseResult:
    """What one case did, and what was wrong."""

    case: Case
    problems: list[str]
    connections: int
    seconds: float


def _connect(target: Target, port: str) -> socket.socket:
    number = target.ssl_port if port == "ssl" else target.plain_port
    return socket.create_connection((target.host, number), timeout=10)


def run_case(target: Target, case: Case, context: ssl.SSLContext) -> CaseResult:
    """Run ``case`` against ``target``; its problems (empty when every property held)."""
    started = time.monotonic()
    problems: list[str] = []
    if case.connections == 1:
        problems = _run_connection(target, case, context)
    else:
        # Many at once: each connection's steps run interleaved with the others'.
        results: list[list[str]] = [[] for _ in range(case.connections)]
        threads = [
            threading.Thread(
                target=lambda i=i: results[i].extend(_run_connection(target, case, context))
            )
            for i in range(case.connections)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        problems = [problem for result in results for problem in result][:10]
    return CaseResult(case, problems, case.connections, time.monotonic() - started)


def _run_connection(target: Target, case: Case, context: ssl.SSLContext) -> list[str]:
    try:
        sock = _connect(target, case.port)
    except OSError as error:
        return [f"connect failed: {error!r}"]
    wire = Wire(sock, context)
    problems: list[str] = []
    finished = False
    try:
        wire.new_segment(checked=case.port != "ssl", greeting=case.port != "ssl")
        _run_steps(wire, case, problems)
        if case.ending == "abort":
            # A reset rather than a FIN: the server's next write or read fails.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif not wire.eof:
            wire.half_close()
            wire.wait_for(lambda: False, time.monotonic() + CLOSE_DEADLINE)
            if not wire.eof:
                problems.append(f"still open {CLOSE_DEADLINE:.0f} s after the client's EOF")
        finished = wire.eof
    except (ServerClosedError, ssl.SSLError):
        # Reset while writing, or a TLS alert: the server gave up on the connection, which
        # is allowed; what it said before is still checked, not whether it ended cleanly.
        pass
    finally:
        sock.close()
    _final_checks(wire, case, problems, finished=finished)
    return problems


def _final_checks(wire: Wire, case: Case, problems: list[str], *, finished: bool) -> None:
    for segment in wire.segments:
        if segment.checker is None:
            continue
        if finished:
            segment.checker.finish()
        problems.extend(segment.checker.problems)
        # One reply per line, the greeting, and one parting -ERR for abuse at most.
        if segment.statuses > segment.expected + 1:
            problems.append(
                f"{segment.checker.label}: {segment.statuses} replies to {segment.lines_sent} lines"
            )
    if case.kind.startswith("tls") or any(step.op == "raw" for step in case.steps):
        return  # garbage under TLS: an alert is the right answer
    problems.extend(wire.problems)


def _run_steps(wire: Wire, case: Case, problems: list[str]) -> None:
    for step in case.steps:
        if wire.eof:
            return
        op = step.op
        if op == "send":
            wire.write(step.data)
            wire.poll()
        elif op == "raw":
            _leave_plaintext(wire)
            wire.write_raw(step.data)
            wire.poll()
        elif op == "pause":
            time.sleep(step.size / 1000)
            wire.poll()
        elif op == "half_close":
            wire.half_close()
        elif op == "sync":
            _sync(wire)
        elif op == "expect":
            _expect(wire, step.data, problems)
        elif op == "tls":
            failure = wire.handshake(time.monotonic() + SYNC_DEADLINE)
            if failure is not None:
                problems.append(f"implicit TLS: {failure}")
                return
            wire.new_segment(checked=True, greeting=True)
        elif op == "starttls":
            if not _starttls(wire, step.data, problems):
                return
        elif op == "hello":
            _leave_plaintext(wire)
            wire.write_raw(client_hello(wire.context)[: step.size] + step.data)
            wire.poll()
        elif op == "partial_handshake":
            _partial_handshake(wire, step.size)
        else:
            raise ValueError(f"unknown step {op!r}")


def _leave_plaintext(wire: Wire) -> None:
    """TLS bytes on a plaintext connection (after STLS): what comes back is TLS, unchecked."""
    if wire.tls is None and wire.segment.checker is not None:
        wire.new_segment(checked=False, greeting=False)


def _sync(wire: Wire) -> None:
    segment = wire.segment
    wire.wait_for(lambda: segment.statuses >= segment.expected, time.monotonic() + SYNC_DEADLINE)


def _expect(wire: Wire, prefix: bytes, problems: list[str]) -> None:
    segment = wire.segment
    _sync(wire)
    # Let any extra (unsolicited) reply arrive before counting.
    wire.wait_for(lambda: False, time.monotonic() + 0.2)
    checker = segment.checker
    if checker is None:
        return
    last = checker.statuses[-1] if checker.statuses else b""
    if not last.startswith(prefix):
        problems.append(f"expected {prefix!r}, got {last[:80]!r}")
    if segment.statuses != segment.expected:
        problems.append(
            f"{checker.label}: {segment.statuses} replies where {segment.expected} were due"
        )


def _starttls(wire: Wire, injected: bytes, problems: list[str]) -> bool:
    """STLS with ``injected`` plaintext in the same write; False when the case must stop."""
    _sync(wire)
    segment = wire.segment
    before = segment.statuses
    wire.write(b"STLS\r\n" + injected)
    wire.wait_for(lambda: segment.statuses > before, time.monotonic() + SYNC_DEADLINE)
    checker = segment.checker
    if checker is None or segment.statuses <= before:
        return not wire.eof
    reply = checker.statuses[before]
    if not reply.startswith(b"+OK"):
        return True
    # Anything but the handshake after +OK means plaintext was answered (CVE-2011-0411).
    wire.wait_for(lambda: False, time.monotonic() + 0.05)
    if segment.statuses > before + 1 or checker.buffer:
        problems.append(f"plaintext answered after STLS +OK: {bytes(segment.raw[-200:])!r}")
        return False
    failure = wire.handshake(time.monotonic() + SYNC_DEADLINE)
    if failure is not None:
        problems.append(f"STLS was accepted but {failure}")
        return False
    wire.new_segment(checked=True, greeting=False)
    return True


def _partial_handshake(wire: Wire, size: int) -> None:
    """Start a real handshake, then send only ``size`` bytes of the client's second flight."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = wire.context.wrap_bio(incoming, outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    wire.write_raw(outgoing.read())
    deadline = time.monotonic() + SYNC_DEADLINE
    while time.monotonic() < deadline:
        wire.sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            raw = wire.sock.recv(65536)
        except (TimeoutError, OSError):
            return
        if not raw:
            wire.eof = True
            return
        incoming.write(raw)
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            if answer := outgoing.read():
                wire.write_raw(answer[:size])
                return
            continue
        except ssl.SSLError:
            return
        wire.write_raw(outgoing.read()[:size])
        return


# --- generating cases -------------------------------------------------------------------

VERBS: Final = (
    "USER", "PASS", "APOP", "AUTH", "STLS", "CAPA", "UTF8", "XCLIENT", "STAT", "LIST", "RETR",
    "TOP", "DELE", "UIDL", "NOOP", "RSET", "QUIT", "LANG", "IMPLEMENTATION", "XTND",
)  # fmt: skip
BAD_ARGUMENTS: Final = (
    "", " ", "-1", "0", "-0", "+1", "1.5", "0x10", "abc", "1 2", "1 2 3", "1  2", "1\t2",
    "99999999999999999999", "18446744073709551617", "2147483648", "4294967296", "1e9",
    "\uff11", "\u0661", "1 -1", "1 0", "1 99999999999999999999", "%s%n%x", "../../../etc/passwd",
    "' OR 1=1 --", "=", "*", "AAAA====", "a" * 300, "1 " * 100,
)  # fmt: skip
SASL_LINES: Final = (
    b"*", b"=", b"", b" ", b"AAA", b"AAA=BBB", b"====", b"AHVzZXIA", b"AHVzZXIAcGFzcw==",
    b"!!!!", b"YQ==YQ==", b"\x00", b"n,,n=user,r=abc", b"biws", b"x" * 1000,
    base64.b64encode(b"n,,n=u,r=" + b"A" * 200), base64.b64encode(b"c=biws,r=x,p=AAAA"),
)  # fmt: skip
SPECIAL_BYTES: Final = (
    b"\0", b"\r", b"\n", b"\r\r\n", b"\n\r", b"\xff", b"\xfe\xff", b"\x1b[2J", b"\x7f",
    b"\xc0\x80", b"\xed\xa0\x80", b"\t", b" ", b"\x00\r\n", b"%n", b"\xe2\x80\xa8",
)  # fmt: skip
KINDS: Final = (
    "wrong_state", "bad_arguments", "binary", "line_length", "pipelined", "sasl", "stls",
    "stls_injection", "half_close", "tls_garbage", "tls_truncated", "transcript",
    "many_connections",
)  # fmt: skip


def _line(text: str | bytes) -> bytes:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return data + CRLF


def _login(rng: random.Random, target: Target) -> list[Step]:
    name, password = rng.choice(target.accounts)
    if rng.random() < 0.5:
        return [Step("send", _line(f"USER {name}") + _line(f"PASS {password}")), Step("sync")]
    token = base64.b64encode(f"\0{name}\0{password}".encode())
    return [Step("send", _line(b"AUTH PLAIN " + token)), Step("sync")]


def _prefix(rng: random.Random, target: Target) -> tuple[str, list[Step]]:
    """A start state: fresh, after USER, logged on (proxied), on 995, or after STLS."""
    choice = rng.choice(("fresh", "user", "logged_on", "logged_on", "ssl", "stls"))
    if choice == "fresh":
        return "plain", []
    if choice == "user":
        return "plain", [Step("send", _line(f"USER {rng.choice(target.accounts)[0]}"))]
    if choice == "logged_on":
        return "plain", _login(rng, target)
    if choice == "ssl":
        steps = [Step("tls")]
        return "ssl", steps + (_login(rng, target) if rng.random() < 0.5 else [])
    return "plain", [Step("starttls")] + (_login(rng, target) if rng.random() < 0.5 else [])


def _command(rng: random.Random) -> bytes:
    verb = rng.choice(VERBS)
    if rng.random() < 0.2:
        verb = verb.lower() if rng.random() < 0.5 else verb.capitalize()
    argument = rng.choice(("", "", "1", "1 0", "2", rng.choice(BAD_ARGUMENTS)))
    return _line(f"{verb} {argument}".rstrip() if argument else verb)


def _chunked(rng: random.Random, data: bytes) -> list[Step]:
    """``data`` in one write, or cut into pieces with pauses (different packets)."""
    if rng.random() < 0.6 or len(data) < 2:
        return [Step("send", data)]
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 5))))
    steps: list[Step] = []
    for begin, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        steps += [Step("send", data[begin:end]), Step("pause", size=rng.choice((0, 1, 20)))]
    return steps


def _gen_wrong_state(rng: random.Random, target: Target) -> tuple[str, list[Step]]:
    port, steps = _prefix(rng, target)
    commands = b"".join(_command(rng) for _ in range(rng.randint(1, 15)))
    return port, steps + _chunked(rng, commands)


def _gen_bad_arguments(rng: random.Random, target: Target) -> tuple[str, list[Step]]:
    port, steps = _prefix(rng, target)
    lines = []
    for _ in range(rng.randint(1, 12)):
        verb = rng.choice(("RETR", "TOP", "LIST", "UIDL", "DELE", "USER", "PASS", "AUTH", "STAT"))
        arguments = " ".join(rng.choice(BAD_ARGUMENTS) for _ in range(rng.randint(1, 3)))
        lines.append(_line(f"{verb} {arguments}"))
    return port, steps + _chunked(rng, b"".join(lines))


def _random_bytes(rng: random.Random, size: int) -> bytes:
    parts: list[bytes] = []
    while sum(len(part) for part in parts) < size:
        roll = rng.random()
        if roll < 0.3:
            parts.append(rng.choice(SPECIAL_BYTES))
        elif roll < 0.5:
            parts.append(_command(rng))
        else:
            parts.append(rng.randbytes(rng.randint(1, 32)))
    return b"".join(parts)[:size]


def _gen_binary(rng: random.Random, target: Target) -> tuple[str, list[Step]]:
    port, steps = _prefix(rng, target)
    data = _random_bytes(rng, rng.choice((1, 8, 64, 512, 4096)))
    if rng.random() < 0.5:
        data += CRLF + _line("NOOP")
    return port, steps + _chunked(rng, data)


def _gen_line_length(rng: random.Random, target: Target) -> tuple[str, list[Step]]:
    port, steps = _prefix(rng, target)
    limit = target.max_command_size
    size = rng.choice(
        (limit - 3, limit - 2, limit - 1, limit, limit + 1, 1024, 65534, 65535, 65536, 70000)
    )
    verb = rng.choice((b"USER ", b"NOOP ", b"LIST ", b"AUTH PLAIN ", b"", b"X"))
    body = verb + b"a" * max(0, size - 2 - len(verb))
    ending = rng.choice((CRLF, b"\n", b"\r", b""))
    data = body + ending
    if rng.random() < 0.3:
        data = data * rng.randint(2, 4)
    if rng.random() < 0.5:
        data += _line("NOOP")
    return port, steps + _chunked(rng, data)


def _gen_pipelined(rng: random.Random, target: Target) -> tuple[str, list[Step]]:
    port, steps = _prefix(rng, target)
    lines = [_command(rng) for _ in range(rng.randint(20, 300))]
    if rng.random() < 0.5:
        name, password = rng.choice(target.accounts)
        at = rng.randint(0, len(lines))
        lines[at:at] = [_line(f"USER {name}"), _line(f"PASS {password}")]
    if rng.random() < 0.5:
        lines += [_line("RETR 1"), _line("LIST"), _line("UIDL"), _line("TOP 1 0")] * 5
    return port, [*steps, Step("send", b"".join(lines))]


def _gen_sasl(rng: random.Random, target: Target) -> tuple[str, list[Step]]:
    port = "plain"
    steps: list[Step] = []
    if rng.random() < 0.3:
        port, steps = "ssl", [Step("tls")]
    mechanism = rng.choice(("PLAIN", "LOGIN", "SCRAM-SHA-256", "CRAM-MD5", "GSSAPI", "X" * 40))
    first = _line(f"AUTH {mechanism}")
    if rng.random() < 0.4:
        first = _line(f"AUTH {mechanism} ".encode() + rng.choice(SASL_LINES))
    exchange = [first] + [_line(rng.choice(SASL_LINES)) for _ in range(rng.randint(0, 4))]
    if rng.random() < 0.2:
        exchange.append(b"A" * rng.choice((65533, 65534, 65536, 70000)) + CRLF)
    if rng.random() < 0.3:
        name, password = rng.choice(target.accounts)
        exchange += [_line("AUTH LOGIN"), _line(base64.b64encode(name.encode()))]
        if rng.random() < 0.5:
            exchange.append(_line(base64.b64encode(password.encode())))
    data = b"".join(exchange)
    if rng.random() < 0.3:
        cut = data[: rng.randint(1, len(data))]
        return port, [*steps, Step("send", cut), Step("half_close")]
    return port, steps + _chunked(rng, data)


def _gen_stls(rng: random.Random, target: Target) -> tuple[str, list[Step]]:
    variant = rng.choice(("twice", "on_ssl", "after_user", "garbage", "truncated", "repeat"))
    if variant == "twice":
        return "plain", [Step("starttls"), Step("send", _line("STLS")), Step("expect", b"-ERR")]
    if variant == "on_ssl":
        return "ssl", [Step("tls"), Step("send", _line("STLS")), Step("expect", b"-ERR")]
    if variant == "after_user":
        name, password = rng.choice(target.accounts)
        # USER before STLS is forgotten by the handshake (RFC 2595 section 4).
        return "plain", [
            Step("send", _line(f"USER {name}")),
            Step("starttls"),
            Step("send", _line(f"PASS {password}")),
            Step("expect", b"-ERR"),
        ]
    if variant == "garbage":
        steps = [Step("send", _line("STLS")), Step("sync")]
        return "plain", [*steps, Step("raw", _random_bytes(rng, rng.choice((1, 5, 100, 3000))))]
    if variant == "truncated":
        steps = [Step("send", _line("STLS")), Step("sync")]
        return "plain", [*steps, Step("hello", size=rng.randint(0, 600))]
    return "plain", [Step("send", _line("STLS") * rng.randint(2, 30))]


def _gen_stls_injection(rng: random.Random, target: Target) -> tuple[str, list[Step]]:
    name, password = rng.choice(target.accounts)
    injected = rng.choice(
        (
            (_line("CAPA"), _line("NOOP"), b"-ERR"),
            (_line(f"USER {name}"), _line(f"PASS {password}"), b"-ERR"),
            (_line(f"USER {name}") + _line(f"PASS {password}"), _line("STAT"), b"-ERR"),
            (_line("STLS"), _line("NOOP"), b"-ERR"),
            (_line("QUIT"), _line("NOOP"), b"-ERR"),
        )
    )
    plain, after, prefix = injected
    return "plain", [Step("starttls", plain), Step("send", after), Step("expect", prefix)]


def _gen_half_close(rng: random.Random, target: Target) -> tuple[str, list[Step]]:
    """Valid commands, then EOF: every complete line is still answered, then the close."""
    port, steps = _prefix(rng, target)
    logged_on = any(b"PASS " in s.data or b"AUTH PLAIN " in s.data for s in steps)
    pool: tuple[str, ...] = (
        "STAT",
        "LIST",
        "UIDL",
        "RETR 1",
        "TOP 1 2",
        "NOOP",
        "RSET",
        "LIST 1",
        "UIDL 2",
    )
    if not logged_on:
        pool = ("CAPA", "NOOP", "STAT", f"USER {target.accounts[0][0]}", "UTF8")
    lines = b"".join(_line(rng.choice(pool)) for _ in range(rng.randint(1, 12)))
    if rng.random() < 0.3:
        lines += _line("QUIT")
    tail = [Step("send", lines)]
    if rng.random() < 0.3:
        tail.append(Step("send", b"NOO"))  # an unterminated last line is never executed
    if port == "ssl" or any(step.op == "starttls" for step in steps):
        # A bare FIN under TLS looks like truncation, which a TLS server may abort on.
        return port, [*steps, *tail, Step("half_close")]
    return port, [*steps, *tail, Step("half_close"), Step("expect", b"")]


def _gen_tls_garbage(rng: random.Random, target: Target) -> tuple[str, list[Step]]:
    variant = rng.choice(("random", "record", "after_handshake", "http"))
    if variant == "random":
        return "ssl", [Step("raw", rng.randbytes(rng.choice((1, 5, 64, 1500, 20000))))]
    if variant == "record":
        # Well-formed record headers with nonsense inside, or absurd lengths.
        header = bytes([rng.choice((20, 21, 22, 23, 24, 99)), 3, rng.randint(0, 4)])
        length = rng.choice((0, 1, 5, 16384, 16385, 65535))
        body = rng.randbytes(min(length, rng.choice((0, 10, 20000))))
        return "ssl", [Step("raw", header + length.to_bytes(2, "big") + body)]
    if variant == "http":
        return "ssl", [Step("raw", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")]
    return "ssl", [Step("tls"), Step("send", _line("NOOP")), Step("raw", rng.randbytes(40))]


def _gen_tls_truncated(rng: random.Random, target: Target) -> tuple[str, list[Step]]:
    if rng.random() < 0.5:
        tail = rng.choice((b"", b"", rng.randbytes(20)))
        return "ssl", [Step("hello", tail, size=rng.randint(0, 600))]
    return "ssl", [Step("partial_handshake", size=rng.randint(0, 100))]


def _gen_many_connections(rng: random.Random, target: Target) -> tuple[str, list[Step]]:
    port, steps = rng.choice((("plain", []), ("ssl", [Step("tls")])))
    return port, [*steps, Step("send", _random_bytes(rng, rng.choice((3, 40, 400))))]


# -- transcripts --


def _transcripts() -> list[list[list[bytes] | None]]:
    """Client lines of each transcript, grouped as sent; None marks a TLS handshake."""
    sessions = []
    for path in sorted(TRANSCRIPTS.glob("*.txt")):
        groups: list[list[bytes] | None] = []
        current: list[bytes] = []
        for text in path.read_text().splitlines():
            if text.startswith("C: ") or text == "C:":
                current.append(text[3:].encode())
                continue
            if current:
                groups.append(current)
                current = []
            if text.startswith("== start_tls_done"):
                groups.append(None)
        if current:
            groups.append(current)
        sessions.append(groups)
    return sessions


_TRANSCRIPT_CACHE: list[list[list[bytes] | None]] = []


def _mutate_line(rng: random.Random, line: bytes) -> bytes:
    roll = rng.random()
    if not line or roll < 0.2:
        return line + rng.choice(SPECIAL_BYTES)
    position = rng.randrange(len(line))
    if roll < 0.4:
        return line[:position] + bytes([rng.randrange(256)]) + line[position + 1 :]
    if roll < 0.55:
        return line[:position]
    if roll < 0.7:
        return line[:position] + rng.choice(SPECIAL_BYTES) + line[position:]
    if roll < 0.8:
        return line.swapcase()
    if roll < 0.9:
        return line + b" " + rng.choice(BAD_ARGUMENTS).encode()
    return line * rng.randint(2, 40)


def _gen_transcript(rng: random.Random, target: Target) -> tuple[str, list[Step]]:
    if not _TRANSCRIPT_CACHE:
        _TRANSCRIPT_CACHE.extend(_transcripts())
    name, password = rng.choice(target.accounts)
    groups = [None if group is None else list(group) for group in rng.choice(_TRANSCRIPT_CACHE)]
    # Splice in a group from another transcript now and then.
    if rng.random() < 0.3:
        donor = [group for group in rng.choice(_TRANSCRIPT_CACHE) if group is not None]
        if donor:
            groups.insert(rng.randint(0, len(groups)), list(rng.choice(donor)))
    lines_total = sum(len(group) for group in groups if group is not None)
    for _ in range(rng.randint(1, 4)):
        candidates = [group for group in groups if group]
        if not candidates or not lines_total:
            break
        group = rng.choice(candidates)
        index = rng.randrange(len(group))
        action = rng.random()
        if action < 0.6:
            group[index] = _mutate_line(rng, group[index])
        elif action < 0.75:
            del group[index]
        elif action < 0.9:
            group.insert(index, group[index])
        else:
            other = rng.randrange(len(group))
            group[index], group[other] = group[other], group[index]
    steps: list[Step] = []
    for position, sent in enumerate(groups):
        if sent is None:
            continue
        lines = [
            line.replace(b"alice", name.encode()).replace(b"pencil", password.encode())
            for line in sent
        ]
        stls_next = position + 1 < len(groups) and groups[position + 1] is None
        if stls_next and b"STLS" in lines:
            at = lines.index(b"STLS")
            if at:
                steps.append(Step("send", b"".join(map(_line, lines[:at]))))
            steps.append(Step("starttls", b"".join(map(_line, lines[at + 1 :]))))
            continue
        data = b"".join(map(_line, lines))
        steps += _chunked(rng, data)
        if rng.random() < 0.5:
            steps.append(Step("sync"))
    return "plain", steps


_GENERATORS: Final[dict[str, Callable[[random.Random, Target], tuple[str, list[Step]]]]] = {
    "wrong_state": _gen_wrong_state,
    "bad_arguments": _gen_bad_arguments,
    "binary": _gen_binary,
    "line_length": _gen_line_length,
    "pipelined": _gen_pipelined,
    "sasl": _gen_sasl,
    "stls": _gen_stls,
    "stls_injection": _gen_stls_injection,
    "half_close": _gen_half_close,
    "tls_garbage": _gen_tls_garbage,
    "tls_truncated": _gen_tls_truncated,
    "transcript": _gen_transcript,
    "many_connections": _gen_many_connections,
}


def generate_case(seed: int, index: int, target: Target, kind: str | None = None) -> Case:
    """Case number ``index`` of the run seeded ``seed``: the same inputs give the same case."""
    rng = random.Random(f"popgate-netfuzz:{seed}:{index}")
    chosen = kind or rng.choice(KINDS)
    port, steps = _GENERATORS[chosen](rng, target)
    if chosen == "many_connections":
        return Case(chosen, port, tuple(steps), rng.choice(("eof", "abort")), rng.randint(5, 40))
    ending = "eof"
    if chosen != "half_close" and rng.random() < 0.15:
        ending = "abort"
    elif chosen not in ("half_close", "tls_garbage", "tls_truncated") and rng.random() < 0.4:
        steps.append(Step("send", _line("QUIT")))
    return Case(chosen, port, tuple(steps), ending, 1, origin=f"seed={seed} index={index}")


# --- the well-behaved client ------------------------------------------------------------


def _source(address: str) -> tuple[str, int] | None:
    return (address, 0) if address else None


class _SourcedPOP3(poplib.POP3):
    """poplib from a chosen local address (the fuzzer's failures are not its own)."""

    def __init__(self, host: str, port: int, source: str) -> None:
        self.source = source
        super().__init__(host, port, timeout=30)

    def _create_socket(self, timeout: float) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, _source(self.source))


class _SourcedPOP3SSL(poplib.POP3_SSL):
    """poplib's implicit TLS from a chosen local address."""

    def __init__(self, host: str, port: int, source: str, context: ssl.SSLContext) -> None:
        self.source = source
        self.tls_context = context
        super().__init__(host, port, timeout=30, context=context)

    def _create_socket(self, timeout: float) -> socket.socket:
        raw = socket.create_connection((self.host, self.port), timeout, _source(self.source))
        return self.tls_context.wrap_socket(raw, server_hostname=self.host)


GOOD_MODES: Final = ("plain", "stls", "ssl")


def good_client(target: Target, mode: str, context: ssl.SSLContext) -> float:
    """One well-behaved session (USER/PASS, STAT, RETR 1, QUIT); its seconds. Raises on any
    failure (poplib's ``error_proto``, a socket error, or a wrong message)."""
    started = time.perf_counter()
    client: poplib.POP3
    if mode == "ssl":
        client = _SourcedPOP3SSL(target.host, target.ssl_port, target.good_source, context)
    else:
        client = _SourcedPOP3(target.host, target.plain_port, target.good_source)
    try:
        if mode == "stls":
            client.stls(context)
        client.user(target.user)
        client.pass_(target.password)
        count, _ = client.stat()
        if count < 1:
            raise poplib.error_proto(f"STAT says {count} messages")
        _, lines, _ = client.retr(1)
        if target.good_message is not None:
            got = b"\r\n".join(lines) + b"\r\n"
            if got != target.good_message:
                raise poplib.error_proto(f"RETR 1 returned {got[:200]!r}")
        client.quit()
    finally:
        client.close()
    return time.perf_counter() - started


# --- process watching -------------------------------------------------------------------


def _descriptors(pid: int) -> tuple[int, int]:
    """Open descriptors of ``pid``: all of them, and the sockets among them."""
    folder = f"/proc/{pid}/fd"
    total = sockets = 0
    for name in os.listdir(folder):
        with contextlib.suppress(OSError):
            total += 1
            sockets += os.readlink(f"{folder}/{name}").startswith("socket:")
    return total, sockets


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@dataclass
class ProcessFigures:
    """A watched process's descriptors and memory, at the baseline and at the end."""

    pid: int
    fds_baseline: int
    sockets_baseline: int
    rss_baseline_kib: int
    fds_end: int = 0
    sockets_end: int = 0
    rss_end_kib: int = 0
    alive: bool = True


# --- the run ----------------------------------------------------------------------------


@dataclass
class FuzzReport:
    """What a run did and found (``--json`` writes it)."""

    seed: int
    seconds: float = 0.0
    cases: int = 0
    connections: int = 0
    cases_per_second: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, object]] = field(default_factory=list)
    good_runs: int = 0
    #: Messages delivered by LMTP to the fuzz mailboxes, and failed deliveries.
    refills: int = 0
    refill_errors: int = 0
    good_failures: list[str] = field(default_factory=list)
    good_median_ms: float = 0.0
    good_max_ms: float = 0.0
    #: How long a case took: the median, and the slowest with its kind.
    case_median_ms: float = 0.0
    case_max_ms: float = 0.0
    slowest_kind: str = ""
    processes: dict[str, ProcessFigures] = field(default_factory=dict)
    tracebacks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every property held."""
        return (
            not self.failures
            and not self.good_failures
            and not self.tracebacks
            and all(figures.alive for figures in self.processes.values())
        )

    def to_json(self) -> dict[str, object]:
        """The report as JSON data."""
        return {
            "seed": self.seed,
            "seconds": round(self.seconds, 2),
            "cases": self.cases,
            "connections": self.connections,
            "cases_per_second": round(self.cases_per_second, 1),
            "kinds": self.kinds,
            "failures": self.failures,
            "refills": {"delivered": self.refills, "errors": self.refill_errors},
            "good_client": {
                "runs": self.good_runs,
                "failures": self.good_failures,
                "median_ms": round(self.good_median_ms, 1),
                "max_ms": round(self.good_max_ms, 1),
            },
            "case_ms": {
                "median": round(self.case_median_ms, 1),
                "max": round(self.case_max_ms, 1),
                "slowest_kind": self.slowest_kind,
            },
            "processes": {
                name: {
                    "pid": figures.pid,
                    "alive": figures.alive,
                    "fds_baseline": figures.fds_baseline,
                    "fds_end": figures.fds_end,
                    "sockets_baseline": figures.sockets_baseline,
                    "sockets_end": figures.sockets_end,
                    "rss_baseline_kib": figures.rss_baseline_kib,
                    "rss_end_kib": figures.rss_end_kib,
                }
                for name, figures in self.processes.items()
            },
            "tracebacks": self.tracebacks,
            "ok": self.ok,
        }


def _watched(target: Target) -> dict[str, int]:
    pids = {"frontend": target.frontend_pid, "backend": target.backend_pid}
    return {name: pid for name, pid in pids.items() if pid is not None}


def run_fuzz(
    target: Target,
    *,
    seconds: float,
    seed: int,
    workers: int = 3,
    check_every: int = 25,
    max_cases: int | None = None,
    failures_path: Path | None = None,
    settle_seconds: float = 30.0,
) -> FuzzReport:
    """Fuzz ``target`` for ``seconds`` (or ``max_cases``) with ``workers`` threads."""
    context = insecure_client_context()
    report = FuzzReport(seed=seed)
    latencies: list[float] = []
    lock = threading.Lock()
    next_index = 0
    kinds: Counter[str] = Counter()
    durations: list[tuple[float, str]] = []

    def check_good() -> None:
        mode = GOOD_MODES[report.good_runs % len(GOOD_MODES)]
        report.good_runs += 1
        try:
            latencies.append(good_client(target, mode, context))
        except (OSError, poplib.error_proto, ssl.SSLError) as error:
            report.good_failures.append(f"after {report.cases} cases ({mode}): {error!r}")

    def refill() -> None:
        # Fuzzed DELE and QUIT empty the fuzz mailboxes; RETR and TOP need messages.
        if target.lmtp_socket is None or not target.fuzz_accounts:
            return
        names = [name for name, _ in target.fuzz_accounts]
        try:
            with smtplib.LMTP(str(target.lmtp_socket), timeout=30) as lmtp:
                # One recipient per transaction: smtplib reads only one of LMTP's replies.
                for name in names:
                    lmtp.sendmail("netfuzz@example.com", [name], MESSAGES[report.refills % 12])
                    report.refills += 1
        except (OSError, smtplib.SMTPException):
            report.refill_errors += 1

    # Warm up (TLS contexts, the password cache) before the baseline is taken.
    for _ in GOOD_MODES:
        check_good()
    for name, pid in _watched(target).items():
        report.processes[name] = ProcessFigures(pid, *_descriptors(pid), resident_kib(pid))

    started = time.monotonic()
    deadline = started + seconds

    def work() -> None:
        nonlocal next_index
        while time.monotonic() < deadline:
            with lock:
                if max_cases is not None and next_index >= max_cases:
                    return
                index = next_index
                next_index += 1
            case = generate_case(seed, index, target)
            try:
                result = run_case(target, case, context)
            except Exception as error:  # noqa: BLE001 - a harness bug must not end the run unseen
                result = CaseResult(case, [f"harness error: {error!r}"], case.connections, 0.0)
            with lock:
                report.cases += 1
                report.connections += result.connections
                kinds[case.kind] += 1
                durations.append((result.seconds, case.kind))
                if result.problems:
                    report.failures.append({"case": case.to_json(), "problems": result.problems})
                due = report.cases % check_every == 0
            if due:
                refill()
                check_good()

    threads = [threading.Thread(target=work, name=f"fuzz-{n}") for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.seconds = time.monotonic() - started
    report.cases_per_second = report.cases / report.seconds if report.seconds else 0.0
    report.kinds = dict(sorted(kinds.items()))
    check_good()
    if durations:
        report.case_median_ms = statistics.median(seconds for seconds, _ in durations) * 1000
        slowest = max(durations)
        report.case_max_ms, report.slowest_kind = slowest[0] * 1000, slowest[1]
    if latencies:
        report.good_median_ms = statistics.median(latencies) * 1000
        report.good_max_ms = max(latencies) * 1000
    _settle(report, settle_seconds)
    for path in target.logs:
        text = path.read_text(errors="replace") if path.exists() else ""
        if "Traceback" in text:
            report.tracebacks.append(f"{path.name}: {text[text.index('Traceback') :][:2000]}")
    if failures_path is not None and report.failures:
        failures_path.parent.mkdir(parents=True, exist_ok=True)
        failures_path.write_text(json.dumps(report.failures, indent=1))
    return report


def _settle(report: FuzzReport, seconds: float) -> None:
    """Wait (up to ``seconds``) for open sockets to return to the baseline, then measure."""
    deadline = time.monotonic() + seconds
    while True:
        settled = True
        for figures in report.processes.values():
            figures.alive = _alive(figures.pid)
            if not figures.alive:
                continue
            figures.fds_end, figures.sockets_end = _descriptors(figures.pid)
            figures.rss_end_kib = resident_kib(figures.pid)
            # Sockets are the connections; other descriptors may grow up to a pool's size
            # (the directory's database connections) and stay.
            settled &= figures.sockets_end <= figures.sockets_baseline
        if settled or time.monotonic() > deadline:
            return
        time.sleep(0.5)


# --- an installation of its own -----------------------------------------------------------

GOOD_PASSWORD: Final = "Good-client-1"  # noqa: S105 - a throw-away installation's
FUZZ_PASSWORD: Final = "Fuzz-account-1"  # noqa: S105
FUZZ_ACCOUNTS: Final = 3
#: Messages in each fuzz mailbox: no line starts with "+" or "-" (see ReplyChecker), and some
#: start with a dot (stuffing) or are long.
MESSAGES: Final = tuple(
    (
        f"From: fuzz{n}@example.com\r\nSubject: message {n}\r\n\r\n"
        f"line one\r\n.leading dot\r\n..two dots\r\n{'x' * (n * 97 % 900)}\r\nlast\r\n"
    ).encode()
    for n in range(1, 13)
)


@contextlib.contextmanager
def install(root: Path, *, max_command_size: int = 512) -> Iterator[Target]:
    """Start a front end and a backend in ``root`` with accounts for the fuzzer (the e2e
    tests' ``installed``); yields the target; everything stops on exit, which also
    asserts that no log holds a Traceback."""
    with installed(root) as installation:
        installation.set(
            "LoginType", "PlainTextLogin",
            # Fuzzed logins fail by the thousand: no delays, no lockout to wait out.
            "LoginFailureDelay", "0", "LoginFailureMaxDelay", "0",
            "MaxCommandSize", str(max_command_size),
            "PreAuthenticatedConnectionTimeout", "30",
        )  # fmt: skip
        installation.add_mailbox("good", GOOD_PASSWORD)
        installation.import_messages("good", list(MESSAGES[:2]), root / "messages-good")
        accounts = []
        for n in range(FUZZ_ACCOUNTS):
            name = f"fuzz{n}"
            installation.add_mailbox(name, FUZZ_PASSWORD)
            installation.import_messages(name, list(MESSAGES), root / f"messages-{name}")
            accounts.append((name, FUZZ_PASSWORD))
        backend = installation.start_backend()
        frontend = installation.start_frontend()
        installation.start_delivery()
        yield Target(
            host="127.0.0.1",
            plain_port=installation.plain_port,
            ssl_port=installation.ssl_port,
            user="good",
            password=GOOD_PASSWORD,
            good_message=MESSAGES[0],
            fuzz_accounts=tuple(accounts),
            max_command_size=max_command_size,
            frontend_pid=frontend.pid,
            backend_pid=backend.pid,
            logs=(installation.home / "frontend.log", installation.home / "backend.log"),
            lmtp_socket=installation.layout.lmtp_socket,
        )
        for process in (frontend, backend):
            if process.poll() is not None:
                raise RuntimeError(f"service {process.pid} exited with {process.returncode}")


# --- command line -------------------------------------------------------------------------


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fuzz.fuzz_network", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz")
    parser.add_argument("--seed", type=int, default=1, help="the run's seed")
    parser.add_argument("--json", type=Path, help="write the report here as JSON")
    parser.add_argument(
        "--failures",
        type=Path,
        default=Path("test-artifacts/netfuzz-failures.json"),
        help="where failing cases go (JSON), to replay or turn into regression tests",
    )
    parser.add_argument("--replay", type=Path, help="run the cases of a failures file")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--check-every", type=int, default=25)
    parser.add_argument("--max-cases", type=int)
    parser.add_argument("--host", help="target a running front end instead of starting one")
    parser.add_argument("--port", type=int, default=110)
    parser.add_argument("--ssl-port", type=int, default=995)
    parser.add_argument("--user", default="good")
    parser.add_argument("--password", default=os.environ.get("NETFUZZ_PASSWORD", ""))
    parser.add_argument(
        "--fuzz-account",
        action="append",
        default=[],
        metavar="NAME:PASSWORD",
        help="an account the fuzz cases log on to (repeatable; default: --user's)",
    )
    parser.add_argument("--max-command-size", type=int, default=512)
    parser.add_argument("--lmtp-socket", type=Path, help="top up the fuzz mailboxes by LMTP")
    parser.add_argument("--frontend-pid", type=int)
    parser.add_argument("--backend-pid", type=int)
    return parser.parse_args(argv)


def _run(target: Target, options: argparse.Namespace) -> int:
    if options.replay is not None:
        context = insecure_client_context()
        failed = 0
        for case in load_cases(options.replay):
            result = run_case(target, case, context)
            failed += bool(result.problems)
            print(f"{case.kind} {case.origin}: {result.problems or 'ok'}")
        return 1 if failed else 0
    report = run_fuzz(
        target,
        seconds=options.seconds,
        seed=options.seed,
        workers=options.workers,
        check_every=options.check_every,
        max_cases=options.max_cases,
        failures_path=options.failures,
    )
    data = report.to_json()
    if options.json is not None:
        options.json.write_text(json.dumps(data, indent=1))
    print(json.dumps({key: value for key, value in data.items() if key != "failures"}, indent=1))
    print(
        f"{len(report.failures)} failing cases"
        + (f" (in {options.failures})" * bool(report.failures))
    )
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m fuzz.fuzz_network``."""
    options = _arguments(sys.argv[1:] if argv is None else argv)
    if options.host is not None:
        target = Target(
            host=options.host,
            plain_port=options.port,
            ssl_port=options.ssl_port,
            user=options.user,
            password=options.password,
            fuzz_accounts=tuple(
                (name, password)
                for name, _, password in (
                    account.partition(":") for account in options.fuzz_account
                )
            ),
            max_command_size=options.max_command_size,
            good_source="127.0.0.2" if options.host.startswith("127.") else "",
            frontend_pid=options.frontend_pid,
            backend_pid=options.backend_pid,
            lmtp_socket=options.lmtp_socket,
        )
        return _run(target, options)
    with (
        tempfile.TemporaryDirectory(prefix="popgate-netfuzz-") as folder,
        install(Path(folder), max_command_size=options.max_command_size) as target,
    ):
        return _run(target, options)


if __name__ == "__main__":
    sys.exit(main())
