"""The services' counters: real POP3 sessions through a real host, read back from ``/metrics``
(parsed with prometheus-client's own parser) and from the dashboard's JSON summary."""

from __future__ import annotations

import os
import poplib
import signal
import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from popgate.host._client import HostClient
from popgate.host._common import control_socket_path
from tests.e2e.conftest import Installation, insecure_client_context
from tests.e2e.test_admin_api import client_of, https_client
from tests.e2e.test_admin_api import refusal as api_refusal
from tests.e2e.test_backend import MESSAGES, PASSWORD, refusal

FRONTEND, BACKEND, DELIVERY = "MSExchangePOP3", "MSExchangePOP3BE", "MSExchangeDelivery"
POP3_SERVICES = (FRONTEND, BACKEND)

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(installation: Installation) -> Series:
    """``GET /metrics`` through the control socket, as Prometheus's parser reads it."""
    transport = httpx.HTTPTransport(uds=str(control_socket_path(installation.layout)))
    with httpx.Client(transport=transport, base_url="http://popgate") as client:
        response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    series: Series = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            series[sample.name, frozenset(sample.labels.items())] = sample.value
    return series


def value(series: Series, name: str, **labels: str) -> float:
    """One series' value; 0 when it was never counted."""
    return series.get((name, frozenset(labels.items())), 0.0)


def counters(client: HostClient) -> dict[str, dict[str, int]]:
    """The dashboard summary by service."""
    return {row.pop("service"): row for row in client.metrics()["services"]}


def eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    """Wait until ``check()`` holds (counters are written as sessions end, asynchronously)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the counters never reached the expected values"
        time.sleep(0.1)


def logged_on(installation: Installation) -> poplib.POP3:
    """alice logged on through the front end over STLS."""
    client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=30)
    client.stls(insecure_client_context())
    client.user("alice")
    client.pass_(PASSWORD)
    return client


@pytest.fixture
def running(installation: Installation) -> Installation:
    """Both POP3 services Running, alice with the test messages."""
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES, installation.home / "eml")
    installation.start_host()
    for name in (BACKEND, FRONTEND):
        assert installation.net("start", name).returncode == 0
    return installation


def test_sessions_logins_commands_and_bytes_are_counted(running: Installation) -> None:
    with client_of(running) as host:
        before = counters(host)
    assert set(before) == {FRONTEND, BACKEND, DELIVERY}
    assert all(count == 0 for row in before.values() for count in row.values())

    # One wrong password, then a session that reads two messages and quits.
    pop = poplib.POP3("127.0.0.1", running.plain_port, timeout=30)
    pop.stls(insecure_client_context())
    pop.user("alice")
    assert "[AUTH]" in refusal(lambda: pop.pass_("wrong password"))
    pop.user("alice")
    pop.pass_(PASSWORD)
    sizes = {int(line.split()[0]): int(line.split()[1]) for line in pop.list()[1]}
    pop.retr(1)
    pop.retr(2)
    pop.quit()

    def settled(series: Series) -> bool:
        return value(series, "popgate_sessions_total", service=FRONTEND, result="proxied") == 1

    eventually(lambda: settled(scrape(running)))
    series = scrape(running)
    assert value(series, "popgate_logins_total", service=FRONTEND, mechanism="USER",
                 result="failure") == 1  # fmt: skip
    assert value(series, "popgate_logins_total", service=FRONTEND, mechanism="USER",
                 result="success") == 1  # fmt: skip
    assert value(series, "popgate_logins_total", service=BACKEND, mechanism="PROXY",
                 result="success") == 1  # fmt: skip
    # The front end answers the AUTHORIZATION phase, the backend everything after it.
    assert value(series, "popgate_commands_total", service=FRONTEND, command="STLS") == 1
    assert value(series, "popgate_commands_total", service=FRONTEND, command="PASS") == 2
    assert value(series, "popgate_commands_total", service=BACKEND, command="RETR") == 2
    assert value(series, "popgate_commands_total", service=BACKEND, command="QUIT") == 1
    assert value(series, "popgate_retr_bytes_total", service=BACKEND) == sizes[1] + sizes[2]
    assert value(series, "popgate_bytes_sent_total", service=FRONTEND) > sizes[1] + sizes[2]
    assert value(series, "popgate_sessions_total", service=BACKEND, result="quit") == 1
    assert value(series, "popgate_session_duration_seconds_count", service=BACKEND) == 1
    assert value(series, "popgate_connections_total", service=FRONTEND, result="accepted") == 1
    assert value(series, "popgate_sessions_current", service=FRONTEND) == 0

    with client_of(running) as host:
        summary = counters(host)
    assert summary[FRONTEND]["logins"] == 1
    assert summary[FRONTEND]["failed_logins"] == 1
    assert summary[BACKEND]["retr_bytes"] == sizes[1] + sizes[2]
    assert summary[FRONTEND]["sessions"] == summary[BACKEND]["sessions"] == 1
    assert summary[FRONTEND]["errors"] == summary[BACKEND]["errors"] == 0


def test_open_sessions_lock_conflicts_and_proxy_errors(running: Installation) -> None:
    first = logged_on(running)
    with client_of(running) as host:
        # The POP3 services each hold the session; mail delivery has none.
        eventually(
            lambda: all(counters(host)[name]["sessions_current"] == 1 for name in POP3_SERVICES)
        )
        # A second session on the same maildrop: [IN-USE] from the backend, relayed.
        second = poplib.POP3("127.0.0.1", running.plain_port, timeout=30)
        second.stls(insecure_client_context())
        second.user("alice")
        assert "[IN-USE]" in refusal(lambda: second.pass_(PASSWORD))
        second.close()
        first.quit()
        eventually(lambda: counters(host)[BACKEND]["lock_conflicts"] == 1)
        series = scrape(running)
        assert value(series, "popgate_logins_total", service=FRONTEND, mechanism="USER",
                     result="refused") == 1  # fmt: skip

        # With the backend stopped, the front end cannot proxy: an error on its side.
        assert running.net("stop", BACKEND).returncode == 0
        third = poplib.POP3("127.0.0.1", running.plain_port, timeout=30)
        third.stls(insecure_client_context())
        third.user("alice")
        assert "[SYS/TEMP]" in refusal(lambda: third.pass_(PASSWORD))
        third.quit()
        eventually(lambda: counters(host)[FRONTEND]["errors"] == 1)
        assert value(scrape(running), "popgate_errors_total", service=FRONTEND, kind="proxy") == 1


def test_a_killed_service_leaves_no_phantom_sessions_and_keeps_its_counts(
    running: Installation,
) -> None:
    with client_of(running) as host:
        first = logged_on(running)
        first.stat()
        eventually(lambda: counters(host)[BACKEND]["sessions_current"] == 1)
        pid = host.service(BACKEND)["pid"]
        assert isinstance(pid, int)
        os.kill(pid, signal.SIGKILL)
        running.wait_for_status(BACKEND, "Stopped")
        # The dead process's open session is gone; what it counted stays counted.
        after = counters(host)[BACKEND]
        assert after["sessions_current"] == 0
        assert after["logins"] == 1
        with pytest.raises((poplib.error_proto, OSError, EOFError)):
            first.stat()
        first.close()


def test_only_readers_of_the_logs_may_read_the_counters(running: Installation) -> None:
    with client_of(running) as root:
        for name, group in (
            ("viewer", "View-Only Organization Management"),
            ("recipients", "Recipient Management"),
        ):
            running.add_mailbox(name, PASSWORD)
            root.add_role_group_member(group, name)
    url = f"https://127.0.0.1:{running.https_port}/metrics"
    trust = insecure_client_context()
    response = httpx.get(url, auth=("viewer", PASSWORD), verify=trust)
    assert response.status_code == 200
    assert "popgate_sessions_current" in response.text
    openmetrics = httpx.get(
        url,
        auth=("viewer", PASSWORD),
        verify=trust,
        headers={"accept": "application/openmetrics-text; version=1.0.0"},
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")
    assert httpx.get(url, auth=("recipients", PASSWORD), verify=trust).status_code == 403
    assert httpx.get(url, verify=trust).status_code == 401
    with https_client(running, "recipients") as web:
        assert api_refusal(web.metrics).access_denied
    with https_client(running, "viewer") as web:
        assert set(counters(web)) == {FRONTEND, BACKEND, DELIVERY}


def test_a_host_starts_counting_from_zero(running: Installation) -> None:
    logged_on(running).quit()
    with client_of(running) as host:
        eventually(lambda: counters(host)[FRONTEND]["logins"] == 1)
    running.stop_all()
    running.start_host()
    with client_of(running) as host:
        assert all(count == 0 for row in counters(host).values() for count in row.values())
