"""Checklist section A (framing and syntax) and the event/serialisation rules behind it."""

from __future__ import annotations

import re

import pytest

from popgate.protocol import (
    MAX_MESSAGE_NUMBER,
    Auth,
    BadCommand,
    Capa,
    Challenge,
    Command,
    Dele,
    Err,
    List,
    LocalProtocolError,
    MessageBody,
    MultiLine,
    Noop,
    Ok,
    Pass,
    Quit,
    ResponseCode,
    Retr,
    Rset,
    Signal,
    Stat,
    State,
    Top,
    Uidl,
    User,
    dot_stuff,
    dot_unstuff,
    to_crlf,
)
from tests.protocol.pop3_helpers import (
    ConnectionPair,
    greeted,
    one_event,
    pending_of,
    server_in,
    state_of,
    tr,
)

STATUS_RE = re.compile(rb"^(\+OK|-ERR)( |\r\n)")
WRONG_STATE = BadCommand(reply=Err(text="Command is not valid in this state."))


def _reply(server_state: State, line: bytes) -> object:
    server = server_in(server_state)
    return one_event(server, line)


# --- A1 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"NOOP", Ok()),
        (b"STAT", Ok(text="2 320")),
        (b"DELE 1", Err()),
        (b"RSET", Err(text="Try again.", code=ResponseCode.SYS_TEMP)),
        (b"RETR 1", Err(code=ResponseCode.UTF8)),
        (b"LIST", MultiLine(status=Ok(text="list"), lines=("1 2",))),
        (b"RETR 1", MessageBody(status=Ok(), content=b"x\r\n")),
    ],
)
def test_a1_status_lines_are_upper_case_ok_or_err(
    line: bytes, reply: Ok | Err | MultiLine | MessageBody
) -> None:
    server = server_in(State.TRANSACTION)
    assert isinstance(one_event(server, line + b"\r\n"), Command)
    assert STATUS_RE.match(server.send(reply))


def test_a1_status_line_exact_bytes() -> None:
    server = server_in(State.TRANSACTION)
    one_event(server, b"STAT\r\n")
    assert server.send(Ok(text="2 320")) == b"+OK 2 320\r\n"
    one_event(server, b"NOOP\r\n")
    assert server.send(Err(code=ResponseCode.SYS_TEMP)) == b"-ERR [SYS/TEMP]\r\n"


def test_a1_sasl_continuation_is_the_only_other_line_start() -> None:
    server = greeted()
    assert one_event(server, b"AUTH PLAIN\r\n") == Auth(mechanism="PLAIN")
    assert server.send(Challenge(data=b"")) == b"+ \r\n"


# --- A2 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("line", [b"retr 1\r\n", b"RETR 1\r\n", b"ReTr 1\r\n"])
def test_a2_keywords_are_case_insensitive(line: bytes) -> None:
    tr(line, Retr(msg=1), make=lambda: server_in(State.TRANSACTION))


def test_a2_arguments_are_separated_by_a_single_space() -> None:
    bad = BadCommand(reply=Err(text="Invalid arguments."))
    assert _reply(State.TRANSACTION, b"TOP  1 2\r\n") == bad
    assert _reply(State.TRANSACTION, b"TOP 1  2\r\n") == bad
    assert _reply(State.TRANSACTION, b"NOOP \r\n") == bad
    assert _reply(State.TRANSACTION, b"TOP 1 2\r\n") == Top(msg=1, lines=2)


def test_a2_bare_lf_line_endings_are_accepted() -> None:
    tr(b"CAPA\n", Capa())


# --- A3 ---------------------------------------------------------------------------------------


def test_a3_reply_first_lines_are_at_most_512_octets() -> None:
    longest = "x" * (512 - len("+OK \r\n"))
    assert len(Ok(text=longest).text) == 506
    with pytest.raises(LocalProtocolError):
        Ok(text=longest + "x")
    with pytest.raises(LocalProtocolError):
        Err(text="y" * 497, code=ResponseCode.IN_USE)
    with pytest.raises(LocalProtocolError):
        MultiLine(status=Ok(), lines=("z" * 511,))
    # Octets, not characters: a 2-octet character counts twice.
    with pytest.raises(LocalProtocolError):
        Ok(text="é" * 254)


