"""The control API's management endpoints, which the Exchange management shell's cmdlets call.

POP3 settings (Get-/Set-PopSettings), mailboxes (New-/Get-/Remove-/Set-Mailbox,
Get-/Set-CASMailbox, New-MailboxImportRequest), role-group members, servers
(Get-ExchangeServer). Who may do what follows exchange-pop3.md sections 3 and 4; every change,
allowed or refused, goes to the audit log, and no password ever does.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, SecretStr
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Message

from popgate.directory import (
    AlreadyExists,
    CasMailboxSettings,
    DirectoryError,
    DirectoryUnavailable,
    InvalidSetting,
    Mailbox,
    MultiValueEdit,
    NotFound,
    PopSettings,
    RoleGroup,
    Server,
    format_setting,
    format_size,
    parse_size,
    settings_without_effect,
)
from popgate.host._api import (
    CONTROL_GROUPS,
    READ_GROUPS,
    ApiError,
    Caller,
    CallerDep,
    ControlContext,
    audit,
    error_responses,
    require_change,
    require_read,
)
from popgate.host._common import (
    API_PREFIX,
    ERROR_ACCESS_DENIED,
    ERROR_ALREADY_EXISTS,
    ERROR_INVALID_PARAMETER,
    ERROR_MEMBER_NOT_IN_GROUP,
    ERROR_NO_SUCH_GROUP,
    ERROR_NO_SUCH_USER,
    ERROR_NOT_FOUND,
    ERROR_SPECIAL_USER,
)
from popgate.host._connectivity import ConnectionType
from popgate.host._connectivity import test_pop_connectivity as run_connectivity_test
from popgate.host._peers import ERROR_SERVER_UNAVAILABLE
from popgate.store import (
    ImportSourceError,
    MaildirStore,
    eml_messages,
    import_messages,
    mbox_messages,
)

__all__ = ["MAX_IMPORT_BYTES", "RECIPIENT_CHANGE", "RECIPIENT_READ", "admin_router"]

logger = logging.getLogger("popgate.host")

T = TypeVar("T")

#: "POP3 settings": the three groups view, View-Only excepted they change (section 4).
POP_READ = READ_GROUPS
POP_CHANGE = CONTROL_GROUPS
#: Recipient Management reads and changes mailboxes ("Recipient provisioning permissions").
RECIPIENT_READ = READ_GROUPS | {RoleGroup.RECIPIENT_MANAGEMENT}
RECIPIENT_CHANGE = frozenset({RoleGroup.ORGANIZATION_MANAGEMENT, RoleGroup.RECIPIENT_MANAGEMENT})
#: Role-group membership grants every right, so only Organization Management hands it out.
ROLE_GROUP_CHANGE = frozenset({RoleGroup.ORGANIZATION_MANAGEMENT})

#: What the audit log and the host log show instead of a password.
NOT_RECORDED = "Password (not recorded)"

#: New-MailboxImportRequest: the largest upload (all its files together), and what it takes.
MAX_IMPORT_BYTES = 1 << 30
IMPORT_SUFFIXES = (".eml", ".mbox")
#: Windows' numbers for an upload over the limit, and for importing on the wrong server.
ERROR_FILE_TOO_LARGE = 223
ERROR_NOT_SUPPORTED = 50
#: The request body the import endpoint parses itself (after the caller's rights are known).
IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            }
        },
    }
}

SettingValue = bool | int | float | str | list[str] | dict[str, str | list[str]] | None


# --- request and response bodies -----------------------------------------------------------


class PopSettingsView(BaseModel):
    """Get-PopSettings: every parameter as text, as configured and as the services use it."""

    server: str
    configured: dict[str, str]
    effective: dict[str, str]


class PopSettingsChanged(PopSettingsView):
    """Set-PopSettings' answer: the settings, and those that apply at the next restart."""

    restart_needed: list[str]
    #: Settings changed here that this server does not use: their role is on other servers.
    without_effect: list[str] = []


class SettingChanges(BaseModel):
    """Parameter names (any case) to values; a list replaces a multi-valued setting and
    ``{"Add": [...], "Remove": [...]}`` edits it."""

    changes: dict[str, SettingValue] = Field(min_length=1)


