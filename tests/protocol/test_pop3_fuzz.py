"""Run the fuzz harness (fuzz/fuzz_server.py) in CI: garbage only raises RemoteProtocolError."""

from __future__ import annotations

import pytest

from fuzz.fuzz_server import client_property, run_server_case, server_property
from popgate.protocol import State


def test_fuzz_server_raises_only_remote_protocol_error() -> None:
    server_property(400)()


def test_fuzz_client_raises_only_remote_protocol_error() -> None:
    client_property(300)()


@pytest.mark.parametrize("start", list(State)[:6])
@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n" * 30,
        b"\0" * 300,
        b"A" * 100000 + b"\r\n",
        b"AUTH PLAIN\r\n" + b"A" * 70000 + b"\r\n",
        b"STLS\r\nUSER a\r\nPASS b\r\n",
        b"QUIT\r\nQUIT\r\n",
    ],
)
def test_fuzz_regressions(data: bytes, start: State) -> None:
    if start is State.ERROR:  # pragma: no cover - not a start state
        return
    run_server_case(data, start=start, cuts=[1, 7, 300], seed=1)
