"""Transcript tests: ``C:`` lines in, exact ``S:`` lines out, through a MiniDriver.

Consecutive ``C:`` lines are sent in one segment (pipelining); ``== start_tls_done`` stands
for a completed TLS handshake. Every transcript also runs fed one byte at a time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from popgate.protocol import State
from tests.protocol.pop3_helpers import MiniDriver

TRANSCRIPTS = sorted((Path(__file__).parent / "transcripts").glob("*.txt"))


def _blocks(path: Path) -> list[tuple[str, bytes]]:
    """(kind, bytes) pairs: "C" client segment, "S" expected output, "TLS" a handshake."""
    blocks: list[tuple[str, bytes]] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.startswith("#") or not raw.strip():
            continue
        if raw == "== start_tls_done":
            blocks.append(("TLS", b""))
            continue
        kind, text = raw[:1], raw[3:]
        assert raw[1:3] == ": ", raw
        data = text.encode("utf-8") + b"\r\n"
        if blocks and blocks[-1][0] == kind:
            blocks[-1] = (kind, blocks[-1][1] + data)
        else:
            blocks.append((kind, data))
    return blocks


def _run(path: Path, *, bytewise: bool) -> None:
    driver = MiniDriver()
    output = driver.greet()
    for kind, data in _blocks(path):
        if kind == "S":
            assert output == data, f"{path.name}: expected {data!r}, got {output!r}"
            output = b""
        elif kind == "TLS":
            driver.server.start_tls_done()
            output += driver.run()
        elif bytewise:
            for index in range(len(data)):
                output += driver.feed(data[index : index + 1])
        else:
            output += driver.feed(data)
    assert output == b""
    assert driver.server.state in (State.CLOSED, State.AUTHORIZATION, State.TRANSACTION)


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_transcript(path: Path) -> None:
    _run(path, bytewise=False)


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_transcript_byte_by_byte(path: Path) -> None:
    _run(path, bytewise=True)


def test_transcripts_exist() -> None:
    assert {p.stem for p in TRANSCRIPTS} >= {"exchange_session", "errors", "pipelining"}