class CasChanges(BaseModel):
    """Set-CASMailbox parameter names (any case) to values such as ``false`` or ``TextOnly``."""

    changes: dict[str, bool | int | str | None] = Field(min_length=1)


class MailboxView(BaseModel):
    """One mailbox as Get-Mailbox shows it; never its password."""

    name: str
    address: str
    guid: uuid.UUID
    pop_enabled: bool
    server: str | None
    is_administrator: bool
    created: datetime.datetime
    #: ProhibitSendReceiveQuota: ``unlimited`` or a size such as ``500MB``.
    prohibit_send_receive_quota: str


class NewMailbox(BaseModel):
    """New-Mailbox: the address defaults to name@<default domain>, the server to the Mailbox
    server that holds the fewest mailboxes."""

    name: str
    password: SecretStr
    address: str | None = None
    server: str | None = None


class PasswordChange(BaseModel):
    """Set-Mailbox -Password."""

    password: SecretStr


class QuotaChange(BaseModel):
    """Set-Mailbox -ProhibitSendReceiveQuota: a size such as ``500MB``, or ``unlimited``."""

    prohibit_send_receive_quota: str = Field(max_length=64)


class ImportedFile(BaseModel):
    """One uploaded file and how many messages it held."""

    file: str
    messages: int


class ImportResult(BaseModel):
    """New-MailboxImportRequest's outcome: the mailbox, the messages delivered, per file."""

    name: str
    imported: int
    files: list[ImportedFile]


class NewMember(BaseModel):
    """Add-RoleGroupMember -Member: a mailbox name or address."""

    member: str


class ServerView(BaseModel):
    """One server as Get-ExchangeServer shows it."""

    name: str
    fqdn: str
    roles: list[str]
    proxy_host: str
    #: Its host's control API (remote management, the admin center's Servers page).
    control_url: str | None = None


# --- conversions ---------------------------------------------------------------------------


def _mailbox_view(mailbox: Mailbox) -> MailboxView:
    return MailboxView(
        name=mailbox.name,
        address=mailbox.address,
        guid=mailbox.guid,
        pop_enabled=mailbox.pop_enabled,
        server=mailbox.server,
        is_administrator=mailbox.is_administrator,
        created=mailbox.created,
        prohibit_send_receive_quota=format_size(mailbox.prohibit_send_receive_quota),
    )


def _cas_view(mailbox: Mailbox, settings: CasMailboxSettings) -> dict[str, object]:
    """Get-CASMailbox: name, address and each Pop* parameter under its Exchange name, typed."""
    values = settings.to_json(full=True)
    view: dict[str, object] = {"name": mailbox.name, "address": mailbox.address}
    view.update(
        {exchange: values[name] for name, exchange in CasMailboxSettings.EXCHANGE_NAMES.items()}
    )
    return view


def _formatted(settings: PopSettings, fqdn: str) -> dict[str, str]:
    """Every parameter as text; an unset InternalConnectionSettings as its computed default."""
    texts = {}
    for name, exchange in PopSettings.EXCHANGE_NAMES.items():
        value = getattr(settings, name)
        if name == "internal_connection_settings":
            value = settings.internal_connection_settings_for(fqdn)
        texts[exchange] = format_setting(name, value)
    return texts


def _describe(value: object) -> str:
    """A requested value as the audit log shows it, in PowerShell's spelling."""
    if value is None:
        return "$null"
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, dict):
        edits = "; ".join(f"{verb}={_describe(items)}" for verb, items in value.items())
        return f"@{{{edits}}}"
    return str(value)


def _describe_changes(changes: Mapping[str, object]) -> str:
    return "; ".join(f"{name}={_describe(value)}" for name, value in changes.items())


def _setting_value(name: str, value: SettingValue) -> object:
    """The directory's form of one Set-PopSettings value: dicts become edits of a list."""
    if not isinstance(value, dict):
        return value
    verbs: dict[str, tuple[str, ...]] = {}
    for verb, items in value.items():
        if verb.lower() not in ("add", "remove"):
            raise InvalidSetting(
                f"{name}: {verb!r} is neither Add nor Remove; edit a list with "
                "@{Add='value1','value2'; Remove='value3'}."
            )
        verbs[verb.lower()] = (items,) if isinstance(items, str) else tuple(items)
    return MultiValueEdit(add=verbs.get("add", ()), remove=verbs.get("remove", ()))


