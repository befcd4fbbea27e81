"""How long STAT/LIST/UIDL take to prepare on a big maildrop: MaildirStore.open() and stats().

    .venv/bin/python -m bench.store [--messages 100000]

Files are written straight into new/ under names in popgate's delivery format (deliver()
fsyncs each one, which would only slow the set-up) and, with --foreign, under names without
sizes, as another program would write them, so the first index build must read every file.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from popgate.store import MaildirStore

CONTENT = b"Subject: tiny\n\nx\n"


def populate(new: Path, count: int, *, foreign: bool) -> None:
    """Write ``count`` tiny messages into a Maildir's new/ folder."""
    for n in range(count):
        name = f"{1700000000 + n // 1000}.M{n % 1000}P1Q{n}.mx"
        if not foreign:
            name += f",S={len(CONTENT)},W=20"
        (new / name).write_bytes(CONTENT)


async def timed_open(store: MaildirStore, guid: uuid.UUID) -> tuple[float, int]:
    """Seconds for open() (then close()) and the number of messages listed."""
    started = time.perf_counter()
    session = await store.open(guid)
    elapsed = time.perf_counter() - started
    count = len(session.messages)
    await session.close()
    return elapsed, count


async def run(count: int, *, foreign: bool) -> None:
    """Build the maildrop and print a Markdown table of timings."""
    with tempfile.TemporaryDirectory(prefix="popgate-store-bench-") as scratch:
        store = MaildirStore(Path(scratch))
        guid = uuid.uuid4()
        await store.create_mailbox(guid)
        populate(store.mailbox_path(guid) / "new", count, foreign=foreign)
        first, listed = await timed_open(store, guid)
        assert listed == count
        again, _ = await timed_open(store, guid)
        started = time.perf_counter()
        await store.stats(guid)
        stats = time.perf_counter() - started
        kind = "names without sizes (other programs)" if foreign else "popgate's delivery names"
        print(f"| {count:,} messages, {kind} | first open() (builds the index) | {first:.2f} s |")
        print(f"| {count:,} messages, {kind} | open() with a current index | {again:.2f} s |")
        print(f"| {count:,} messages, {kind} | stats() with a current index | {stats:.2f} s |")


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--foreign", action="store_true", help="names without S=/W= sizes")
    args = parser.parse_args()
    print("| maildrop | operation | time |")
    print("|---|---|---|")
    asyncio.run(run(args.messages, foreign=args.foreign))


if __name__ == "__main__":
    main()
