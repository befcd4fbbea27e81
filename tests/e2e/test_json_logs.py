"""Structured logs: ``popgate setup --log-format json`` and ``POPGATE_LOG_FORMAT=json``."""

from __future__ import annotations

import json
import poplib
import re
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import Installation, insecure_client_context
from tests.e2e.test_backend import PASSWORD, refusal

FILTER = Path(__file__).parents[2] / "contrib" / "fail2ban" / "filter.d" / "popgate.conf"


def fail2ban_hosts(text: str) -> list[str]:
    """The addresses the shipped fail2ban filter finds in ``text``, line by line."""
    failregex = next(
        line.split("=", 1)[1].strip()
        for line in FILTER.read_text().splitlines()
        if line.startswith("failregex")
    )
    pattern = re.compile(failregex.replace("<HOST>", r"(?P<host>[0-9a-fA-F.:]+)"))
    return [match["host"] for line in text.splitlines() if (match := pattern.search(line))]


def fail_login(installation: Installation) -> None:
    """A wrong password for alice through the front end."""
    client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=30)
    client.stls(context=insecure_client_context())
    client.user("alice")
    assert "[AUTH]" in refusal(lambda: client.pass_("wrong"))
    client.quit()


def json_lines(text: str) -> list[dict[str, object]]:
    """Every line of ``text`` as a JSON object (each line must be one)."""
    entries = []
    for line in text.splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        entries.append(entry)
    return entries


def wait_for(read: Callable[[], str], event: str, timeout: float = 15) -> list[dict[str, object]]:
    """The JSON lines ``read`` returns, once one of them has ``event``."""
    deadline = time.monotonic() + timeout
    while True:
        entries = json_lines(read())
        if any(entry.get("event") == event for entry in entries) or time.monotonic() > deadline:
            return entries
        time.sleep(0.05)


def check_failure(entry: dict[str, object]) -> None:
    """A failed login's line: the fail2ban text as message, the session's fields beside it."""
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "popgate.session"
    assert isinstance(entry["time"], str)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    message = entry["message"]
    assert isinstance(message, str)
    assert message.startswith("authentication failure: rhost=127.0.0.1 user='alice' session=")
    assert message.endswith(" reason=bad credentials")
    assert fail2ban_hosts(message) == ["127.0.0.1"]
    assert entry["session"] == re.findall(r"session=([0-9a-f]+)", message)[0]
    assert entry["client"] == "127.0.0.1"
    assert entry["user"] == "alice"


def test_setup_stores_the_json_format_for_the_services(installation: Installation) -> None:
    installation.popgate("setup", "--log-format", "json")
    assert json.loads(installation.layout.config_file.read_text())["log_format"] == "json"
    installation.add_mailbox("alice", PASSWORD)
    installation.start_backend()
    installation.start_frontend()
    fail_login(installation)
    entries = wait_for(installation.frontend_log, "login_failed")
    # fail2ban reads the raw JSON line.
    assert fail2ban_hosts(installation.frontend_log()) == ["127.0.0.1"]
    started = [e for e in entries if e.get("event") == "service_start"]
    assert len(started) == 1
    assert started[0]["logger"] == "popgate.service"
    assert isinstance(started[0]["message"], str)
    assert started[0]["message"].startswith("MSExchangePOP3 is running: ")
    failures = [e for e in entries if e.get("event") == "login_failed"]
    assert len(failures) == 1
    check_failure(failures[0])
    # Back to text: the option takes effect for processes started after it.
    installation.popgate("setup", "--log-format", "text")
    assert json.loads(installation.layout.config_file.read_text())["log_format"] == "text"


def test_the_host_relays_its_services_json_lines_whole(installation: Installation) -> None:
    installation.env["POPGATE_LOG_FORMAT"] = "json"
    installation.add_mailbox("alice", PASSWORD)
    installation.start_host()
    for name in ("MSExchangePOP3BE", "MSExchangePOP3"):
        assert installation.net("start", name).returncode == 0
    fail_login(installation)
    host_log = installation.layout.log_dir / "host.log"
    for read in (installation.host_log, lambda: host_log.read_text(encoding="utf-8")):
        entries = wait_for(read, "login_failed")
        failures = [e for e in entries if e.get("event") == "login_failed"]
        assert len(failures) == 1
        check_failure(failures[0])
        assert failures[0]["service"] == "MSExchangePOP3"
        # The host's own lines are JSON too.
        assert any(e["logger"] == "popgate.host" for e in entries), entries[:5]
