"""Protocol logging (Set-PopSettings -ProtocolLogEnabled) with both services running."""

from __future__ import annotations

import base64
import json
import poplib
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from popgate.host._api_protocol_log import LOGGING_OFF
from popgate.services._protocol_log import FIELDS, read_rows
from tests.e2e.conftest import Installation, insecure_client_context
from tests.e2e.test_backend import MESSAGES, PASSWORD, command, refusal
from tests.e2e.test_ecp import administrator_password

Row = dict[str, str]


def stls_client(installation: Installation) -> poplib.POP3:
    """poplib on the front end's plain-text port, upgraded with STLS."""
    client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=30)
    client.stls(context=insecure_client_context())
    return client


def log_files(folder: Path, prefix: str) -> list[Path]:
    """The protocol log files of ``prefix`` (``POP3`` front end, ``POP3BE`` backend)."""
    if not folder.exists():
        return []
    return sorted(
        path
        for path in folder.iterdir()
        if path.name.startswith(prefix) and path.name[len(prefix)].isdigit()
    )


def rows_of(folder: Path, prefix: str) -> list[Row]:
    """Every row of every ``prefix`` file, in file order."""
    rows: list[Row] = []
    for path in log_files(folder, prefix):
        rows += read_rows(path.read_text(encoding="utf-8").splitlines())
    return rows


def wait_for_rows(
    folder: Path, prefix: str, done: Callable[[list[Row]], bool], timeout: float = 15
) -> list[Row]:
    """The rows once ``done`` says they are complete (a service logs a disconnect just after
    the client has its last reply)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = rows_of(folder, prefix)
        if done(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def session_rows(rows: list[Row], session: str) -> list[Row]:
    """The rows of one session id."""
    return [row for row in rows if row["sessionId"] == session]


def logins(rows: list[Row]) -> list[str]:
    """The ids of the sessions that tried to log in, in order."""
    return list(dict.fromkeys(r["sessionId"] for r in rows if r["command"] in ("user", "auth")))


def disconnected(session: str) -> Callable[[list[Row]], bool]:
    """Whether the rows hold ``session``'s disconnect row."""
    return lambda rows: any(
        r["sessionId"] == session and r["context"].startswith("Msg=disconnect") for r in rows
    )


def start_logging(installation: Installation, tmp_path: Path, *more: str) -> None:
    """Mailbox alice with MESSAGES, logging on (plus ``more`` settings), both services up."""
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES, tmp_path / "eml")
    installation.set("ProtocolLogEnabled", "$true", *more)
    installation.start_backend()
    installation.start_frontend()


def test_protocol_logging_is_off_by_default(installation: Installation, tmp_path: Path) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.start_backend()
    installation.start_frontend()
    client = stls_client(installation)
    client.user("alice")
    client.pass_(PASSWORD)
    client.stat()
    client.quit()
    folder = installation.layout.log_dir / "pop3"
    assert not folder.exists() or not any(folder.iterdir())


def test_both_services_log_every_command_under_one_session_id(
    installation: Installation, tmp_path: Path
) -> None:
    start_logging(installation, tmp_path)
    folder = installation.layout.log_dir / "pop3"

    client = stls_client(installation)
    client.user("alice")
    client.pass_(PASSWORD)
    client.stat()
    client.list()
    client.retr(1)
    client.dele(1)
    client.quit()

    # AUTH PLAIN with the token on a continuation line, then a wrong password.
    token = base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode()
    plain = stls_client(installation)
    assert command(plain, "AUTH PLAIN").startswith(b"+")
    assert command(plain, token).startswith(b"+OK")
    plain.quit()
    bad = stls_client(installation)
    bad.user("alice")
    assert "[AUTH]" in refusal(lambda: bad.pass_("wrong password"))
    bad.quit()

    front = wait_for_rows(folder, "POP3", lambda rows: len(logins(rows)) >= 3)
    # The start-up probe's connection is a session too, without a login.
    sessions = logins(front)
    assert len(sessions) == 3
    first, second, third = sessions
    back = wait_for_rows(folder, "POP3BE", disconnected(second))
    front = wait_for_rows(folder, "POP3", disconnected(third))

    for path in log_files(folder, "POP3") + log_files(folder, "POP3BE"):
        header = path.read_text(encoding="utf-8").splitlines()[:5]
        kind = (
            "POP3 Backend Protocol Log" if path.name.startswith("POP3BE") else "POP3 Protocol Log"
        )
        assert header[0].startswith("#Software: popgate ")
        assert header[1:3] == ["#Version: 15.0.0.0", f"#Log-type: {kind}"]
        assert header[3].startswith("#Date: ")
        assert header[4] == "#Fields: " + ",".join(FIELDS)

    # The front end logs the AUTHORIZATION phase, the backend the rest.
    fe = session_rows(front, first)
    assert [(r["command"], r["parameters"]) for r in fe] == [
        ("", ""),
        ("capa", ""),
        ("stls", ""),
        ("user", "alice"),
        ("pass", "*****"),
        ("", ""),
    ]
    assert [r["seqNumber"] for r in fe] == [str(n) for n in range(len(fe))]
    assert fe[0]["context"] == "Msg=connect"
    assert fe[2]["context"] == "R=ok"
    assert fe[4]["context"].startswith("R=ok;Msg=Proxy=")
    assert fe[4]["user"] == "alice"
    assert fe[-1]["context"] == "Msg=disconnect;R=proxied"
    client_address = fe[0]["cIp"]
    assert client_address.startswith("127.0.0.1:")
    assert fe[0]["sIp"] == f"127.0.0.1:{installation.plain_port}"
    assert fe[3]["rqsize"] == str(len(b"USER alice\r\n"))
    assert fe[3]["rpsize"] == str(len(b"+OK\r\n"))

    be = session_rows(back, first)
    assert [r["command"] for r in be] == [
        "", "xclient", "auth", "stat", "list", "retr", "dele", "quit", "",
    ]  # fmt: skip
    assert [r["seqNumber"] for r in be] == [str(n) for n in range(len(be))]
    assert {r["cIp"] for r in be} == {client_address}
    port = client_address.split(":")[1]
    # The front end's MaxCommandSize and AuthenticatedConnectionTimeout go along: they are
    # Client Access settings, which govern the proxied session too.
    assert be[1]["parameters"] == (
        f"ADDR=127.0.0.1 SESSION={first} MAXCMD=512 IDLE=1800 PORT={port}"
    )
    assert be[2]["parameters"] == "PLAIN *****"
    assert be[2]["context"].startswith("R=ok;Msg=ProxiedBy=")
    assert all(r["user"] == "alice" for r in be[2:])
    assert be[5]["parameters"] == "1"
    assert int(be[5]["rpsize"]) > len(MESSAGES[0])
    assert be[6]["context"] == "R=ok"
    assert be[-1]["context"] == "Msg=disconnect;R=quit"

    fe2 = session_rows(front, second)
    assert [(r["command"], r["parameters"], r["context"]) for r in fe2[3:5]] == [
        ("auth", "PLAIN", "R=continue"),
        ("auth", "*****", fe2[4]["context"]),
    ]
    assert fe2[4]["context"].startswith("R=ok")
    assert [r["command"] for r in session_rows(back, second)][-2:] == ["quit", ""]

    fe3 = session_rows(front, third)
    failed = [r for r in fe3 if r["command"] == "pass"]
    assert len(failed) == 1
    assert failed[0]["context"] == (
        'R="-ERR [AUTH] Logon failure: unknown user name or bad password.";Msg=AuthFailed'
    )
    assert fe3[-1]["context"] == "Msg=disconnect;R=quit"
    assert not session_rows(back, third)

    # No secret reaches a log: the passwords, the PLAIN token, the front end's proxy secret.
    secret = installation.layout.proxy_secret_file.read_text(encoding="utf-8").strip()
    raw = b"".join(p.read_bytes() for p in log_files(folder, "POP3") + log_files(folder, "POP3BE"))
    for forbidden in (PASSWORD, "wrong password", token, secret):
        assert forbidden.encode() not in raw


