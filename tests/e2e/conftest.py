"""Fixtures that run popgate as real processes: setup, mailboxes and the POP3 Backend service."""

from __future__ import annotations

import gc
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from popgate.home import Home
from popgate.host._client import HostClient
from popgate.host._common import control_socket_path

STARTUP_SECONDS = 20


#: Ports handed out by free_port in this process.
_handed_out: set[int] = set()
_ports = random.Random()


def free_port() -> int:
    """A TCP port that nothing listens on, below the kernel's ephemeral range, that no other
    caller in this process was given.

    Services bind their ports seconds after the ports are chosen, and again after every
    restart; a port from the ephemeral range can meanwhile become the local end of any
    outgoing connection on the machine (tests make thousands), and the service then cannot
    listen (EADDRINUSE). A port below the range is never handed out that way, like 110 and 995.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = _ports.randrange(10_000, low)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))  # noqa: S104 - the backend binds every address
            except OSError:
                continue
        _handed_out.add(port)
        return port


def resident_kib(pid: int) -> int:
    """The process's resident memory (VmRSS), KiB; FileNotFoundError once it has ended."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))


def open_descriptors(pid: int) -> int:
    """How many descriptors the process holds; FileNotFoundError once it has ended."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def insecure_client_context() -> ssl.SSLContext:
    """A client context that accepts the computer's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Block until ``port`` accepts connections or ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def run_mpop(
    port: int, *, starttls: bool, user: str, password: str, folder: Path
) -> tuple[subprocess.CompletedProcess[str], bytes]:
    """Fetch a mailbox with mpop (SCRAM-SHA-256, keep, pipelined); its run and the mbox."""
    rc = folder / "mpoprc"
    rc.write_text("defaults\n")
    rc.chmod(0o600)
    mbox = folder / "out.mbox"
    mbox.touch()
    result = subprocess.run(
        [
            "mpop", "-C", str(rc), "-d", "--host=127.0.0.1", f"--port={port}", "--tls=on",
            f"--tls-starttls={'on' if starttls else 'off'}", "--tls-certcheck=off",
            "--auth=scram-sha-256", f"--user={user}", f"--passwordeval=echo '{password}'",
            "--keep=on", "--only-new=off", f"--delivery=mbox,{mbox}",
            f"--uidls-file={folder / 'uidls'}",
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return result, mbox.read_bytes()


def mbox_count(mbox: bytes) -> int:
    """How many messages an mbox file holds."""
    return mbox.count(b"\nFrom ") + mbox.startswith(b"From ")


@dataclass
class Installation:
    """A popgate data directory in a temporary folder, driven through the real CLI."""

    home: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def popgate(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``popgate`` command and return its result."""
        result = subprocess.run(
            [sys.executable, "-m", "popgate.cli", *args],
            env=self.env,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            command = " ".join(args)
            raise AssertionError(
                f"popgate {command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def add_mailbox(self, name: str, password: str) -> None:
        """Create a mailbox with a password."""
        self.popgate("mailbox", "add", name, "--password-stdin", input_text=password + "\n")

    def import_messages(self, name: str, messages: list[bytes], folder: Path) -> None:
        """Deliver ``messages`` to mailbox ``name`` through ``popgate mailbox import``."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for index, content in enumerate(messages):
            path = folder / f"{index:06d}.eml"
            path.write_bytes(content)
            paths.append(str(path))
        self.popgate("mailbox", "import", name, *paths)

    def set(self, name: str, value: str, *more: str) -> None:
        """Set-PopSettings for this server: NAME VALUE [NAME VALUE ...]."""
        self.popgate("settings", "set", name, value, *more)

    @property
    def layout(self) -> Home:
        """The data directory's paths."""
        return Home(self.home)

    def _start(self, service: str, log_name: str, port: int) -> subprocess.Popen[bytes]:
        with (self.home / log_name).open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "popgate.cli", "service", "run", service],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.processes.append(process)
        wait_for_port(port, process, STARTUP_SECONDS)
        return process

    def _log(self, log_name: str) -> str:
        path = self.home / log_name
        return path.read_text(errors="replace") if path.exists() else ""

    def start_backend(self) -> subprocess.Popen[bytes]:
        """Start MSExchangePOP3BE and wait until it listens on ProxyTargetPort."""
        return self._start("MSExchangePOP3BE", "backend.log", self.backend_port)

    backend_port: int = 0
    plain_port: int = 0
    ssl_port: int = 0

    def start_frontend(
        self, *, log_name: str = "frontend.log", port: int | None = None
    ) -> subprocess.Popen[bytes]:
        """Start MSExchangePOP3 and wait until it listens on its plain-text port (``port``
        for another front end, started after the bindings were moved)."""
        return self._start("MSExchangePOP3", log_name, port or self.plain_port)

    def frontend_log(self) -> str:
        """What the front end wrote to stderr."""
        return self._log("frontend.log")

    def start_delivery(self) -> subprocess.Popen[bytes]:
        """Start MSExchangeDelivery and wait until it takes LMTP on its port."""
        return self._start("MSExchangeDelivery", "delivery.log", self.lmtp_port)

    def delivery_log(self) -> str:
        """What the delivery service wrote to stderr."""
        return self._log("delivery.log")

    def stop_all(self) -> None:
        """Stop every service this installation started."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def backend_log(self) -> str:
        """What the backend wrote to stderr."""
        return self._log("backend.log")

    https_port: int = 0
    #: MSExchangeDelivery's LMTP port (Automatic: it runs whenever the host does).
    lmtp_port: int = 0

    def start_host(self) -> subprocess.Popen[bytes]:
        """Run ``popgate host`` (control API on its socket and on ``https_port``) until up."""
        with (self.home / "host.stderr").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "popgate.cli", "host", "--https",
                 f"127.0.0.1:{self.https_port}"],
                env=self.env, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        self.processes.append(process)
        wait_for_port(self.https_port, process, STARTUP_SECONDS)
        self._settle()
        return process

    def _settle(self) -> None:
        """Wait until the host has finished starting its Automatic services (mail delivery),
        as Windows has before anyone logs on: no service is StartPending any more."""
        deadline = time.monotonic() + STARTUP_SECONDS
        with HostClient.local(control_socket_path(self.layout)) as client:
            while any(view["status"] == "StartPending" for view in client.services()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"services still starting: {client.services()}")
                time.sleep(0.05)

    def host_log(self) -> str:
        """What the host wrote to stderr (its own lines and its services')."""
        return self._log("host.stderr")

    def net(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``popgate net ARGS``, whatever its exit status."""
        return self.popgate("net", *args, check=False)

    def wait_for_status(self, name: str, status: str, timeout: float = 30) -> dict[str, object]:
        """Poll the host until service ``name`` is in ``status``; the service's view."""
        deadline = time.monotonic() + timeout
        with HostClient.local(control_socket_path(self.layout)) as client:
            while True:
                view = client.service(name)
                if view["status"] == status:
                    return view
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} is {view['status']}, not {status}: {view}")
                time.sleep(0.05)


@pytest.fixture(autouse=True)
def _collect_leaks() -> Iterator[None]:
    """Collect garbage after each test, so a socket a test forgot to close warns there."""
    yield
    gc.collect()


@contextmanager
def installed(
    root: Path, *settings: str, directory_url: str | None = None
) -> Iterator[Installation]:
    """A set-up popgate in ``root``: free ports, direct backend logins allowed, the extra POP3
    ``settings`` (NAME VALUE ...), and the directory at ``directory_url`` if one is given."""
    env = dict(os.environ)
    env["POPGATE_HOME"] = str(root / "popgate")
    env.pop("NOTIFY_SOCKET", None)
    inst = Installation(home=root / "popgate", env=env)
    inst.lmtp_port = free_port()
    directory = ("--directory", directory_url) if directory_url else ()
    inst.popgate("setup", *directory, "--lmtp", f"127.0.0.1:{inst.lmtp_port}")
    inst.backend_port, inst.plain_port, inst.ssl_port = free_port(), free_port(), free_port()
    inst.https_port = free_port()
    inst.set(
        "ProxyTargetPort", str(inst.backend_port),
        "AllowDirectBackendLogin", "$true",
        "UnencryptedOrTLSBindings", f"127.0.0.1:{inst.plain_port}",
        "SSLBindings", f"127.0.0.1:{inst.ssl_port}",
        *settings,
    )  # fmt: skip
    try:
        yield inst
    finally:
        inst.stop_all()
        # Every service's log (a second front end's too) and the host's.
        for log in [*sorted(inst.home.glob("*.log")), inst.home / "host.stderr"]:
            text = log.read_text(errors="replace") if log.exists() else ""
            assert "Traceback" not in text, f"{log.name}:\n{text}"


@pytest.fixture
def installation(tmp_path: Path) -> Iterator[Installation]:
    """A set-up popgate with ProxyTargetPort on a free port and direct logins allowed."""
    with installed(tmp_path) as inst:
        yield inst


@pytest.fixture
def public_installation() -> Iterator[Installation]:
    """Like :func:`installation`, in a folder every local user can traverse (not list).

    pytest's own temporary folders are private to the user running the tests, so another
    user could not even reach the host's control socket there.
    """
    root = Path(tempfile.mkdtemp(prefix="popgate-e2e-"))
    root.chmod(0o711)
    try:
        with installed(root) as inst:
            yield inst
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- a real browser for the admin center ----------------------------------------------

CHROMIUM = "/usr/bin/chromium"
#: Where screenshots of each page go: the test run's output folder.
ARTIFACTS = Path(os.environ.get("POPGATE_TEST_ARTIFACTS", "test-artifacts")) / "screenshots"
# Without the background-networking switches Chromium keeps dialling Google's hosts, which
# this closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    """The Playwright driver for one test module.

    Not for the whole run: its sync API keeps an event loop running in the test thread (on a
    greenlet), and every later test that calls asyncio.run, or imports a module pytest has to
    rewrite, would fail while it is there.
    """
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Headless Debian chromium."""
    chromium = playwright_driver.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (no cookies) and page; accepts the host's own certificate."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


def screenshot(page: Page, name: str) -> Path:
    """Save a screenshot of the page as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]', '-', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Page, installation: Installation, user: str, password: str) -> None:
    """Open the admin center and sign in."""
    page.goto(f"https://127.0.0.1:{installation.https_port}/ecp/")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    # Shortcuts are read by the page's scripts: let the page they land on finish loading.
    page.wait_for_url(lambda url: "/ecp/login" not in url)
    page.wait_for_load_state("load")