def test_a3_long_user_name_is_not_echoed_into_the_reply() -> None:
    pair = ConnectionPair()
    name = "u" * 240
    assert pair.send(User(name=name)) == [Ok()]
    assert all(len(line) <= 512 for line in pair.wire[-1].split(b"\r\n"))


@pytest.mark.parametrize("text", ["a\r\nb", "a\nb", "a\0b", "[IN-USE] sneaky"])
def test_a3_reply_text_must_be_one_safe_line(text: str) -> None:
    with pytest.raises(LocalProtocolError):
        Ok(text=text)
    with pytest.raises(LocalProtocolError):
        Err(text=text)


# --- A4 ---------------------------------------------------------------------------------------


def test_a4_commands_of_255_octets_are_accepted() -> None:
    name = "n" * (255 - len("USER \r\n"))
    tr(f"USER {name}\r\n".encode(), User(name=name))


def test_a4_longer_commands_get_err_and_the_session_continues() -> None:
    server = greeted()
    line = b"USER " + b"n" * 251 + b"\r\n"  # 258 octets
    assert len(line) > 255
    assert one_event(server, line + b"CAPA\r\n") == BadCommand(
        reply=Err(text="Command line too long.")
    )
    assert server.send(Err(text="Command line too long.")).startswith(b"-ERR")
    assert server.next_event() == Capa()


def test_a4_over_long_line_is_discarded_while_it_streams_in() -> None:
    server = greeted()
    for _ in range(1000):
        assert one_event(server, b"x" * 1000) is Signal.NEED_DATA
        buffered, _ = server.trailing_data
        assert len(buffered) <= 65536 + 1000
    event = one_event(server, b"yyy\r\nNOOP\r\n")
    assert event == BadCommand(reply=Err(text="Command line too long."))
    server.send(event.reply)
    assert server.next_event() == WRONG_STATE


def test_a4_configured_max_command_size_counts_the_crlf() -> None:
    server = greeted(max_command_size=512)
    name = "n" * (512 - len("USER \r\n"))
    assert one_event(server, f"USER {name}\r\n".encode()) == User(name=name)
    server = greeted(max_command_size=512)
    bad = one_event(server, f"USER {name}x\r\n".encode())
    assert bad == BadCommand(reply=Err(text="Command line too long."))


def test_a4_over_long_line_without_line_end_is_refused_even_at_exact_limit() -> None:
    server = greeted(max_command_size=40, max_sasl_line=40)
    assert one_event(server, b"x" * 40) is Signal.NEED_DATA
    assert one_event(server, b"\r\n") == BadCommand(reply=Err(text="Command line too long."))


# --- A5 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b"XYZZY", "Unknown command."),
        (b"APOP alice c4c9334bac560ecc979e58001b3e22fb", "Unknown command."),
        (b"RETR", "Invalid arguments."),
        (b"RETR abc", "Invalid arguments."),
        (b"RETR 0", "Invalid arguments."),
        (b"RETR -1", "Invalid arguments."),
        (b"RETR 99999999999999999999", "Invalid arguments."),
        (b"RETR 2147483648", "Invalid arguments."),
        (b"RETR +1", "Invalid arguments."),
        (b"RETR 1.0", "Invalid arguments."),
        ("RETR \u0661".encode(), "Invalid arguments."),
        (b"TOP 1 -1", "Invalid arguments."),
        (b"TOP 1", "Invalid arguments."),
        (b"TOP 1 2 3", "Invalid arguments."),
        (b"LIST 1 2", "Invalid arguments."),
        (b"UIDL 1 2", "Invalid arguments."),
        (b"DELE", "Invalid arguments."),
        (b"STAT 1", "Invalid arguments."),
        (b"QUIT now", "Invalid arguments."),
        (b"RE\0TR 1", "Invalid characters in command."),
        (b"RETR 1\0", "Invalid characters in command."),
        (b"RETR\r1", "Invalid characters in command."),
        (b"\xff\xfe", "Invalid characters in command."),
        (b"", "Empty command."),
        (b" ", "Unknown command."),
    ],
)
def test_a5_unknown_and_invalid_commands_get_err(line: bytes, text: str) -> None:
    server = server_in(State.TRANSACTION)
    event = one_event(server, line + b"\r\n")
    assert event == BadCommand(reply=Err(text=text))
    assert pending_of(server) == event
    assert server.send(Err(text=text)) == f"-ERR {text}\r\n".encode()
    assert state_of(server) is State.TRANSACTION


