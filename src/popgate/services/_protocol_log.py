"""Exchange's POP3 protocol log: one CSV row per command and reply, per connect and disconnect.

Files live in LogFileLocation (default ``<data dir>/logs/pop3``), one folder for both
services, so that ``grep SESSION-ID *.LOG`` follows a client through the front end and the
backend. Names follow Exchange's ``POP3<yyyyMMddHH>-<n>.LOG`` with a prefix per service:
``POP3`` for MSExchangePOP3 and ``POP3BE`` for MSExchangePOP3BE. When the front end runs
several processes (WorkerProcesses > 1) each of them, the first included, adds its pid:
``POP3<yyyyMMddHH>-<n>.<pid>.LOG``, so that no two processes ever append to one file and no
lock is needed.

Each file starts with ``#Software``, ``#Version``, ``#Log-type``, ``#Date`` and ``#Fields``
lines. ``yyyyMMddHH`` is the start of the file's period when the log rolls by time
(LogPerFileSizeQuota 0: LogFileRollOverSettings, UTC), else the hour the file was begun;
``n`` counts files of the same stamp from 1. LogPerFileSizeQuota N starts a new file before a
row would take the file past N octets; ``unlimited`` keeps appending to the newest file.

Writing is synchronous, buffered and flushed per row: a row is a few hundred octets to a
local file, cheaper than handing it to a thread. A failure to write never reaches a session:
it is logged once and writing is tried again a minute later.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

from popgate import __version__
from popgate.directory import PopSettings, RollOver
from popgate.home import Home
from popgate.protocol import (
    Auth,
    Challenge,
    Command,
    Dele,
    Err,
    List,
    Pass,
    Reply,
    Retr,
    SaslCancel,
    SaslResponse,
    ServerConnection,
    Top,
    Uidl,
    User,
    Xclient,
)

__all__ = [
    "FIELDS",
    "MASK",
    "PREFIXES",
    "LogFileName",
    "ProtocolLog",
    "SessionLog",
    "context_of",
    "describe_command",
    "log_folder",
    "log_prefix",
    "open_protocol_log",
    "parse_log_file_name",
    "period_start",
]

logger = logging.getLogger("popgate.protocol_log")

#: The columns Exchange 2010 SP1 and later write (Exchange 2013 adds ``puid``, always empty
#: here, so it is left out).
FIELDS: Final = (
    "dateTime",
    "sessionId",
    "seqNumber",
    "sIp",
    "cIp",
    "user",
    "duration",
    "rqsize",
    "rpsize",
    "command",
    "parameters",
    "context",
)
#: What a secret (PASS's argument, SASL data) is logged as.
MASK: Final = "*****"
#: Prefixes by service; LOG_TYPES says what each file's ``#Log-type`` line reads.
PREFIXES: Final = {"MSExchangePOP3": "POP3", "MSExchangePOP3BE": "POP3BE"}
LOG_TYPES: Final = {"POP3": "POP3 Protocol Log", "POP3BE": "POP3 Backend Protocol Log"}
#: Seconds between attempts to write again after a failure.
RETRY_SECONDS: Final = 60.0
_NAME_RE: Final = re.compile(
    r"(?P<prefix>POP3|POP3BE)(?P<stamp>\d{10})-(?P<number>\d{1,9})(?:\.(?P<pid>\d{1,10}))?\.LOG"
)


@dataclass(frozen=True, slots=True, order=True)
class LogFileName:
    """The parts of a protocol log file's name."""

    prefix: str
    stamp: datetime.datetime
    number: int
    pid: int | None = None

    def __str__(self) -> str:
        pid = f".{self.pid}" if self.pid is not None else ""
        return f"{self.prefix}{self.stamp:%Y%m%d%H}-{self.number}{pid}.LOG"


