"""A model of concurrent POP3 sessions, LMTP deliveries and maildrop locks (issue 10).

A hypothesis state machine drives real services: one MSExchangePOP3BE, TWO MSExchangePOP3
front ends on ports of their own, and MSExchangeDelivery. Clients (poplib, plain text with
LoginType PlainTextLogin) log on to 3 mailboxes through either front end, or directly to the
backend (AllowDirectBackendLogin, over TLS as the backend serves it), and run STAT, LIST,
UIDL, RETR, DELE, RSET, QUIT, or drop the connection without QUIT; smtplib.LMTP delivers
meanwhile. The model knows each maildrop's messages and each open session's snapshot; every
reply is checked against it.

Two front ends on one installation: a POP3 service reads its settings when it starts (as
Exchange does: 'configured' becomes 'effective' then) and keeps no per-process file, so the
second one is started after UnencryptedOrTLSBindings and SSLBindings were moved to other
ports; both reach the one backend through its Unix socket.

When a maildrop is free again, which this test asserts:

- after QUIT's ``+OK``, at once (popgate's code guarantees it): the backend's UPDATE removes
  the messages and releases the lock before it answers, and the front end only relays that
  answer, so the next login through any route must get on;
- after a session ends without QUIT, asynchronously: the front end sees the client's EOF and
  closes its backend connection, and the backend then closes the maildrop. Until then a login
  may get ``-ERR [IN-USE]``. popgate promises no figure; the test holds it to
  ``ABORT_RELEASE_SECONDS`` (measured: about 10 ms, under 0.2 s on a loaded machine): the
  model accepts IN-USE in that window only, and teardown asserts the lock is free within it.

Run longer, and shrink a failure, with (every run prints its seed)::

    POPGATE_MODEL_EXAMPLES=300 POPGATE_MODEL_SHRINK=1 POPGATE_MODEL_SEED=N \\
        .venv/bin/python -bb -m pytest tests/concurrency/test_model.py -q -s --timeout=0
"""

from __future__ import annotations

import itertools
import os
import poplib
import random
import re
import smtplib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.e2e.conftest import (
    Installation,
    _collect_leaks,  # noqa: F401 - autouse: a socket left open fails its test
    free_port,
    insecure_client_context,
    installed,
)

PASSWORD = "Model-checked-1"
MAILBOXES = ("box0", "box1", "box2")
#: Client sessions open at once, at most.
SLOTS = 4
#: Message numbers drawn: mostly among the few messages a maildrop holds, sometimes past
#: them (and 0), so that -ERR is exercised too.
NUMBERS = st.integers(min_value=1, max_value=3) | st.integers(min_value=0, max_value=7)
#: Messages in all maildrops at once, at most: beyond that deliveries only crowd out sessions.
MAX_MESSAGES = 12
#: How long a session that ended without QUIT may keep its maildrop locked.
ABORT_RELEASE_SECONDS = 5.0
#: How clients reach a maildrop: either front end (plain text), or the backend directly.
ROUTES = ("frontend1", "frontend2", "backend")
SECOND_FRONTEND_LOG = "frontend2.log"
SENDER = "sender@example.org"

SEED = int(os.environ.get("POPGATE_MODEL_SEED") or random.getrandbits(32))
EXAMPLES = int(os.environ.get("POPGATE_MODEL_EXAMPLES") or 40)
PHASES = (Phase.explicit, Phase.generate) + (
    (Phase.shrink,) if os.environ.get("POPGATE_MODEL_SHRINK") else ()
)
SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    # The seed above reproduces a run; a stored failing example would run something else.
    database=None,
    # Shrinking replays whole examples against live services, minutes of them: only on demand.
    phases=PHASES,
    print_blob=True,
    # Every step is a round trip to real services, slower than hypothesis expects of a draw.
    suppress_health_check=[HealthCheck.too_slow],
)

#: Lines a message body is made of: dot-stuffing on both LMTP and POP3 must be undone exactly.
BODY_LINES = st.sampled_from(
    [b"Hello,", b"", b".", b".a line that starts with a dot", b"..", b"x" * 200]
)

