"""Test helpers for popgate.protocol: a tiny in-memory driver, a client/server pair, tr()."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from popgate.protocol import (
    Auth,
    BadCommand,
    Capa,
    Challenge,
    ClientConnection,
    Command,
    ConnectionClosed,
    Dele,
    Err,
    Event,
    List,
    MessageBody,
    MultiLine,
    NeedScramCredentials,
    Noop,
    Ok,
    Pass,
    Quit,
    RemoteProtocolError,
    Reply,
    ResponseCode,
    Retr,
    Rset,
    SaslCancel,
    SaslChallenge,
    SaslFailure,
    SaslResponse,
    SaslServer,
    SaslStep,
    SaslSuccess,
    ScramSha256Server,
    ServerConnection,
    Signal,
    Stat,
    State,
    Stls,
    Top,
    Uidl,
    User,
    Utf8,
    VerifyPassword,
    Xclient,
    capabilities,
    crlf_size,
    derive_scram_credentials,
    server_mechanism,
    to_crlf,
    top_of_message,
)

GREETING = Ok(text="The Microsoft Exchange POP3 service is ready.")
LOGON_OK = Ok(text="User successfully logged on.")
LOGON_FAILED = Err(text="Logon failure: unknown user name or bad password.", code=ResponseCode.AUTH)
SIGNING_OFF = Ok(text="Microsoft Exchange Server POP3 server signing off.")

MESSAGES: tuple[bytes, ...] = (
    b"Subject: one\r\n\r\nHello\r\n",
    b"Subject: two\r\n\r\n.leading dot\r\n..\r\n.\r\nlast line without CRLF",
    b"Subject: three\r\n\r\nbody 1\r\nbody 2\r\nbody 3\r\n",
)
PASSWORDS = {"alice": "pencil", "bob": "a b c"}
SCRAM = {name: derive_scram_credentials(pw, iterations=4096) for name, pw in PASSWORDS.items()}


@dataclass
class MiniDriver:
    """A test-only POP3 back end around ServerConnection: just enough to answer every command.

    It is not the real backend (that is services/, tested in tests/e2e); it exists so that the
    protocol tests can run whole sessions and transcripts without I/O.
    """

    server: ServerConnection = field(default_factory=ServerConnection)
    messages: Sequence[bytes] = MESSAGES
    stls_available: bool = True
    deleted: set[int] = field(default_factory=set)
    committed: set[int] | None = None
    events: list[Event] = field(default_factory=list)
    user: str | None = None
    logged_in: str | None = None
    mechanism: SaslServer | None = None
    scram_nonce: str | None = None

    def greet(self) -> bytes:
        return self.server.send(GREETING)

    def feed(self, data: bytes) -> bytes:
        """Feed client bytes and return everything the server answers."""
        self.server.receive_data(data)
        return self.run()

    def run(self) -> bytes:
        out = bytearray()
        while True:
            try:
                event = self.server.next_event()
            except RemoteProtocolError as exc:
                if exc.reply_hint is not None:
                    out += self.server.send(exc.reply_hint)
                return bytes(out)
            if isinstance(event, Signal | ConnectionClosed):
                return bytes(out)
            self.events.append(event)
            out += self.server.send(self.answer(event))

    # --- the "mailbox" --------------------------------------------------------------------

    def _content(self, msg: int) -> bytes | None:
        if msg > len(self.messages) or msg in self.deleted:
            return None
        return to_crlf(self.messages[msg - 1])

    def _live(self) -> list[tuple[int, bytes]]:
        return [
            (n, to_crlf(m)) for n, m in enumerate(self.messages, start=1) if n not in self.deleted
        ]

    def _finish_login(self, name: str, password: str) -> Reply:
        if PASSWORDS.get(name) != password:
            return LOGON_FAILED
        self.logged_in = name
        return LOGON_OK

    def _sasl(self, step: SaslStep) -> Reply:
        match step:
            case SaslChallenge(data=data):
                return Challenge(data=data)
            case VerifyPassword(authzid=authzid, authcid=authcid, password=password):
                if authzid not in ("", authcid):
                    return Err(text="Not authorized.", code=ResponseCode.AUTH)
                return self._finish_login(authcid, password)
            case NeedScramCredentials(authcid=authcid):
                assert isinstance(self.mechanism, ScramSha256Server)
                return self._sasl(self.mechanism.provide_credentials(SCRAM.get(authcid)))
            case SaslSuccess(authcid=authcid):
                self.logged_in = authcid
                return LOGON_OK
            case SaslFailure():
                return LOGON_FAILED
        raise AssertionError(step)  # pragma: no cover

    def answer(self, event: Event) -> Reply:
        match event:
            case BadCommand(reply=reply):
                return reply
            case Capa():
                stls = self.stls_available and not self.server.tls_active
                stls = stls and self.server.state is State.AUTHORIZATION
                lines = capabilities(stls=stls, user=True, sasl=["PLAIN", "SCRAM-SHA-256"])
                return MultiLine(status=Ok(text="Capability list follows"), lines=lines)
            case User(name=name):
                self.user = name
                return Ok()
            case Pass(password=password):
                assert self.user is not None
                return self._finish_login(self.user, password)
            case Auth(mechanism=mech, initial_response=initial):
                if mech == "SCRAM-SHA-256":
                    self.mechanism = ScramSha256Server(nonce=self.scram_nonce)
                else:
                    self.mechanism = server_mechanism(mech)
                if self.mechanism is None:
                    return Err(text="Unrecognized authentication type.")
                return self._sasl(self.mechanism.step(initial))
            case SaslResponse(data=data):
                assert self.mechanism is not None
                return self._sasl(self.mechanism.step(data))
            case SaslCancel():
                return Err(text="Authentication cancelled.")
            case Stls():
                if not self.stls_available or self.server.tls_active:
                    return Err(text="Command is not valid in this state.")
                return Ok(text="Begin TLS negotiation.")
            case Stat():
                live = self._live()
                return Ok(text=f"{len(live)} {sum(crlf_size(m) for _, m in live)}")
            case List(msg=None):
                live = self._live()
                lines = tuple(f"{n} {len(m)}" for n, m in live)
                return MultiLine(status=Ok(text=f"{len(live)} messages"), lines=lines)
            case List(msg=int() as msg) | Uidl(msg=int() as msg) if self._content(msg) is None:
                return Err(text="No such message.")
            case List(msg=int() as msg):
                return Ok(text=f"{msg} {len(self._content(msg) or b'')}")
            case Uidl(msg=None):
                lines = tuple(f"{n} uid-{n}" for n, _ in self._live())
                return MultiLine(status=Ok(), lines=lines)
            case Uidl(msg=int() as msg):
                return Ok(text=f"{msg} uid-{msg}")
            case Retr(msg=msg) | Top(msg=msg) | Dele(msg=msg) if self._content(msg) is None:
                return Err(text="No such message.")
            case Retr(msg=msg):
                content = self._content(msg) or b""
                return MessageBody(status=Ok(text=f"{len(content)} octets"), content=content)
            case Top(msg=msg, lines=lines):
                content = top_of_message(self._content(msg) or b"", lines)
                return MessageBody(status=Ok(), content=content)
            case Dele(msg=msg):
                self.deleted.add(msg)
                return Ok(text=f"message {msg} deleted")
            case Noop():
                return Ok()
            case Rset():
                self.deleted.clear()
                return Ok()
            case Quit():
                if self.server.state is State.UPDATE:
                    self.committed = set(self.deleted)
                return SIGNING_OFF
            case Utf8():
                return Ok(text="UTF8 enabled")
            case Xclient():
                return Ok()
        raise AssertionError(event)  # pragma: no cover


def greeted(
    *,
    max_command_size: int = 255,
    max_sasl_line: int = 65536,
    max_bad_commands: int = 20,
    tls_active: bool = False,
) -> ServerConnection:
    """A ServerConnection that has sent its greeting."""
    server = ServerConnection(
        max_command_size=max_command_size,
        max_sasl_line=max_sasl_line,
        max_bad_commands=max_bad_commands,
        tls_active=tls_active,
    )
    server.send(GREETING)
    return server


def server_in(state: State) -> ServerConnection:
    """A greeted ServerConnection driven into ``state`` through the wire protocol."""
    driver = MiniDriver()
    driver.greet()
    steps: dict[State, bytes] = {
        State.AUTHORIZATION: b"",
        State.AWAITING_PASS: b"USER alice\r\n",
        State.SASL: b"AUTH PLAIN\r\n",
        State.TLS_PENDING: b"STLS\r\n",
        State.TRANSACTION: b"USER alice\r\nPASS pencil\r\n",
        State.CLOSED: b"QUIT\r\n",
        State.ERROR: b"XYZZY\r\n" * 21,
    }
    if state is State.UPDATE:
        driver.feed(b"USER alice\r\nPASS pencil\r\n")
        driver.server.receive_data(b"QUIT\r\n")
        assert driver.server.next_event() == Quit()
    elif steps[state]:
        driver.feed(steps[state])
    assert driver.server.state is state
    return driver.server


def state_of(server: ServerConnection) -> State:
    """``server.state``, read through a call so that mypy does not keep a stale narrowing."""
    return server.state


def pending_of(server: ServerConnection) -> Command | BadCommand | None:
    """``server.pending``, read through a call (see ``state_of``)."""
    return server.pending


def utf8_of(server: ServerConnection) -> bool:
    """``server.utf8_enabled``, read through a call (see ``state_of``)."""
    return server.utf8_enabled


def one_event(server: ServerConnection, data: bytes) -> Event | Signal:
    server.receive_data(data)
    return server.next_event()


def tr(
    data: bytes,
    expected: Event,
    *,
    make: Callable[[], ServerConnection] = greeted,
) -> None:
    """h11's tr(): ``data`` yields ``expected`` whole, byte by byte and with trailing bytes."""
    # Whole.
    server = make()
    assert one_event(server, data) == expected
    # One byte at a time: NEED_DATA until the last byte.
    server = make()
    for index in range(len(data)):
        event = one_event(server, data[index : index + 1])
        if index < len(data) - 1:
            assert event is Signal.NEED_DATA, (index, event)
        else:
            assert event == expected
    # With trailing bytes, which stay buffered.
    server = make()
    assert one_event(server, data + b"NOO") == expected
    assert server.trailing_data == (b"NOO", False)


@dataclass
class ConnectionPair:
    """A real ClientConnection talking to a MiniDriver-run ServerConnection, in memory."""

    driver: MiniDriver = field(default_factory=MiniDriver)
    client: ClientConnection = field(default_factory=ClientConnection)
    wire: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client.receive_data(self.driver.greet())
        assert self.client.next_event() == GREETING

    def send(self, *commands: Command) -> list[Event]:
        """Send ``commands`` in one segment (pipelined) and return the client's events."""
        data = b"".join(self.client.send(command) for command in commands)
        self.wire.append(data)
        answer = self.driver.feed(data)
        self.wire.append(answer)
        self.client.receive_data(answer)
        events: list[Event] = []
        while isinstance(event := self.client.next_event(), Event):
            events.append(event)
        return events

    def login(self) -> None:
        assert self.send(User(name="alice"), Pass(password="pencil")) == [Ok(), LOGON_OK]
