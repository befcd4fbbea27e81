"""popgate's POP3 services beside Dovecot: sessions per second and RETR throughput.

It builds a throw-away popgate home with a generated corpus, starts MSExchangePOP3BE and
MSExchangePOP3 as real processes, starts Dovecot on copies of the same Maildir folders, and
drives all of them with one small asyncio POP3 client in one run:

- the backend as a front end uses it (AUTH PLAIN as a trusted front end: no password hash),
  over its Unix socket and TLS, beside Dovecot with ``{PLAIN}`` passwords (no hash either);
- the front end as clients use it (AUTH PLAIN with the user's password, verified against its
  argon2id hash, then proxied), on the plain-text port (LoginType PlainTextLogin) and on the
  implicit-TLS port, beside Dovecot with Dovecot's own ``{ARGON2ID}`` hashes on both ports;
- RETR of one large mailbox through every path.

    .venv/bin/python -m bench.pop3 [--sessions 2000] [--hashed-sessions 160] [--retr-mb 200]
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


def tcp_connector(port: int) -> Connector:
    """Plain-text connections to 127.0.0.1:port."""

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", port, limit=2**26)

    return connect


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
    """A server to measure: how to connect, AUTH PLAIN tokens for its mailboxes, how many."""

    def __init__(
        self, name: str, connect: Connector, tokens: list[str], bulk: str, sessions: int
    ) -> None:
        self.name = name
        self.connect = connect
        self.tokens = tokens
        self.bulk = bulk
        self.sessions = sessions


async def measure(args: argparse.Namespace, targets: list[Target]) -> None:
    """Run every measurement on every target and print a Markdown table row per result."""
    print("| measurement | server, transport | result |")
    print("|---|---|---|")
    for target in targets:
        name, connect = target.name, target.connect
        runs = [
            await sessions_per_second(connect, target.tokens, target.sessions)
            for _ in range(args.repeat)
        ]
        print(f"| sessions/s ({target.sessions:,} x AUTH PLAIN + STAT + QUIT, "
              f"{args.concurrency} clients) | {name} "
              f"| {statistics.median(runs):,.1f} (median of {args.repeat}) |")  # fmt: skip
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


def wait_for(check: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    """Poll ``check`` until it holds; fail if ``process`` dies or 30 s pass."""
    deadline = time.monotonic() + 30
    while not check():
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.05)


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def main() -> None:
    """Set up, start the services and Dovecot, measure, stop."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=2000, help="cheap-login sessions")
    parser.add_argument("--hashed-sessions", type=int, default=160, help="argon2id sessions")
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
        backend_port, plain_port, ssl_port = free_port(), free_port(), free_port()
        popgate(
            env, "settings", "set", "ProxyTargetPort", str(backend_port),
            "UnencryptedOrTLSBindings", f"127.0.0.1:{plain_port}",
            "SSLBindings", f"127.0.0.1:{ssl_port}", "LoginType", "PlainTextLogin",
        )  # fmt: skip
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

        trusted = [front_end_token(user) for user in users]
        by_password = [user_token(user) for user in users]
        cheap, hashed = args.sessions, args.hashed_sessions
        targets = [
            Target("popgate MSExchangePOP3BE, Unix socket (trusted login)",
                   unix_connector(home.backend_socket), trusted, front_end_token("bulk"), cheap),
            Target("popgate MSExchangePOP3BE, TLS (trusted login)", tls_connector(backend_port),
                   trusted, front_end_token("bulk"), cheap),
        ]  # fmt: skip
        dovecot = Dovecot(
            root / "dovecot", free_port(), free_port(), home.certificate, home.private_key
        )
        if not args.no_dovecot:
            maildirs = asyncio.run(mailbox_folders(home, [*users, "bulk"]))
            hashed_password = Dovecot.hash_password(password)
            accounts = {user: ("{PLAIN}" + password, folder) for user, folder in maildirs.items()}
            accounts |= {"h" + user: (hashed_password, maildirs[user]) for user in users}
            dovecot.start(accounts)
            hashed_tokens = [user_token("h" + user) for user in users]
            targets.append(
                Target("Dovecot 2.3, TLS ({PLAIN} password)", tls_connector(dovecot.port),
                       by_password, user_token("bulk"), cheap)
            )  # fmt: skip
        targets += [
            Target("popgate MSExchangePOP3 -> BE, plain text (argon2id)",
                   tcp_connector(plain_port), by_password, user_token("bulk"), hashed),
            Target("popgate MSExchangePOP3 -> BE, implicit TLS (argon2id)",
                   tls_connector(ssl_port), by_password, user_token("bulk"), hashed),
        ]  # fmt: skip
        if not args.no_dovecot:
            targets += [
                Target("Dovecot 2.3, plain text ({ARGON2ID})", tcp_connector(dovecot.plain_port),
                       hashed_tokens, user_token("bulk"), hashed),
                Target("Dovecot 2.3, implicit TLS ({ARGON2ID})", tls_connector(dovecot.port),
                       hashed_tokens, user_token("bulk"), hashed),
            ]  # fmt: skip
        services: list[subprocess.Popen[bytes]] = []
        try:
            services += [
                subprocess.Popen(
                    [sys.executable, "-m", "popgate.cli", "service", "run", name],
                    env=env, stderr=subprocess.DEVNULL,
                )
                for name in ("MSExchangePOP3BE", "MSExchangePOP3")
            ]  # fmt: skip
            wait_for(home.backend_socket.exists, services[0], "MSExchangePOP3BE")
            wait_for(lambda: listening(plain_port), services[1], "MSExchangePOP3")
            time.sleep(0.5)
            asyncio.run(measure(args, targets))
        finally:
            dovecot.stop()
            for service in services:
                service.terminate()
            for service in services:
                service.wait(timeout=60)


if __name__ == "__main__":
    main()
