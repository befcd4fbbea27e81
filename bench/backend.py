"""Benchmark of MSExchangePOP3BE beside Dovecot: sessions per second and RETR throughput.

It builds a throw-away popgate home with a generated corpus, starts the backend as a real
process and drives it with a small asyncio POP3 client, the way a front end does (SASL PLAIN
as a trusted front end) over TLS on ProxyTargetPort and over the Unix socket. When Dovecot is
installed it serves a copy of the same Maildir over implicit TLS (AUTH PLAIN against a
passwd-file: also a cheap login), and the same client measures it in the same run.

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

from bench._dovecot import Dovecot
from popgate.directory import Directory
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
    """Read a (non-empty) multi-line body up to its terminator; return its octets."""
    await read_reply(reader)
    body = await reader.readuntil(b"\r\n.\r\n")
    return len(body) - 3


async def one_session(connect: Connector, token: str, *, retrieve: bool) -> int:
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


async def sessions_per_second(connect: Connector, tokens: list[str], total: int) -> float:
    """Complete ``total`` login/STAT/QUIT sessions, one client per mailbox (token) in parallel.

    Each client has its own mailbox because a maildrop admits one session at a time.
    """
    remaining = total

    async def worker(token: str) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one_session(connect, token, retrieve=False)

    started = time.perf_counter()
    await asyncio.gather(*(worker(token) for token in tokens))
    return total / (time.perf_counter() - started)


def tls_connector(port: int) -> Connector:
    """Connections over implicit TLS to 127.0.0.1:port, accepting any certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", port, ssl=context, limit=2**26)

    return connect


def unix_connector(path: Path) -> Connector:
    """Connections to a Unix socket."""

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(str(path), limit=2**26)

    return connect


class Target:
    """A server to measure: how to connect and the AUTH PLAIN tokens for its mailboxes."""

    def __init__(self, name: str, connect: Connector, tokens: list[str], bulk: str) -> None:
        self.name = name
        self.connect = connect
        self.tokens = tokens
        self.bulk = bulk


async def measure(args: argparse.Namespace, targets: list[Target]) -> None:
    """Run every measurement on every target and print a Markdown table row per result."""
    print("| measurement | server, transport | result |")
    print("|---|---|---|")
    for target in targets:
        name, connect = target.name, target.connect
        runs = [
            await sessions_per_second(connect, target.tokens, args.sessions)
            for _ in range(args.repeat)
        ]
        print(f"| sessions/s (AUTH PLAIN + STAT + QUIT, {args.concurrency} clients) | {name} "
              f"| {statistics.median(runs):,.0f} (median of {args.repeat}) |")  # fmt: skip
    for target in targets:
        name, connect = target.name, target.connect
        runs = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            octets = await one_session(connect, target.bulk, retrieve=True)
            runs.append(octets / (time.perf_counter() - started) / 1e6)
        print(f"| RETR throughput, one session, {args.retr_mb} x 1 MB | {name} "
              f"| {statistics.median(runs):,.0f} MB/s (median of {args.repeat}) |")  # fmt: skip


async def mailbox_folders(home: Home, names: list[str]) -> dict[str, Path]:
    """Each mailbox's Maildir folder (named by its GUID)."""
    directory = await Directory.connect(home.directory_url)
    try:
        folders = {}
        for name in names:
            mailbox = await directory.get_mailbox(name)
            assert mailbox is not None
            folders[name] = home.mail_root / str(mailbox.guid)
        return folders
    finally:
        await directory.close()


def main() -> None:
    """Set up, start the backend, measure, stop."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--retr-mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-dovecot", action="store_true", help="measure popgate alone")
    args = parser.parse_args()
    if not args.no_dovecot and not Dovecot.available():
        raise SystemExit("Dovecot is not installed: apt-get install dovecot-pop3d, or --no-dovecot")
    with tempfile.TemporaryDirectory(prefix="popgate-bench-") as scratch:
        root = Path(scratch)
        root.chmod(0o711)  # Dovecot's unprivileged processes must reach its folder inside
        env = dict(os.environ, POPGATE_HOME=str(root / "home"))
        home = Home(root / "home")
        popgate(env, "setup")
        port = free_port()
        popgate(env, "settings", "set", "ProxyTargetPort", str(port))
        password = "bench-password"
        users = [f"user{index:02d}" for index in range(args.concurrency)]
        for user in [*users, "bulk"]:
            popgate(env, "mailbox", "add", user, "--password-stdin", stdin=password + "\n")
        small = make_corpus(root / "small", 10, 4096)
        for user in users:
            popgate(env, "mailbox", "import", user, *small)
        popgate(env, "mailbox", "import", "bulk", *make_corpus(root / "eml", args.retr_mb, 2**20))
        secret = home.proxy_secret_file.read_text().strip()

        def front_end_token(user: str) -> str:
            identity = f"{user}\0frontend/{home.server_name}\0{secret}"
            return base64.b64encode(identity.encode()).decode()

        def user_token(user: str) -> str:
            return base64.b64encode(f"\0{user}\0{password}".encode()).decode()

        tokens = [front_end_token(user) for user in users]
        targets = [
            Target("popgate MSExchangePOP3BE, Unix socket", unix_connector(home.backend_socket),
                   tokens, front_end_token("bulk")),
            Target("popgate MSExchangePOP3BE, TLS", tls_connector(port), tokens,
                   front_end_token("bulk")),
        ]  # fmt: skip
        dovecot = Dovecot(root / "dovecot", free_port(), home.certificate, home.private_key)
        if not args.no_dovecot:
            maildirs = asyncio.run(mailbox_folders(home, [*users, "bulk"]))
            dovecot.start({user: (password, folder) for user, folder in maildirs.items()})
            targets.append(
                Target("Dovecot 2.3 pop3, TLS", tls_connector(dovecot.port),
                       [user_token(user) for user in users], user_token("bulk"))
            )  # fmt: skip
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
            asyncio.run(measure(args, targets))
        finally:
            dovecot.stop()
            backend.terminate()
            backend.wait(timeout=60)


if __name__ == "__main__":
    main()
