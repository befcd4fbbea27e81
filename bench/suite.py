"""popgate beside Dovecot, side by side on one machine: issue 9's workloads in one run.

    .venv/bin/python -m bench [--repeat 3] [--seconds 5] [--idle 10000] [--huge 100000]

One throw-away popgate home (both services under ``popgate host``, on loopback) and one
private Dovecot 2.3 (Debian's ``dovecot-pop3d``, high-performance mode: long-lived login and
pop3 processes) serve copies of the same generated Maildir folders. Every mailbox has the
same argon2id hash string in both (popgate made it; Dovecot reads it as ``{ARGON2ID}``), so
both run the same password check at the same cost. One compiled client, pop3load, drives
both; every measurement is made on both servers in the same round, the order alternating
from round to round, and the table gives the median of the rounds. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import _loadgen
from bench._dovecot import Dovecot
from bench.pop3 import free_port, listening, popgate
from bench.service_control import (
    cli_command,
    dovecot_launch,
    dovecot_stop,
    dovecot_version,
    host_answers,
    kill_dovecot,
    stop_host,
    wait_until,
)
from bench.store import populate
from popgate.directory import Directory
from popgate.home import Home
from popgate.host._client import HostClient
from popgate.host._common import control_socket_path
from popgate.store import MaildirStore

BACKEND = "MSExchangePOP3BE"
FRONTEND = "MSExchangePOP3"
#: Users of the session workloads; a worker alternates between two so none waits on a lock.
REGULAR_USERS = 16
CONCURRENCY = 8
#: Fresh users per round for the uncached login rate: each logs in once, so every login
#: runs argon2id in both servers (popgate's cache only answers a password it has verified).
FRESH_USERS = 16
SMALL_MESSAGES, SMALL_SIZE = 10, 4096
BIG_MESSAGES, BIG_SIZE = 3, 10 * 2**20
#: Sessions per RETR measurement, one after another: 300 MB, about a second (shorter runs
#: vary by 15% on 2 cores shared by client and servers).
RETR_SESSIONS = 10
#: File descriptors the servers and the client need for the idle workload (two per popgate
#: front-end session, client and backend side, and the client's own).
OPEN_FILES = 65536
TRANSPORTS: list[tuple[_loadgen.Tls, str]] = [("none", "plain"), ("implicit", "tls")]
#: The issue's target: both services Running within 2 s of `popgate net start`.
START_TARGET_MS = 2000
LINE = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopq\n"


@dataclass
class Server:
    """One side of the comparison: where its ports are and what was measured on it."""

    name: str
    plain_port: int
    tls_port: int
    samples: dict[str, list[float]] = field(default_factory=dict)

    def record(self, measurement: str, value: float) -> None:
        """Add one round's value of ``measurement``."""
        self.samples.setdefault(measurement, []).append(value)


@dataclass(frozen=True)
class Row:
    """A line of the table: which samples, in which unit, which way is better, the target."""

    label: str
    key: str
    unit: str
    higher_is_better: bool
    #: The popgate/Dovecot ratio the issue asks for, and how it reads ("at least"/"at most").
    target: float | None = None