_tokens = itertools.count(1)


@dataclass(frozen=True)
class Served:
    """The running services, and the port each client route connects to."""

    installation: Installation
    #: Route name -> port: the two front ends (plain text) and the backend (TLS).
    routes: dict[str, int]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Backend, delivery and two front ends on one installation; the mailboxes."""
    with installed(tmp_path_factory.mktemp("model")) as installation:
        installation.set("LoginType", "PlainTextLogin")
        for name in MAILBOXES:
            installation.add_mailbox(name, PASSWORD)
        installation.start_backend()
        installation.start_delivery()
        installation.start_frontend()
        # Read at the second front end's start only: the first keeps the ports it has.
        second = free_port()
        installation.set(
            "UnencryptedOrTLSBindings", f"127.0.0.1:{second}",
            "SSLBindings", f"127.0.0.1:{free_port()}",
        )  # fmt: skip
        installation.start_frontend(log_name=SECOND_FRONTEND_LOG, port=second)
        yield Served(
            installation,
            {
                "frontend1": installation.plain_port,
                "frontend2": second,
                "backend": installation.backend_port,
            },
        )


# -- the model -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A delivered message: its unique token and the exact bytes delivered (CRLF form)."""

    token: str
    content: bytes

    @property
    def size(self) -> int:
        """RFC 1939 size: the CRLF form's octets."""
        return len(self.content)


@dataclass(eq=False)
class Session:
    """A session the model believes open: the maildrop as it was at login, and DELE marks."""

    client: poplib.POP3
    mailbox: str
    route: str
    snapshot: tuple[Message, ...]
    deleted: set[int] = field(default_factory=set)

    def live(self) -> list[tuple[int, Message]]:
        """Message numbers and messages not marked deleted."""
        return [(n, m) for n, m in enumerate(self.snapshot, 1) if n not in self.deleted]

    def valid(self, number: int) -> bool:
        """Whether ``number`` names a message of the snapshot that is not marked deleted."""
        return 1 <= number <= len(self.snapshot) and number not in self.deleted

    def __repr__(self) -> str:
        return f"Session({self.mailbox} via {self.route})"


@dataclass
class Tally:
    """What a run exercised, printed at its end."""

    events: Counter[str] = field(default_factory=Counter)
    #: Seconds from an abort to the login that found the maildrop free again, where a login
    #: in between was refused [IN-USE].
    slow_releases: list[float] = field(default_factory=list)


TALLY = Tally()
#: (mailbox, UID) -> token and token -> UID, over the whole run: a UID is never reused.
UID_OWNER: dict[tuple[str, str], str] = {}
UID_OF: dict[str, str] = {}


def is_in_use(answer: bytes) -> bool:
    """RFC 2449's response code for a locked maildrop."""
    return answer.startswith(b"-ERR [IN-USE]")


def connect(served: Served, route: str) -> poplib.POP3:
    """A client connection over ``route`` (the backend speaks TLS only on its port)."""
    port = served.routes[route]
    if route == "backend":
        return poplib.POP3_SSL("127.0.0.1", port, context=insecure_client_context(), timeout=30)
    return poplib.POP3("127.0.0.1", port, timeout=30)


def log_on(served: Served, route: str, mailbox: str) -> tuple[poplib.POP3 | None, bytes]:
    """USER/PASS over ``route``: the client once logged on (else None, closed) and PASS's reply."""
    client = connect(served, route)
    try:
        client.user(mailbox)
        return client, client.pass_(PASSWORD)
    except poplib.error_proto as refusal:
        client.quit()
        answer = refusal.args[0]
        assert isinstance(answer, bytes)
        return None, answer
    except BaseException:
        client.close()
        raise


def log_on_within(
    served: Served, route: str, mailbox: str, released_by: float | None
) -> poplib.POP3:
    """Log on, retrying [IN-USE] only until ``released_by`` (a time.monotonic() value)."""
    while True:
        client, answer = log_on(served, route, mailbox)
        if client is not None:
            return client
        assert is_in_use(answer), answer
        assert released_by is not None, f"{mailbox} is free, yet: {answer!r}"
        assert time.monotonic() < released_by, f"{mailbox} still locked: {answer!r}"
        time.sleep(0.02)


