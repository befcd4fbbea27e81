"""An organization of four computers, each a Linux network namespace on one bridge.

cas1 and cas2 (ClientAccess) and mbx1 and mbx2 (Mailbox) each have their own network stack
(a veth pair whose other end is on a bridge in the root namespace), their own /etc/hosts
(``ip netns exec`` bind-mounts ``/etc/netns/<ns>/hosts``), their own ``POPGATE_HOME`` and
their own ``popgate host``; they share a directory in a PostgreSQL server the fixture starts
on the bridge's address. Every service runs on its default ports inside its namespace; the
tests, in the root namespace, reach the computers at 10.77.0.11-14 (10.77.N.11-14 when a
parallel or leftover run holds 10.77.0.0/24).

Needs root, iproute2 and PostgreSQL's server binaries (``scripts/test.sh`` installs them in
CI); the tests are skipped without them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from popgate.home import Home
from popgate.host._client import HostClient, HostNotRunningError, ServiceView
from popgate.host._common import control_socket_path
from tests.e2e.conftest import browser, page, playwright_driver  # noqa: F401 - fixtures

#: Each computer: its server name, roles and the last octet of its address.
SERVERS: dict[str, tuple[str, int]] = {
    "cas1": ("ClientAccess", 11),
    "cas2": ("ClientAccess", 12),
    "mbx1": ("Mailbox", 13),
    "mbx2": ("Mailbox", 14),
}
CLIENT_ACCESS = ("cas1", "cas2")
MAILBOX = ("mbx1", "mbx2")
#: The organization's DNS domain: each computer is <server>.DOMAIN, PostgreSQL db.DOMAIN.
DOMAIN = "popgate.test"
#: Where the control API listens in each namespace (``popgate setup --https``).
HTTPS_PORT = 8443
STARTUP_SECONDS = 60
#: The POP3 ports of MSExchangePOP3 (defaults: STLS on 110, implicit TLS on 995).
POP3_PORT, POP3S_PORT = 110, 995

# Runs inside a namespace (Python's own smtplib, no popgate): delivers each message of the
# JSON request on stdin by LMTP and prints the per-recipient replies as JSON.
LMTP_CLIENT = """
import base64, json, smtplib, sys
request = json.load(sys.stdin)
replies = []
with smtplib.LMTP(request["host"], request["port"], timeout=60) as lmtp:
    lmtp.ehlo()
    for message in request["messages"]:
        code, text = lmtp.mail(request["sender"])
        if code != 250:
            raise SystemExit(f"MAIL FROM: {code} {text!r}")
        code, text = lmtp.rcpt(request["recipient"])
        if code != 250:
            raise SystemExit(f"RCPT TO: {code} {text!r}")
        code, text = lmtp.data(base64.b64decode(message))
        replies.append([code, text.decode("utf-8", "replace")])
