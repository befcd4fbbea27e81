"""The service host as administrators meet it: ``popgate net``, status, permissions, audit.

A real ``popgate host`` with real service processes; the command line as the client, and
httpx over HTTPS for directory logins.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import poplib
import pwd
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import httpx
import pytest

# run_as_nobody forks this process and calls main() as nobody, who may not be able to read
# the sources: import now what main() would otherwise import on first use.
from popgate.cli import _commands, _net, main  # noqa: F401
from popgate.directory import Directory, RoleGroup
from popgate.host._client import HostClient
from popgate.host._common import control_socket_path
from tests.e2e.conftest import (
    STARTUP_SECONDS,
    Installation,
    insecure_client_context,
    wait_for_port,
)
from tests.e2e.test_backend import MESSAGES, PASSWORD

HELP_2182 = (
    "The requested service has already been started.\n\n"
    "More help is available by typing NET HELPMSG 2182.\n\n"
)
HELP_2185 = "The service name is invalid.\n\nMore help is available by typing NET HELPMSG 2185.\n\n"
SYSTEM_ERROR_5 = "System error 5 has occurred.\n\nAccess is denied.\n\n"
SYSTEM_ERROR_1058 = (
    "System error 1058 has occurred.\n\nThe service cannot be started, either because it is "
    "disabled or because it has no enabled devices associated with it.\n\n"
)


def client_of(installation: Installation) -> HostClient:
    """The host's control API through its Unix socket."""
    return HostClient.local(control_socket_path(installation.layout))


def audit_entries(installation: Installation) -> list[dict[str, object]]:
    """The newest audit entries, through the API."""
    with client_of(installation) as client:
        return client.audit(20)


def newest_audit_of(
    installation: Installation, action: str, actor: str | None = None
) -> dict[str, object]:
    """The newest audit entry for ``action`` (by ``actor``), waiting for it: the outcome of
    a control is audited when it has finished."""
    deadline = time.monotonic() + 10
    while True:
        for entry in audit_entries(installation):
            if entry["action"] == action and actor in (None, entry["actor"]):
                return entry
        assert time.monotonic() < deadline, f"no {action} in the audit log"
        time.sleep(0.05)


def directory_call(installation: Installation, action: str, *args: object) -> object:
    """Call a Directory method on the installation's directory (test set-up only)."""

    async def call() -> object:
        directory = await Directory.connect(installation.layout.directory_url)
        try:
            return await getattr(directory, action)(*args)
        finally:
            await directory.close()

    # In a thread of its own: a test driving Playwright already has an event loop running.
    with concurrent.futures.ThreadPoolExecutor(1) as worker:
        return worker.submit(lambda: asyncio.run(call())).result()


def test_net_messages_and_exit_codes(installation: Installation) -> None:
    installation.start_host()
    # No POP3 service started yet: net start lists only mail delivery (Automatic).
    listed = installation.net("start")
    assert listed.returncode == 0
    assert listed.stdout == (
        "These Windows services are started:\n\n"
        "   Microsoft Exchange Mailbox Transport Delivery\n\n"
        "The command completed successfully.\n\n"
    )
    not_started = installation.net("stop", "msexchangepop3be")
    assert not_started.returncode == 2
    assert not_started.stdout == (
        "The Microsoft Exchange POP3 Backend service is not started.\n\n"
        "More help is available by typing NET HELPMSG 3521.\n\n"
    )
    invalid = installation.net("start", "MSExchangeIMAP4")
    assert (invalid.returncode, invalid.stdout) == (2, HELP_2185)
    # The display name works too, in any case.
    started = installation.net("start", "microsoft exchange pop3 backend")
    assert started.returncode == 0
    assert "The Microsoft Exchange POP3 Backend service was started successfully." in (
        started.stdout
    )
    again = installation.net("start", "MSExchangePOP3BE")
    assert (again.returncode, again.stdout) == (2, HELP_2182)
    listed = installation.net("start")
    assert listed.stdout == (
        "These Windows services are started:\n\n"
        "   Microsoft Exchange POP3 Backend\n"
        "   Microsoft Exchange Mailbox Transport Delivery\n\n"
        "The command completed successfully.\n\n"
    )
    stopped = installation.net("stop", "MSExchangePOP3BE", "/y")
    assert stopped.returncode == 0
    assert stopped.stderr == ""