def test_a5_numbers_at_the_limits_parse() -> None:
    tr(
        f"RETR {MAX_MESSAGE_NUMBER}\r\n".encode(),
        Retr(msg=MAX_MESSAGE_NUMBER),
        make=lambda: server_in(State.TRANSACTION),
    )
    tr(b"TOP 1 0\r\n", Top(msg=1, lines=0), make=lambda: server_in(State.TRANSACTION))


def test_a5_bad_command_must_be_answered_with_err() -> None:
    server = greeted()
    one_event(server, b"XYZZY\r\n")
    with pytest.raises(LocalProtocolError):
        server.send(Ok())


# --- A6 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"NOOP", b"RSET", b"PASS x", b"UIDL", b"TOP 1 1"],
)
def test_a6_transaction_commands_before_login_get_err_and_state_stays(line: bytes) -> None:
    server = greeted()
    assert one_event(server, line + b"\r\n") == WRONG_STATE
    server.send(WRONG_STATE.reply)
    assert state_of(server) is State.AUTHORIZATION


@pytest.mark.parametrize(
    "line", [b"USER alice", b"PASS pencil", b"APOP a b", b"AUTH PLAIN", b"STLS", b"UTF8"]
)
def test_a6_authorization_commands_after_login_get_err_and_state_stays(line: bytes) -> None:
    server = server_in(State.TRANSACTION)
    event = one_event(server, line + b"\r\n")
    assert isinstance(event, BadCommand)
    server.send(event.reply)
    assert state_of(server) is State.TRANSACTION


def test_a6_wrong_state_is_checked_before_arguments() -> None:
    assert _reply(State.AUTHORIZATION, b"RETR abc\r\n") == WRONG_STATE


def test_a6_noop_before_login_is_wrong_state() -> None:
    tr(b"NOOP\r\n", WRONG_STATE)


# --- A7 / A8 / A9 ------------------------------------------------------------------------------


def test_a7_multiline_replies_end_with_crlf_dot_crlf() -> None:
    server = server_in(State.TRANSACTION)
    for line, reply in [
        (b"LIST\r\n", MultiLine(status=Ok(), lines=("1 10",))),
        (b"UIDL\r\n", MultiLine(status=Ok(), lines=())),
        (b"CAPA\r\n", MultiLine(status=Ok(), lines=("TOP",))),
        (b"RETR 1\r\n", MessageBody(status=Ok(), content=b"a\r\n")),
        (b"TOP 1 0\r\n", MessageBody(status=Ok(), content=b"")),
    ]:
        one_event(server, line)
        assert server.send(reply).endswith(b"\r\n.\r\n")


def test_a7_empty_listing_is_ok_then_dot() -> None:
    server = server_in(State.TRANSACTION)
    one_event(server, b"LIST\r\n")
    assert server.send(MultiLine(status=Ok(), lines=())) == b"+OK\r\n.\r\n"


