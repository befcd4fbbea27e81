"""The directory: mailboxes, servers, role groups, POP3 settings and the audit log.

One :class:`Directory` wraps one SQLAlchemy async engine: SQLite (``sqlite+aiosqlite:///path``)
for a single computer, PostgreSQL (``postgresql+asyncpg://...``) when computers share it.
Queries are SQLAlchemy Core so that both backends run the same statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, ParamSpec, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Row
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from popgate.protocol._scram_keys import ScramCredentials

from . import _migrate, _passwords, _transfer
from ._errors import (
    AlreadyExists,
    DirectoryError,
    DirectoryUnavailable,
    InvalidName,
    InvalidSetting,
    NotFound,
)
from ._model import AuditEntry, Mailbox, MoveRequest, MoveStatus, Role, RoleGroup, Server
from ._names import (
    validate_address,
    validate_domain,
    validate_host,
    validate_mailbox_name,
    validate_member,
)
from ._schema import (
    audit_log,
    directory_settings,
    mailboxes,
    move_requests,
    pop_settings,
    role_group_members,
    servers,
)
from ._settings import CasMailboxSettings, PopSettings

__all__ = ["DEFAULT_DOMAIN", "Directory"]

#: The default domain until setup sets it from the computer's FQDN.
DEFAULT_DOMAIN: Final = "localhost"
#: Longest password accepted; argon2 would take more, but nobody types this much.
MAX_PASSWORD_LENGTH: Final = 4096
#: A proxy secret is random and at least 128 bits (32 hex digits), so plain SHA-256 suffices.
MIN_PROXY_SECRET_LENGTH: Final = 32
#: How long a SQLite connection waits for another writer before failing, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS: Final = 10_000

_DEFAULT_DOMAIN_KEY: Final = "default_domain"

_MAILBOX_COLUMNS: Final = (
    mailboxes.c.guid,
    mailboxes.c.name,
    mailboxes.c.address,
    mailboxes.c.pop_enabled,
    mailboxes.c.server_name,
    mailboxes.c.is_administrator,
    mailboxes.c.created,
    mailboxes.c.prohibit_send_receive_quota,
)


_P = ParamSpec("_P")
_T = TypeVar("_T")

#: What the drivers raise when the database cannot be reached (asyncpg's refused connect
#: comes through as a bare OSError), dropped the connection, or stayed locked (SQLite's
#: "database is locked" after the busy timeout): conditions that pass, not bugs.
_UNAVAILABLE: Final = (
    OperationalError,
    InterfaceError,
    sa.exc.TimeoutError,
    OSError,  # the built-in TimeoutError among them
)


def _reports_unavailable(method: Callable[_P, Awaitable[_T]]) -> Callable[_P, Awaitable[_T]]:
    """Turn the database being unreachable or locked into :class:`DirectoryUnavailable`.

    For the lookups the POP3 and delivery services make on every login and delivery, so that
    they can answer "try again later" instead of failing with a traceback.
    """

    @functools.wraps(method)
    async def checked(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await method(*args, **kwargs)
        except _UNAVAILABLE as error:
            cause = error.orig if isinstance(error, DBAPIError) else error
            reason = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
            raise DirectoryUnavailable(
                f"The directory database is unavailable ({type(cause).__name__}"
                f"{': ' + reason if reason else ''}); try again later."
            ) from error

    return checked


def _now() -> datetime:
    return datetime.now(UTC)


def _sqlite_on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    """Per-connection SQLite setup: WAL, enforced foreign keys, a busy timeout."""
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets the POP3 services read while the CLI writes; NORMAL is durable under WAL
        # except for the last transactions on power loss, which is acceptable for a directory.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # SQLite ignores FOREIGN KEY clauses unless asked, per connection.
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _mailbox_key(name_or_address: str) -> sa.ColumnElement[bool]:
    """Where-clause for a mailbox given by name or address, both case-insensitive."""
    if "@" in name_or_address:
        return mailboxes.c.address_key == name_or_address.lower()
    return mailboxes.c.name_key == name_or_address.lower()


def _to_mailbox(row: Row[*tuple[Any, ...]]) -> Mailbox:
    return Mailbox(
        guid=row.guid,
        name=row.name,
        address=row.address,
        pop_enabled=row.pop_enabled,
        server=row.server_name,
        is_administrator=row.is_administrator,
        created=row.created,
        prohibit_send_receive_quota=row.prohibit_send_receive_quota,
    )


def _to_server(row: Row[*tuple[Any, ...]]) -> Server:
    return Server(
        name=row.name,
        fqdn=row.fqdn,
        roles=frozenset(Role(r) for r in row.roles.split(",") if r),
        proxy_host=row.proxy_host,
        control_url=row.control_url,
        certificate_pem=row.certificate_pem,
    )


def _server_name(name: str) -> str:
    """Server names are DNS names: case-insensitive, kept lower-case."""
    try:
        return validate_domain(name)
    except InvalidName:
        raise InvalidName(
            f"The server name {name!r} is not valid; use the computer's host name, "
            "for example 'mbx01'."
        ) from None


def _like(wildcard: str) -> str:
    """A PowerShell wildcard (``*`` any text, ``?`` one character) as a lower-case LIKE
    pattern escaped with backslashes."""
    escaped = re.sub(r"([\\%_])", r"\\\1", wildcard.lower())
    return escaped.replace("*", "%").replace("?", "_")


def _cas_json(settings: CasMailboxSettings) -> str | None:
    # pop_enabled has its own column, which the POP3 login check reads.
    stored = {k: v for k, v in settings.to_json().items() if k != "pop_enabled"}
    return json.dumps(stored, sort_keys=True) if stored else None


def _load_cas(pop_enabled: bool, text: str | None) -> CasMailboxSettings:
    stored = {} if text is None else json.loads(text)
    return CasMailboxSettings.from_json({**stored, "pop_enabled": pop_enabled})


def _aware(when: datetime | None, what: str) -> datetime | None:
    if when is not None and when.tzinfo is None:
        raise InvalidSetting(f"{what} needs a time zone, for example 2025-12-01T00:00:00+00:00.")
    return when


def _settings_json(settings: PopSettings) -> str:
    return json.dumps(settings.to_json(), sort_keys=True)


def _load_settings(text: str | None) -> PopSettings:
    return PopSettings() if text is None else PopSettings.from_json(json.loads(text))


def _not_found_mailbox(name: str) -> NotFound:
    return NotFound(
        f"There is no mailbox {name!r}; check the spelling with 'popgate mailbox list'."
    )


def _not_found_server(name: str) -> NotFound:
    return NotFound(
        f"There is no server {name!r}; 'popgate setup' registers this computer, and the "
        "server list shows the others."
    )


class Directory:
    """Access to the directory database; create with :meth:`connect`, end with :meth:`close`.

    Mailbox names and addresses are case-insensitive wherever a method takes one; methods
    that take a mailbox ``name`` also accept its address.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        """Wrap an engine; prefer :meth:`connect`, which sets the engine up correctly."""
        self._engine = engine
        self._auth_cache = _passwords.AuthCache()

    # --- lifecycle ------------------------------------------------------------------------

    @classmethod
    async def connect(cls, url: str) -> Directory:
        """Create the engine for ``url``; does not touch the schema (see :meth:`upgrade`)."""
        try:
            parsed = sa.make_url(url)
        except ArgumentError:
            raise DirectoryError(
                f"{url!r} is not a database URL; use sqlite+aiosqlite:///path/to/directory.db "
                "or postgresql+asyncpg://user@host/database."
            ) from None
        backend = parsed.get_backend_name()
        if parsed.drivername == "sqlite+aiosqlite":
            in_memory = parsed.database in (None, "", ":memory:")
            # An in-memory database exists once per connection, so share a single one.
            engine = create_async_engine(parsed, poolclass=StaticPool if in_memory else None)
            event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        elif parsed.drivername == "postgresql+asyncpg":
            engine = create_async_engine(parsed, pool_pre_ping=True)
        else:
            raise DirectoryError(
                f"The database driver {parsed.drivername!r} ({backend}) is not supported; use "
                "sqlite+aiosqlite:///path/to/directory.db or postgresql+asyncpg://user@host/db."
            )
        return cls(engine)

    async def upgrade(self) -> None:
        """Bring the schema to the newest revision (idempotent, safe to run at every setup)."""
        async with self._engine.begin() as connection:
            await connection.run_sync(_migrate.upgrade)

    async def needs_upgrade(self) -> bool:
        """Whether the schema is older than this popgate (or missing): run :meth:`upgrade`."""
        async with self._engine.connect() as connection:
            current = await connection.run_sync(_migrate.current_revision)
        return current != _migrate.head_revision()

    async def copy_to(self, target: Directory) -> dict[str, int]:
        """Copy every row into ``target`` (empty, at the newest schema); the counts by table.

        ``popgate directory migrate``: a single computer's SQLite directory moves to the
        PostgreSQL database an organization shares.
        """
        return await _transfer.copy_rows(self._engine, target._engine)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        """Use as ``async with await Directory.connect(url) as directory``."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the directory."""
        await self.close()

    # --- mailboxes ------------------------------------------------------------------------

    async def add_mailbox(
        self,
        name: str,
        *,
        address: str | None = None,
        password: str | None = None,
        server: str | None = None,
        is_administrator: bool = False,
    ) -> Mailbox:
        """Create a mailbox with a new GUID; the address defaults to ``name@default-domain``.

        ``server`` (a Mailbox server) holds it; by default the Mailbox server that holds the
        fewest mailboxes, as Exchange's automatic mailbox distribution picks a database.
        Raises :class:`InvalidName`, :class:`AlreadyExists` (name or address taken, in any
        case), :class:`NotFound` (unknown server) or :class:`InvalidSetting` (bad password).
        """
        validate_mailbox_name(name)
        if address is not None:
            validate_address(address)
        server_name = None if server is None else _server_name(server)
        # Hash before opening the transaction: no write lock is held during ~50 ms of argon2.
        secrets_ = None if password is None else await self._hash(password)
        async with self._engine.begin() as conn:
            if address is None:
                address = validate_address(f"{name}@{await self._default_domain(conn)}")
            if server_name is None:
                server_name = await self._least_loaded_mailbox_server(conn)
            else:
                await self._require_mailbox_server(conn, server_name)
            taken = await conn.execute(
                sa.select(mailboxes.c.name, mailboxes.c.address).where(
                    (mailboxes.c.name_key == name.lower())
                    | (mailboxes.c.address_key == address.lower())
                )
            )
            for row in taken:
                if row.name.lower() == name.lower():
                    raise AlreadyExists(
                        f"A mailbox named {row.name!r} already exists (names ignore case); "
                        "choose another name."
                    )
                raise AlreadyExists(
                    f"The address {address!r} already belongs to mailbox {row.name!r}; "
                    "choose another address."
                )
            mailbox = Mailbox(
                guid=uuid.uuid4(),
                name=name,
                address=address,
                pop_enabled=True,
                server=server_name,
                is_administrator=is_administrator,
                created=_now(),
            )
            values: dict[str, object] = {
                "guid": mailbox.guid,
                "name": name,
                "name_key": name.lower(),
                "address": address,
                "address_key": address.lower(),
                "pop_enabled": True,
                "server_name": server_name,
                "is_administrator": is_administrator,
                "created": mailbox.created,
            }
            if secrets_ is not None:
                values.update(secrets_)
            try:
                await conn.execute(sa.insert(mailboxes).values(values))
            except IntegrityError:
                # Another writer took the name or address between our check and the insert.
                raise AlreadyExists(
                    f"The mailbox {name!r} or the address {address!r} was just created by "
                    "someone else; choose another name or address."
                ) from None
        return mailbox

    @_reports_unavailable
    async def get_mailbox(self, name_or_address: str) -> Mailbox | None:
        """The mailbox with this name or address (case-insensitive), or None."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(*_MAILBOX_COLUMNS).where(_mailbox_key(name_or_address))
                )
            ).first()
        return None if row is None else _to_mailbox(row)

    async def list_mailboxes(self, pattern: str | None = None) -> list[Mailbox]:
        """Every mailbox, sorted by name (ignoring case); with ``pattern``, those whose name or
        address matches it (``*`` any text, ``?`` one character, ignoring case)."""
        query = sa.select(*_MAILBOX_COLUMNS).order_by(mailboxes.c.name_key)
        if pattern is not None:
            like = _like(pattern)
            query = query.where(
                mailboxes.c.name_key.like(like, escape="\\")
                | mailboxes.c.address_key.like(like, escape="\\")
            )
        async with self._engine.connect() as conn:
            rows = await conn.execute(query)
            return [_to_mailbox(row) for row in rows]

    async def remove_mailbox(self, name: str) -> Mailbox:
        """Delete a mailbox and return what it was; raises :class:`NotFound`.

        Role-group memberships under the mailbox's name go too, so that a later mailbox of
        the same name does not inherit its permissions.
        """
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.select(*_MAILBOX_COLUMNS).where(_mailbox_key(name)).with_for_update()
                )
            ).first()
            if row is None:
                raise _not_found_mailbox(name)
            # The auth cache needs no invalidation: an entry only counts for a row that exists.
            await conn.execute(sa.delete(mailboxes).where(mailboxes.c.guid == row.guid))
            await conn.execute(
                sa.delete(role_group_members).where(role_group_members.c.member == row.name)
            )
        return _to_mailbox(row)

    async def set_password(self, name: str, password: str) -> None:
        """Set the argon2id hash and the SCRAM-SHA-256 verifier; refuses an empty password."""
        values = await self._hash(password)
        # The auth cache needs no invalidation: the new hash has a new salt, and entries are
        # keyed by the stored hash, so the old password can no longer match any of them.
        await self._update_mailbox(name, values)

    async def set_pop_enabled(self, name: str, enabled: bool) -> None:
        """Set-CASMailbox -PopEnabled: allow or block POP3 for the mailbox."""
        await self._update_mailbox(name, {"pop_enabled": enabled})

    async def set_quota(self, name: str, quota: int | None) -> None:
        """Set-Mailbox -ProhibitSendReceiveQuota: bytes, or None for Unlimited."""
        if quota is not None and quota < 0:
            raise InvalidSetting("ProhibitSendReceiveQuota cannot be negative.")
        await self._update_mailbox(name, {"prohibit_send_receive_quota": quota})

    async def get_cas_settings(self, name: str) -> CasMailboxSettings:
        """Get-CASMailbox: the mailbox's POP3 settings; raises :class:`NotFound`."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(mailboxes.c.pop_enabled, mailboxes.c.cas_settings).where(
                        _mailbox_key(name)
                    )
                )
            ).first()
        if row is None:
            raise _not_found_mailbox(name)
        return _load_cas(row.pop_enabled, row.cas_settings)

    async def set_cas_settings(self, name: str, /, **changes: object) -> CasMailboxSettings:
        """Set-CASMailbox: apply ``changes`` all or none and return the new settings.

        Keys are Set-CASMailbox parameter names in any case (``PopEnabled``) or field names;
        values are typed or text such as ``$false`` or ``TextOnly``. Raises
        :class:`NotFound` or :class:`InvalidSetting`.
        """
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.select(mailboxes.c.guid, mailboxes.c.pop_enabled, mailboxes.c.cas_settings)
                    .where(_mailbox_key(name))
                    .with_for_update()
                )
            ).first()
            if row is None:
                raise _not_found_mailbox(name)
            updated = _load_cas(row.pop_enabled, row.cas_settings).with_changes(changes)
            await conn.execute(
                sa.update(mailboxes)
                .where(mailboxes.c.guid == row.guid)
                .values(pop_enabled=updated.pop_enabled, cas_settings=_cas_json(updated))
            )
        return updated

    async def set_mailbox_server(self, name: str, server: str) -> None:
        """Record which Mailbox server holds the mailbox; raises :class:`NotFound`."""
        server_name = _server_name(server)
        async with self._engine.begin() as conn:
            await self._require_mailbox_server(conn, server_name)
            await self._update_mailbox(name, {"server_name": server_name}, conn)

    @_reports_unavailable
    async def verify_password(
        self,
        name_or_address: str,
        password: str,
        *,
        check_turn: contextlib.AbstractAsyncContextManager[object] | None = None,
    ) -> Mailbox | None:
        """The mailbox if ``password`` is right; None for an unknown user, no password or a
        wrong one.

        A failure takes the same time in every case (an unknown user is checked against a
        dummy hash), so timing does not tell which. A success is remembered for an hour in
        memory (:class:`~popgate.directory._passwords.AuthCache`), keyed by the stored hash
        as well as the password, so a repeated login skips argon2 but a changed password
        never matches an old entry; the row is still read every time. ``check_turn`` is
        entered around the argon2id check only, so a caller can ration the costly checks
        without delaying remembered ones.
        """
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(*_MAILBOX_COLUMNS, mailboxes.c.password_hash).where(
                        _mailbox_key(name_or_address)
                    )
                )
            ).first()
        stored: str | None = None if row is None else row.password_hash
        cache_key: bytes | None = None
        if row is not None and stored is not None:
            cache_key = self._auth_cache.key(stored, password)
            if self._auth_cache.hit(cache_key):
                # The hash was current when the entry was made and it is still the stored
                # one, so there is nothing to rehash.
                return _to_mailbox(row)
        async with check_turn or contextlib.nullcontext():
            verified = await asyncio.to_thread(_passwords.verify_hash, stored, password)
        if not verified:
            return None
        assert row is not None
        assert stored is not None
        assert cache_key is not None
        if _passwords.needs_rehash(stored):
            # Parameters were raised since this hash was made; the password is at hand now.
            # The stored hash changes, so the entry is made at the next login, against it.
            await self._update_mailbox(row.name, await self._hash(password))
        else:
            self._auth_cache.add(cache_key)
        return _to_mailbox(row)

    @_reports_unavailable
    async def scram_credentials(
        self, name_or_address: str
    ) -> tuple[Mailbox, ScramCredentials] | None:
        """The mailbox and its SCRAM-SHA-256 verifier, or None if unknown or never set."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        *_MAILBOX_COLUMNS,
                        mailboxes.c.scram_salt,
                        mailboxes.c.scram_iterations,
                        mailboxes.c.scram_stored_key,
                        mailboxes.c.scram_server_key,
                    ).where(_mailbox_key(name_or_address))
                )
            ).first()
        if row is None or row.scram_salt is None:
            return None
        credentials = ScramCredentials(
            salt=bytes(row.scram_salt),
            iterations=int(row.scram_iterations),
            stored_key=bytes(row.scram_stored_key),
            server_key=bytes(row.scram_server_key),
        )
        return _to_mailbox(row), credentials

    @_reports_unavailable
    async def get_mailbox_by_guid(self, guid: uuid.UUID) -> Mailbox | None:
        """The mailbox with this GUID, or None."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(*_MAILBOX_COLUMNS).where(mailboxes.c.guid == guid))
            ).first()
        return None if row is None else _to_mailbox(row)

    # --- mailbox moves --------------------------------------------------------------------

    async def add_move_request(self, name: str, target: str, requested_by: str) -> MoveRequest:
        """Record a move of mailbox ``name`` to Mailbox server ``target`` (status Queued).

        Raises :class:`NotFound` (mailbox or server), :class:`InvalidSetting` (the target has
        no Mailbox role or already holds it) or :class:`AlreadyExists` (a move is recorded).
        """
        target_name = _server_name(target)
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.select(mailboxes.c.guid, mailboxes.c.name, mailboxes.c.server_name).where(
                        _mailbox_key(name)
                    )
                )
            ).first()
            if row is None:
                raise _not_found_mailbox(name)
            await self._require_mailbox_server(conn, target_name)
            if row.server_name is None:
                raise InvalidSetting(
                    f"Mailbox {row.name!r} is held by no server, so there is nothing to move; "
                    f"place it with 'popgate mailbox add --server' instead."
                )
            if row.server_name == target_name:
                raise InvalidSetting(f"Mailbox {row.name!r} is already on {target_name}.")
            now = _now()
            try:
                await conn.execute(
                    sa.insert(move_requests).values(
                        mailbox_guid=row.guid,
                        source_server=row.server_name,
                        target_server=target_name,
                        status=MoveStatus.QUEUED.value,
                        detail="Queued.",
                        requested_by=requested_by,
                        created=now,
                        updated=now,
                    )
                )
            except IntegrityError:
                raise AlreadyExists(
                    f"Mailbox {row.name!r} already has a move request; see Get-MoveRequest, "
                    "and Remove-MoveRequest it before moving it again."
                ) from None
        request = await self.get_move_request(row.guid)
        assert request is not None  # inserted above
        return request

    async def get_move_request(self, guid: uuid.UUID) -> MoveRequest | None:
        """The move request of the mailbox with this GUID, or None."""
        found = await self._move_requests(move_requests.c.mailbox_guid == guid)
        return found[0] if found else None

    async def list_move_requests(
        self, *, target: str | None = None, statuses: Collection[MoveStatus] | None = None
    ) -> list[MoveRequest]:
        """Move requests, by mailbox name; only those to ``target`` or in ``statuses``."""
        condition: sa.ColumnElement[bool] = sa.true()
        if target is not None:
            condition = condition & (move_requests.c.target_server == target.lower())
        if statuses is not None:
            condition = condition & move_requests.c.status.in_([s.value for s in statuses])
        return await self._move_requests(condition)

    async def set_move_status(self, guid: uuid.UUID, status: MoveStatus, detail: str) -> None:
        """Record where a move stands."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(move_requests)
                .where(move_requests.c.mailbox_guid == guid)
                .values(status=status.value, detail=detail, updated=_now())
            )

    async def switch_mailbox_server(self, guid: uuid.UUID, source: str, target: str) -> bool:
        """Route the mailbox to ``target`` and mark its move CompletionInProgress, at once.

        False (and nothing changed) unless the mailbox is on ``source`` with its move in
        progress: a move cancelled meanwhile is not switched behind the canceller's back.
        """
        async with self._engine.begin() as conn:
            moving = (
                await conn.execute(
                    sa.select(move_requests.c.status)
                    .where(move_requests.c.mailbox_guid == guid)
                    .with_for_update()
                )
            ).scalar_one_or_none()
            if moving != MoveStatus.IN_PROGRESS.value:
                return False
            result = await conn.execute(
                sa.update(mailboxes)
                .where((mailboxes.c.guid == guid) & (mailboxes.c.server_name == source))
                .values(server_name=target)
            )
            if result.rowcount != 1:
                return False
            await conn.execute(
                sa.update(move_requests)
                .where(move_requests.c.mailbox_guid == guid)
                .values(
                    status=MoveStatus.COMPLETION_IN_PROGRESS.value,
                    detail=f"Switched: {target} serves the mailbox; removing the copy on {source}.",
                    updated=_now(),
                )
            )
        return True

    async def remove_move_request(self, guid: uuid.UUID) -> None:
        """Forget a move request (Remove-MoveRequest)."""
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(move_requests).where(move_requests.c.mailbox_guid == guid))

    async def _move_requests(self, condition: sa.ColumnElement[bool]) -> list[MoveRequest]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(move_requests, mailboxes.c.name)
                .join(mailboxes, mailboxes.c.guid == move_requests.c.mailbox_guid)
                .where(condition)
                .order_by(mailboxes.c.name_key)
            )
            return [
                MoveRequest(
                    mailbox_guid=row.mailbox_guid,
                    mailbox=row.name,
                    source_server=row.source_server,
                    target_server=row.target_server,
                    status=MoveStatus(row.status),
                    detail=row.detail,
                    requested_by=row.requested_by,
                    created=row.created,
                    updated=row.updated,
                )
                for row in rows
            ]

    # --- servers --------------------------------------------------------------------------

    async def add_server(
        self,
        name: str,
        *,
        fqdn: str,
        roles: Collection[Role],
        proxy_host: str | None = None,
    ) -> Server:
        """Register a server or update its FQDN and roles (setup runs this every time).

        ``proxy_host`` defaults to the FQDN; on an update, None keeps a proxy host that was
        set explicitly and follows the FQDN otherwise.
        """
        server_name = _server_name(name)
        fqdn = validate_domain(fqdn)
        role_set = frozenset(Role(role) for role in roles)
        if not role_set:
            raise InvalidSetting(
                f"Server {server_name!r} needs at least one role: ClientAccess, Mailbox or both."
            )
        proxy = None if proxy_host is None else validate_host(proxy_host)
        roles_text = ",".join(sorted(role_set))
        for attempt in range(2):
            try:
                async with self._engine.begin() as conn:
                    old = (
                        await conn.execute(
                            sa.select(servers.c.fqdn, servers.c.proxy_host)
                            .where(servers.c.name == server_name)
                            .with_for_update()
                        )
                    ).first()
                    if old is None:
                        new_proxy = proxy or fqdn
                        await conn.execute(
                            sa.insert(servers).values(
                                name=server_name,
                                fqdn=fqdn,
                                roles=roles_text,
                                proxy_host=new_proxy,
                                created=_now(),
                            )
                        )
                        await conn.execute(
                            sa.insert(pop_settings).values(
                                server_name=server_name,
                                configured=_settings_json(PopSettings()),
                                effective=None,
                                updated=_now(),
                            )
                        )
                    else:
                        follows_fqdn = old.proxy_host == old.fqdn
                        new_proxy = proxy or (fqdn if follows_fqdn else old.proxy_host)
                        await conn.execute(
                            sa.update(servers)
                            .where(servers.c.name == server_name)
                            .values(fqdn=fqdn, roles=roles_text, proxy_host=new_proxy)
                        )
                return Server(name=server_name, fqdn=fqdn, roles=role_set, proxy_host=new_proxy)
            except IntegrityError:
                # Two setups inserted the same server at once; the second pass updates it.
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @_reports_unavailable
    async def get_server(self, name: str) -> Server | None:
        """The server of that name (case-insensitive), or None."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(servers).where(servers.c.name == name.lower()))
            ).first()
        return None if row is None else _to_server(row)

    async def list_servers(self) -> list[Server]:
        """Every server, sorted by name."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(servers).order_by(servers.c.name))
            return [_to_server(row) for row in rows]

    async def set_proxy_secret(self, server: str, secret: str) -> None:
        """Store the SHA-256 of the secret that front ends present to this server's backend.

        The secret must be random and at least 32 characters; for such a secret a salted
        slow hash adds nothing but ~50 ms to every proxied session.
        """
        if len(secret) < MIN_PROXY_SECRET_LENGTH:
            raise InvalidSetting(
                f"A proxy secret must be at least {MIN_PROXY_SECRET_LENGTH} random characters; "
                "generate one with secrets.token_urlsafe(32)."
            )
        digest = hashlib.sha256(secret.encode("utf-8")).hexdigest()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(servers)
                .where(servers.c.name == server.lower())
                .values(proxy_secret_sha256=digest)
            )
            if result.rowcount == 0:
                raise _not_found_server(server)

    async def set_server_endpoint(
        self, server: str, *, control_url: str | None, certificate_pem: str
    ) -> None:
        """Record where this server's control API answers and the certificate it presents."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(servers)
                .where(servers.c.name == server.lower())
                .values(control_url=control_url, certificate_pem=certificate_pem)
            )
            if result.rowcount == 0:
                raise _not_found_server(server)

    @_reports_unavailable
    async def verify_proxy_secret(self, server: str, secret: str) -> bool:
        """Whether ``secret`` is this server's proxy secret (constant-time comparison)."""
        async with self._engine.connect() as conn:
            stored = (
                await conn.execute(
                    sa.select(servers.c.proxy_secret_sha256).where(servers.c.name == server.lower())
                )
            ).scalar_one_or_none()
        digest = hashlib.sha256(secret.encode("utf-8")).hexdigest()
        return stored is not None and hmac.compare_digest(stored, digest)

    # --- role groups ----------------------------------------------------------------------

    async def add_role_group_member(self, group: RoleGroup, member: str) -> None:
        """Add ``member`` (a mailbox or system user name, exact case) to ``group``; idempotent."""
        group = RoleGroup(group)
        validate_member(member)
        values = {"group_name": group.value, "member": member}
        try:
            async with self._engine.begin() as conn:
                exists = (
                    await conn.execute(
                        sa.select(sa.literal(1)).where(
                            (role_group_members.c.group_name == group.value)
                            & (role_group_members.c.member == member)
                        )
                    )
                ).first()
                if exists is None:
                    await conn.execute(sa.insert(role_group_members).values(values))
        except IntegrityError:
            pass  # added concurrently: the member is in the group, which is what was asked

    async def remove_role_group_member(self, group: RoleGroup, member: str) -> None:
        """Remove ``member`` from ``group``; nothing happens if it was not a member."""
        group = RoleGroup(group)
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.delete(role_group_members).where(
                    (role_group_members.c.group_name == group.value)
                    & (role_group_members.c.member == member)
                )
            )

    async def role_group_members(self, group: RoleGroup) -> list[str]:
        """Members of ``group``, sorted."""
        group = RoleGroup(group)
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(role_group_members.c.member)
                .where(role_group_members.c.group_name == group.value)
                .order_by(role_group_members.c.member)
            )
            return [str(member) for member in rows.scalars()]

    async def role_groups_of(self, member: str) -> set[RoleGroup]:
        """The role groups ``member`` belongs to (exact-case match)."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(role_group_members.c.group_name).where(
                    role_group_members.c.member == member
                )
            )
            # A group name unknown to this release (written by a newer one) grants nothing.
            known = {group.value for group in RoleGroup}
            return {RoleGroup(name) for name in rows.scalars() if name in known}

    # --- POP3 settings --------------------------------------------------------------------

    @_reports_unavailable
    async def get_pop_settings(self, server: str, *, effective: bool = False) -> PopSettings:
        """The configured settings (what Set-PopSettings wrote) or, with ``effective``, the ones
        the running service read at its last start; defaults where never set or applied."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(servers.c.name, pop_settings.c.configured, pop_settings.c.effective)
                    .select_from(servers.outerjoin(pop_settings))
                    .where(servers.c.name == server.lower())
                )
            ).first()
        if row is None:
            raise _not_found_server(server)
        return _load_settings(row.effective if effective else row.configured)

    async def set_pop_settings(self, server: str, /, **changes: object) -> PopSettings:
        """Set-PopSettings: validate ``changes`` and write the configured copy only.

        Keys are field names or Exchange parameter names (a key ``server`` is an unknown
        setting, not the server); values are typed, text as :func:`parse_setting` reads it, or
        a :class:`MultiValueEdit` of a list. All changes apply or none. Returns the new
        configured settings; the service picks them up at its next start
        (:meth:`apply_pop_settings`).
        """
        server_name = server.lower()
        async with self._engine.begin() as conn:
            current = await self._locked_settings(conn, server, server_name)
            fqdn = (
                await conn.execute(sa.select(servers.c.fqdn).where(servers.c.name == server_name))
            ).scalar_one()
            updated = _load_settings(current).with_changes(changes, fqdn=fqdn)
            await conn.execute(
                sa.update(pop_settings)
                .where(pop_settings.c.server_name == server_name)
                .values(configured=_settings_json(updated), updated=_now())
            )
        return updated

    async def apply_pop_settings(self, server: str) -> PopSettings:
        """Copy configured to effective, as a service start does; returns the effective copy."""
        server_name = server.lower()
        async with self._engine.begin() as conn:
            configured = _load_settings(await self._locked_settings(conn, server, server_name))
            await conn.execute(
                sa.update(pop_settings)
                .where(pop_settings.c.server_name == server_name)
                .values(effective=_settings_json(configured), updated=_now())
            )
        return configured

    # --- audit ----------------------------------------------------------------------------

    async def audit(
        self, *, actor: str, origin: str, action: str, target: str, result: str, detail: str = ""
    ) -> None:
        """Append one entry to the audit log."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.insert(audit_log).values(
                    at=_now(),
                    actor=actor,
                    origin=origin,
                    action=action,
                    target=target,
                    result=result,
                    detail=detail,
                )
            )

    async def list_audit(
        self,
        *,
        limit: int = 100,
        actions: Collection[str] | None = None,
        actors: Collection[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[AuditEntry]:
        """The newest ``limit`` audit entries, newest first (Search-AdminAuditLog).

        Only entries whose action is one of ``actions`` (-Cmdlets) and whose actor is one of
        ``actors`` (-UserIds), both ignoring case, made from ``start`` to ``end`` (aware
        datetimes, inclusive) when given.
        """
        if limit < 1:
            raise InvalidSetting(f"The audit limit must be at least 1; got {limit}.")
        start, end = _aware(start, "The start date"), _aware(end, "The end date")
        if start is not None and end is not None and start > end:
            raise InvalidSetting(
                f"The start date {start.isoformat()} is after the end date {end.isoformat()}."
            )
        query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        # SQLite's lower() folds ASCII only: non-ASCII names match in their exact case there.
        if actions is not None:
            query = query.where(
                sa.func.lower(audit_log.c.action).in_(sorted({a.lower() for a in actions}))
            )
        if actors is not None:
            query = query.where(
                sa.func.lower(audit_log.c.actor).in_(sorted({a.lower() for a in actors}))
            )
        if start is not None:
            query = query.where(audit_log.c.at >= start)
        if end is not None:
            query = query.where(audit_log.c.at <= end)
        async with self._engine.connect() as conn:
            rows = await conn.execute(query)
            return [
                AuditEntry(
                    id=int(row.id),
                    at=row.at,
                    actor=row.actor,
                    origin=row.origin,
                    action=row.action,
                    target=row.target,
                    result=row.result,
                    detail=row.detail,
                )
                for row in rows
            ]

    # --- directory settings ---------------------------------------------------------------

    async def get_default_domain(self) -> str:
        """The domain of new mailboxes' default addresses (``localhost`` until set)."""
        async with self._engine.connect() as conn:
            return await self._default_domain(conn)

    async def set_default_domain(self, domain: str) -> None:
        """Set the default domain; it must be a DNS name. Existing addresses do not change."""
        domain = validate_domain(domain)
        await self._put_setting(_DEFAULT_DOMAIN_KEY, domain)

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    async def _hash(password: str) -> dict[str, object]:
        """Column values for a new password, computed in a thread (argon2 is CPU-heavy)."""
        if not password:
            raise InvalidSetting("The password must not be empty; choose a real password.")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise InvalidSetting(
                f"The password is {len(password)} characters long; use at most "
                f"{MAX_PASSWORD_LENGTH}."
            )
        password_hash, scram = await asyncio.to_thread(_passwords.hash_password, password)
        return {
            "password_hash": password_hash,
            "scram_salt": scram.salt,
            "scram_iterations": scram.iterations,
            "scram_stored_key": scram.stored_key,
            "scram_server_key": scram.server_key,
        }

    async def _update_mailbox(
        self, name: str, values: Mapping[str, object], conn: AsyncConnection | None = None
    ) -> None:
        if conn is None:
            async with self._engine.begin() as own:
                await self._update_mailbox(name, values, own)
            return
        result = await conn.execute(sa.update(mailboxes).where(_mailbox_key(name)).values(values))
        if result.rowcount == 0:
            raise _not_found_mailbox(name)

    @staticmethod
    async def _require_server(conn: AsyncConnection, server_name: str) -> None:
        found = (
            await conn.execute(sa.select(servers.c.name).where(servers.c.name == server_name))
        ).first()
        if found is None:
            raise _not_found_server(server_name)

    @staticmethod
    async def _require_mailbox_server(conn: AsyncConnection, server_name: str) -> None:
        roles = (
            await conn.execute(sa.select(servers.c.roles).where(servers.c.name == server_name))
        ).scalar_one_or_none()
        if roles is None:
            raise _not_found_server(server_name)
        if Role.MAILBOX not in roles.split(","):
            raise InvalidSetting(
                f"Server {server_name!r} has no Mailbox role and cannot hold mailboxes; "
                "choose a Mailbox server (Get-ExchangeServer lists them)."
            )

    @staticmethod
    async def _least_loaded_mailbox_server(conn: AsyncConnection) -> str | None:
        """The Mailbox server holding the fewest mailboxes (by name on a tie), or None."""
        held = (
            sa.select(mailboxes.c.server_name, sa.func.count().label("held"))
            .group_by(mailboxes.c.server_name)
            .subquery()
        )
        rows = await conn.execute(
            sa.select(servers.c.name, servers.c.roles)
            .outerjoin(held, held.c.server_name == servers.c.name)
            .order_by(sa.func.coalesce(held.c.held, 0), servers.c.name)
        )
        for row in rows:
            if Role.MAILBOX in row.roles.split(","):
                return str(row.name)
        return None

    @staticmethod
    async def _locked_settings(conn: AsyncConnection, server: str, server_name: str) -> str:
        """The configured JSON of a server, locked for update; creates a missing row."""
        await Directory._require_server(conn, server_name)
        configured = (
            await conn.execute(
                sa.select(pop_settings.c.configured)
                .where(pop_settings.c.server_name == server_name)
                .with_for_update()
            )
        ).scalar_one_or_none()
        if configured is None:
            configured = _settings_json(PopSettings())
            await conn.execute(
                sa.insert(pop_settings).values(
                    server_name=server_name, configured=configured, effective=None, updated=_now()
                )
            )
        return str(configured)

    @staticmethod
    async def _default_domain(conn: AsyncConnection) -> str:
        value = (
            await conn.execute(
                sa.select(directory_settings.c.value).where(
                    directory_settings.c.key == _DEFAULT_DOMAIN_KEY
                )
            )
        ).scalar_one_or_none()
        return DEFAULT_DOMAIN if value is None else str(value)

    async def _put_setting(self, key: str, value: str) -> None:
        for attempt in range(2):
            try:
                async with self._engine.begin() as conn:
                    result = await conn.execute(
                        sa.update(directory_settings)
                        .where(directory_settings.c.key == key)
                        .values(value=value)
                    )
                    if result.rowcount == 0:
                        await conn.execute(
                            sa.insert(directory_settings).values(key=key, value=value)
                        )
                return
            except IntegrityError:
                if attempt:  # a concurrent insert won; the retry's update overwrites it
                    raise
