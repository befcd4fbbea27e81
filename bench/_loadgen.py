"""Build and run ``bench/loadgen/pop3load.c``, the compiled POP3 load generator.

popgate and Dovecot are driven by the same C client, whose per-session cost is small beside
either server's (a Python client's TLS handshakes cost as much as the servers' own work).

    result = run("127.0.0.1", 995, users=[("alice", "secret")], tls="implicit", sessions=100)
    print(result.sessions_per_s, result.latency_ms)
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SOURCE = Path(__file__).parent / "loadgen" / "pop3load.c"
COMPILE = ["cc", "-O2", "-Wall", "-Wextra", "-Werror"]
LIBRARIES = ["-lssl", "-lcrypto", "-lpthread"]

Workload = Literal["full", "login", "list", "retr"]
Tls = Literal["implicit", "none"]


class LoadgenError(RuntimeError):
    """pop3load could not be built or did not complete a run (sessions failing do not count)."""


@dataclass(frozen=True)
class Latency:
    """Percentiles of whole-session latency, in milliseconds (nearest rank)."""

    p50: float
    p90: float
    p99: float
    max: float


@dataclass(frozen=True)
class LoadResult:
    """What one pop3load run printed (see the comment at the top of pop3load.c)."""

    workload: Workload
    tls: Tls
    concurrency: int
    #: None when the run was for a time (``seconds``) rather than a number of sessions.
    sessions_asked: int | None
    sessions_ok: int
    sessions_failed: int
    #: "user: step: text" of the first failed session, e.g. "bob: PASS: -ERR Logon failure".
    first_error: str | None
    elapsed_s: float
    sessions_per_s: float
    #: The same as sessions_per_s, for the login workload only.
    logins_per_s: float | None
    #: TLS handshakes that resumed a session (only with ``resume``).
    tls_resumed: int
    #: RETR octets of the successful sessions, as LIST counts them (byte-stuffing undone).
    bytes_retrieved: int
    #: Time the RETR throughput is over: RETRs in progress (workload retr) or the whole run.
    retr_s: float
    retr_mb_per_s: float
    #: None when no session succeeded.
    latency_ms: Latency | None

    @classmethod
    def from_json(cls, text: str) -> LoadResult:
        """Parse pop3load's output line, failing on anything missing or mistyped."""
        data: dict[str, Any] = json.loads(text)
        latency = data.pop("latency_ms")
        result = cls(**data, latency_ms=None if latency is None else Latency(**latency))
        for name, kind in (("sessions_ok", int), ("bytes_retrieved", int), ("elapsed_s", float)):
            if not isinstance(getattr(result, name), kind):
                raise LoadgenError(f"pop3load printed {name}={getattr(result, name)!r}")
        return result


def _cache_folder(digest: str) -> Path:
    """A folder of this user's in the temp dir, refusing one another user could write to.

    Anyone can create a name under /tmp first; running a binary from their folder would run
    their program, so the folder must be ours and closed to others.
    """
    folder = Path(tempfile.gettempdir()) / f"popgate-pop3load-{os.getuid()}-{digest}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ):
        raise LoadgenError(f"{folder} is not a private folder of this user's; remove it")
    return folder


def build() -> Path:
    """Compile pop3load once per version of its source and flags; the binary's path."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(repr([COMPILE, LIBRARIES]).encode() + source).hexdigest()[:16]
    binary = _cache_folder(digest) / "pop3load"
    if binary.exists():
        return binary
    # Compile under a unique name and rename: concurrent builds never see a partial binary.
    partial = binary.with_name(f"pop3load.{os.getpid()}.partial")
    try:
        compiled = subprocess.run(
            [*COMPILE, "-o", str(partial), str(SOURCE), *LIBRARIES],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    except OSError as error:
        raise LoadgenError(f"cannot run the C compiler: {error}") from error
    if compiled.returncode != 0:
        partial.unlink(missing_ok=True)
        raise LoadgenError(f"compiling {SOURCE.name} failed:\n{compiled.stderr}")
    partial.replace(binary)
    return binary


def write_users(path: Path, users: Sequence[tuple[str, str]]) -> Path:
    """Write a users file (``user<TAB>password`` lines, readable only by this user)."""
    for name, password in users:
        if any(c in "\t\r\n" for c in name) or any(c in "\r\n" for c in password):
            raise ValueError(f"user {name!r}: no tabs in names, no line breaks in either")
    path.touch(mode=0o600)
    path.write_text("".join(f"{name}\t{password}\n" for name, password in users))
    return path


def run(
    host: str,
    port: int,
    *,
    users: Path | Sequence[tuple[str, str]],
    workload: Workload = "full",
    tls: Tls = "none",
    sessions: int | None = None,
    seconds: float | None = None,
    concurrency: int = 1,
    resume: bool = False,
    timeout: float = 30.0,
) -> LoadResult:
    """Run pop3load for ``sessions`` sessions or for ``seconds`` (exactly one of them).

    ``users`` is a users file or (user, password) pairs; concurrency must not exceed their
    number (each worker keeps to its own users). ``timeout`` bounds each read, write and
    connect. Raises :class:`LoadgenError` with pop3load's stderr if it does not complete.
    """
    if (sessions is None) == (seconds is None):
        raise ValueError("give exactly one of sessions and seconds")
    binary = build()
    with tempfile.TemporaryDirectory(prefix="pop3load-") as scratch:
        users_file = users if isinstance(users, Path) else write_users(Path(scratch) / "u", users)
        command = [
            str(binary), "--host", host, "--port", str(port), "--tls", tls,
            "--users", str(users_file), "--concurrency", str(concurrency),
            "--workload", workload, "--timeout", str(timeout),
        ]  # fmt: skip
        command += ["--sessions", str(sessions)] if sessions is not None else []
        command += ["--seconds", str(seconds)] if seconds is not None else []
        command += ["--resume"] if resume else []
        # No read or write waits past ``timeout``, but a server trickling bytes could keep a
        # session alive forever; a run for a time gets a generous bound against that.
        limit = None if seconds is None else seconds + 10 * timeout
        try:
            finished = subprocess.run(
                command, capture_output=True, text=True, timeout=limit, check=False
            )
        except subprocess.TimeoutExpired as expired:
            raise LoadgenError(f"pop3load ran past {limit} s") from expired
    if finished.returncode != 0:
        raise LoadgenError(f"pop3load exited {finished.returncode}:\n{finished.stderr}")
    try:
        return LoadResult.from_json(finished.stdout)
    except (ValueError, TypeError, KeyError) as error:
        raise LoadgenError(f"unreadable pop3load output {finished.stdout!r}: {error}") from error