def reply_of(send: Callable[[], object]) -> bytes:
    """The first line of a command's reply, +OK or -ERR (poplib raises on -ERR)."""
    try:
        reply = send()
    except poplib.error_proto as refusal:
        answer = refusal.args[0]
        assert isinstance(answer, bytes)
        return answer
    first = reply[0] if isinstance(reply, tuple) else reply
    assert isinstance(first, bytes)
    return first


def message_text(token: str, body: list[bytes]) -> bytes:
    """A message that carries ``token`` in a header and in its body, CRLF line ends."""
    lines = [
        f"From: Sender <{SENDER}>".encode(),
        f"Subject: model message {token}".encode(),
        f"X-Model-Token: {token}".encode(),
        b"",
        f"token {token}".encode(),
        *body,
    ]
    return b"\r\n".join(lines) + b"\r\n"


def rejoin(lines: list[bytes]) -> bytes:
    """poplib's lines of a RETR (dot-unstuffed) back as the CRLF message."""
    return b"".join(line + b"\r\n" for line in lines)


class PopgateModel(RuleBasedStateMachine):
    """Sessions on three maildrops through two front ends and the backend, with deliveries."""

    served: ClassVar[Served]
    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        #: Per mailbox, the messages in the maildrop, in delivery order.
        self.drop: dict[str, list[Message]] = {name: [] for name in MAILBOXES}
        self.open: list[Session] = []
        #: Mailbox -> when its last session was dropped without QUIT, until a login succeeds.
        self.releasing: dict[str, float] = {}
        #: Mailboxes a login found still locked after such an abort.
        self.refused_after_abort: set[str] = set()
        self.lmtp: smtplib.LMTP | None = None
        for name in MAILBOXES:
            self._empty(name)

    def _empty(self, mailbox: str) -> None:
        """Start from an empty maildrop (the services live on across examples)."""
        client = log_on_within(
            self.served, "frontend2", mailbox, time.monotonic() + ABORT_RELEASE_SECONDS
        )
        count, _ = client.stat()
        for number in range(1, count + 1):
            client.dele(number)
        client.quit()

    # -- rules -----------------------------------------------------------------------------

    @initialize(
        counts=st.lists(st.integers(0, 3), min_size=len(MAILBOXES), max_size=len(MAILBOXES))
    )
    def deliver_some(self, counts: list[int]) -> None:
        """Mail waiting in the maildrops from the start, so that first sessions have some."""
        for mailbox, count in zip(MAILBOXES, counts, strict=True):
            for _ in range(count):
                self.deliver(mailbox, [])

    @precondition(lambda self: sum(map(len, self.drop.values())) < MAX_MESSAGES)
    @rule(mailbox=st.sampled_from(MAILBOXES), body=st.lists(BODY_LINES, max_size=4))
    def deliver(self, mailbox: str, body: list[bytes]) -> None:
        """LMTP to MSExchangeDelivery: at the next login, not in sessions already open."""
        if self.lmtp is None:
            self.lmtp = smtplib.LMTP("127.0.0.1", self.served.installation.lmtp_port, timeout=30)
        token = f"{mailbox}-{next(_tokens)}"
        content = message_text(token, body)
        refused = self.lmtp.sendmail(SENDER, [f"{mailbox}@localhost"], content)
        assert refused == {}, refused
        self.drop[mailbox].append(Message(token, content))
        TALLY.events["deliver"] += 1

    @precondition(lambda self: len(self.open) < SLOTS)
    @rule(
        target=sessions,
        mailbox=st.sampled_from(MAILBOXES),
        route=st.sampled_from(ROUTES),
    )
    def log_in(self, mailbox: str, route: str) -> object:
        """[IN-USE] exactly when another session holds the maildrop, else its snapshot."""
        holders = [s for s in self.open if s.mailbox == mailbox]
        client, answer = log_on(self.served, route, mailbox)
        if client is None:
            assert is_in_use(answer), f"{mailbox} via {route}: {answer!r}"
            if holders:
                TALLY.events["in_use"] += 1
                return multiple()
            aborted = self.releasing.get(mailbox)
            assert aborted is not None, f"{mailbox} is free, yet {route} answered {answer!r}"
            waited = time.monotonic() - aborted
            assert waited < ABORT_RELEASE_SECONDS, f"{mailbox} locked {waited:.1f} s after abort"
            TALLY.events["in_use_after_abort"] += 1
            self.refused_after_abort.add(mailbox)
            return multiple()
        if holders:
            client.close()
            raise AssertionError(f"{mailbox} via {route} logged on while {holders} holds it")
        aborted = self.releasing.pop(mailbox, None)
        if aborted is not None and mailbox in self.refused_after_abort:
            TALLY.slow_releases.append(time.monotonic() - aborted)
        self.refused_after_abort.discard(mailbox)
        session = Session(client, mailbox, route, tuple(self.drop[mailbox]))
        self.open.append(session)
        TALLY.events[f"login_{route}"] += 1
        assert answer.startswith(b"+OK"), answer
        self._check_stat(session)
        return session

    @rule(
        session=sessions,
        verb=st.sampled_from(("STAT", "LIST", "UIDL")),
        number=st.none() | NUMBERS,
    )
    def look(self, session: Session, verb: str, number: int | None) -> None:
        """STAT, LIST, UIDL and LIST n, UIDL n agree with the session's snapshot."""
        TALLY.events[verb if number is None or verb == "STAT" else f"{verb} n"] += 1
        if verb == "STAT":
            self._check_stat(session)
        elif verb == "LIST":
            self._check_list(session, number)
        else:
            self._check_uidl(session, number)

    def _check_list(self, session: Session, number: int | None) -> None:
        """LIST: number and size of each live message of the snapshot. LIST n: its size, or
        -ERR for a message marked deleted or not in the snapshot."""
        if number is None:
            _, lines, _ = session.client.list()
            listed = [tuple(map(int, line.split())) for line in lines]
            assert listed == [(n, m.size) for n, m in session.live()]
            return
        answer = reply_of(partial(session.client.list, number))
        if session.valid(number):
            assert answer == f"+OK {number} {session.snapshot[number - 1].size}".encode()
        else:
            assert answer.startswith(b"-ERR"), answer

    def _check_uidl(self, session: Session, number: int | None) -> None:
        """UIDL (n): the live messages' UIDs, the same in every session and never reused."""
        if number is None:
            _, lines, _ = session.client.uidl()
            listed = [line.decode().split(" ") for line in lines]
            assert [int(n) for n, _ in listed] == [n for n, _ in session.live()]
            uids = [uid for _, uid in listed]
            assert len(set(uids)) == len(uids), uids
            for n, uid in listed:
                self._check_uid(session.mailbox, session.snapshot[int(n) - 1], uid)
            return
        answer = reply_of(partial(session.client.uidl, number))
        if session.valid(number):
            prefix, listed_number, uid = answer.decode().split(" ")
            assert (prefix, int(listed_number)) == ("+OK", number), answer
            self._check_uid(session.mailbox, session.snapshot[number - 1], uid)
        else:
            assert answer.startswith(b"-ERR"), answer

    @rule(session=sessions, number=NUMBERS)
    def retr(self, session: Session, number: int) -> None:
        """RETR n: exactly the bytes delivered, or -ERR."""
        TALLY.events["retr"] += 1
        if not session.valid(number):
            assert reply_of(partial(session.client.retr, number)).startswith(b"-ERR")
            return
        answer, lines, _ = session.client.retr(number)
        message = session.snapshot[number - 1]
        assert answer == f"+OK {message.size} octets".encode(), answer
        assert rejoin(lines) == message.content

    @rule(session=sessions, numbers=st.lists(NUMBERS, min_size=1, max_size=3))
    def dele(self, session: Session, numbers: list[int]) -> None:
        """DELE n marks a live message; -ERR for one marked already or not in the snapshot."""
        for number in numbers:
            answer = reply_of(partial(session.client.dele, number))
            if session.valid(number):
                assert answer.startswith(b"+OK"), answer
                session.deleted.add(number)
                TALLY.events["dele"] += 1
            else:
                assert answer.startswith(b"-ERR"), answer
                TALLY.events["dele_refused"] += 1

    @rule(session=sessions, number=NUMBERS)
    def rset(self, session: Session, number: int) -> None:
        """RSET unmarks everything: the whole snapshot is live again (LIST n shows it)."""
        TALLY.events["rset"] += 1
        answer = session.client.rset()
        session.deleted.clear()
        counted = re.fullmatch(rb"\+OK Maildrop has (\d+) messages \((\d+) octets\)\.", answer)
        assert counted is not None, answer
        assert (int(counted[1]), int(counted[2])) == self._totals(session)
        self._check_list(session, number)

    @rule(session=consumes(sessions), how=st.sampled_from(("quit", "abort")))
    def end(self, session: Session, how: str) -> None:
        """QUIT removes the marked messages (once) and frees the maildrop by its +OK. Closing
        the socket without QUIT removes nothing; the lock then goes asynchronously."""
        self.open.remove(session)
        TALLY.events[f"{how}_with_deletions" if session.deleted else how] += 1
        if how == "quit":
            self._quit(session)
            return
        session.client.close()
        self.releasing[session.mailbox] = time.monotonic()
        self.refused_after_abort.discard(session.mailbox)

    @invariant()
    def one_session_per_maildrop(self) -> None:
        """The model itself never believes two sessions hold one maildrop."""
        held = [s.mailbox for s in self.open]
        assert len(held) == len(set(held)), self.open

    # -- teardown: quit everything, then every maildrop must be free and as modelled --------

    def teardown(self) -> None:
        """QUIT every open session; check each maildrop's contents once it is free."""
        failures: list[str] = []
        for session in self.open:
            TALLY.events[
                "teardown_quit_with_deletions" if session.deleted else "teardown_quit"
            ] += 1
            try:
                self._quit(session)
            except (poplib.error_proto, OSError, AssertionError) as error:
                session.client.close()
                failures.append(f"{session}: {error!r}")
        self.open.clear()
        if self.lmtp is not None:
            self.lmtp.quit()
        assert not failures, failures
        for mailbox in MAILBOXES:
            aborted = self.releasing.get(mailbox)
            released_by = None if aborted is None else aborted + ABORT_RELEASE_SECONDS
            client = log_on_within(self.served, "frontend1", mailbox, released_by)
            try:
                self._check_maildrop(client, mailbox)
            finally:
                client.quit()

    def _check_maildrop(self, client: poplib.POP3, mailbox: str) -> None:
        """The maildrop holds exactly the modelled messages, in delivery order."""
        expected = self.drop[mailbox]
        assert client.stat() == (len(expected), sum(m.size for m in expected)), mailbox
        _, lines, _ = client.uidl()
        assert len(lines) == len(expected), (mailbox, lines)
        for number, (line, message) in enumerate(zip(lines, expected, strict=True), 1):
            uid = line.split(b" ")[1].decode()
            if message.token not in UID_OF:
                # Never listed in a session: tell it by its bytes before learning its UID.
                _, body, _ = client.retr(number)
                assert rejoin(body) == message.content, (mailbox, number)
            self._check_uid(mailbox, message, uid)

    # -- helpers ---------------------------------------------------------------------------

    def _totals(self, session: Session) -> tuple[int, int]:
        live = session.live()
        return len(live), sum(m.size for _, m in live)

    def _check_stat(self, session: Session) -> None:
        assert session.client.stat() == self._totals(session)

    def _check_uid(self, mailbox: str, message: Message, uid: str) -> None:
        """The UID seen before for this message, and no other message's UID, ever."""
        known = UID_OF.setdefault(message.token, uid)
        assert known == uid, f"{message.token} was {known}, now {uid}"
        owner = UID_OWNER.setdefault((mailbox, uid), message.token)
        assert owner == message.token, f"UID {uid} of {owner} reused for {message.token}"

    def _quit(self, session: Session) -> None:
        answer = session.client.quit()
        assert answer.startswith(b"+OK"), answer
        doomed = {session.snapshot[n - 1].token for n in session.deleted}
        self.drop[session.mailbox] = [
            m for m in self.drop[session.mailbox] if m.token not in doomed
        ]


