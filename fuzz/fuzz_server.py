"""Fuzz the POP3 core: arbitrary bytes may only ever raise ``RemoteProtocolError``.

The invariant (h11's fuzz rule): ``ServerConnection.receive_data()`` and ``next_event()``, and
``ClientConnection``'s, either parse their input or raise ``RemoteProtocolError``; any other
exception is a bug. The harness drives a server into each state, then feeds the fuzz input in
random chunks while an automatic driver answers every command with a legal reply.

* CI runs the hypothesis properties below from ``tests/protocol/test_pop3_fuzz.py``.
* ``python -m fuzz.fuzz_server [EXAMPLES]`` runs them longer (default 20000 examples).
* ``python -m fuzz.fuzz_server --atheris [libFuzzer args]`` uses atheris if it is installed.
"""

from __future__ import annotations

import importlib
import itertools
import random
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from popgate.protocol import (
    Auth,
    BadCommand,
    Capa,
    Challenge,
    ClientConnection,
    Command,
    ConnectionClosed,
    Err,
    List,
    MessageBody,
    MultiLine,
    Noop,
    Ok,
    RemoteProtocolError,
    Reply,
    Retr,
    SaslResponse,
    ServerConnection,
    Signal,
    State,
    Stls,
    Top,
    Uidl,
)
from popgate.protocol._state import allowed_replies

__all__ = [
    "CLIENT_COMMANDS",
    "START_STATES",
    "fuzz_inputs",
    "run_client_case",
    "run_server_case",
]

#: Wire prefixes (client lines and the replies given to them) that reach each start state.
_PREFIXES: Final[dict[State, tuple[tuple[bytes, Reply], ...]]] = {
    State.AUTHORIZATION: (),
    State.AWAITING_PASS: ((b"USER u\r\n", Ok()),),
    State.SASL: ((b"AUTH PLAIN\r\n", Challenge(b"")),),
    State.TLS_PENDING: ((b"STLS\r\n", Ok()),),
    State.TRANSACTION: ((b"USER u\r\n", Ok()), (b"PASS p\r\n", Ok())),
    State.UPDATE: ((b"USER u\r\n", Ok()), (b"PASS p\r\n", Ok())),
}
START_STATES: Final = tuple(_PREFIXES)

#: Fragments that make random inputs look like POP3 often enough to reach deep paths.
_TOKENS: Final = (
    b"USER u",
    b"PASS p q",
    b"AUTH PLAIN",
    b"AUTH SCRAM-SHA-256 biws",
    b"AUTH X =",
    b"STLS",
    b"CAPA",
    b"UTF8",
    b"XCLIENT ADDR=1.2.3.4",
    b"STAT",
    b"LIST",
    b"LIST 1",
    b"RETR 1",
    b"TOP 1 0",
    b"DELE 2147483647",
    b"UIDL 99999999999999999999",
    b"NOOP",
    b"RSET",
    b"QUIT",
    b"APOP a b",
    b"*",
    b"=",
    b"AHVzZXIAc2VjcmV0",
    b"=AAA",
    b" ",
    b"\0",
    b"\r",
    b"\n",
    b"\r\n",
    b"\xff",
    b"x" * 300,
    b"A" * 70000,
)


def _sample(reply_type: type[Reply]) -> Reply:
    if reply_type is Ok:
        return Ok("fine")
    if reply_type is Err:
        return Err("no")
    if reply_type is Challenge:
        return Challenge(b"\x00chal")
    if reply_type is MultiLine:
        return MultiLine(Ok(), (".a", "b"))
    assert reply_type is MessageBody
    return MessageBody(Ok(), b".x\r\ny")


def _answer(server: ServerConnection, pending: Command | BadCommand, rng: random.Random) -> None:
    if isinstance(pending, Stls) and server.tls_active:
        server.send(Err("TLS is already active."))  # Ok here is a LocalProtocolError
        return
    server.send(_sample(rng.choice(allowed_replies(pending))))


def _pump(server: ServerConnection, rng: random.Random) -> bool:
    """Process everything buffered; False once the session is over."""
    while True:
        try:
            event = server.next_event()
        except RemoteProtocolError as exc:
            assert server.state is State.ERROR
            if exc.reply_hint is not None:
                server.send(exc.reply_hint)
            return False
        if event is Signal.NEED_DATA:
            return True
        if event is Signal.PAUSED:
            if server.state is State.TLS_PENDING:
                server.start_tls_done()
                continue
            pending = server.pending
            if pending is None:
                return server.state is not State.CLOSED
            _answer(server, pending, rng)
            continue
        if isinstance(event, ConnectionClosed):
            return False
        assert isinstance(event, Command | BadCommand), event
        _answer(server, event, rng)


