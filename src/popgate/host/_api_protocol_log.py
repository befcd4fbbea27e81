"""The POP3 protocol log over the control API, for the admin center's Monitoring page.

``GET /api/v1/protocol-log?service=MSExchangePOP3&lines=200&session=...&user=...`` reads the
newest rows of the service's newest protocol log file (with WorkerProcesses > 1, the newest
file of each front-end process, merged by time). The folder is this server's effective
LogFileLocation; a request only chooses a service, and the files read are the ones in that
folder whose names are protocol log names, so no parameter can name a path. The readers are
the role groups that read the host's log.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

from fastapi import APIRouter, Query
from pydantic import BaseModel

from popgate.host._api import ApiError, CallerDep, ControlContext, error_responses, require_read
from popgate.host._common import API_PREFIX, ERROR_INVALID_PARAMETER
from popgate.services._protocol_log import (
    PREFIXES,
    LogFileName,
    log_folder,
    parse_log_file_name,
    read_rows,
)

__all__ = ["LOGGING_OFF", "ProtocolLogRow", "ProtocolLogView", "protocol_log_router", "tail"]

LOGGING_OFF: Final = (
    "Protocol logging is off: Set-PopSettings -ProtocolLogEnabled $true, then restart the "
    "POP3 services."
)
#: Octets read from the end of one file at most: a filter finds what is recent, cheaply.
MAX_SCAN: Final = 8 * 1024 * 1024
#: A writer whose newest file is older than this, next to the newest, ran before: skipped.
STALE_SECONDS: Final = 24 * 3600


class ProtocolLogRow(BaseModel):
    """One row of a protocol log (Exchange's columns, in snake case)."""

    date_time: str
    session_id: str
    seq_number: str
    server_ip: str
    client_ip: str
    user: str
    duration_ms: str
    request_size: str
    response_size: str
    command: str
    parameters: str
    context: str


class ProtocolLogView(BaseModel):
    """The newest rows of a service's protocol log, oldest first."""

    service: str
    #: The effective ProtocolLogEnabled: False means the files shown (if any) are old.
    enabled: bool
    #: Why there is nothing to show, when there is nothing.
    note: str | None = None
    folder: str
    files: list[str]
    rows: list[ProtocolLogRow]


@dataclass(frozen=True, slots=True)
class _File:
    path: Path
    name: LogFileName
    mtime: float


def _service_files(folder: Path, prefix: str) -> list[_File]:
    """The newest file of each writer (process) of ``prefix`` that is still writing."""
    newest: dict[int | None, _File] = {}
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        name = parse_log_file_name(entry.name)
        # A name the writer would give, a regular file: nothing else is ever opened.
        if name is None or name.prefix != prefix or not entry.is_file(follow_symlinks=False):
            continue
        found = _File(Path(entry.path), name, entry.stat(follow_symlinks=False).st_mtime)
        known = newest.get(name.pid)
        if known is None or (found.name.stamp, found.name.number) > (
            known.name.stamp,
            known.name.number,
        ):
            newest[name.pid] = found
    if not newest:
        return []
    latest = max(file.mtime for file in newest.values())
    return sorted(
        (file for file in newest.values() if latest - file.mtime <= STALE_SECONDS),
        key=lambda file: str(file.name),
    )


def _tail_text(path: Path) -> list[str]:
    """The lines of the last MAX_SCAN octets of ``path`` (a partial first line dropped)."""
    with path.open("rb") as file:
        size = file.seek(0, os.SEEK_END)
        start = max(0, size - MAX_SCAN)
        file.seek(start)
        data = file.read()
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[1:] if start else lines


def tail(
    folder: Path, prefix: str, lines: int, *, session: str | None, user: str | None
) -> tuple[list[str], list[dict[str, str]]]:
    """The files read and the newest ``lines`` rows matching the filters, oldest first.

    ``session`` matches a session id exactly, ``user`` any part of the user column; both
    ignore case.
    """
    files = _service_files(folder, prefix)
    wanted_session = session.strip().casefold() if session else None
    wanted_user = user.strip().casefold() if user else None
    rows: list[dict[str, str]] = []
    for file in files:
        for row in read_rows(_tail_text(file.path)):
            if wanted_session and row["sessionId"].casefold() != wanted_session:
                continue
            if wanted_user and wanted_user not in row["user"].casefold():
                continue
            rows.append(row)
    # Rows of several processes interleave by time; one process's rows are in order already.
    rows.sort(key=lambda row: row["dateTime"])
    return [str(file.name) for file in files], rows[-lines:]


def _model(row: dict[str, str]) -> ProtocolLogRow:
    return ProtocolLogRow(
        date_time=row["dateTime"],
        session_id=row["sessionId"],
        seq_number=row["seqNumber"],
        server_ip=row["sIp"],
        client_ip=row["cIp"],
        user=row["user"],
        duration_ms=row["duration"],
        request_size=row["rqsize"],
        response_size=row["rpsize"],
        command=row["command"],
        parameters=row["parameters"],
        context=row["context"],
    )


def protocol_log_router(context: ControlContext) -> APIRouter:
    """``GET /api/v1/protocol-log`` over ``context``."""
    router = APIRouter()

    @router.get(
        f"{API_PREFIX}/protocol-log",
        tags=["logs"],
        responses=error_responses(401, 403, 422, 429),
    )
    async def read_protocol_log(
        caller: CallerDep,
        service: str = "MSExchangePOP3",
        lines: Annotated[int, Query(ge=1, le=5000)] = 200,
        session: Annotated[str | None, Query(max_length=64)] = None,
        user: Annotated[str | None, Query(max_length=320)] = None,
    ) -> ProtocolLogView:
        """The newest rows of ``service``'s protocol log, optionally one session's or user's.

        ``service`` is MSExchangePOP3 (the front end, which logs the AUTHORIZATION phase) or
        MSExchangePOP3BE (the backend, which logs the rest under the front end's session id).
        """
        require_read(caller)
        names = {name.casefold(): name for name in PREFIXES}
        key = names.get(service.casefold())
        if key is None:
            raise ApiError(
                422,
                ERROR_INVALID_PARAMETER,
                f"service must be {' or '.join(PREFIXES)}; got {service[:64]!r}.",
            )
        settings = await context.directory.get_pop_settings(
            context.home.server_name, effective=True
        )
        folder = log_folder(context.home, settings)
        files, rows = await asyncio.to_thread(
            tail, folder, PREFIXES[key], lines, session=session, user=user
        )
        note = None
        if not settings.protocol_log_enabled:
            note = LOGGING_OFF
        elif not files:
            note = f"{key} has written no protocol log yet in {folder}."
        return ProtocolLogView(
            service=key,
            enabled=settings.protocol_log_enabled,
            note=note,
            folder=str(folder),
            files=files,
            rows=[_model(row) for row in rows],
        )

    return router
