"""The soak run (bench/soak.py) in a 30-second smoke run of the same code.

Mixed POP3 sessions (plain text, STLS, TLS), LMTP deliveries and two restarts of both POP3
services through the host's API: the ledger must balance and no good client may fail outside
a restart. Whether memory grows once warm needs the long run; see ``python -m bench.soak``.
"""

from __future__ import annotations

from pathlib import Path

from bench.soak import TRANSPORTS, SoakOptions, soak

#: Restarts at 10 s and 20 s; three workers, so six mailboxes to create (each costs an
#: argon2id hash): the whole test stays within about a minute.
SMOKE = SoakOptions(seconds=30, restart_every=10, warm_after=10, sample_every=2, pop3_workers=3)


def test_a_short_soak_balances_its_ledger_with_no_error_across_restarts(tmp_path: Path) -> None:
    progress: list[str] = []
    report = soak(tmp_path, SMOKE, progress.append)
    shown = "\n".join([*progress, *report.lines()])
    assert report.good_client_errors == 0, shown
    assert report.control_errors == [], shown
    assert report.restarts >= 1, shown
    assert report.ledger_problems == [], shown
    assert report.ledger_balanced, shown
    assert report.deliveries_acknowledged > 0, shown
    # Every acknowledged message was either deleted by a confirmed QUIT or is still there.
    assert report.messages_accounted_for == report.deliveries_acknowledged, shown
    assert report.messages_retrieved > 0, shown
    assert report.messages_deleted > 0, shown
    # Every transport took part, and the processes were sampled.
    assert all(report.sessions_by_transport[t] > 0 for t in TRANSPORTS), shown
    assert {f.role for f in report.figures} == {
        "host",
        "MSExchangeDelivery",
        "MSExchangePOP3BE",
        "MSExchangePOP3",
    }, shown