def _role_group(text: str) -> RoleGroup:
    for group in RoleGroup:
        if group.value.lower() == text.strip().lower():
            return group
    names = ", ".join(group.value for group in RoleGroup)
    raise ApiError(
        404, ERROR_NO_SUCH_GROUP, f"There is no role group {text!r}; the role groups are {names}."
    )


def _api_error(error: DirectoryError) -> ApiError:
    """The HTTP answer to a refusal of the directory."""
    if isinstance(error, NotFound):
        return ApiError(404, ERROR_NOT_FOUND, str(error))
    if isinstance(error, AlreadyExists):
        return ApiError(409, ERROR_ALREADY_EXISTS, str(error))
    if isinstance(error, DirectoryUnavailable):
        # The database is down or locked: nothing wrong with the request; try again later.
        return ApiError(503, ERROR_SERVER_UNAVAILABLE, str(error))
    return ApiError(422, ERROR_INVALID_PARAMETER, str(error))


def _too_large() -> ApiError:
    return ApiError(
        413,
        ERROR_FILE_TOO_LARGE,
        f"The upload is larger than {MAX_IMPORT_BYTES >> 30} GB, the most one import takes; "
        "import the files in several parts.",
    )


def _size_limited(request: Request) -> Request:
    """``request``, refusing (413) a body over MAX_IMPORT_BYTES: at once when its
    Content-Length says so, else as soon as that much has arrived (chunked uploads)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_IMPORT_BYTES:
        raise _too_large()
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > MAX_IMPORT_BYTES:
            raise _too_large()
        return message

    return Request(request.scope, receive)


def _upload_name(upload: UploadFile) -> str:
    """The file's own name, without any folder a client sent along."""
    return PurePosixPath((upload.filename or "").replace("\\", "/")).name


def _save(upload: UploadFile, target: Path) -> None:
    """Copy an upload to ``target`` in 1 MB pieces: the stdlib mbox reader needs a path."""
    target.parent.mkdir()
    upload.file.seek(0)
    with target.open("xb") as stream:
        shutil.copyfileobj(upload.file, stream, 1 << 20)


async def _saved_uploads(request: Request, folder: Path) -> list[tuple[str, Path]]:
    """The files of the form field ``files``, each saved in ``folder`` under its own name."""
    saved: list[tuple[str, Path]] = []
    try:
        async with _size_limited(request).form(max_fields=10) as form:
            uploads = [item for item in form.getlist("files") if isinstance(item, UploadFile)]
            if not uploads:
                raise ApiError(
                    422,
                    ERROR_INVALID_PARAMETER,
                    "Upload .eml or .mbox files as multipart/form-data in the field 'files'.",
                )
            for index, upload in enumerate(uploads):
                name = _upload_name(upload)
                suffix = next((s for s in IMPORT_SUFFIXES if name.lower().endswith(s)), None)
                if suffix is None:
                    raise ApiError(
                        422,
                        ERROR_INVALID_PARAMETER,
                        f"{name or 'A file without a name'} is neither an .eml file (one "
                        "message) nor an .mbox file; only those can be imported.",
                    )
                # Kept under the client's name, so that a complaint about it names it.
                usable = len(name.encode()) <= 200 and "\x00" not in name
                target = folder / str(index) / (name if usable else f"upload{suffix}")
                await asyncio.to_thread(_save, upload, target)
                saved.append((name, target))
    except HTTPException as error:  # Starlette's answer to a malformed multipart body
        raise ApiError(
            400, ERROR_INVALID_PARAMETER, f"The upload is not valid form data: {error.detail}"
        ) from None
    except ClientDisconnect:
        raise ApiError(
            400, ERROR_INVALID_PARAMETER, "The upload ended before it was complete."
        ) from None
    return saved


def _messages_of(saved: list[tuple[str, Path]]) -> list[tuple[str, Iterator[bytes]]]:
    """Each saved upload's messages to read, every file checked before anything is delivered."""
    try:
        return [
            (name, mbox_messages(path) if path.suffix == ".mbox" else eml_messages([path]))
            for name, path in saved
        ]
    except ImportSourceError as error:
        raise ApiError(422, ERROR_INVALID_PARAMETER, str(error)) from None