json.dump(replies, sys.stdout)
"""


def insecure_client_context() -> ssl.SSLContext:
    """A client context that accepts the computers' self-signed certificates."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _run(command: Sequence[str], **options: Any) -> subprocess.CompletedProcess[str]:
    """Run ``command``; an AssertionError with its output if it fails."""
    result = subprocess.run(
        list(command), capture_output=True, text=True, timeout=120, check=False, **options
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


def postgres_bindir() -> Path | None:
    """The folder with PostgreSQL's initdb, pg_ctl and postgres, if they are installed."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            bindir = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
            if bindir:
                candidates.append(Path(bindir))

    def version(folder: Path) -> int:
        name = folder.parent.name
        return int(name) if name.isdigit() else 0

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres", "psql")):
            return folder
    return None


def why_not_runnable() -> str | None:
    """Why this machine cannot run the organization, or None if it can."""
    if os.geteuid() != 0:
        return "needs root: it creates network namespaces, a bridge and veth pairs"
    if shutil.which("ip") is None:
        return "needs iproute2's ip command for network namespaces"
    if postgres_bindir() is None:
        return "needs PostgreSQL's server binaries (initdb, pg_ctl, psql; apt package postgresql)"
    return None


def _free_subnet() -> str:
    """The first 10.77.N.0/24 that no interface of the root namespace uses (N = 0 unless a
    parallel or leftover run holds it)."""
    listing = _run(["ip", "-4", "-o", "addr", "show"]).stdout
    used = set(re.findall(r"inet 10\.77\.(\d+)\.\d+/", listing))
    for octet in range(256):
        if str(octet) not in used:
            return f"10.77.{octet}"
    raise RuntimeError("every 10.77.N.0/24 is in use")


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


# -- PostgreSQL ------------------------------------------------------------------------------


@dataclass
class Postgres:
    """A PostgreSQL server of the test's own, in a folder owned by the ``postgres`` user."""

    bindir: Path
    folder: Path
    port: int
    owner: str

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.folder / "data"

    @property
    def log(self) -> Path:
        """pg_ctl's log file (the server's stderr)."""
        return self.folder / "postgres.log"

    def as_owner(self, *command: str) -> subprocess.CompletedProcess[str]:
        """Run one of PostgreSQL's programs as the cluster's owner."""
        return _run(
            ["runuser", "-u", self.owner, "--", str(self.bindir / command[0]), *command[1:]]
        )

    def start(self, listen: Sequence[str], clients: Sequence[str]) -> None:
        """initdb, then start the server on ``listen`` and a Unix socket in the folder;
        ``clients`` (networks) log in over TCP with a password."""
        self.as_owner(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '{','.join(listen)}'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.folder}'\n"
                "max_connections = 300\n"
                "shared_buffers = 32MB\n"
                # A database for one test run: nothing has to survive a crash.
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        # Trust only over the folder's Unix socket (root creates the role); passwords on TCP.
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            + "".join(f"host all all {network} scram-sha-256\n" for network in clients)
        )
        self.as_owner("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                      "start")  # fmt: skip

    def stop(self) -> None:
        """Stop the server (fast: open sessions are ended) and wait for it."""
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                ["runuser", "-u", self.owner, "--", str(self.bindir / "pg_ctl"), "-D",
                 str(self.data), "-m", "fast", "-w", "-t", "60", "stop"],
                capture_output=True, timeout=90, check=False,
            )  # fmt: skip

    def create_database(self, role: str, password: str) -> None:
        """A login role with ``password`` and a database of the same name that it owns
        (psql over the folder's Unix socket, where the cluster's owner is trusted)."""
        psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.folder), "-p",
                str(self.port), "-U", "postgres", "-d", "postgres"]  # fmt: skip
        self.as_owner(*psql, "-c", f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        self.as_owner(*psql, "-c", f"CREATE DATABASE {role} OWNER {role}")


# -- the organization ------------------------------------------------------------------------


@dataclass(repr=False)
class Organization:
    """Four computers (network namespaces) running popgate, and their shared directory."""

    root: Path
    tag: str
    subnet: str
    postgres: Postgres
    directory_url: str = ""
    administrator_password: str = ""
    hosts: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: How long each phase of bringing the organization up took, in seconds.
    timings: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Not the directory's or the Administrator's password, which a failure report shows.
        return f"<Organization {self.tag}: {self.subnet}.0/24, {self.root}>"

    # -- names and places

    def namespace(self, server: str) -> str:
        """The network namespace that is computer ``server``."""
        return f"pg{self.tag}-{server}"

    def address(self, server: str) -> str:
        """The computer's IPv4 address (the test reaches it from the root namespace)."""
        return f"{self.subnet}.{SERVERS[server][1]}"

    @property
    def database_address(self) -> str:
        """The bridge's address, where PostgreSQL listens (db.popgate.test)."""
        return f"{self.subnet}.1"

    def fqdn(self, server: str) -> str:
        """The computer's DNS name, as every computer's /etc/hosts has it."""
        return f"{server}.{DOMAIN}"

    def home(self, server: str) -> Path:
        """The computer's POPGATE_HOME."""
        return self.root / server

    def layout(self, server: str) -> Home:
        """The paths of the computer's data directory."""
        return Home(self.home(server))

    def env(self, server: str) -> dict[str, str]:
        """The environment of a popgate command on that computer."""
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env["POPGATE_HOME"] = str(self.home(server))
        return env

    # -- running things on a computer

    def run(
        self,
        server: str,
        *command: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on computer ``server`` (in its namespace, with its POPGATE_HOME)."""
        result = subprocess.run(
            ["ip", "netns", "exec", self.namespace(server), *command],
            env=self.env(server),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"on {server}: {' '.join(command)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def popgate(
        self, server: str, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``popgate ARGS`` on computer ``server``."""
        return self.run(server, sys.executable, "-m", "popgate.cli", *args, input=input,
                        check=check)  # fmt: skip

    def net(self, server: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``popgate net ARGS`` on computer ``server``, whatever its exit status."""
        return self.popgate(server, "net", *args, check=False)

    def control(self, server: str) -> HostClient:
        """A client of the computer's host, over its control socket (a file: reachable from
        the root namespace)."""
        return HostClient.local(control_socket_path(self.layout(server)))

    def services(self, server: str) -> dict[str, ServiceView]:
        """The computer's services by name (status, pid, startup type, ...)."""
        with self.control(server) as client:
            return {view["name"]: view for view in client.services()}

    def add_mailbox(self, server: str, name: str, password: str) -> None:
        """``popgate mailbox add`` on Mailbox server ``server``: the mailbox lives there."""
        self.popgate(
            server, "mailbox", "add", name, "--server", server, "--password-stdin",
            input=password + "\n",
        )  # fmt: skip

    def deliver(
        self,
        server: str,
        recipient: str,
        messages: Sequence[bytes],
        sender: str = "test@example.org",
    ) -> list[str]:
        """Deliver ``messages`` by LMTP to 127.0.0.1:24 inside ``server``'s namespace (its
        MSExchangeDelivery); the UIDL of each, from its ``250 ... Saved as <UIDL>`` reply."""
        request = {
            "host": "127.0.0.1",
            "port": 24,
            "sender": sender,
            "recipient": recipient,
            "messages": [base64.b64encode(message).decode("ascii") for message in messages],
        }
        result = self.run(server, sys.executable, "-c", LMTP_CLIENT, input=json.dumps(request))
        uidls = []
        for code, text in json.loads(result.stdout):
            saved = re.search(r"Saved as (\S+)", text)
            assert code == 250, f"LMTP on {server}: {code} {text}"
            assert saved, f"LMTP on {server}: {code} {text}"
            uidls.append(saved.group(1))
        return uidls

    # -- logs

    def host_log(self, server: str) -> str:
        """What ``popgate host`` wrote to stdout and stderr on that computer."""
        path = self.root / f"{server}.host.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self, lines: int = 60) -> str:
        """The last lines of every host's log and of PostgreSQL's, for a failure report."""
        parts = []
        for server in SERVERS:
            tail = self.host_log(server).splitlines()[-lines:]
            parts.append(
                f"--- {server} ({self.namespace(server)}): popgate host\n" + "\n".join(tail)
            )
        if self.postgres.log.exists():
            tail = self.postgres.log.read_text(errors="replace").splitlines()[-lines:]
            parts.append("--- PostgreSQL\n" + "\n".join(tail))
        return "\n".join(parts)

    # -- bringing it up

    def start_host(self, server: str) -> None:
        """Run ``popgate host`` in the background on that computer, logging to a file."""
        with (self.root / f"{server}.host.log").open("ab") as log:
            self.hosts[server] = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace(server), sys.executable, "-m",
                 "popgate.cli", "host"],
                env=self.env(server), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip

    def wait_for_host(self, server: str) -> None:
        """Until the host answers on its control socket and no service is StartPending (the
        Automatic ones, such as MSExchangeDelivery, have started)."""
        deadline = time.monotonic() + STARTUP_SECONDS
        socket_path = control_socket_path(self.layout(server))
        while True:
            process = self.hosts[server]
            if process.poll() is not None:
                raise RuntimeError(
                    f"popgate host on {server} exited {process.returncode}:\n"
                    + self.host_log(server)
                )
            if socket_path.exists() and self._settled(server):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"popgate host on {server} not up:\n" + self.host_log(server))
            time.sleep(0.1)

    def _settled(self, server: str) -> bool:
        # A socket file left by a killed host refuses connections, and httpcore does not close
        # the socket of a refused Unix connection: probe it first with a socket of our own.
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(control_socket_path(self.layout(server))))
            except OSError:
                return False
        try:
            with self.control(server) as client:
                views = client.services()
        except (OSError, HostNotRunningError, httpx.HTTPError):
            return False  # not answering yet
        return not any(view["status"] == "StartPending" for view in views)

    def stop_hosts(self) -> None:
        """SIGTERM every host (it stops its services gracefully) and wait for them."""
        for process in self.hosts.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.hosts.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _parallel(
    commands: dict[str, list[str]], env: Callable[[str], dict[str, str]]
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run one command per computer at the same time; their results by computer."""
    running = {
        key: subprocess.Popen(
            command,
            env=env(key),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for key, command in commands.items()
    }
    results = {}
    for key, process in running.items():
        stdout, stderr = process.communicate(timeout=120)
        results[key] = subprocess.CompletedProcess(
            commands[key], process.returncode, stdout, stderr
        )
    return results


def _hosts_file(subnet: str) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             f"{subnet}.1\tdb.{DOMAIN} db"]  # fmt: skip
    lines += [f"{subnet}.{octet}\t{server}.{DOMAIN} {server}" for server, (_, octet) in
              SERVERS.items()]  # fmt: skip
    return "\n".join(lines) + "\n"


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


@contextlib.contextmanager
def _network(org: Organization) -> Iterator[None]:
    """The bridge, the four namespaces with their veth pairs, and their /etc/netns files."""
    bridge = f"pgbr{org.tag}"
    netns_etc = Path("/etc/netns")
    with ExitStack() as cleanup:
        if not netns_etc.exists():
            # Made for this run: removed afterwards unless another run has put files there.
            netns_etc.mkdir()
            cleanup.callback(_remove_if_empty, netns_etc)
        _run(["ip", "link", "add", bridge, "type", "bridge"])
        cleanup.callback(subprocess.run, ["ip", "link", "del", bridge], capture_output=True,
                         check=False)  # fmt: skip
        _run(["ip", "addr", "add", f"{org.database_address}/24", "dev", bridge])
        _run(["ip", "link", "set", bridge, "up"])
        for server in SERVERS:
            namespace = org.namespace(server)
            etc = netns_etc / namespace
            etc.mkdir()
            cleanup.callback(shutil.rmtree, etc, ignore_errors=True)
            (etc / "hosts").write_text(_hosts_file(org.subnet))
            # Nothing answers DNS in the namespace: names not in hosts fail at once.
            (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
            _run(["ip", "netns", "add", namespace])
            cleanup.callback(subprocess.run, ["ip", "netns", "del", namespace],
                             capture_output=True, check=False)  # fmt: skip
            outside = f"pg{org.tag}{server}"
            _run(["ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns",
                  namespace])  # fmt: skip
            _run(["ip", "link", "set", outside, "master", bridge, "up"])
            inside = ["ip", "-n", namespace]
            _run([*inside, "addr", "add", f"{org.address(server)}/24", "dev", "eth0"])
            _run([*inside, "link", "set", "eth0", "up"])
            _run([*inside, "link", "set", "lo", "up"])
        yield


def postgres_folder(root: Path) -> tuple[Path, str]:
    """A data folder for a PostgreSQL server under ``root`` and the user it runs as.

    ``root`` becomes traversable by everyone (not listable), so that user reaches its folder.
    """
    root.chmod(0o711)
    owner = "postgres"
    try:
        pwd.getpwnam(owner)
    except KeyError:
        owner = "nobody"
    folder = root / "postgres"
    folder.mkdir(mode=0o700)
    shutil.chown(folder, owner, None)
    return folder, owner


@contextlib.contextmanager
def organization_of_four() -> Iterator[Organization]:
    """Bring the organization up; tear everything down afterwards, whatever happened."""
    bindir = postgres_bindir()
    assert bindir is not None
    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="popgate-multi-"))
    folder, owner = postgres_folder(root)
    tag = secrets.token_hex(3)
    subnet = _free_subnet()
    postgres = Postgres(bindir=bindir, folder=folder, port=_free_port("127.0.0.1"), owner=owner)
    org = Organization(root=root, tag=tag, subnet=subnet, postgres=postgres)
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, root, ignore_errors=True)
        cleanup.enter_context(_network(org))
        org.timings["network"] = time.monotonic() - began

        mark = time.monotonic()
        cleanup.callback(postgres.stop)
        postgres.start(
            listen=[org.database_address, "127.0.0.1"], clients=[f"{subnet}.0/24", "127.0.0.1/32"]
        )
        password = secrets.token_hex(16)
        postgres.create_database("popgate", password)
        org.directory_url = (
            f"postgresql+asyncpg://popgate:{password}@db.{DOMAIN}:{postgres.port}/popgate"
        )
        org.timings["postgresql"] = time.monotonic() - mark

        # One after another: the first computer creates the organization (its default
        # domain and Administrator), the others join it.
        mark = time.monotonic()
        for server, (roles, _) in SERVERS.items():
            org.popgate(
                server, "setup", "--directory", org.directory_url, "--server", server,
                "--fqdn", org.fqdn(server), "--roles", roles,
                "--https", f"{org.address(server)}:{HTTPS_PORT}",
            )  # fmt: skip
        first = next(iter(SERVERS))
        password_file = org.layout(first).administrator_password_file
        org.administrator_password = password_file.read_text().strip()
        org.timings["setup"] = time.monotonic() - mark

        mark = time.monotonic()
        cleanup.callback(org.stop_hosts)
        for server in SERVERS:
            org.start_host(server)
        for server in SERVERS:
            org.wait_for_host(server)
        org.timings["hosts"] = time.monotonic() - mark

        mark = time.monotonic()
        started = _parallel(
            {
                server: [
                    "ip", "netns", "exec", org.namespace(server), sys.executable, "-m",
                    "popgate.cli", "net", "start",
                    "MSExchangePOP3" if server in CLIENT_ACCESS else "MSExchangePOP3BE",
                ]
                for server in SERVERS
            },
            org.env,
        )  # fmt: skip
        for server, result in started.items():
            assert result.returncode == 0, f"{server}: {result.stdout}{result.stderr}"
        org.timings["services"] = time.monotonic() - mark
        org.timings["total"] = time.monotonic() - began
        yield org


@pytest.fixture(scope="module")
def organization() -> Iterator[Organization]:
    """cas1, cas2 (ClientAccess), mbx1, mbx2 (Mailbox), each running ``popgate host`` in its
    own network namespace with its services started, and PostgreSQL as their directory."""
    reason = why_not_runnable()
    if reason is not None:
        pytest.skip(reason)
    with organization_of_four() as org:
        _came_up.append(org.timings)
        yield org
        org.stop_hosts()
        for server in SERVERS:
            assert "Traceback" not in org.host_log(server), org.host_log(server)


#: The start-up timings of each organization of this run, for the terminal summary.
_came_up: list[dict[str, float]] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How long each organization took to come up, by phase."""
    for timings in _came_up:
        phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
        terminalreporter.write_line(f"popgate organization of four came up: {phases}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report ends with the organization's logs."""
    report = yield
    org = getattr(item, "funcargs", {}).get("organization")
    if report.failed and isinstance(org, Organization):
        report.sections.append(("popgate organization logs", org.logs()))
    return report
