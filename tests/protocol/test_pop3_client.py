"""ClientConnection: the client role of the core (used by tests and the front-end proxy)."""

from __future__ import annotations

import pytest

from popgate.protocol import (
    Auth,
    Capa,
    Challenge,
    ClientConnection,
    ConnectionClosed,
    Err,
    Event,
    List,
    LocalProtocolError,
    MessageBody,
    MultiLine,
    Noop,
    Ok,
    Pass,
    RemoteProtocolError,
    ResponseCode,
    Retr,
    SaslCancel,
    SaslResponse,
    Signal,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
    Utf8,
    Xclient,
)


def client_after_greeting() -> ClientConnection:
    client = ClientConnection()
    client.receive_data(b"+OK ready\r\n")
    assert client.next_event() == Ok("ready")
    return client


def events(client: ClientConnection, data: bytes, *, bytewise: bool = False) -> list[Event]:
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    found: list[Event] = []
    for chunk in chunks:
        client.receive_data(chunk)
        while isinstance(event := client.next_event(), Event):
            found.append(event)
    return found


@pytest.mark.parametrize(
    ("command", "wire"),
    [
        (User(name="alice"), b"USER alice\r\n"),
        (Pass(password="a b"), b"PASS a b\r\n"),
        (Auth(mechanism="plain"), b"AUTH PLAIN\r\n"),
        (Auth(mechanism="PLAIN", initial_response=b""), b"AUTH PLAIN =\r\n"),
        (Auth(mechanism="PLAIN", initial_response=b"\0u\0p"), b"AUTH PLAIN AHUAcA==\r\n"),
        (SaslResponse(data=b""), b"\r\n"),
        (SaslResponse(data=b"abc"), b"YWJj\r\n"),
        (SaslCancel(), b"*\r\n"),
        (List(), b"LIST\r\n"),
        (List(msg=3), b"LIST 3\r\n"),
        (Uidl(msg=3), b"UIDL 3\r\n"),
        (Top(msg=1, lines=0), b"TOP 1 0\r\n"),
        (Utf8(), b"UTF8\r\n"),
        (
            Xclient(attributes={"ADDR": "192.0.2.1", "PORT": "1"}),
            b"XCLIENT ADDR=192.0.2.1 PORT=1\r\n",
        ),
    ],
)
def test_client_serialises_commands(command: object, wire: bytes) -> None:
    assert ClientConnection().send(command) == wire  # type: ignore[arg-type]


def test_client_first_event_is_the_greeting_and_bytewise_parsing() -> None:
    client = ClientConnection()
    assert client.next_event() is Signal.NEED_DATA
    assert events(client, b"+OK POP3 ready\r\n", bytewise=True) == [Ok("POP3 ready")]


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"-ERR [IN-USE] locked", Err("locked", ResponseCode.IN_USE)),
        (b"-ERR [in-use] locked", Err("locked", ResponseCode.IN_USE)),
        (b"-ERR [SYS/TEMP/DISK] later", Err("later", ResponseCode.SYS_TEMP)),
        (b"-ERR [SYS] later", Err("later")),
        (b"-ERR [X-UNKNOWN] odd", Err("odd")),
        (b"-ERR [AUTH]", Err(code=ResponseCode.AUTH)),
        (b"+OK", Ok()),
        (b"+OK \xe9t\xe9", Ok("\ufffdt\ufffd")),
    ],
)
def test_client_parses_response_codes(line: bytes, reply: Ok | Err) -> None:
    client = client_after_greeting()
    client.send(Noop())
    assert events(client, line + b"\r\n") == [reply]


@pytest.mark.parametrize(
    "line", [b"OK", b"+OKAY", b"-ERR [unterminated", b"-ERR [AUTH] [AUTH] x", b"+OK a\0b", b"+ abc"]
)
def test_client_rejects_malformed_status_lines(line: bytes) -> None:
    client = client_after_greeting()
    client.send(Noop())
    client.receive_data(line + b"\r\n")
    with pytest.raises(RemoteProtocolError):
        client.next_event()
    with pytest.raises(RemoteProtocolError):
        client.next_event()
    with pytest.raises(LocalProtocolError):
        client.send(Noop())