def test_size_rollover_and_log_file_location(installation: Installation, tmp_path: Path) -> None:
    folder = tmp_path / "protocol-logs"
    start_logging(
        installation, tmp_path, "LogFileLocation", str(folder), "LogPerFileSizeQuota", "1KB"
    )
    for _ in range(4):
        client = stls_client(installation)
        client.user("alice")
        client.pass_(PASSWORD)
        client.uidl()
        client.quit()
    wait_for_rows(folder, "POP3BE", lambda rows: sum(r["command"] == "quit" for r in rows) >= 4)
    front, back = log_files(folder, "POP3"), log_files(folder, "POP3BE")
    assert len(front) >= 2
    assert len(back) >= 2
    for path in front + back:
        text = path.read_text(encoding="utf-8")
        assert text.startswith("#Software: popgate ")
        assert path.stat().st_size <= 1024
    numbers = sorted(int(path.name.split("-")[1].split(".")[0]) for path in front)
    assert numbers == list(range(1, len(front) + 1))
    # Nothing went to the default folder.
    assert not (installation.layout.log_dir / "pop3").exists()


def test_the_api_reads_only_protocol_log_files_of_the_log_folder(
    installation: Installation, tmp_path: Path
) -> None:
    installation.start_host()
    password = administrator_password(installation)
    base = f"https://127.0.0.1:{installation.https_port}/api/v1/protocol-log"
    with httpx.Client(verify=insecure_client_context(), auth=("Administrator", password)) as web:
        off = web.get(base).json()
        assert off["enabled"] is False
        assert off["note"] == LOGGING_OFF
        assert off["rows"] == []
        for service in ("../../etc/passwd", "POP3", "MSExchangePOP3/../x"):
            refused = web.get(base, params={"service": service})
            assert refused.status_code == 422
            assert refused.json()["error"]["code"] == 87

        start_logging(installation, tmp_path)
        folder = installation.layout.log_dir / "pop3"
        # Things in the folder that are not log files the writer made are never read.
        folder.mkdir(parents=True, exist_ok=True)
        secret = tmp_path / "secret.txt"
        secret.write_text("#Fields: x\n" + ",".join(["leak"] * len(FIELDS)) + "\n")
        (folder / "POP39999123123-1.LOG").symlink_to(secret)
        (folder / "notes.LOG").write_text(secret.read_text())
        client = stls_client(installation)
        client.user("alice")
        client.pass_(PASSWORD)
        client.quit()
        session = logins(wait_for_rows(folder, "POP3", lambda rows: len(logins(rows)) >= 1))[0]
        wait_for_rows(folder, "POP3BE", disconnected(session))

        view = web.get(base, params={"service": "msexchangepop3be", "session": session}).json()
        assert view["service"] == "MSExchangePOP3BE"
        assert view["enabled"] is True
        assert view["note"] is None
        assert view["folder"] == str(folder)
        assert [row["command"] for row in view["rows"]] == ["", "xclient", "auth", "quit", ""]
        assert {row["session_id"] for row in view["rows"]} == {session}
        front = web.get(base, params={"lines": 2}).json()
        assert len(front["rows"]) == 2
        assert "leak" not in json.dumps(front)
        assert all(name.startswith("POP320") for name in front["files"])
        by_user = web.get(base, params={"service": "MSExchangePOP3BE", "user": "ALI"}).json()
        assert {row["user"] for row in by_user["rows"]} == {"alice"}