ROWS = [
    Row("full session, 8 clients, plain text", "full-plain", "sessions/s", True, 1.5),
    Row("full session, 8 clients, plain text: p50", "full-plain-p50", "ms", False),
    Row("full session, 8 clients, plain text: p99", "full-plain-p99", "ms", False),
    Row("full session, 8 clients, TLS on 995", "full-tls", "sessions/s", True, 1.5),
    Row("full session, 8 clients, TLS on 995: p50", "full-tls-p50", "ms", False),
    Row("full session, 8 clients, TLS on 995: p99", "full-tls-p99", "ms", False),
    Row("login + QUIT, plain text (password verified before)", "login-plain", "logins/s", True,
        1.5),
    Row("login + QUIT, plain text: p99", "login-plain-p99", "ms", False),
    Row("login + QUIT, TLS (password verified before)", "login-tls", "logins/s", True, 1.5),
    Row("login + QUIT, TLS: p99", "login-tls-p99", "ms", False),
    Row("login + QUIT, plain text, first login of each user", "login-fresh", "logins/s", True),
    Row("RETR of 10 MB messages, one client, plain text", "retr-plain", "MB/s", True, 1.0),
    Row("RETR of 10 MB messages, one client, TLS", "retr-tls", "MB/s", True, 1.0),
    Row("STAT + UIDL, 100,000 messages, warm", "huge-warm", "ms", False, 1.0),
    Row("STAT + UIDL, 100,000 messages, cold (first after restart)", "huge-cold", "ms", False, 2.0),
    Row("STAT + UIDL, 100,000 messages, first login ever", "huge-first", "ms", False),
    Row("start: `popgate net start` of a service / Dovecot launch to greeting", "start", "ms",
        False),
    Row("stop: `popgate net stop` of a service / Dovecot SIGTERM to exit", "stop", "ms", False),
    Row("idle authenticated sessions: memory (PSS) per session", "idle-per-session", "KiB",
        False, 0.1),
    Row("idle authenticated sessions: all processes' PSS", "idle-total", "MiB", False),
]  # fmt: skip


def message(index: int, size: int) -> bytes:
    """A message of about ``size`` bytes, 76-character lines."""
    body = LINE * max(1, size // len(LINE))
    return b"Subject: bench %d\nFrom: bench@example.com\n\n" % index + body


def raise_open_files() -> int:
    """Raise this process's open-files limit (the servers inherit it); the limit now.

    Raising the hard limit needs CAP_SYS_RESOURCE, which a container's root may lack.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < OPEN_FILES:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))
            return OPEN_FILES
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(hard)


def idle_sessions_allowed(asked: int, open_files: int) -> int:
    """How many idle sessions fit: the front end holds two descriptors per session."""
    fitting = (open_files - 300) // 2
    if fitting < asked:
        print(f"the open-files limit ({open_files:,}) allows {fitting:,} idle sessions through "
              f"popgate's front end (two descriptors each), not {asked:,}", flush=True)  # fmt: skip
    return min(asked, fitting)


def ensure_tools() -> None:
    """Install Dovecot's POP3 server and a C toolchain with apt-get if they are missing."""
    packages = []
    if not Dovecot.available():
        packages += ["dovecot-pop3d"]
    if shutil.which("cc") is None or not Path("/usr/include/openssl/ssl.h").exists():
        packages += ["gcc", "libc6-dev", "libssl-dev"]
    if not packages:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"missing: {' '.join(packages)}; install them (apt-get install ...)")
    print(f"installing {' '.join(packages)} ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], env=env, check=True)
    # The package starts a system Dovecot on 110/995; ours runs on its own ports.
    subprocess.run(["systemctl", "disable", "--now", "dovecot"], check=False, capture_output=True)


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # Fields after the parenthesised command: state, ppid, ...
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue  # the process ended while it was being read
            children.setdefault(parent, []).append(int(entry.name))
    tree, queue = [], [root]
    while queue:
        pid = queue.pop()
        tree.append(pid)
        queue += children.get(pid, [])
    return tree


def pss_kib(root: int) -> tuple[int, int]:
    """Total PSS (KiB) of ``root`` and its descendants, and how many processes that is."""
    total = processes = 0
    for pid in process_tree(root):
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += next(
            int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")
        )
        processes += 1
    return total, processes


async def hold_idle_sessions(
    port: int, users: list[tuple[str, str]], measure: Callable[[], tuple[int, int]]
) -> tuple[int, int, float]:
    """Log every user in on ``port`` and keep the sessions open; PSS, processes, seconds.

    The sessions are opened 64 at a time; ``measure`` runs once all are authenticated and
    idle. Then every session QUITs.
    """
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    gate = asyncio.Semaphore(64)

    async def log_in(user: str, password: str) -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            opened.append((reader, writer))
            for step, command in (("greeting", ""), ("USER", f"USER {user}\r\n"),
                                  ("PASS", f"PASS {password}\r\n")):  # fmt: skip
                writer.write(command.encode())
                line = await asyncio.wait_for(reader.readline(), 120)
                if not line.startswith(b"+OK"):
                    raise SystemExit(f"idle session {user}: {step}: {line!r}")

    started = time.perf_counter()
    try:
        await asyncio.gather(*(log_in(user, password) for user, password in users))
        elapsed = time.perf_counter() - started
        await asyncio.sleep(2)  # let both servers settle after the last login
        total, processes = measure()
        return total, processes, elapsed
    finally:
        for _, writer in opened:
            writer.write(b"QUIT\r\n")
        for _, writer in opened:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for _, w in opened), return_exceptions=True)


