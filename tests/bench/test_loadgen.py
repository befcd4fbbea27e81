"""pop3load, the compiled load generator of bench/, against a real popgate front end.

A smoke test: it checks that the numbers add up, not how large they are.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench._loadgen import LoadgenError, LoadResult, Tls, run
from popgate.protocol import to_crlf
from tests.e2e.conftest import Installation, installed
from tests.e2e.test_backend import MESSAGES, PASSWORD

USERS = [("lg0", PASSWORD), ("lg1", PASSWORD)]
#: What one session's RETRs bring back: the mailbox as LIST counts it.
MAILBOX_OCTETS = sum(len(to_crlf(message)) for message in MESSAGES)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """Both POP3 services, passwords allowed in clear on the plain-text port, two mailboxes
    holding the MESSAGES corpus (one per concurrent worker: a maildrop admits one session)."""
    root = tmp_path_factory.mktemp("loadgen")
    with installed(root) as installation:
        installation.set("LoginType", "PlainTextLogin")
        for name, password in USERS:
            installation.add_mailbox(name, password)
            installation.import_messages(name, MESSAGES, root / "eml" / name)
        installation.start_backend()
        installation.start_frontend()
        yield installation


def assert_consistent(result: LoadResult, sessions: int) -> None:
    """Every session completed, and the figures agree with each other."""
    assert (result.sessions_ok, result.sessions_failed) == (sessions, 0), result.first_error
    assert result.first_error is None
    assert result.sessions_asked == sessions
    assert result.elapsed_s > 0
    assert result.sessions_per_s > 0
    assert result.latency_ms is not None
    assert 0 < result.latency_ms.p50 <= result.latency_ms.p90 <= result.latency_ms.p99
    assert result.latency_ms.p99 <= result.latency_ms.max


@pytest.mark.parametrize("tls", ["implicit", "none"])
def test_full_sessions_retrieve_the_whole_mailbox_each_time(served: Installation, tls: Tls) -> None:
    port = served.ssl_port if tls == "implicit" else served.plain_port
    result = run("127.0.0.1", port, users=USERS, tls=tls, sessions=4, concurrency=2)
    assert_consistent(result, 4)
    assert (result.workload, result.tls, result.concurrency) == ("full", tls, 2)
    assert result.bytes_retrieved == MAILBOX_OCTETS * 4
    assert result.retr_mb_per_s > 0
    assert result.logins_per_s is None


def test_retr_workload_times_the_retrs_alone(served: Installation) -> None:
    result = run("127.0.0.1", served.ssl_port, users=USERS, tls="implicit", workload="retr",
                 sessions=2, concurrency=2)  # fmt: skip
    assert_consistent(result, 2)
    assert result.bytes_retrieved == MAILBOX_OCTETS * 2
    assert 0 < result.retr_s < result.elapsed_s
    assert result.retr_mb_per_s == pytest.approx(result.bytes_retrieved / result.retr_s / 1e6, 0.01)


def test_login_workload_retrieves_nothing(served: Installation) -> None:
    result = run("127.0.0.1", served.plain_port, users=USERS[:1], workload="login", sessions=2)
    assert_consistent(result, 2)
    assert result.bytes_retrieved == 0
    assert result.logins_per_s == result.sessions_per_s


def test_an_err_reply_fails_that_session_and_the_worker_goes_on(served: Installation) -> None:
    # One worker, two users in turn: the first session's PASS is refused, the second logs in.
    users = [("lg0", "wrong password"), USERS[1]]
    result = run("127.0.0.1", served.plain_port, users=users, sessions=2)
    assert (result.sessions_ok, result.sessions_failed) == (1, 1)
    assert result.first_error is not None
    assert result.first_error.startswith("lg0: PASS: -ERR"), result.first_error
    assert "wrong" not in result.first_error
    assert result.bytes_retrieved == MAILBOX_OCTETS


def test_more_workers_than_users_is_refused() -> None:
    with pytest.raises(LoadgenError, match="exceeds the 1 users"):
        run("127.0.0.1", 9, users=USERS[:1], sessions=4, concurrency=2)