def test_client_multiline_and_message_bodies_with_pipelining() -> None:
    client = client_after_greeting()
    for command in (Capa(), List(), Retr(msg=1), Top(msg=1, lines=0), Retr(msg=2), Stat()):
        client.send(command)
    assert client.awaiting == 6
    wire = (
        b"+OK caps\r\nTOP\r\n..odd\r\n.\r\n"
        b"-ERR [SYS/TEMP] later\r\n"
        b"+OK 3 octets\r\n..x\r\nline\r\n.\r\n"
        b"+OK\r\n.\r\n"
        b"-ERR no such message\r\n"
        b"+OK 1 3\r\n"
    )
    expected = [
        MultiLine(Ok("caps"), ("TOP", ".odd")),
        Err("later", ResponseCode.SYS_TEMP),
        MessageBody(Ok("3 octets"), b".x\r\nline\r\n"),
        MessageBody(Ok(), b""),
        Err("no such message"),
        Ok("1 3"),
    ]
    assert events(client_clone(client), wire) == expected
    assert events(client, wire, bytewise=True) == expected
    assert client.awaiting == 0


def client_clone(template: ClientConnection) -> ClientConnection:
    clone = client_after_greeting()
    for command in (Capa(), List(), Retr(msg=1), Top(msg=1, lines=0), Retr(msg=2), Stat()):
        clone.send(command)
    assert clone.awaiting == template.awaiting
    return clone


def test_client_sasl_challenges() -> None:
    client = client_after_greeting()
    client.send(Auth(mechanism="LOGIN"))
    assert events(client, b"+ VXNlcm5hbWU6\r\n") == [Challenge(b"Username:")]
    client.send(SaslResponse(data=b"alice"))
    assert events(client, b"+\r\n") == [Challenge(b"")]
    client.send(SaslResponse(data=b"pw"))
    assert events(client, b"+OK\r\n") == [Ok()]
    client.send(Auth(mechanism="PLAIN"))
    client.receive_data(b"+ !!!\r\n")
    with pytest.raises(RemoteProtocolError):
        client.next_event()


def test_client_unsolicited_err_before_close() -> None:
    client = client_after_greeting()
    assert events(client, b"-ERR Connection timed out.\r\n") == [Err("Connection timed out.")]
    client.receive_data(b"")
    assert client.next_event() == ConnectionClosed()
    stray = client_after_greeting()
    stray.receive_data(b"+OK who asked\r\n")
    with pytest.raises(RemoteProtocolError):
        stray.next_event()


def test_client_eof_in_the_middle_of_a_reply_is_an_error() -> None:
    client = client_after_greeting()
    client.send(Retr(msg=1))
    client.receive_data(b"+OK\r\npartial body\r\n")
    client.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        client.next_event()
    with pytest.raises(LocalProtocolError):
        client.receive_data(b"more")


def test_client_limits() -> None:
    client = ClientConnection(max_line=100)
    client.receive_data(b"+OK " + b"x" * 200)
    with pytest.raises(RemoteProtocolError):
        client.next_event()
    client = ClientConnection(max_line=100)
    client.receive_data(b"+OK " + b"x" * 200 + b"\r\n")
    with pytest.raises(RemoteProtocolError):
        client.next_event()
    client = ClientConnection(max_message_size=10)
    client.receive_data(b"+OK\r\n")
    client.next_event()
    client.send(Retr(msg=1))
    client.receive_data(b"+OK\r\n" + b"y" * 20)
    with pytest.raises(RemoteProtocolError):
        client.next_event()
    client = client_after_greeting()
    client.send(Capa())
    client.receive_data(b"+OK\r\n" + b"z" * 600 + b"\r\n")
    with pytest.raises(RemoteProtocolError):
        client.next_event()


def test_client_pauses_after_stls_and_drops_injected_plaintext() -> None:
    client = client_after_greeting()
    client.send(Stls())
    client.receive_data(b"+OK Begin TLS\r\n+OK injected\r\n")
    assert client.next_event() == Ok("Begin TLS")
    assert client.next_event() is Signal.PAUSED
    client.start_tls_done()
    assert client.trailing_data == (b"", False)
    assert client.next_event() is Signal.NEED_DATA
    with pytest.raises(LocalProtocolError):
        client.start_tls_done()
    with pytest.raises(LocalProtocolError):
        client.send(Ok())  # type: ignore[arg-type]