def parse_log_file_name(name: str) -> LogFileName | None:
    """The parts of ``name``, or None when it is not a protocol log file's name."""
    match = _NAME_RE.fullmatch(name)
    if match is None:
        return None
    try:
        stamp = datetime.datetime.strptime(match["stamp"], "%Y%m%d%H").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None
    pid = int(match["pid"]) if match["pid"] else None
    return LogFileName(match["prefix"], stamp, int(match["number"]), pid)


def period_start(moment: datetime.datetime, roll_over: RollOver) -> datetime.datetime:
    """The start (UTC) of the LogFileRollOverSettings period holding ``moment``."""
    hour = moment.astimezone(datetime.UTC).replace(minute=0, second=0, microsecond=0)
    if roll_over is RollOver.HOURLY:
        return hour
    day = hour.replace(hour=0)
    if roll_over is RollOver.DAILY:
        return day
    if roll_over is RollOver.WEEKLY:
        # ISO weeks begin on Monday.
        return day - datetime.timedelta(days=day.weekday())
    return day.replace(day=1)


def log_prefix(service: str) -> str:
    """The file name prefix of ``service``'s protocol log."""
    return PREFIXES[service]


def log_folder(home: Home, settings: PopSettings) -> Path:
    """LogFileLocation, or ``<data dir>/logs/pop3`` when it is not set."""
    location = settings.log_file_location
    return Path(location) if location else home.log_dir / "pop3"


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def format_time(moment: datetime.datetime) -> str:
    """``yyyy-mm-ddThh:mm:ss.fffZ`` in UTC, as Exchange writes ``dateTime``."""
    utc = moment.astimezone(datetime.UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def csv_line(values: Iterable[object]) -> str:
    """One CSV row with its line ending; quoting only where a value needs it."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


class ProtocolLog:
    """The files of one process's protocol log; see the module docstring for the rules.

    :param quota: LogPerFileSizeQuota: 0 rolls by ``roll_over``, None never rolls.
    :param pid: added to file names when several processes write logs of one prefix.
    """

    def __init__(
        self,
        folder: Path,
        prefix: str,
        *,
        roll_over: RollOver,
        quota: int | None,
        pid: int | None = None,
        now: Callable[[], datetime.datetime] = _utc_now,
    ) -> None:
        self.folder = folder
        self.prefix = prefix
        self.roll_over = roll_over
        self.quota = quota
        self.pid = pid
        self._now = now
        self._file: TextIO | None = None
        self._name: LogFileName | None = None
        self._size = 0
        self._rows = 0
        #: After a failure, no write is tried before this monotonic time.
        self._retry_at = 0.0
        self._failing = False

    @property
    def path(self) -> Path | None:
        """The file written now, or None before the first row."""
        return self.folder / str(self._name) if self._name is not None else None

    def write(self, values: Sequence[object]) -> None:
        """Append one row (values in :data:`FIELDS` order); never raises OSError."""
        line = csv_line(values)
        if self._failing and time.monotonic() < self._retry_at:
            return
        try:
            self._prepare(self._now(), len(line.encode("utf-8")))
            assert self._file is not None
            self._file.write(line)
            self._file.flush()
        except OSError as error:
            self._fail(error)
            return
        self._size += len(line.encode("utf-8"))
        self._rows += 1
        if self._failing:
            self._failing = False
            logger.warning("protocol log: writing to %s again", self.path)

    def close(self) -> None:
        """Close the current file; the next row opens one again."""
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as error:
                self._fail(error)

    # -- files ---------------------------------------------------------------------------

    def _fail(self, error: OSError) -> None:
        if not self._failing:
            # Once per run of failures: a full disk must not flood the service's own log.
            logger.warning(
                "protocol log: cannot write to %s: %s; sessions go on unlogged, retrying "
                "every %.0f s",
                self.path or self.folder,
                error.strerror or error,
                RETRY_SECONDS,
            )
        self._failing = True
        self._retry_at = time.monotonic() + RETRY_SECONDS
        file, self._file, self._name = self._file, None, None
        if file is not None:
            # Already reported above.
            with contextlib.suppress(OSError):
                file.close()

    def _prepare(self, now: datetime.datetime, size: int) -> None:
        """Make sure the right file is open for a row of ``size`` octets at ``now``."""
        if self._file is not None and not self._must_roll(now, size):
            return
        self.close()
        self._open(self._choose(now, size))

    def _must_roll(self, now: datetime.datetime, size: int) -> bool:
        assert self._name is not None
        if self.quota == 0:
            return period_start(now, self.roll_over) != self._name.stamp
        if self.quota is None:
            return False
        # Every file keeps at least one row, however small the quota.
        return self._rows > 0 and self._size + size > self.quota

    def _mine(self) -> list[tuple[LogFileName, int]]:
        """This writer's existing files (prefix and pid), with their sizes."""
        found = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                name = parse_log_file_name(entry.name)
                if name and name.prefix == self.prefix and name.pid == self.pid:
                    found.append((name, entry.stat().st_size))
        return found

    def _choose(self, now: datetime.datetime, size: int) -> LogFileName:
        """The file to write next: the newest that still fits, else a new one."""
        self.folder.mkdir(parents=True, exist_ok=True)
        existing = self._mine()
        if self.quota == 0:
            stamp = period_start(now, self.roll_over)
            same = [name for name, _ in existing if name.stamp == stamp]
            # Appending to the newest file of this period (a restart keeps one file a day).
            return max(same) if same else LogFileName(self.prefix, stamp, 1, self.pid)
        newest = max(existing, default=None)
        if newest is not None:
            name, used = newest
            if self.quota is None or (self._name != name and used + size <= self.quota):
                return name
        stamp = now.astimezone(datetime.UTC).replace(minute=0, second=0, microsecond=0)
        numbers = [name.number for name, _ in existing if name.stamp == stamp]
        return LogFileName(self.prefix, stamp, max(numbers, default=0) + 1, self.pid)

    def _open(self, name: LogFileName) -> None:
        path = self.folder / str(name)
        file = path.open("a", encoding="utf-8", newline="")
        try:
            size = file.tell()
            # An appended file has rows already (or at least its header): it may roll at once.
            rows = 1
            if size == 0:
                header = self._header()
                file.write(header)
                file.flush()
                size, rows = len(header.encode("utf-8")), 0
        except OSError:
            file.close()
            raise
        self._file, self._name, self._size, self._rows = file, name, size, rows

    def _header(self) -> str:
        date = self._now().astimezone(datetime.UTC).replace(microsecond=0).isoformat()
        return (
            f"#Software: popgate {__version__}\n"
            "#Version: 15.0.0.0\n"
            f"#Log-type: {LOG_TYPES.get(self.prefix, 'POP3 Protocol Log')}\n"
            f"#Date: {date.replace('+00:00', 'Z')}\n"
            f"#Fields: {','.join(FIELDS)}\n"
        )


def open_protocol_log(
    home: Home, service: str, settings: PopSettings, *, pid: int | None = None
) -> ProtocolLog | None:
    """The protocol log ``settings`` ask ``service`` for, or None when logging is off."""
    if not settings.protocol_log_enabled:
        return None
    return ProtocolLog(
        log_folder(home, settings),
        log_prefix(service),
        roll_over=settings.log_file_roll_over_settings,
        quota=settings.log_per_file_size_quota,
        pid=pid,
    )


# -- what a row says -------------------------------------------------------------------------


def describe_command(command: Command | None, verb: str | None) -> tuple[str, str]:
    """The ``command`` and ``parameters`` columns of a line; secrets never appear.

    SASL continuation lines are logged as ``auth`` (they continue an AUTH) and their data,
    like PASS's argument and an initial response, as :data:`MASK`.
    """
    match command:
        case None:
            return (verb or "").lower(), ""
        case User(name=name):
            return "user", name
        case Pass():
            return "pass", MASK
        case Auth(mechanism=mechanism, initial_response=initial):
            return "auth", mechanism if initial is None else f"{mechanism} {MASK}"
        case SaslResponse():
            return "auth", MASK
        case SaslCancel():
            return "auth", "*"
        case Retr(msg=number) | Dele(msg=number):
            return type(command).__name__.lower(), str(number)
        case List(msg=number) | Uidl(msg=number):
            return type(command).__name__.lower(), "" if number is None else str(number)
        case Top(msg=number, lines=lines):
            return "top", f"{number} {lines}"
        case Xclient(attributes=attributes):
            return "xclient", " ".join(f"{name}={value}" for name, value in attributes.items())
    return type(command).__name__.lower(), ""


def context_of(reply: Reply | None, message: str | None = None) -> str:
    """``R=ok``, ``R="-ERR ..."`` or ``R=continue`` (a SASL challenge), then ``;Msg=...``."""
    parts = []
    if isinstance(reply, Err):
        status = ServerConnection.encode_reply(reply).decode("utf-8", "replace").rstrip()
        parts.append(f'R="{status}"')
    elif isinstance(reply, Challenge):
        parts.append("R=continue")
    elif reply is not None:
        parts.append("R=ok")
    if message:
        parts.append(f"Msg={message}")
    return ";".join(parts)


@dataclass(slots=True)
class _Row:
    at: datetime.datetime
    sequence: int
    user: str
    duration_ms: int
    request_size: int
    reply_size: int
    command: str
    parameters: str
    context: str


class SessionLog:
    """One session's rows: numbering from 0, the endpoints, the user once known.

    The backend holds its rows back (:meth:`hold`) until a trusted front end has said which
    client session they belong to; :meth:`release` then writes them under the front end's
    session id and the client's address, so one id finds a session in both services' logs.
    """

    #: Rows held at most before they are written under this session's own id.
    MAX_HELD: Final = 32

    def __init__(
        self, log: ProtocolLog, session_id: str, server_address: str, client_address: str
    ) -> None:
        self.log = log
        self.session_id = session_id
        self.server_address = server_address
        self.client_address = client_address
        self.user = ""
        self._sequence = 0
        self._held: list[_Row] | None = None

    def hold(self) -> None:
        """Keep rows back until :meth:`release`."""
        if self._held is None:
            self._held = []

    def release(self, *, session_id: str | None = None, client_address: str | None = None) -> None:
        """Write held rows (and all later ones) under these ids, where given."""
        if session_id:
            self.session_id = session_id
        if client_address:
            self.client_address = client_address
        held, self._held = self._held, None
        for row in held or ():
            self._write(row)

    def write(
        self,
        command: str,
        parameters: str,
        context: str,
        *,
        seconds: float = 0.0,
        request_size: int = 0,
        reply_size: int = 0,
    ) -> None:
        """Log one row (now)."""
        row = _Row(
            at=_utc_now(),
            sequence=self._sequence,
            user=self.user,
            duration_ms=round(seconds * 1000),
            request_size=request_size,
            reply_size=reply_size,
            command=command,
            parameters=parameters,
            context=context,
        )
        self._sequence += 1
        if self._held is None:
            self._write(row)
            return
        self._held.append(row)
        if len(self._held) >= self.MAX_HELD:
            self.release()

    def _write(self, row: _Row) -> None:
        self.log.write(
            (
                format_time(row.at),
                self.session_id,
                row.sequence,
                self.server_address,
                self.client_address,
                row.user or self.user,
                row.duration_ms,
                row.request_size,
                row.reply_size,
                row.command,
                row.parameters,
                row.context,
            )
        )


def read_rows(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """Rows of a protocol log's text as dictionaries keyed by :data:`FIELDS`; headers skipped."""
    data = (line for line in lines if line and not line.startswith("#"))
    for values in csv.reader(data):
        if len(values) == len(FIELDS):
            yield dict(zip(FIELDS, values, strict=True))