def test_sessions_deliveries_and_maildrop_locks_follow_the_model(served: Served) -> None:
    """Random interleavings of the rules above, every reply checked against the model."""
    print(f"hypothesis seed {SEED}: rerun with POPGATE_MODEL_SEED={SEED}")

    class Machine(PopgateModel):
        pass

    Machine.served = served
    started = time.monotonic()
    run_state_machine_as_test(seed(SEED)(Machine), settings=SETTINGS)
    print(f"{EXAMPLES} examples in {time.monotonic() - started:.1f} s: {dict(TALLY.events)}")
    print(f"releases that took a retry: {TALLY.slow_releases}")


#: Rounds of each route pair in the release tests below.
ROUNDS = 5


def fill(served: Served, mailbox: str, count: int) -> None:
    """Deliver ``count`` messages to ``mailbox`` by LMTP."""
    with smtplib.LMTP("127.0.0.1", served.installation.lmtp_port, timeout=30) as lmtp:
        for _ in range(count):
            content = message_text(f"{mailbox}-{next(_tokens)}", [])
            assert lmtp.sendmail(SENDER, [f"{mailbox}@localhost"], content) == {}


def test_after_quits_ok_the_maildrop_is_free_at_once_from_every_route(served: Served) -> None:
    """QUIT's +OK comes after the backend's UPDATE removed the marked message and released
    the lock: a login right after it, through any route, gets on without a single [IN-USE]
    and finds exactly that message gone."""
    pairs = list(itertools.product(ROUTES, ROUTES))
    fill(served, "box1", len(pairs) * ROUNDS + 1)
    for first, second in pairs:
        for _ in range(ROUNDS):
            client, _ = log_on(served, first, "box1")
            assert client is not None
            _, before, _ = client.uidl()
            client.dele(1)
            client.quit()
            again, answer = log_on(served, second, "box1")
            assert again is not None, f"{first} then {second}: {answer!r}"
            _, after, _ = again.uidl()
            again.quit()
            uids = [line.split(b" ")[1] for line in after]
            assert uids == [line.split(b" ")[1] for line in before[1:]], (first, second)