def test_a_disabled_service_cannot_be_started(installation: Installation) -> None:
    installation.start_host()
    changed = installation.popgate("service", "set", "MSExchangePOP3", "--startup-type", "disabled")
    assert "startup type Disabled" in changed.stdout
    refused = installation.net("start", "MSExchangePOP3")
    assert (refused.returncode, refused.stdout) == (2, SYSTEM_ERROR_1058)
    entry = audit_entries(installation)[0]
    assert (entry["action"], entry["target"], entry["result"]) == (
        "Start-Service",
        "MSExchangePOP3",
        "Refused",
    )
    installation.popgate("service", "set", "MSExchangePOP3", "--startup-type", "Manual")
    assert installation.net("start", "MSExchangePOP3").returncode == 0


def test_automatic_services_start_with_the_host(installation: Installation) -> None:
    installation.start_host()
    installation.popgate("service", "set", "MSExchangePOP3BE", "--startup-type", "Automatic")
    installation.stop_all()
    installation.start_host()
    installation.wait_for_status("MSExchangePOP3BE", "Running")
    # Manual means manual: the front end waits for an administrator.
    assert installation.wait_for_status("MSExchangePOP3", "Stopped")["pid"] is None


def run_as_nobody(env: dict[str, str], args: list[str]) -> tuple[int, str]:
    """Run ``popgate ARGS`` as the unprivileged user nobody; its status and output.

    The test's Python may live where nobody cannot read it, so the child is a fork of this
    process that drops its privileges and calls the CLI's entry point.
    """
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        status = 99
        try:
            os.close(read_end)
            sink = open(write_end, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
            sys.stdout = sys.stderr = sink
            os.environ.clear()
            os.environ.update(env)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            status = main(args)
        except SystemExit as leaving:
            status = leaving.code if isinstance(leaving.code, int) else 1
        except BaseException:  # noqa: BLE001 - reported to the parent as output
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(status)
    os.close(write_end)
    with open(read_end, encoding="utf-8") as reader:
        output = reader.read()
    _, wait_status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(wait_status), output


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another OS user needs root")
def test_a_non_administrator_gets_system_error_5_and_is_audited(
    public_installation: Installation,
) -> None:
    installation = public_installation
    installation.start_host()
    status, output = run_as_nobody(installation.env, ["net", "start", "MSExchangePOP3"])
    assert (status, output) == (2, SYSTEM_ERROR_5)
    status, output = run_as_nobody(installation.env, ["status"])
    assert status == 1
    assert output.strip() == "popgate: error: Access is denied."
    entry = audit_entries(installation)[0]
    assert entry["actor"] == "nobody"
    assert str(entry["origin"]).startswith("local (pid ")
    assert (entry["action"], entry["target"], entry["result"]) == (
        "Start-Service",
        "MSExchangePOP3",
        "Denied",
    )
    assert installation.wait_for_status("MSExchangePOP3", "Stopped")


def test_https_logins_and_role_groups(installation: Installation) -> None:
    installation.add_mailbox("viewer", PASSWORD)
    installation.add_mailbox("operator", PASSWORD)
    directory_call(
        installation,
        "add_role_group_member",
        RoleGroup.VIEW_ONLY_ORGANIZATION_MANAGEMENT,
        "viewer",
    )
    directory_call(installation, "add_role_group_member", RoleGroup.SERVER_MANAGEMENT, "operator")
    installation.start_host()
    base = f"https://127.0.0.1:{installation.https_port}/api/v1"
    with httpx.Client(verify=insecure_client_context(), timeout=30) as web:
        anonymous = web.get(f"{base}/services")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Basic")
        wrong = web.get(f"{base}/services", auth=("viewer", "wrong password"))
        assert wrong.status_code == 401
        assert wrong.json()["error"]["message"] == "The user name or password is incorrect."

        # View-Only Organization Management reads, and is refused any change.
        viewer = ("viewer", PASSWORD)
        listed = web.get(f"{base}/services", auth=viewer)
        assert listed.status_code == 200
        statuses = {s["name"]: s["status"] for s in listed.json()}
        # Mail delivery is Automatic; the POP3 services wait for an administrator.
        assert statuses == {
            "MSExchangePOP3": "Stopped",
            "MSExchangePOP3BE": "Stopped",
            "MSExchangeDelivery": "Running",
        }
        refused = web.post(f"{base}/services/MSExchangePOP3BE/start", auth=viewer)
        assert refused.status_code == 403
        assert refused.json()["error"] == {"code": 5, "message": "Access is denied."}
        refused = web.put(
            f"{base}/services/MSExchangePOP3BE/startup-type",
            json={"startup_type": "Automatic"},
            auth=viewer,
        )
        assert refused.status_code == 403

        # A mailbox in no role group may not even read.
        installation.add_mailbox("nobody-special", PASSWORD)
        assert web.get(f"{base}/services", auth=("nobody-special", PASSWORD)).status_code == 403

        # Server Management starts and stops.
        operator = ("operator", PASSWORD)
        accepted = web.post(f"{base}/services/MSExchangePOP3BE/start", auth=operator)
        assert accepted.status_code == 202
        assert accepted.json()["status"] in ("StartPending", "Running")
        installation.wait_for_status("MSExchangePOP3BE", "Running")
        bad = web.put(
            f"{base}/services/MSExchangePOP3BE/startup-type",
            json={"startup_type": "Sometimes"},
            auth=operator,
        )
        assert bad.status_code == 422
        assert "Automatic" in bad.json()["error"]["message"]

    entries = audit_entries(installation)
    viewer_entries = [e for e in entries if e["actor"] == "viewer"]
    assert {(e["action"], e["result"]) for e in viewer_entries} == {
        ("Start-Service", "Denied"),
        ("Set-Service", "Denied"),
    }
    assert all(str(e["origin"]).startswith("https 127.0.0.1") for e in viewer_entries)
    operator_start = newest_audit_of(installation, "Start-Service", "operator")
    assert operator_start["result"] == "Success"


def test_a_port_in_use_leaves_the_service_stopped_with_the_reason(
    installation: Installation,
) -> None:
    installation.start_host()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", installation.plain_port))
        blocker.listen()
        failed = installation.net("start", "MSExchangePOP3")
    assert failed.returncode == 2
    assert failed.stdout.startswith("The Microsoft Exchange POP3 service is starting.")
    assert "The Microsoft Exchange POP3 service could not be started." in failed.stdout
    reason = f"cannot listen on 127.0.0.1:{installation.plain_port}: the address is already in use"
    assert reason in failed.stdout
    assert "UnencryptedOrTLSBindings" in failed.stdout
    view = installation.wait_for_status("MSExchangePOP3", "Stopped")
    assert reason in str(view["last_error"])
    status = installation.popgate("status").stdout
    assert reason in status
    # Once the port is free, the same service starts.
    assert installation.net("start", "MSExchangePOP3").returncode == 0


def logged_in(installation: Installation, user: str) -> poplib.POP3_SSL:
    """A backend session in TRANSACTION."""
    client = poplib.POP3_SSL(
        "127.0.0.1", installation.backend_port, context=insecure_client_context(), timeout=30
    )
    client.user(user)
    client.pass_(PASSWORD)
    return client


def test_net_stop_is_graceful_for_sessions_in_transaction(
    installation: Installation, tmp_path: Path
) -> None:
    for user in ("alice", "bob"):
        installation.add_mailbox(user, PASSWORD)
        installation.import_messages(user, MESSAGES, tmp_path / user)
    installation.set("GracefulStopTimeout", "3")
    installation.start_host()
    assert installation.net("start", "MSExchangePOP3BE").returncode == 0
    lingering = logged_in(installation, "alice")
    lingering.dele(1)
    quitting = logged_in(installation, "bob")
    quitting.dele(1)
    stopping = subprocess.Popen(
        [sys.executable, "-m", "popgate.cli", "net", "stop", "MSExchangePOP3BE"],
        env=installation.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    installation.wait_for_status("MSExchangePOP3BE", "StopPending")
    # New sessions are refused while it drains; sessions in TRANSACTION may finish.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", installation.backend_port), timeout=2).close()
    quitting.quit()
    output, _ = stopping.communicate(timeout=60)
    assert stopping.returncode == 0
    # Draining took the grace period: a dot for each pending second.
    assert output.startswith("The Microsoft Exchange POP3 Backend service is stopping...")
    assert output.endswith("was stopped successfully.\n\n")
    with pytest.raises((poplib.error_proto, OSError, EOFError)):
        lingering.stat()
    lingering.close()
    assert installation.net("start", "MSExchangePOP3BE").returncode == 0
    alice = logged_in(installation, "alice")
    assert alice.stat()[0] == len(MESSAGES)  # no QUIT: its DELE was not applied
    alice.quit()
    bob = logged_in(installation, "bob")
    assert bob.stat()[0] == len(MESSAGES) - 1  # QUIT in time: applied
    bob.quit()


def test_a_killed_service_is_restarted_by_recovery_and_loses_nothing(
    installation: Installation, tmp_path: Path
) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES, tmp_path / "eml")
    installation.start_host()
    changed = installation.popgate(
        "service",
        "set",
        "MSExchangePOP3BE",
        "--recovery",
        "restart/0.5,none",
        "--reset-after",
        "60",
    )
    assert "recovery restart/0.5s, none/0s" in changed.stdout
    assert installation.net("start", "MSExchangePOP3BE").returncode == 0
    first_pid = installation.wait_for_status("MSExchangePOP3BE", "Running")["pid"]
    assert isinstance(first_pid, int)
    in_flight = logged_in(installation, "alice")
    in_flight.dele(1)
    in_flight.dele(2)
    os.kill(first_pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        with client_of(installation) as client:
            view = client.service("MSExchangePOP3BE")
        if view["status"] == "Running" and view["pid"] != first_pid:
            break
        assert time.monotonic() < deadline, view
        time.sleep(0.1)
    in_flight.close()
    fresh = logged_in(installation, "alice")
    assert fresh.stat()[0] == len(MESSAGES)
    fresh.quit()
    log = installation.popgate("log", "--lines", "100").stdout
    assert "MSExchangePOP3BE failed: the service process ended unexpectedly" in log
    assert "MSExchangePOP3BE was restarted by recovery" in log
    # The second failure's action is "none": the service stays down, and says why.
    with client_of(installation) as client:
        second_pid = client.service("MSExchangePOP3BE")["pid"]
    assert isinstance(second_pid, int)
    os.kill(second_pid, signal.SIGKILL)
    view = installation.wait_for_status("MSExchangePOP3BE", "Stopped")
    assert "ended unexpectedly" in str(view["last_error"])


def test_commands_say_when_the_host_is_not_running(installation: Installation) -> None:
    for args in (("status",), ("net", "start", "MSExchangePOP3"), ("log",)):
        result = installation.popgate(*args, check=False)
        assert result.returncode == 1
        assert result.stderr == (
            "popgate: error: the popgate service host is not running on this computer; "
            "start it with 'popgate up' (or 'popgate host')\n"
        )


def test_one_host_per_data_directory(installation: Installation) -> None:
    installation.start_host()
    second = installation.popgate("host", "--https", "off", check=False)
    assert second.returncode == 1
    assert "the popgate service host is already running" in second.stderr
    assert "Traceback" not in second.stderr


def test_the_https_port_in_use_is_a_clear_error(installation: Installation) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", installation.https_port))
        blocker.listen()
        result = installation.popgate(
            "host", "--https", f"127.0.0.1:{installation.https_port}", check=False
        )
    assert result.returncode == 1
    assert "already in use" in result.stderr
    assert "--https" in result.stderr
    assert "Traceback" not in result.stderr


def test_popgate_up_starts_both_services_and_ctrl_c_stops_everything(
    installation: Installation,
) -> None:
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "popgate.cli",
            "up",
            "--https",
            f"127.0.0.1:{installation.https_port}",
        ],
        env=installation.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal's foreground job
    )
    try:
        assert up.stdout is not None
        lines = [up.stdout.readline() for _ in range(6)]
        assert lines[0].startswith("popgate is up on ")
        assert lines[1].split() == ["MSExchangePOP3BE", "Microsoft", "Exchange", "POP3", "Backend",
                                    "Running"]  # fmt: skip
        assert lines[2].split() == ["MSExchangePOP3", "Microsoft", "Exchange", "POP3", "Running"]
        assert lines[3].split() == ["MSExchangeDelivery", "Microsoft", "Exchange", "Mailbox",
                                    "Transport", "Delivery", "Running"]  # fmt: skip
        assert lines[4].strip() == (
            f"Mail in: LMTP on 127.0.0.1:{installation.lmtp_port} and "
            f"{installation.layout.lmtp_socket}, or 'popgate deliver'"
        )
        assert f"127.0.0.1:{installation.plain_port} (STLS)" in lines[5]
        assert f"127.0.0.1:{installation.ssl_port} (TLS)" in lines[5]
        rest = [up.stdout.readline() for _ in range(5)]
        base = f"https://127.0.0.1:{installation.https_port}/"
        assert rest[0].startswith(f"Admin center: {base}ecp/")
        assert rest[1].startswith(f"Control API: {base}api/v1/")
        assert rest[3].strip() == (
            f"Administrator password: {installation.layout.administrator_password_file}"
        )
        client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=30)
        assert client.getwelcome().startswith(b"+OK")
        client.quit()
    finally:
        # Ctrl-C signals the terminal's whole foreground process group. The services used to
        # be in it, and one would end before the host had begun stopping it: "failed".
        os.killpg(up.pid, signal.SIGINT)
        output, errors = up.communicate(timeout=60)
    assert up.returncode == 0, errors
    assert output.endswith("popgate stopped.\n")
    assert "Traceback" not in errors
    assert "failed" not in output + errors, output + errors
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", installation.plain_port), timeout=2).close()