def run_server_case(data: bytes, *, start: State, cuts: Sequence[int], seed: int) -> None:
    """Drive a server to ``start``, feed ``data`` split at ``cuts``, then EOF."""
    rng = random.Random(seed)
    server = ServerConnection(
        max_command_size=rng.choice((40, 255, 512)),
        max_sasl_line=rng.choice((100, 65536)),
        max_bad_commands=rng.choice((0, 3, 20)),
        tls_active=start is not State.TLS_PENDING and rng.random() < 0.3,
    )
    server.send(Ok("ready"))
    for line, reply in _PREFIXES[start]:
        server.receive_data(line)
        assert isinstance(server.next_event(), Command)
        server.send(reply)
    if start is State.UPDATE:
        server.receive_data(b"QUIT\r\n")
        assert isinstance(server.next_event(), Command)
    assert server.state is start
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    for begin, end in itertools.pairwise(points):
        server.receive_data(data[begin:end])
        if not _pump(server, rng):
            return
    server.receive_data(b"")
    _pump(server, rng)


#: Commands a fuzzed client has sent; their replies are what the fuzz input must parse as.
CLIENT_COMMANDS: Final[tuple[Command, ...]] = (
    Noop(),
    Capa(),
    List(),
    List(msg=1),
    Uidl(),
    Retr(msg=1),
    Top(msg=1, lines=0),
    Auth(mechanism="PLAIN"),
    SaslResponse(data=b"x"),
    Stls(),
)


def run_client_case(data: bytes, *, commands: Sequence[int], cuts: Sequence[int]) -> None:
    """Send some commands, then feed ``data`` as the server's answer, split at ``cuts``."""
    client = ClientConnection(max_line=1024, max_message_size=4096)
    for index in commands:
        client.send(CLIENT_COMMANDS[index % len(CLIENT_COMMANDS)])
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    chunks = [data[begin:end] for begin, end in itertools.pairwise(points)]
    try:
        for chunk in [*chunks, b""]:
            client.receive_data(chunk)
            while True:
                event = client.next_event()
                if event is Signal.PAUSED:
                    client.start_tls_done()
                elif event is Signal.NEED_DATA or isinstance(event, ConnectionClosed):
                    break
    except RemoteProtocolError:
        return


def fuzz_inputs() -> st.SearchStrategy[bytes]:
    """Raw bytes, or POP3-looking sequences of tokens and separators."""
    tokens = st.lists(st.sampled_from(_TOKENS), max_size=30).map(b"".join)
    mixed = st.lists(st.one_of(st.sampled_from(_TOKENS), st.binary(max_size=8)), max_size=30)
    return st.one_of(st.binary(max_size=600), tokens, mixed.map(b"".join))


_CUTS = st.lists(st.integers(min_value=0, max_value=2**16), max_size=8)


def server_property(
    examples: int,
) -> Callable[[], None]:
    """The server invariant as a zero-argument hypothesis test with ``examples`` examples."""

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        data=fuzz_inputs(),
        start=st.sampled_from(START_STATES),
        cuts=_CUTS,
        seed=st.integers(min_value=0, max_value=2**32),
    )
    def check(data: bytes, start: State, cuts: list[int], seed: int) -> None:
        run_server_case(data, start=start, cuts=cuts, seed=seed)

    return check


def client_property(examples: int) -> Callable[[], None]:
    """The client invariant as a zero-argument hypothesis test with ``examples`` examples."""

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        data=fuzz_inputs(),
        commands=st.lists(st.integers(min_value=0, max_value=100), max_size=6),
        cuts=_CUTS,
    )
    def check(data: bytes, commands: list[int], cuts: list[int]) -> None:
        run_client_case(data, commands=commands, cuts=cuts)

    return check


def _atheris_main(argv: list[str]) -> None:  # pragma: no cover - optional tool
    try:
        atheris: Any = importlib.import_module("atheris")
    except ImportError:
        sys.exit("atheris is not installed: pip install atheris")

    def one_input(buffer: bytes) -> None:
        provider = atheris.FuzzedDataProvider(buffer)
        start = START_STATES[provider.ConsumeIntInRange(0, len(START_STATES) - 1)]
        seed = provider.ConsumeIntInRange(0, 2**32)
        cuts = [provider.ConsumeIntInRange(0, 2**16) for _ in range(4)]
        data = provider.ConsumeBytes(provider.remaining_bytes())
        run_server_case(data, start=start, cuts=cuts, seed=seed)
        run_client_case(data, commands=cuts, cuts=cuts)

    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def main(argv: list[str]) -> None:
    """Entry point: ``[EXAMPLES]`` for hypothesis, or ``--atheris ...`` for libFuzzer."""
    if argv[1:2] == ["--atheris"]:
        _atheris_main([argv[0], *argv[2:]])
        return
    examples = int(argv[1]) if len(argv) > 1 else 20000
    server_property(examples)()
    client_property(examples)()
    print(f"ok: {examples} server and {examples} client examples")


if __name__ == "__main__":
    main(sys.argv)
