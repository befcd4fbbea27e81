"""The relay's QUIT watch: where the client's QUIT ends in the bytes relayed to a backend."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from popgate.protocol import Quit, State, parse_command
from popgate.services._frontend import QuitWatch


def _relayed(chunks: list[bytes]) -> tuple[bytes, bool]:
    watch = QuitWatch()
    relayed = bytearray()
    for chunk in chunks:
        relayed += watch.up_to_quit(chunk)
        if watch.quit_relayed:
            break
    return bytes(relayed), watch.quit_relayed


def _through_first_quit(stream: bytes) -> tuple[bytes, bool]:
    """The reference: the stream up to the first line the backend's parser reads as QUIT."""
    start = 0
    while (lf := stream.find(b"\n", start)) >= 0:
        line = stream[start:lf].removesuffix(b"\r")
        start = lf + 1
        if isinstance(parse_command(line, State.TRANSACTION), Quit):
            return stream[:start], True
    return stream, False


def test_nothing_after_quit_is_relayed_even_split_across_reads() -> None:
    assert _relayed([b"NOOP\r\nQU", b"IT\r", b"\nNOO"]) == (b"NOOP\r\nQUIT\r\n", True)
    assert _relayed([b"quit\n", b"DELE 1\r\n"]) == (b"quit\n", True)


def test_lines_the_backend_does_not_read_as_quit_are_relayed_whole() -> None:
    for stream in (b"QUIT \r\n", b"QUIT 1\r\n", b"XQUIT\r\n", b"QUIT\0\r\n", b"QUIT\r\r\n",
                   b"NOOP" + b" " * 40 + b"QUIT\r\n", b"QUIT"):  # fmt: skip
        assert _relayed([stream]) == (stream, False), stream


PIECES = [b"QUIT", b"quit", b"QUIT ", b"NOOP", b"STAT", b"Q", b"UIT", b"\r", b"\n", b"\r\n", b"\0"]


@given(
    st.lists(st.sampled_from([*PIECES, b"x" * 20]), max_size=30),
    st.lists(st.integers(min_value=0, max_value=200), max_size=10),
)
def test_any_stream_in_any_chunking_is_relayed_through_its_first_quit(
    pieces: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(pieces)
    bounds = sorted({min(cut, len(stream)) for cut in cuts} | {0, len(stream)})
    chunks = [stream[start:end] for start, end in itertools.pairwise(bounds)]
    assert _relayed(chunks) == _through_first_quit(stream)
