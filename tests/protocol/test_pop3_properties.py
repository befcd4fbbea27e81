"""Hypothesis properties: round trips of commands, replies and dot-stuffing; the state table."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from popgate.protocol import (
    ACCEPTED,
    MAX_MESSAGE_NUMBER,
    Auth,
    BadCommand,
    Capa,
    Challenge,
    ClientConnection,
    Command,
    Dele,
    Err,
    List,
    MessageBody,
    MultiLine,
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
    SaslResponse,
    ServerConnection,
    Signal,
    Stat,
    State,
    Stls,
    Top,
    Uidl,
    User,
    Utf8,
    Xclient,
    dot_stuff,
    dot_unstuff,
    to_crlf,
)
from popgate.protocol._state import REPLY_TRANSITIONS, allowed_replies
from tests.protocol.pop3_helpers import GREETING, server_in

# Text that can appear in a command or reply line: no CR, LF, NUL and no lone surrogates.
_LINE_TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\0"), max_size=60
)
_NUMBERS = st.integers(min_value=1, max_value=MAX_MESSAGE_NUMBER)
_XTEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)
_XNAME = st.from_regex(r"[A-Z0-9_-]{1,10}", fullmatch=True)

COMMANDS: st.SearchStrategy[Command] = st.one_of(
    _LINE_TEXT.filter(bool).map(lambda name: User(name=name)),
    _LINE_TEXT.filter(bool).map(lambda password: Pass(password=password)),
    st.builds(
        lambda mech, ir: Auth(mechanism=mech, initial_response=ir),
        st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True),
        st.none() | st.binary(max_size=120),
    ),
    st.binary(max_size=3000).map(lambda data: SaslResponse(data=data)),
    st.just(SaslCancel()),
    st.sampled_from([Capa(), Stls(), Stat(), Noop(), Rset(), Quit(), Utf8(), List(), Uidl()]),
    _NUMBERS.map(lambda n: List(msg=n)),
    _NUMBERS.map(lambda n: Uidl(msg=n)),
    _NUMBERS.map(lambda n: Retr(msg=n)),
    _NUMBERS.map(lambda n: Dele(msg=n)),
    st.builds(lambda n, k: Top(msg=n, lines=k), _NUMBERS, st.integers(0, MAX_MESSAGE_NUMBER)),
    st.dictionaries(_XNAME, _XTEXT, min_size=1, max_size=4).map(
        lambda attributes: Xclient(attributes=attributes)
    ),
)


def _state_for(command: Command) -> State:
    if isinstance(command, SaslResponse | SaslCancel):
        return State.SASL
    if isinstance(command, Pass):
        return State.AWAITING_PASS
    return next(state for (state, kind) in ACCEPTED if kind is type(command))


@settings(max_examples=300, deadline=None)
@given(command=COMMANDS)
def test_property_client_send_then_server_parses_the_same_command(command: Command) -> None:
    wire = ClientConnection().send(command)
    server = server_in(_state_for(command))
    server.receive_data(wire)
    assert server.next_event() == command


_CODES = st.none() | st.sampled_from(ResponseCode)
_STATUS_TEXT = _LINE_TEXT.filter(lambda text: not text.startswith("["))
_OK = st.builds(lambda text, code: Ok(text, code), _STATUS_TEXT, _CODES)
_ERR = st.builds(lambda text, code: Err(text, code), _STATUS_TEXT, _CODES)
_LISTING_LINE = _LINE_TEXT
_BODY = st.binary(max_size=400).map(to_crlf)


def _replies() -> st.SearchStrategy[tuple[Command, Reply]]:
    return st.one_of(
        st.tuples(st.just(Noop()), _OK | _ERR),
        st.tuples(st.just(List()), st.builds(MultiLine, _OK, st.tuples(_LISTING_LINE))),
        st.tuples(
            st.just(Uidl()),
            st.lists(_LISTING_LINE, max_size=5).flatmap(
                lambda lines: st.builds(MultiLine, _OK, st.just(tuple(lines)))
            ),
        ),
        st.tuples(st.just(Retr(msg=1)), st.builds(MessageBody, _OK, _BODY)),
        st.tuples(st.just(Top(msg=1, lines=0)), _ERR),
        st.tuples(
            st.just(Auth(mechanism="X")),
            st.builds(Challenge, st.binary(max_size=300)) | _OK | _ERR,
        ),
    )


@settings(max_examples=300, deadline=None)
@given(pair=_replies())
def test_property_server_send_then_client_parses_the_same_reply(
    pair: tuple[Command, Reply],
) -> None:
    command, reply = pair
    client = ClientConnection()
    client.receive_data(b"+OK hi\r\n")
    assert client.next_event() == Ok("hi")
    wire = client.send(command)
    server = server_in(_state_for(command))
    server.receive_data(wire)
    assert server.next_event() == command
    client.receive_data(server.send(reply))
    assert client.next_event() == reply
    assert client.next_event() is Signal.NEED_DATA


@given(raw=st.binary(max_size=500))
def test_property_dot_stuffing_round_trip(raw: bytes) -> None:
    message = to_crlf(raw)
    stuffed = dot_stuff(message)
    assert stuffed.endswith(b".\r\n")
    assert b"\r\n.\r\n" not in stuffed[:-3] or stuffed == b".\r\n"
    assert dot_unstuff(stuffed[:-3]) == message


# --- state x command -------------------------------------------------------------------------

_SAMPLE_LINES: dict[type[Command], bytes] = {
    User: b"USER u",
    Pass: b"PASS p",
    Auth: b"AUTH PLAIN",
    SaslResponse: b"AHUAcA==",
    SaslCancel: b"*",
    Capa: b"CAPA",
    Stls: b"STLS",
    Stat: b"STAT",
    List: b"LIST",
    Retr: b"RETR 1",
    Top: b"TOP 1 1",
    Dele: b"DELE 1",
    Noop: b"NOOP",
    Rset: b"RSET",
    Uidl: b"UIDL 1",
    Quit: b"QUIT",
    Utf8: b"UTF8",
    Xclient: b"XCLIENT ADDR=192.0.2.1",
}
_SAMPLE_REPLIES: tuple[Reply, ...] = (
    Ok(),
    Err(),
    Challenge(b""),
    MultiLine(Ok(), ()),
    MessageBody(Ok(), b""),
)


@settings(max_examples=300, deadline=None)
@given(
    state=st.sampled_from(State),
    line=st.sampled_from([*_SAMPLE_LINES.values(), b"XYZZY", b"RETR x", b""]),
    reply_index=st.integers(min_value=0, max_value=10),
)
def test_property_state_times_command_gives_a_legal_state_or_bad_command(
    state: State, line: bytes, reply_index: int
) -> None:
    server: ServerConnection = server_in(state)
    server.receive_data(line + b"\r\n")
    try:
        event = server.next_event()
    except RemoteProtocolError:
        assert state is State.ERROR
        return
    if state in (State.TLS_PENDING, State.UPDATE):
        assert event is Signal.PAUSED
        return
    if state is State.CLOSED:
        assert event is Signal.PAUSED
        return
    assert isinstance(event, Command | BadCommand)
    if isinstance(event, Command):
        assert (state, type(event)) in ACCEPTED
        during = ACCEPTED[state, type(event)]
        assert server.state is during
    else:
        during = state
        assert server.state is state
    allowed = allowed_replies(event)
    reply = next(r for r in _SAMPLE_REPLIES if type(r) is allowed[reply_index % len(allowed)])
    if isinstance(event, Stls) and server.tls_active:  # pragma: no cover - not reached here
        reply = Err()
    server.send(reply)
    expected = REPLY_TRANSITIONS.get((during, type(event), type(reply)), during)
    assert server.state is expected
    assert server.state in set(State)


def test_state_table_covers_every_command_somewhere() -> None:
    commands_in_table = {kind for (_, kind) in ACCEPTED}
    assert commands_in_table == set(_SAMPLE_LINES)
    assert all(state in State for state in {s for (s, _) in ACCEPTED})
    assert all(isinstance(server_in(state), ServerConnection) for state in State)
    assert ServerConnection().send(GREETING).startswith(b"+OK")