def test_install_systemd_writes_a_notify_unit(installation: Installation, tmp_path: Path) -> None:
    unit = tmp_path / "popgate.service"
    installation.popgate("install-systemd", "--output", str(unit), "--user", "popgate")
    text = unit.read_text()
    assert "Type=notify\n" in text
    assert f"Environment=POPGATE_HOME={installation.home}\n" in text
    assert f"ExecStart={sys.executable} -m popgate.cli host\n" in text
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE\n" in text
    assert "WantedBy=multi-user.target\n" in text


def test_status_watch_follows_the_services_until_ctrl_c(installation: Installation) -> None:
    installation.start_host()
    assert installation.net("start", "MSExchangePOP3BE").returncode == 0
    watching = subprocess.Popen(
        [sys.executable, "-m", "popgate.cli", "status", "--watch", "--interval", "0.2"],
        env=installation.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    assert installation.net("stop", "MSExchangePOP3BE").returncode == 0
    time.sleep(1)
    watching.send_signal(signal.SIGINT)
    try:
        output, errors = watching.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        watching.kill()
        watching.communicate()  # closes its pipes, so the failure stays in this test
        raise
    assert watching.returncode == 0, errors
    # Off a terminal the live view prints its last frame: the stop happened while watching.
    last_rows = {
        line.split()[0]: line.split() for line in output.splitlines() if line.startswith("MSEx")
    }
    assert last_rows["MSExchangePOP3"][-2] == last_rows["MSExchangePOP3BE"][-2] == "Stopped"
    assert last_rows["MSExchangeDelivery"][-2] == "Running"


def test_a_missing_certificate_keeps_the_front_end_stopped_with_the_reason(
    installation: Installation,
) -> None:
    installation.set("X509CertificateName", "mail.contoso.com")
    installation.start_host()
    failed = installation.net("start", "MSExchangePOP3")
    assert failed.returncode == 2
    assert "no certificate was imported under that name" in failed.stdout
    assert "popgate certificate import mail.contoso.com" in failed.stdout
    view = installation.wait_for_status("MSExchangePOP3", "Stopped")
    assert "mail.contoso.com" in str(view["last_error"])


def test_restart_gives_a_new_process_and_is_audited(installation: Installation) -> None:
    installation.start_host()
    assert installation.net("start", "MSExchangePOP3BE").returncode == 0
    with client_of(installation) as client:
        first = client.service("MSExchangePOP3BE")["pid"]
        assert client.restart("MSExchangePOP3BE")["status"] == "StopPending"
        # Between the stop and the start the service is briefly Stopped; wait for Running.
        view = installation.wait_for_status("MSExchangePOP3BE", "Running")
        assert view["pid"] != first
    entry = newest_audit_of(installation, "Restart-Service")
    assert (entry["result"], entry["detail"]) == ("Success", "Running")


def test_the_host_tells_systemd_when_it_is_ready_and_when_it_stops(
    installation: Installation, tmp_path: Path
) -> None:
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(notify_path))
        systemd.settimeout(30)
        host = subprocess.Popen(
            [sys.executable, "-m", "popgate.cli", "host", "--https", "off"],
            env=dict(installation.env, NOTIFY_SOCKET=str(notify_path)),
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert systemd.recv(4096) == b"READY=1"
            with client_of(installation) as client:
                assert {s["name"] for s in client.services()} == {
                    "MSExchangePOP3",
                    "MSExchangePOP3BE",
                    "MSExchangeDelivery",
                }
            host.send_signal(signal.SIGTERM)
            assert systemd.recv(4096) == b"STOPPING=1"
        finally:
            host.send_signal(signal.SIGTERM)
            _, errors = host.communicate(timeout=60)
    assert host.returncode == 0
    assert "Traceback" not in errors


def test_the_admin_https_binding_is_a_setting(installation: Installation) -> None:
    stored = installation.popgate("setup", "--https", f"127.0.0.1:{installation.https_port}")
    assert f"Control API and admin center: 127.0.0.1:{installation.https_port}" in stored.stdout
    host = subprocess.Popen(
        [sys.executable, "-m", "popgate.cli", "host"],
        env=installation.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    installation.processes.append(host)
    wait_for_port(installation.https_port, host, STARTUP_SECONDS)
    bad = installation.popgate("setup", "--https", "nowhere", check=False)
    assert bad.returncode == 2
    assert "is not an address:port binding" in bad.stderr