# --- the endpoints -------------------------------------------------------------------------


class ConnectivityTest(BaseModel):
    """Test-PopConnectivity's parameters (exchange-pop3.md section 5)."""

    client_access_server: str | None = None
    #: -MailboxCredential; without it the test account extest_<server> is used.
    mailbox_user: str | None = None
    mailbox_password: SecretStr | None = None
    connection_type: str = "Ssl"
    port: int | None = None
    light_mode: bool = False
    per_connection_timeout: float = 120
    timeout: float = 180
    trust_any_ssl_certificate: bool = False
    reset_test_account_credentials: bool = False


def admin_router(context: ControlContext) -> APIRouter:
    """The management endpoints over ``context``."""
    router = APIRouter(prefix=API_PREFIX)
    directory = context.directory

    async def changing(
        caller: Caller,
        groups: Collection[RoleGroup],
        action: str,
        target: str,
        detail: str,
        change: Callable[[], Awaitable[T]],
        detail_of: Callable[[T], str] | None = None,
    ) -> T:
        """Run ``change`` for a caller in one of ``groups``, auditing the outcome either way.

        Refusals of the directory become API errors with its message. ``detail_of`` makes the
        detail of the success entry from the result, when only the change knows it (a count).
        """

        def explained(reason: object) -> str:
            return f"{detail} - {reason}" if detail else str(reason)

        await require_change(context, caller, groups, action, target)
        try:
            result = await change()
        except (DirectoryError, ApiError) as error:
            refusal = error if isinstance(error, ApiError) else _api_error(error)
            outcome = "Denied" if refusal.status == 403 else "Refused"
            await audit(context, caller, action, target, outcome, explained(refusal))
            raise refusal from None
        except Exception as error:
            await audit(context, caller, action, target, "Failed", explained(error))
            raise
        if detail_of is not None:
            detail = detail_of(result)
        await audit(context, caller, action, target, "Success", detail)
        logger.info("%s %s by %s from %s: %s", action, target, caller.name, caller.origin, detail)
        return result

    async def mailbox_of(identity: str) -> Mailbox:
        mailbox = await directory.get_mailbox(identity)
        if mailbox is None:
            raise ApiError(
                404,
                ERROR_NO_SUCH_USER,
                f"There is no mailbox {identity!r}; Get-Mailbox lists the mailboxes.",
            )
        return mailbox

    async def require_protected_change(caller: Caller, mailbox: Mailbox) -> None:
        """Only Organization Management may reset the password of, or remove, a mailbox in a
        management role group: a new password would hand its rights to whoever set it (as
        AdminSDHolder protects privileged accounts in Active Directory)."""
        if caller.in_any({RoleGroup.ORGANIZATION_MANAGEMENT}):
            return
        if mailbox.is_administrator or await directory.role_groups_of(mailbox.name):
            raise ApiError(
                403,
                ERROR_ACCESS_DENIED,
                f"Access is denied. {mailbox.name} is a member of a management role group; "
                "only Organization Management may change its password or remove it.",
            )

    # --- POP3 settings --------------------------------------------------------------------

    async def find_server(server: str | None) -> Server:
        """The server named, this host's server by default."""
        name = server or context.home.server_name
        found = await directory.get_server(name)
        if found is None:
            raise NotFound(f"There is no server {name!r}; Get-ExchangeServer lists the servers.")
        return found

    async def pop_settings_view(name: str, fqdn: str) -> PopSettingsView:
        return PopSettingsView(
            server=name,
            configured=_formatted(await directory.get_pop_settings(name), fqdn),
            effective=_formatted(await directory.get_pop_settings(name, effective=True), fqdn),
        )

    @router.get("/pop-settings", responses=error_responses(404))
    async def get_pop_settings(caller: CallerDep, server: str | None = None) -> PopSettingsView:
        """Get-PopSettings [-Server]: configured and effective copies, every parameter."""
        require_read(caller, POP_READ)
        try:
            found = await find_server(server)
            return await pop_settings_view(found.name, found.fqdn)
        except DirectoryError as error:
            raise _api_error(error) from None

    @router.patch("/pop-settings", responses=error_responses(404))
    async def set_pop_settings(
        body: SettingChanges, caller: CallerDep, server: str | None = None
    ) -> PopSettingsChanged:
        """Set-PopSettings: all changes or none; they apply when the services restart."""
        target = server or context.home.server_name
        detail = _describe_changes(body.changes)

        async def change() -> PopSettingsChanged:
            found = await find_server(target)
            changes = {key: _setting_value(key, value) for key, value in body.changes.items()}
            await directory.set_pop_settings(found.name, **changes)
            view = await pop_settings_view(found.name, found.fqdn)
            pending = [key for key, text in view.configured.items() if view.effective[key] != text]
            return PopSettingsChanged(
                **view.model_dump(),
                restart_needed=pending,
                without_effect=settings_without_effect(changes, found.roles),
            )

        return await changing(caller, POP_CHANGE, "Set-PopSettings", target, detail, change)

    # --- mailboxes ------------------------------------------------------------------------

    @router.get("/mailboxes")
    async def list_mailboxes(caller: CallerDep, filter: str | None = None) -> list[MailboxView]:
        """Get-Mailbox [pattern]: ``*`` and ``?`` match name or address, ignoring case."""
        require_read(caller, RECIPIENT_READ)
        return [_mailbox_view(mailbox) for mailbox in await directory.list_mailboxes(filter)]

    @router.get("/mailboxes/{identity}", responses=error_responses(404))
    async def get_mailbox(identity: str, caller: CallerDep) -> MailboxView:
        """Get-Mailbox -Identity: by name or address."""
        require_read(caller, RECIPIENT_READ)
        return _mailbox_view(await mailbox_of(identity))

    @router.post("/mailboxes", status_code=201, responses=error_responses(404, 409))
    async def new_mailbox(body: NewMailbox, caller: CallerDep) -> MailboxView:
        """New-Mailbox, with its (empty) maildrop when this server holds it."""
        server = body.server

        def detail_of(server: str | None) -> str:
            given = {"Name": body.name, "PrimarySmtpAddress": body.address, "Server": server}
            described = _describe_changes({key: value for key, value in given.items() if value})
            return f"{described}; {NOT_RECORDED}"

        async def change() -> Mailbox:
            mailbox = await directory.add_mailbox(
                body.name,
                address=body.address,
                password=body.password.get_secret_value(),
                server=server,
            )
            if mailbox.server == context.home.server_name.lower():
                await MaildirStore(context.home.mail_root).create_mailbox(mailbox.guid)
            return mailbox

        mailbox = await changing(
            caller,
            RECIPIENT_CHANGE,
            "New-Mailbox",
            body.name,
            detail_of(server),
            change,
            # The server the mailbox went to, whether asked for or chosen by placement.
            lambda mailbox: detail_of(mailbox.server),
        )
        return _mailbox_view(mailbox)

    @router.delete("/mailboxes/{identity}", responses=error_responses(404, 409))
    async def remove_mailbox(identity: str, caller: CallerDep) -> MailboxView:
        """Remove-Mailbox: the mailbox, its role-group memberships and its mail here."""

        async def change() -> Mailbox:
            mailbox = await mailbox_of(identity)
            if mailbox.is_administrator:
                raise ApiError(
                    409, ERROR_SPECIAL_USER, "The Administrator mailbox cannot be removed."
                )
            await require_protected_change(caller, mailbox)
            removed = await directory.remove_mailbox(mailbox.name)
            await MaildirStore(context.home.mail_root).delete_mailbox(removed.guid)
            return removed

        removed = await changing(caller, RECIPIENT_CHANGE, "Remove-Mailbox", identity, "", change)
        return _mailbox_view(removed)

    @router.put("/mailboxes/{identity}/password", responses=error_responses(404))
    async def set_mailbox_password(
        identity: str, body: PasswordChange, caller: CallerDep
    ) -> MailboxView:
        """Set-Mailbox -Password."""

        async def change() -> Mailbox:
            mailbox = await mailbox_of(identity)
            await require_protected_change(caller, mailbox)
            await directory.set_password(mailbox.name, body.password.get_secret_value())
            return mailbox

        mailbox = await changing(
            caller, RECIPIENT_CHANGE, "Set-Mailbox", identity, NOT_RECORDED, change
        )
        return _mailbox_view(mailbox)

    @router.put("/mailboxes/{identity}/quota", responses=error_responses(404))
    async def set_mailbox_quota(identity: str, body: QuotaChange, caller: CallerDep) -> MailboxView:
        """Set-Mailbox -ProhibitSendReceiveQuota: mail delivery refuses (552 5.2.2) a message
        that would take the mailbox past it."""
        try:
            quota = parse_size("ProhibitSendReceiveQuota", body.prohibit_send_receive_quota)
        except InvalidSetting as error:
            raise ApiError(422, ERROR_INVALID_PARAMETER, str(error)) from None
        detail = f"ProhibitSendReceiveQuota={format_size(quota)}"

        async def change() -> Mailbox:
            mailbox = await mailbox_of(identity)
            await directory.set_quota(mailbox.name, quota)
            return await mailbox_of(mailbox.name)

        mailbox = await changing(caller, RECIPIENT_CHANGE, "Set-Mailbox", identity, detail, change)
        return _mailbox_view(mailbox)

    @router.get("/mailboxes/{identity}/cas", responses=error_responses(404))
    async def get_cas_mailbox(identity: str, caller: CallerDep) -> dict[str, object]:
        """Get-CASMailbox: PopEnabled and the other Pop* settings under Exchange's names."""
        require_read(caller, RECIPIENT_READ)
        mailbox = await mailbox_of(identity)
        try:
            return _cas_view(mailbox, await directory.get_cas_settings(mailbox.name))
        except DirectoryError as error:
            raise _api_error(error) from None

    @router.patch("/mailboxes/{identity}/cas", responses=error_responses(404))
    async def set_cas_mailbox(
        identity: str, body: CasChanges, caller: CallerDep
    ) -> dict[str, object]:
        """Set-CASMailbox: all changes or none; PopEnabled needs both POP3 services restarted."""

        async def change() -> dict[str, object]:
            mailbox = await mailbox_of(identity)
            settings = await directory.set_cas_settings(mailbox.name, **body.changes)
            return _cas_view(mailbox, settings)

        detail = _describe_changes(body.changes)
        return await changing(caller, RECIPIENT_CHANGE, "Set-CASMailbox", identity, detail, change)

    @router.post(
        "/mailboxes/{identity}/import",
        openapi_extra=IMPORT_BODY,
        responses=error_responses(400, 404, 409, 413),
    )
    async def import_into_mailbox(
        identity: str, request: Request, caller: CallerDep
    ) -> ImportResult:
        """New-MailboxImportRequest: deliver uploaded .eml and .mbox files (multipart form
        data, field ``files``) to a mailbox whose mail is on this server.

        The body is read only once the caller may change mailboxes, and refused over
        MAX_IMPORT_BYTES; messages are delivered as ``popgate mailbox import`` does.
        """

        async def change() -> ImportResult:
            mailbox = await mailbox_of(identity)
            here = context.home.server_name.lower()
            if mailbox.server != here:
                raise ApiError(
                    409,
                    ERROR_NOT_SUPPORTED,
                    f"The mail of {mailbox.name} is on server {mailbox.server or '(none)'}, "
                    f"not on this server ({here}); import it through that server's host.",
                )
            store = MaildirStore(context.home.mail_root)
            # Beside the mail rather than in /tmp, which is often in memory (tmpfs).
            with tempfile.TemporaryDirectory(prefix="import-", dir=context.home.root) as folder:
                sources = _messages_of(await _saved_uploads(request, Path(folder)))
                await store.create_mailbox(mailbox.guid)
                files = [
                    ImportedFile(
                        file=name, messages=await import_messages(store, mailbox.guid, messages)
                    )
                    for name, messages in sources
                ]
            total = sum(file.messages for file in files)
            return ImportResult(name=mailbox.name, imported=total, files=files)

        def imported(result: ImportResult) -> str:
            names = ",".join(file.file for file in result.files)
            return f"Count={result.imported}; FilePath={names}"

        return await changing(
            caller, RECIPIENT_CHANGE, "New-MailboxImportRequest", identity, "", change, imported
        )

    # --- role groups and servers ----------------------------------------------------------

    @router.get("/role-groups/{group}/members", responses=error_responses(404))
    async def role_group_members(group: str, caller: CallerDep) -> list[str]:
        """Get-RoleGroupMember: the members' names, sorted."""
        require_read(caller, POP_READ)
        return await directory.role_group_members(_role_group(group))

    @router.post("/role-groups/{group}/members", responses=error_responses(404, 409))
    async def add_role_group_member(group: str, body: NewMember, caller: CallerDep) -> list[str]:
        """Add-RoleGroupMember: a mailbox, by name or address; the members after."""

        async def change() -> list[str]:
            role_group = _role_group(group)
            mailbox = await mailbox_of(body.member)
            await directory.add_role_group_member(role_group, mailbox.name)
            return await directory.role_group_members(role_group)

        return await changing(
            caller,
            ROLE_GROUP_CHANGE,
            "Add-RoleGroupMember",
            group,
            f"Member={body.member}",
            change,
        )

    @router.delete("/role-groups/{group}/members/{member}", responses=error_responses(404))
    async def remove_role_group_member(group: str, member: str, caller: CallerDep) -> list[str]:
        """Remove-RoleGroupMember: by mailbox name or address; the members after."""

        async def change() -> list[str]:
            role_group = _role_group(group)
            mailbox = await directory.get_mailbox(member)
            # A member whose mailbox is gone can still be removed by its recorded name.
            name = member if mailbox is None else mailbox.name
            if name not in await directory.role_group_members(role_group):
                raise ApiError(
                    404,
                    ERROR_MEMBER_NOT_IN_GROUP,
                    f"{member!r} is not a member of the role group {role_group.value!r}.",
                )
            await directory.remove_role_group_member(role_group, name)
            return await directory.role_group_members(role_group)

        return await changing(
            caller,
            ROLE_GROUP_CHANGE,
            "Remove-RoleGroupMember",
            group,
            f"Member={member}",
            change,
        )

    @router.get("/servers")
    async def list_servers(caller: CallerDep) -> list[ServerView]:
        """Get-ExchangeServer: every server of the organization and its roles."""
        require_read(caller, POP_READ)
        return [
            ServerView(
                name=server.name,
                fqdn=server.fqdn,
                roles=sorted(role.value for role in server.roles),
                proxy_host=server.proxy_host,
                control_url=server.control_url,
            )
            for server in await directory.list_servers()
        ]

    @router.post("/test-pop-connectivity")
    async def test_pop_connectivity(body: ConnectivityTest, caller: CallerDep) -> dict[str, object]:
        """Test-PopConnectivity: a real logon (and test-message round trip unless light)."""
        require_read(caller, POP_READ)  # the "Test POP3 settings" role groups
        try:
            connection_type = ConnectionType(body.connection_type)
        except ValueError:
            choices = ", ".join(kind.value for kind in ConnectionType)
            raise ApiError(
                422,
                ERROR_INVALID_PARAMETER,
                f"ConnectionType {body.connection_type!r} is not one of {choices}.",
            ) from None
        credential = None
        if body.mailbox_user is not None:
            secret = body.mailbox_password.get_secret_value() if body.mailbox_password else ""
            credential = (body.mailbox_user, secret)
        try:
            result = await run_connectivity_test(
                context.home,
                directory,
                client_access_server=body.client_access_server,
                mailbox_credential=credential,
                connection_type=connection_type,
                port=body.port,
                light_mode=body.light_mode,
                per_connection_timeout=body.per_connection_timeout,
                timeout=body.timeout,
                trust_any_ssl_certificate=body.trust_any_ssl_certificate,
                reset_test_account_credentials=body.reset_test_account_credentials,
            )
        except ValueError as error:
            raise ApiError(422, ERROR_INVALID_PARAMETER, str(error)) from None
        await audit(
            context, caller, "Test-PopConnectivity", result.cas_server, result.result,
            f"{result.mailbox}: {result.error}" if result.error else result.mailbox,
        )  # fmt: skip
        return {**result.exchange_fields(), "Mailbox": result.mailbox}

    return router