@pytest.mark.parametrize(
    ("content", "wire"),
    [
        (b".x\r\n", b"..x\r\n.\r\n"),
        (b"..\r\n", b"...\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"a\r\n.x\r\n..y\r\n", b"a\r\n..x\r\n...y\r\n.\r\n"),
    ],
)
def test_a8_byte_stuffing(content: bytes, wire: bytes) -> None:
    server = server_in(State.TRANSACTION)
    one_event(server, b"RETR 1\r\n")
    assert server.send(MessageBody(status=Ok(), content=content)) == b"+OK\r\n" + wire
    assert dot_unstuff(wire[:-3]) == content


def test_a8_listing_lines_are_stuffed_too() -> None:
    server = server_in(State.TRANSACTION)
    one_event(server, b"UIDL\r\n")
    reply = MultiLine(status=Ok(), lines=(".odd",))
    assert server.send(reply) == b"+OK\r\n..odd\r\n.\r\n"


@pytest.mark.parametrize(
    ("content", "wire"),
    [
        (b"no final eol", b"no final eol\r\n.\r\n"),
        (b"bare\nlf\n", b"bare\r\nlf\r\n.\r\n"),
        (b"bare\n.dot", b"bare\r\n..dot\r\n.\r\n"),
        (b"nul\0 and \xe9\xff\r\n", b"nul\0 and \xe9\xff\r\n.\r\n"),
        (b"bare\rcr\r\n", b"bare\rcr\r\n.\r\n"),
        (b"", b".\r\n"),
    ],
)
def test_a9_final_crlf_bare_lf_nul_and_8bit(content: bytes, wire: bytes) -> None:
    server = server_in(State.TRANSACTION)
    one_event(server, b"RETR 1\r\n")
    assert server.send(MessageBody(status=Ok(), content=content)) == b"+OK\r\n" + wire
    assert dot_stuff(to_crlf(content)) == wire


def test_a9_crlf_form_content_is_sent_without_conversion() -> None:
    server = server_in(State.TRANSACTION)
    one_event(server, b"RETR 1\r\n")
    body = MessageBody(status=Ok(), content=b"a\r\n.b\r\n", crlf_form=True)
    assert server.send(body) == b"+OK\r\na\r\n..b\r\n.\r\n"


def test_a9_a_stray_bare_lf_can_never_end_the_response_early() -> None:
    # A caller that wrongly claims CRLF form garbles a line at worst: the lone "." is stuffed.
    wire = dot_stuff(b"x\n.\r\ny\r\n")
    assert b"\r\n.\r\n" not in wire[:-3]
    assert wire == b"x\n..\r\ny\r\n.\r\n"


# --- A10 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"LIST 7", List(msg=7)),
        (b"LIST 007", List(msg=7)),
        (b"UIDL 12", Uidl(msg=12)),
        (b"DELE 3", Dele(msg=3)),
        (b"TOP 10 25", Top(msg=10, lines=25)),
        (b"LIST", List()),
        (b"UIDL", Uidl()),
        (b"STAT", Stat()),
        (b"NOOP", Noop()),
        (b"RSET", Rset()),
        (b"QUIT", Quit()),
    ],
)
def test_a10_message_numbers_are_decimal(line: bytes, event: object) -> None:
    server = server_in(State.TRANSACTION)
    assert one_event(server, line + b"\r\n") == event


@pytest.mark.parametrize(
    "build",
    [
        lambda: Retr(msg=0),
        lambda: Retr(msg=-1),
        lambda: Retr(msg=MAX_MESSAGE_NUMBER + 1),
        lambda: Top(msg=1, lines=-1),
        lambda: List(msg=True),
        lambda: User(name=""),
        lambda: User(name="a\r\nRETR 1"),
        lambda: Pass(password=""),
        lambda: Auth(mechanism="PL AIN"),
        lambda: Auth(mechanism="X" * 21),
        lambda: BadCommand(reply=Ok()),  # type: ignore[arg-type]
        lambda: MultiLine(status=Err(), lines=()),  # type: ignore[arg-type]
        lambda: MultiLine(status=Ok(), lines="abc"),  # type: ignore[arg-type]
        lambda: MessageBody(status=Ok(), content="str"),  # type: ignore[arg-type]
        lambda: Challenge(data="str"),  # type: ignore[arg-type]
        lambda: Ok(code="AUTH"),  # type: ignore[arg-type]
    ],
)
def test_events_validate_themselves(build: object) -> None:
    assert callable(build)
    with pytest.raises(LocalProtocolError):
        build()


def test_events_normalise_and_are_hashable() -> None:
    assert Auth(mechanism="plain") == Auth(mechanism="PLAIN")
    assert MultiLine(status=Ok(), lines=["a"]) == MultiLine(status=Ok(), lines=("a",))  # type: ignore[arg-type]
    assert len({Retr(msg=1), Retr(msg=1), Ok(), Err()}) == 3
    assert "pencil" not in repr(Pass(password="pencil"))


def test_a4_the_command_size_limit_can_be_changed_between_commands() -> None:
    server = server_in(State.TRANSACTION)
    server.max_command_size = 40
    event = one_event(server, b"UIDL " + b"1" * 60 + b"\r\n")
    assert isinstance(event, BadCommand)
    assert event.reply.text == "Command line too long."
    with pytest.raises(ValueError, match="at least"):
        server.max_command_size = 10
