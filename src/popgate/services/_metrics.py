"""The services' counters, in Prometheus form, shared by every process of a computer.

Each service process (and each front-end worker) counts in its own memory-mapped files under
``run/metrics`` when the service host sets ``PROMETHEUS_MULTIPROC_DIR`` for it (prometheus-
client's multiprocess mode); the host adds them up for ``/metrics`` and for the admin center's
charts (:func:`collect`). A service run on its own counts in memory, and nobody reads it.

Every series carries a ``service`` label, so one scrape of the host covers all its services.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

__all__ = [
    "METRICS_DIR_VARIABLE",
    "ServiceMetrics",
    "collect",
    "exposition",
    "process_ended",
    "reset_metrics_dir",
]

#: prometheus-client reads this when it is imported: set it in a child's environment.
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

_CONNECTIONS = Counter(
    "popgate_connections", "Connections accepted, by whether a limit refused them.",
    ["service", "result"],
)  # fmt: skip
_SESSIONS_CURRENT = Gauge(
    "popgate_sessions_current", "Sessions open now.", ["service"], multiprocess_mode="livesum"
)
_SESSIONS = Counter(
    "popgate_sessions",
    "Sessions ended, by how: quit, disconnected, timeout, abuse, shutdown or error.",
    ["service", "result"],
)
_SESSION_SECONDS = Histogram(
    "popgate_session_duration_seconds",
    "How long sessions lasted.",
    ["service"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800),
)
_LOGINS = Counter(
    "popgate_logins",
    "Login attempts by mechanism (USER, PLAIN, LOGIN, SCRAM-SHA-256, PROXY) and result: "
    "success, failure (credentials), refused (policy, limits, in use, backend down) or "
    "locked_out.",
    ["service", "mechanism", "result"],
)
_COMMANDS = Counter(
    "popgate_commands", "Commands answered, by verb.", ["service", "command"]
)  # fmt: skip
_BYTES_SENT = Counter("popgate_bytes_sent", "Bytes sent to clients.", ["service"])
_RETR_BYTES = Counter("popgate_retr_bytes", "Message bytes sent by RETR and TOP.", ["service"])
_ERRORS = Counter(
    "popgate_errors",
    "Failures on the server's side, by kind: proxy (backend unreachable or refusing), store "
    "(a message or deletion the store could not serve), directory (its database unreachable "
    "or locked), internal (a bug).",
    ["service", "kind"],
)
_LOCK_CONFLICTS = Counter(
    "popgate_lock_conflicts", "Logins refused because another session holds the maildrop.",
    ["service"],
)  # fmt: skip
_DELIVERIES = Counter(
    "popgate_deliveries", "Messages delivered, per recipient, by result.", ["service", "result"]
)


@dataclass(slots=True)
class ServiceMetrics:
    """One service's handle on the counters: every method adds one event."""

    service: str
    _sessions_current: Gauge = field(init=False)
    _bytes_sent: Counter = field(init=False)
    _retr_bytes: Counter = field(init=False)

    def __post_init__(self) -> None:
        # The label lookups on the hottest paths are done once.
        self._sessions_current = _SESSIONS_CURRENT.labels(self.service)
        self._bytes_sent = _BYTES_SENT.labels(self.service)
        self._retr_bytes = _RETR_BYTES.labels(self.service)

    def connection(self, *, refused: bool = False) -> None:
        """A connection was accepted, or refused by a connection limit."""
        _CONNECTIONS.labels(self.service, "refused" if refused else "accepted").inc()

    def session_started(self) -> None:
        """A session began (its greeting is about to be sent)."""
        self._sessions_current.inc()

    def session_ended(self, result: str, seconds: float) -> None:
        """A session ended after ``seconds``, as ``result`` says."""
        self._sessions_current.dec()
        _SESSIONS.labels(self.service, result).inc()
        _SESSION_SECONDS.labels(self.service).observe(seconds)

    def login(self, mechanism: str, result: str) -> None:
        """A login attempt ended."""
        _LOGINS.labels(self.service, mechanism, result).inc()

    def command(self, verb: str) -> None:
        """A command was answered."""
        _COMMANDS.labels(self.service, verb).inc()

    def sent(self, size: int) -> None:
        """``size`` bytes went to the client."""
        self._bytes_sent.inc(size)

    def retrieved(self, size: int) -> None:
        """A RETR or TOP sent ``size`` bytes of message."""
        self._retr_bytes.inc(size)

    def error(self, kind: str) -> None:
        """A failure on the server's side."""
        _ERRORS.labels(self.service, kind).inc()

    def lock_conflict(self) -> None:
        """A login found the maildrop held by another session."""
        _LOCK_CONFLICTS.labels(self.service).inc()

    def delivery(self, result: str) -> None:
        """A message was delivered to one recipient, or refused or deferred for it."""
        _DELIVERIES.labels(self.service, result).inc()


def reset_metrics_dir(directory: Path) -> None:
    """An empty counter directory: counts start again with the host."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def process_ended(pid: int, directory: Path) -> None:
    """Forget a dead process's live gauges (its counters keep counting in the totals)."""
    if directory.is_dir():
        # prometheus-client leaves its multiprocess helpers unannotated.
        mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def _registry(directory: Path) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return registry


def exposition(directory: Path, accept: str = "") -> tuple[bytes, str]:
    """Every service's counters and their content type, in the format ``accept`` asks for.

    Prometheus's text format unless the scraper prefers OpenMetrics.
    """
    encoder, content_type = choose_encoder(accept)
    registry = _registry(directory) if directory.is_dir() else CollectorRegistry()
    return encoder(registry), content_type


@dataclass(frozen=True, slots=True)
class Sample:
    """One series' value: the metric's name (``_total`` and such included) and labels."""

    name: str
    labels: dict[str, str]
    value: float


def collect(directory: Path) -> Iterator[Sample]:
    """Every series of every service process, added up across processes."""
    if not directory.is_dir():
        return
    for family in _registry(directory).collect():
        for sample in family.samples:
            yield Sample(sample.name, dict(sample.labels), sample.value)


def metrics_dir_of_environment() -> Path | None:
    """The directory this process counts in, when the host gave it one."""
    value = os.environ.get(METRICS_DIR_VARIABLE)
    return Path(value) if value else None