def test_a_dropped_session_frees_its_maildrop_soon_and_deletes_nothing(served: Served) -> None:
    """A client that closes its socket after DELE: logins retried at once are refused
    [IN-USE] for a moment at most (the release travels client -> front end -> backend),
    within ABORT_RELEASE_SECONDS, and every message is still there."""
    fill(served, "box2", 2)
    waits: list[float] = []
    refusals = 0
    for first, second in itertools.product(ROUTES, ROUTES):
        for _ in range(ROUNDS):
            client, _ = log_on(served, first, "box2")
            assert client is not None
            count, _ = client.stat()
            client.dele(1)
            # The next client is connected and has sent USER: only PASS races the release.
            again = connect(served, second)
            again.user("box2")
            client.close()
            dropped = time.monotonic()
            while not (answer := reply_of(partial(again.pass_, PASSWORD))).startswith(b"+OK"):
                assert is_in_use(answer), answer
                refusals += 1
                assert time.monotonic() - dropped < ABORT_RELEASE_SECONDS, (first, second)
                again.user("box2")
            waits.append(time.monotonic() - dropped)
            assert again.stat()[0] == count
            again.quit()
    waits.sort()
    print(
        f"{len(waits)} drops: {refusals} logins refused [IN-USE] while releasing; "
        f"free after median {waits[len(waits) // 2] * 1000:.1f} ms, max {waits[-1] * 1000:.1f} ms"
    )
