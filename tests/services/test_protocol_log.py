"""The protocol log writer: CSV rows, file names, rollover by time and size, failures."""

from __future__ import annotations

import csv
import datetime
import logging
from pathlib import Path

import pytest

from popgate.directory import RollOver
from popgate.protocol import (
    Auth,
    Challenge,
    Err,
    List,
    Ok,
    Pass,
    ResponseCode,
    Retr,
    SaslCancel,
    SaslResponse,
    Stat,
    Top,
    User,
    Xclient,
)
from popgate.services._protocol_log import (
    FIELDS,
    LogFileName,
    ProtocolLog,
    SessionLog,
    context_of,
    describe_command,
    format_time,
    parse_log_file_name,
    period_start,
    read_rows,
)

UTC = datetime.UTC


class Clock:
    """A settable UTC clock for the writer."""

    def __init__(self, moment: datetime.datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime.datetime:
        return self.moment


def row(n: int, text: str = "") -> tuple[object, ...]:
    """A row of FIELDS with ``n`` as its sequence number and ``text`` as its parameters."""
    return ("2026-01-01T00:00:00.000Z", "abc", n, "s:1", "c:2", "u", 0, 1, 2, "stat", text, "R=ok")


def files(folder: Path) -> list[str]:
    """The names in ``folder``, sorted."""
    return sorted(path.name for path in folder.iterdir())


def test_rows_are_csv_after_exchanges_header(tmp_path: Path) -> None:
    clock = Clock(datetime.datetime(2026, 3, 8, 21, 26, 2, 937000, tzinfo=UTC))
    log = ProtocolLog(tmp_path, "POP3", roll_over=RollOver.DAILY, quota=0, now=clock)
    log.write(row(0, 'a "quoted", comma'))
    log.close()
    assert files(tmp_path) == ["POP32026030800-1.LOG"]
    lines = (tmp_path / "POP32026030800-1.LOG").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#Software: popgate ")
    assert lines[1:5] == [
        "#Version: 15.0.0.0",
        "#Log-type: POP3 Protocol Log",
        "#Date: 2026-03-08T21:26:02Z",
        "#Fields: " + ",".join(FIELDS),
    ]
    assert next(csv.reader([lines[5]]))[10] == 'a "quoted", comma'
    assert [r["parameters"] for r in read_rows(lines)] == ['a "quoted", comma']


def test_backend_files_have_their_own_prefix_and_log_type(tmp_path: Path) -> None:
    clock = Clock(datetime.datetime(2026, 3, 8, 21, 0, tzinfo=UTC))
    log = ProtocolLog(tmp_path, "POP3BE", roll_over=RollOver.HOURLY, quota=0, now=clock)
    log.write(row(0))
    log.close()
    assert files(tmp_path) == ["POP3BE2026030821-1.LOG"]
    text = (tmp_path / "POP3BE2026030821-1.LOG").read_text(encoding="utf-8")
    assert "#Log-type: POP3 Backend Protocol Log\n" in text


def test_date_time_is_utc_with_milliseconds() -> None:
    moment = datetime.datetime(2012, 3, 8, 22, 26, 2, 937512, tzinfo=datetime.timezone(
        datetime.timedelta(hours=1)))  # fmt: skip
    assert format_time(moment) == "2012-03-08T21:26:02.937Z"


@pytest.mark.parametrize(
    ("roll_over", "start"),
    [
        (RollOver.HOURLY, datetime.datetime(2026, 11, 26, 13, tzinfo=UTC)),
        (RollOver.DAILY, datetime.datetime(2026, 11, 26, tzinfo=UTC)),
        # 2026-11-26 is a Thursday; ISO weeks start on Monday the 23rd.
        (RollOver.WEEKLY, datetime.datetime(2026, 11, 23, tzinfo=UTC)),
        (RollOver.MONTHLY, datetime.datetime(2026, 11, 1, tzinfo=UTC)),
    ],
)
def test_period_start(roll_over: RollOver, start: datetime.datetime) -> None:
    assert period_start(datetime.datetime(2026, 11, 26, 13, 45, 7, tzinfo=UTC), roll_over) == start


def test_time_rollover_starts_a_file_per_period_and_a_restart_appends(tmp_path: Path) -> None:
    clock = Clock(datetime.datetime(2026, 11, 26, 13, 59, tzinfo=UTC))
    log = ProtocolLog(tmp_path, "POP3", roll_over=RollOver.HOURLY, quota=0, now=clock)
    log.write(row(0))
    clock.moment += datetime.timedelta(minutes=2)
    log.write(row(1))
    log.close()
    assert files(tmp_path) == ["POP32026112613-1.LOG", "POP32026112614-1.LOG"]
    # A service started again in the same hour appends to that hour's file.
    again = ProtocolLog(tmp_path, "POP3", roll_over=RollOver.HOURLY, quota=0, now=clock)
    again.write(row(2))
    again.close()
    assert files(tmp_path) == ["POP32026112613-1.LOG", "POP32026112614-1.LOG"]
    text = (tmp_path / "POP32026112614-1.LOG").read_text(encoding="utf-8")
    assert text.count("#Fields:") == 1
    assert [r["seqNumber"] for r in read_rows(text.splitlines())] == ["1", "2"]


def test_size_quota_starts_numbered_files(tmp_path: Path) -> None:
    clock = Clock(datetime.datetime(2026, 11, 26, 13, 5, tzinfo=UTC))
    log = ProtocolLog(tmp_path, "POP3", roll_over=RollOver.DAILY, quota=600, now=clock)
    for n in range(20):
        log.write(row(n, "x" * 40))
    log.close()
    names = files(tmp_path)
    assert len(names) > 2
    assert set(names) == {f"POP32026112613-{n}.LOG" for n in range(1, len(names) + 1)}
    sequence = []
    for name in names:
        path = tmp_path / name
        assert path.stat().st_size <= 600
        text = path.read_text(encoding="utf-8")
        assert text.startswith("#Software: popgate ")
        sequence += [int(r["seqNumber"]) for r in read_rows(text.splitlines())]
    assert sorted(sequence) == list(range(20))


def test_a_quota_smaller_than_a_row_still_writes_one_row_per_file(tmp_path: Path) -> None:
    clock = Clock(datetime.datetime(2026, 11, 26, 13, tzinfo=UTC))
    log = ProtocolLog(tmp_path, "POP3", roll_over=RollOver.DAILY, quota=10, now=clock)
    for n in range(3):
        log.write(row(n))
    log.close()
    assert files(tmp_path) == [f"POP32026112613-{n}.LOG" for n in (1, 2, 3)]


def test_size_quota_appends_to_the_newest_file_after_a_restart(tmp_path: Path) -> None:
    clock = Clock(datetime.datetime(2026, 11, 26, 13, tzinfo=UTC))
    first = ProtocolLog(tmp_path, "POP3", roll_over=RollOver.DAILY, quota=4096, now=clock)
    first.write(row(0))
    first.close()
    clock.moment += datetime.timedelta(hours=5)
    second = ProtocolLog(tmp_path, "POP3", roll_over=RollOver.DAILY, quota=4096, now=clock)
    second.write(row(1))
    second.close()
    assert files(tmp_path) == ["POP32026112613-1.LOG"]


def test_unlimited_keeps_one_file(tmp_path: Path) -> None:
    clock = Clock(datetime.datetime(2026, 11, 26, 13, tzinfo=UTC))
    log = ProtocolLog(tmp_path, "POP3", roll_over=RollOver.HOURLY, quota=None, now=clock)
    for n in range(50):
        clock.moment += datetime.timedelta(days=1)
        log.write(row(n, "y" * 100))
    log.close()
    assert files(tmp_path) == ["POP32026112713-1.LOG"]


def test_processes_of_one_service_write_files_of_their_own(tmp_path: Path) -> None:
    clock = Clock(datetime.datetime(2026, 11, 26, 13, tzinfo=UTC))
    logs = [
        ProtocolLog(tmp_path, "POP3", roll_over=RollOver.DAILY, quota=0, pid=pid, now=clock)
        for pid in (4242, 4243)
    ]
    for n, log in enumerate(logs):
        log.write(row(n))
        log.close()
    assert files(tmp_path) == ["POP32026112600-1.4242.LOG", "POP32026112600-1.4243.LOG"]


def test_file_names_parse_back() -> None:
    name = LogFileName("POP3BE", datetime.datetime(2026, 1, 2, 3, tzinfo=UTC), 12, 777)
    assert str(name) == "POP3BE2026010203-12.777.LOG"
    assert parse_log_file_name(str(name)) == name
    assert parse_log_file_name("POP32026010203-1.LOG") == LogFileName(
        "POP3", datetime.datetime(2026, 1, 2, 3, tzinfo=UTC), 1
    )
    for other in ("POP32026013203-1.LOG", "../POP32026010203-1.LOG", "POP3.LOG", "x.LOG"):
        assert parse_log_file_name(other) is None


def test_a_failure_to_write_is_logged_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    clock = Clock(datetime.datetime(2026, 11, 26, 13, tzinfo=UTC))
    log = ProtocolLog(blocker / "pop3", "POP3", roll_over=RollOver.DAILY, quota=0, now=clock)
    with caplog.at_level(logging.WARNING, "popgate.protocol_log"):
        for n in range(5):
            log.write(row(n))
    warnings = [r for r in caplog.records if r.name == "popgate.protocol_log"]
    assert len(warnings) == 1
    assert "cannot write" in warnings[0].getMessage()
    # Once the folder can be made, the next attempt after the pause writes again.
    blocker.unlink()
    log.write(row(5))  # still within the first pause
    log._retry_at = 0.0  # the pause is over
    log.write(row(6))
    log.close()
    rows = list(read_rows((blocker / "pop3" / "POP32026112600-1.LOG").read_text().splitlines()))
    assert [r["seqNumber"] for r in rows] == ["6"]


def test_secrets_are_masked() -> None:
    assert describe_command(User(name="alice"), "USER") == ("user", "alice")
    assert describe_command(Pass(password="hunter2"), "PASS") == ("pass", "*****")
    assert describe_command(Auth(mechanism="PLAIN", initial_response=b"\0a\0pw"), "AUTH") == (
        "auth",
        "PLAIN *****",
    )
    assert describe_command(Auth(mechanism="LOGIN"), "AUTH") == ("auth", "LOGIN")
    assert describe_command(SaslResponse(data=b"secret"), None) == ("auth", "*****")
    assert describe_command(SaslCancel(), None) == ("auth", "*")
    assert describe_command(Retr(msg=3), "RETR") == ("retr", "3")
    assert describe_command(List(), "LIST") == ("list", "")
    assert describe_command(Top(msg=1, lines=10), "TOP") == ("top", "1 10")
    assert describe_command(Stat(), "STAT") == ("stat", "")
    xclient = Xclient(attributes={"ADDR": "192.0.2.7", "SESSION": "ab12"})
    assert describe_command(xclient, "XCLIENT") == ("xclient", "ADDR=192.0.2.7 SESSION=ab12")
    # A line that is no valid command: only a known verb is named, never what was typed.
    assert describe_command(None, "PASS") == ("pass", "")
    assert describe_command(None, None) == ("", "")


def test_context_says_the_result_and_the_message() -> None:
    assert context_of(Ok()) == "R=ok"
    assert context_of(Challenge(b"")) == "R=continue"
    failure = Err("Logon failure: unknown user name or bad password.", ResponseCode.AUTH)
    assert context_of(failure, "AuthFailed") == (
        'R="-ERR [AUTH] Logon failure: unknown user name or bad password.";Msg=AuthFailed'
    )
    assert context_of(None, "connect") == "Msg=connect"


def test_held_rows_take_the_front_end_session_id(tmp_path: Path) -> None:
    clock = Clock(datetime.datetime(2026, 11, 26, 13, tzinfo=UTC))
    log = ProtocolLog(tmp_path, "POP3BE", roll_over=RollOver.DAILY, quota=0, now=clock)
    session = SessionLog(log, "own", "127.0.0.1:1995", "local")
    session.hold()
    session.write("", "", "Msg=connect")
    session.write("xclient", "ADDR=192.0.2.7 PORT=4000 SESSION=fe01", "R=ok")
    assert not any(tmp_path.iterdir())  # nothing written while held
    session.user = "alice"
    session.release(session_id="fe01", client_address="192.0.2.7:4000")
    session.write("stat", "", "R=ok")
    log.close()
    assert log.path is not None
    rows = list(read_rows(log.path.read_text(encoding="utf-8").splitlines()))
    assert [(r["sessionId"], r["seqNumber"], r["cIp"]) for r in rows] == [
        ("fe01", "0", "192.0.2.7:4000"),
        ("fe01", "1", "192.0.2.7:4000"),
        ("fe01", "2", "192.0.2.7:4000"),
    ]
    assert {r["user"] for r in rows} == {"alice"}


def test_rows_held_too_long_are_written_under_the_own_id(tmp_path: Path) -> None:
    log = ProtocolLog(tmp_path, "POP3BE", roll_over=RollOver.DAILY, quota=0)
    session = SessionLog(log, "own", "s", "c")
    session.hold()
    for _ in range(SessionLog.MAX_HELD):
        session.write("noop", "", "R=ok")
    log.close()
    assert log.path is not None
    rows = list(read_rows(log.path.read_text(encoding="utf-8").splitlines()))
    assert len(rows) == SessionLog.MAX_HELD
    assert {r["sessionId"] for r in rows} == {"own"}