class Bench:
    """The corpus, both servers and the measurements."""

    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.root = root
        self.home = Home(root / "home")
        self.env = dict(os.environ, POPGATE_HOME=str(self.home.root))
        self.host: subprocess.Popen[bytes] | None = None
        self.dovecot: Dovecot | None = None
        #: (user, password) of each group of mailboxes.
        self.regular: list[tuple[str, str]] = []
        self.fresh: list[list[tuple[str, str]]] = []
        self.idle: list[str] = []
        self.popgate = Server("popgate", free_port(), free_port())
        self.other = Server("Dovecot", free_port(), free_port())

    # --- set-up ----------------------------------------------------------------------------

    def set_up(self) -> None:
        """Make the popgate home and its mailboxes, then Dovecot's copy of the same."""
        step = time.perf_counter()
        popgate(self.env, "setup")
        popgate(
            self.env, "settings", "set", "ProxyTargetPort", str(free_port()),
            "UnencryptedOrTLSBindings", f"127.0.0.1:{self.popgate.plain_port}",
            "SSLBindings", f"127.0.0.1:{self.popgate.tls_port}", "LoginType", "PlainTextLogin",
        )  # fmt: skip
        accounts = asyncio.run(self._make_mailboxes())
        print(f"popgate home ready in {time.perf_counter() - step:.0f} s", flush=True)
        step = time.perf_counter()
        self.dovecot = Dovecot(
            self.root / "dovecot", self.other.tls_port, self.other.plain_port,
            self.home.certificate, self.home.private_key, idle_sessions=self.args.idle,
        )  # fmt: skip
        self.dovecot.start(accounts)
        wait_until(lambda: listening(self.other.plain_port), "Dovecot listening")
        print(f"Dovecot ready in {time.perf_counter() - step:.0f} s", flush=True)

    async def _make_mailboxes(self) -> dict[str, tuple[str, Path | None]]:
        """Create every mailbox in popgate and return Dovecot's passwd entries for them."""
        store = MaildirStore(self.home.mail_root)
        hashes: dict[str, str] = {}
        folders: dict[str, Path | None] = {}
        async with await Directory.connect(self.home.directory_url) as directory:

            async def add(name: str, password: str, contents: list[bytes]) -> Path:
                mailbox = await directory.add_mailbox(name, password=password)
                await store.create_mailbox(mailbox.guid)
                for content in contents:
                    await store.deliver(mailbox.guid, content)
                folder = folders[name] = store.mailbox_path(mailbox.guid)
                return folder

            small = [message(i, SMALL_SIZE) for i in range(SMALL_MESSAGES)]
            self.regular = [(f"user{i:02d}", f"pw-user{i:02d}") for i in range(REGULAR_USERS)]
            for name, password in self.regular:
                await add(name, password, small)
            self.fresh = [
                [(f"fresh{r}x{i:02d}", f"pw-fresh{r}x{i:02d}") for i in range(FRESH_USERS)]
                for r in range(self.args.repeat)
            ]
            for name, password in (pair for group in self.fresh for pair in group):
                await add(name, password, small)
            await add("big", "pw-big", [message(i, BIG_SIZE) for i in range(BIG_MESSAGES)])
            huge = await add("huge", "pw-huge", [])
            populate(huge / "new", self.args.huge, foreign=False)
            # Idle mailboxes: no password of their own to hash 10,000 times (see below).
            self.idle = [f"idle{i:05d}" for i in range(self.args.idle)]
            for name in self.idle:
                await directory.add_mailbox(name, server=self.home.server_name)
                folders[name] = None
        # Dovecot gets popgate's own hash strings: the same check at the same cost.
        with sqlite3.connect(self.home.directory_url.removeprefix("sqlite+aiosqlite:///")) as db:
            hashes = dict(db.execute("SELECT name, password_hash FROM mailboxes"))
            shared = hashes["big"]
            # All idle mailboxes share one verified hash so that popgate's login cost is paid
            # once; Dovecot gets {PLAIN} for them (it has no cache of verified passwords, and
            # 10,000 argon2id checks would take 20 minutes). Memory does not depend on it.
            db.execute("UPDATE mailboxes SET password_hash = ? WHERE name LIKE 'idle%'", (shared,))
        entries: dict[str, tuple[str, Path | None]] = {}
        for name, folder in folders.items():
            if folder is None:
                entries[name] = ("{PLAIN}pw-idle", None)
            else:
                entries[name] = ("{ARGON2ID}" + hashes[name], folder)
        return entries

    def start_popgate(self) -> None:
        """Run ``popgate host`` and start both services with ``popgate net start``."""
        log = (self.root / "host.log").open("wb")
        self.host = subprocess.Popen(
            [*cli_command(), "host"], env=self.env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        with HostClient.local(control_socket_path(self.home)) as client:
            wait_until(lambda: host_answers(client), "the service host", within=60)
        for name in (BACKEND, FRONTEND):
            self.net("start", name)

    def net(self, verb: str, name: str) -> float:
        """Seconds ``popgate net VERB NAME`` takes, as an administrator runs it."""
        started = time.perf_counter()
        subprocess.run(
            [*cli_command(), "net", verb, name], env=self.env, check=True, timeout=120,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return time.perf_counter() - started

    # --- measurements ----------------------------------------------------------------------

    def load(
        self,
        server: Server,
        key: str,
        *,
        users: list[tuple[str, str]],
        workload: _loadgen.Workload,
        tls: _loadgen.Tls = "none",
        sessions: int | None = None,
        seconds: float | None = None,
        concurrency: int = 1,
    ) -> _loadgen.LoadResult:
        """One pop3load run against ``server``; failed sessions end the benchmark."""
        port = server.tls_port if tls == "implicit" else server.plain_port
        result = _loadgen.run(
            "127.0.0.1", port, users=users, workload=workload, tls=tls, sessions=sessions,
            seconds=seconds, concurrency=concurrency, timeout=120,
        )  # fmt: skip
        if result.sessions_failed or result.sessions_ok == 0:
            raise SystemExit(f"{server.name}, {key}: {result.first_error}")
        return result

    def round(self, number: int) -> None:
        """Every repeated measurement, on both servers, popgate first in even rounds."""
        servers = [self.popgate, self.other]
        if number % 2:
            servers.reverse()
        seconds = self.args.seconds
        timed: list[_loadgen.Workload] = ["full", "login"]
        for workload in timed:
            for server in servers:
                for tls, name in TRANSPORTS:
                    key = f"{workload}-{name}"
                    result = self.load(
                        server, key, users=self.regular, workload=workload, tls=tls,
                        seconds=seconds, concurrency=CONCURRENCY,
                    )  # fmt: skip
                    assert result.latency_ms is not None
                    server.record(key, result.sessions_per_s)
                    server.record(f"{key}-p50", result.latency_ms.p50)
                    server.record(f"{key}-p99", result.latency_ms.p99)
        for server in servers:
            users = self.fresh[number]
            result = self.load(server, "login-fresh", users=users, workload="login",
                               sessions=len(users), concurrency=CONCURRENCY)  # fmt: skip
            server.record("login-fresh", result.sessions_per_s)
        for server in servers:
            for tls, name in TRANSPORTS:
                result = self.load(server, f"retr-{name}", users=[("big", "pw-big")],
                                   workload="retr", tls=tls, sessions=RETR_SESSIONS)  # fmt: skip
                server.record(f"retr-{name}", result.retr_mb_per_s)
        for server in servers:
            self.restart(server)
            server.record("huge-cold", self.list_huge(server))
            for _ in range(3):
                server.record("huge-warm", self.list_huge(server))

    def list_huge(self, server: Server) -> float:
        """Milliseconds of one login + STAT + UIDL + QUIT session on the huge maildrop."""
        result = self.load(server, "huge", users=[("huge", "pw-huge")], workload="list",
                           sessions=1)  # fmt: skip
        assert result.latency_ms is not None
        return result.latency_ms.p50

    def restart(self, server: Server) -> None:
        """Stop and start ``server``, recording how long each service took."""
        if server is self.popgate:
            for name in (FRONTEND, BACKEND):
                server.record("stop", self.net("stop", name) * 1000)
            for name in (BACKEND, FRONTEND):
                server.record("start", self.net("start", name) * 1000)
        else:
            assert self.dovecot is not None
            server.record("stop", dovecot_stop(self.dovecot) * 1000)
            _, greeted = dovecot_launch(self.dovecot)
            server.record("start", greeted * 1000)

    def idle_memory(self) -> None:
        """Hold ``--idle`` authenticated sessions on each server; PSS of all its processes."""
        assert self.host is not None
        assert self.dovecot is not None
        assert self.dovecot.process is not None
        sides = [(self.popgate, self.host.pid), (self.other, self.dovecot.process.pid)]
        for server, root in sides:
            before, _ = pss_kib(root)
            total, processes, elapsed = asyncio.run(
                hold_idle_sessions(server.plain_port, self._idle_users(server),
                                   functools.partial(pss_kib, root))
            )  # fmt: skip
            count = len(self.idle)
            server.record("idle-total", total / 1024)
            server.record("idle-per-session", (total - before) / count)
            print(f"{server.name}: {count:,} idle sessions opened in {elapsed:.0f} s; "
                  f"PSS {before / 1024:,.0f} MiB before, {total / 1024:,.0f} MiB with them, "
                  f"{processes:,} processes", flush=True)  # fmt: skip
            time.sleep(3)  # both servers let go of the sessions before the next side

    def _idle_users(self, server: Server) -> list[tuple[str, str]]:
        """The idle users with the password each server has for them."""
        password = "pw-big" if server is self.popgate else "pw-idle"
        return [(name, password) for name in self.idle]

    def warm_up(self) -> None:
        """Log every regular user in once on each server, as a mail client does every day.

        popgate then answers these users' logins from its cache of verified passwords;
        Dovecot, whose cache holds the stored hash, still runs argon2id every time.
        """
        for server in (self.popgate, self.other):
            self.load(server, "warm-up", users=self.regular, workload="login",
                      sessions=len(self.regular), concurrency=CONCURRENCY)  # fmt: skip

    def first_huge(self) -> None:
        """The first session ever on the huge maildrop: each server builds its index."""
        for server in (self.popgate, self.other):
            server.record("huge-first", self.list_huge(server))

    def stop(self) -> None:
        """Stop Dovecot and the popgate host (which stops its services)."""
        if self.dovecot is not None:
            kill_dovecot(self.dovecot)
        if self.host is not None:
            stop_host(self.host)


def ratio_text(row: Row, ours: float, theirs: float) -> tuple[str, str]:
    """The popgate/Dovecot ratio and whether the target is met (or '' without a target)."""
    if theirs == 0:
        return "-", ""
    ratio = ours / theirs
    if row.target is None:
        return f"{ratio:.2f}", ""
    met = ratio >= row.target if row.higher_is_better else ratio <= row.target
    sign = ">=" if row.higher_is_better else "<="
    return f"{ratio:.2f}", f"{sign} {row.target:g}: {'yes' if met else 'NO'}"


def number(value: float) -> str:
    """A figure with sensible precision."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


def medians(bench: Bench) -> dict[str, dict[str, float]]:
    """Each measurement's median on each server, by key."""
    return {
        key: {
            server.name: statistics.median(server.samples[key])
            for server in (bench.popgate, bench.other)
            if server.samples.get(key)
        }
        for key in (row.key for row in ROWS)
    }


def report(bench: Bench, elapsed: float) -> None:
    """Print the Markdown table of medians and ratios."""
    print()
    print("| workload | unit | popgate | Dovecot | popgate/Dovecot | target |")
    print("|---|---|---|---|---|---|")
    for row in ROWS:
        ours = bench.popgate.samples.get(row.key)
        theirs = bench.other.samples.get(row.key)
        if not ours or not theirs:
            continue
        ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
        ratio, target = ratio_text(row, ours_median, theirs_median)
        better = "higher" if row.higher_is_better else "lower"
        print(f"| {row.label} | {row.unit} ({better} is better) | {number(ours_median)} "
              f"| {number(theirs_median)} | {ratio} | {target} |")  # fmt: skip
    starts = bench.popgate.samples["start"]
    verdict = "yes" if max(starts) <= START_TARGET_MS else "NO"
    print()
    print(f"`popgate net start NAME` until the service is Running, {len(starts)} starts: median "
          f"{statistics.median(starts):,.0f} ms, max {max(starts):,.0f} ms "
          f"(target: within {START_TARGET_MS:,} ms: {verdict}).")  # fmt: skip
    print(f"Medians of {bench.args.repeat} rounds ({len(bench.popgate.samples['start'])} service "
          f"starts for popgate); whole run {elapsed / 60:.1f} min.")  # fmt: skip


@contextmanager
def scratch_folder() -> Iterator[Path]:
    """A temporary folder Dovecot's unprivileged processes can reach into."""
    with tempfile.TemporaryDirectory(prefix="popgate-bench-") as folder:
        root = Path(folder)
        root.chmod(0o711)
        yield root


def interrupted(signum: int, _frame: object) -> None:
    """End the run through the normal clean-up on SIGTERM."""
    raise SystemExit(f"stopped by signal {signum}")


def main() -> None:
    """Parse options, set up, measure round by round, report, clean up."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=5, help="length of a timed run")
    parser.add_argument("--idle", type=int, default=10000, help="idle sessions to hold")
    parser.add_argument("--huge", type=int, default=100000, help="messages of the big maildrop")
    parser.add_argument("--json", type=Path, help="also write the medians to this file")
    args = parser.parse_args()
    if args.repeat < 1 or args.idle < 1 or args.huge < 1:
        parser.error("--repeat, --idle and --huge must be at least 1")
    signal.signal(signal.SIGTERM, interrupted)
    started = time.perf_counter()
    ensure_tools()
    args.idle = idle_sessions_allowed(args.idle, raise_open_files())
    _loadgen.build()
    with scratch_folder() as root:
        bench = Bench(args, root)
        try:
            bench.set_up()
            bench.start_popgate()
            bench.first_huge()
            bench.warm_up()
            for number_ in range(args.repeat):
                print(f"round {number_ + 1} of {args.repeat} ...", flush=True)
                bench.round(number_)
            try:
                bench.idle_memory()
            except (SystemExit, OSError, TimeoutError) as error:
                # The rounds' figures stand on their own; say why these rows are missing.
                print(f"idle sessions: not measured: {error}", flush=True)
        except BaseException:
            log = root / "host.log"
            if log.exists():
                sys.stderr.write(log.read_text(errors="replace")[-3000:])
            raise
        finally:
            bench.stop()
        report(bench, time.perf_counter() - started)
        if args.json is not None:
            args.json.write_text(json.dumps(medians(bench), indent=1) + "\n")
        print(f"Machine: {machine()}; Python {platform.python_version()}; "
              f"Dovecot {dovecot_version()}.")  # fmt: skip


def machine() -> str:
    """Cores, processor model and memory, from /proc."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), platform.machine())  # fmt: skip
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return f"{os.cpu_count()} cores ({model}), {memory_kib / 2**20:.0f} GiB, {platform.system()}"
