"""Benchmark of MSExchangePOP3BE: sessions per second and RETR throughput.

It builds a throw-away popgate home with a generated corpus, starts the backend as a real
process and drives it with a small asyncio POP3 client, the way a front end does (SASL PLAIN
as a trusted front end) over TLS on ProxyTargetPort and over the Unix socket.

    .venv/bin/python bench/backend.py [--sessions 2000] [--concurrency 16] [--retr-mb 200]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from popgate.home import Home

Connector = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def popgate(env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    """Run the popgate CLI, failing loudly."""
    subprocess.run(
        [sys.executable, "-m", "popgate.cli", *args], env=env, input=stdin, text=True, check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


def free_port() -> int:
    """An unused TCP port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def make_corpus(folder: Path, count: int, size: int) -> list[str]:
    """``count`` .eml files of about ``size`` bytes each, with 76-character lines."""
    folder.mkdir(parents=True, exist_ok=True)
    line = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopq\n"
    paths = []
    for index in range(count):
        body = line * max(1, size // len(line))
        path = folder / f"{index:06d}.eml"
        path.write_bytes(b"Subject: bench %d\nFrom: bench@example.com\n\n" % index + body)
        paths.append(str(path))
    return paths


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    """One status line; raises on -ERR."""
    line = await reader.readline()
    if not line.startswith((b"+OK", b"+ ")):
        raise RuntimeError(f"unexpected reply {line!r}")
    return line


async def read_multiline(reader: asyncio.StreamReader) -> int:
    """Read a multi-line body up to the terminator; return its octets."""
    await read_reply(reader)
    total = 0
    while True:
        line = await reader.readline()
        if line == b".\r\n":
            return total
        total += len(line)


async def one_session(connect: Connector, token: str, retrieve: bool) -> int:
    """Log in as a trusted front end, STAT (and RETR everything), QUIT; returns RETR octets."""
    reader, writer = await connect()
    await read_reply(reader)
    writer.write(f"AUTH PLAIN {token}\r\nSTAT\r\n".encode())
    await read_reply(reader)
    count = int((await read_reply(reader)).split()[1])
    octets = 0
    if retrieve:
        for number in range(1, count + 1):
            writer.write(b"RETR %d\r\n" % number)
            octets += await read_multiline(reader)
    writer.write(b"QUIT\r\n")
    await read_reply(reader)
    writer.close()
    return octets


async def sessions_per_second(
    connect: Connector, token: str, total: int, concurrency: int
) -> float:
    """Complete ``total`` login/STAT/QUIT sessions with ``concurrency`` clients in parallel."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one_session(connect, token, retrieve=False)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - started)


async def measure(args: argparse.Namespace, home: Home, port: int, token: str) -> None:
    """Run every measurement and print a Markdown table row per result."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    async def tls() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", port, ssl=context, limit=2**20)

    async def unix() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(str(home.backend_socket), limit=2**20)

    print("| measurement | transport | result |")
    print("|---|---|---|")
    for name, connect in (("Unix socket", unix), ("TLS", tls)):
        runs = [
            await sessions_per_second(connect, token, args.sessions, args.concurrency)
            for _ in range(args.repeat)
        ]
        print(f"| sessions/s (AUTH PLAIN + STAT + QUIT, {args.concurrency} clients) | {name} "
              f"| {statistics.median(runs):,.0f} (median of {args.repeat}) |")  # fmt: skip
    for name, connect in (("Unix socket", unix), ("TLS", tls)):
        runs = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            octets = await one_session(connect, token, retrieve=True)
            runs.append(octets / (time.perf_counter() - started) / 1e6)
        print(f"| RETR throughput, one session, {args.retr_mb} x 1 MB | {name} "
              f"| {statistics.median(runs):,.0f} MB/s (median of {args.repeat}) |")  # fmt: skip


def main() -> None:
    """Set up, start the backend, measure, stop."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--retr-mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="popgate-bench-") as scratch:
        root = Path(scratch)
        env = dict(os.environ, POPGATE_HOME=str(root / "home"))
        home = Home(root / "home")
        popgate(env, "setup")
        port = free_port()
        popgate(env, "settings", "set", "ProxyTargetPort", str(port))
        popgate(env, "mailbox", "add", "bench", "--password-stdin", stdin="bench-password\n")
        popgate(env, "mailbox", "import", "bench", *make_corpus(root / "eml", args.retr_mb, 2**20))
        secret = home.proxy_secret_file.read_text().strip()
        token = base64.b64encode(f"bench\0frontend/{home.server_name}\0{secret}".encode()).decode()
        backend = subprocess.Popen(
            [sys.executable, "-m", "popgate.cli", "service", "run", "MSExchangePOP3BE"],
            env=env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not home.backend_socket.exists():
                if time.monotonic() > deadline or backend.poll() is not None:
                    raise SystemExit("the backend did not start")
                time.sleep(0.05)
            asyncio.run(measure(args, home, port, token))
        finally:
            backend.terminate()
            backend.wait(timeout=60)


if __name__ == "__main__":
    main()
