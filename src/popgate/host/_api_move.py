"""Mailbox moves over the control API: the cmdlets' endpoints and the source's maildrop.

``/move-requests`` are New-, Get-, Resume- and Remove-MoveRequest, for Recipient Management
and Organization Management, on any computer: a call that the target's host must carry out
is forwarded to it (``_api.elsewhere``), which checks the caller's rights and audits it.
``/maildrops/{guid}`` is what a source host serves to the target of a move, and only to the
target's host, logged in as that server (``_peers``); see ``_move`` for the steps.
"""

from __future__ import annotations

import datetime
import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from popgate.directory import AlreadyExists, DirectoryError, MoveRequest, MoveStatus, NotFound
from popgate.host._api import (
    ApiError,
    Caller,
    CallerDep,
    ControlContext,
    audit,
    elsewhere,
    error_responses,
    on_behalf,
    require_change,
    require_read,
)
from popgate.host._api_admin import RECIPIENT_CHANGE, RECIPIENT_READ
from popgate.host._common import (
    API_PREFIX,
    ERROR_ACCESS_DENIED,
    ERROR_ALREADY_EXISTS,
    ERROR_INVALID_PARAMETER,
    ERROR_NO_SUCH_USER,
    ERROR_NOT_FOUND,
)
from popgate.host._peers import PeerError
from popgate.store import MailboxLocked, MailboxNotFound, StoreError
from popgate.store._move import ManifestEntry

__all__ = ["MoveRequestView", "move_router"]

#: Windows' ERROR_BUSY: the maildrop is in a POP3 session; the move waits for its end.
ERROR_BUSY = 170


class NewMoveRequest(BaseModel):
    """New-MoveRequest -Identity NAME -TargetServer SERVER."""

    identity: str
    target_server: str


class MoveRequestView(BaseModel):
    """One move as Get-MoveRequest shows it."""

    identity: str
    mailbox_guid: uuid.UUID
    status: MoveStatus
    source_server: str
    target_server: str
    detail: str
    requested_by: str
    created: datetime.datetime
    updated: datetime.datetime


class Manifest(BaseModel):
    """A maildrop's message files, for the target of a move."""

    files: list[dict[str, str | int]]


def _view(request: MoveRequest) -> MoveRequestView:
    return MoveRequestView(
        identity=request.mailbox,
        mailbox_guid=request.mailbox_guid,
        status=request.status,
        source_server=request.source_server,
        target_server=request.target_server,
        detail=request.detail,
        requested_by=request.requested_by,
        created=request.created,
        updated=request.updated,
    )


def _manifest(entries: list[ManifestEntry]) -> Manifest:
    return Manifest(files=[{"path": entry.path, "size": entry.size} for entry in entries])


def move_router(context: ControlContext) -> APIRouter:
    """The move endpoints over ``context``."""
    router = APIRouter(prefix=API_PREFIX)
    directory = context.directory
    mover = context.mover

    def here() -> str:
        return context.home.server_name.lower()

    async def move_of(identity: str, changing: tuple[Caller, str] | None = None) -> MoveRequest:
        """The mailbox's move; for a change (caller, action), a caller without the right is
        refused before told whether the move exists (the target's host checks it again)."""
        mailbox = await directory.get_mailbox(identity)
        request = None if mailbox is None else await directory.get_move_request(mailbox.guid)
        if request is None:
            if changing is not None:
                caller, action = changing
                await require_change(context, caller, RECIPIENT_CHANGE, action, identity)
            raise ApiError(
                404,
                ERROR_NO_SUCH_USER if mailbox is None else ERROR_NOT_FOUND,
                f"There is no move request for {identity!r}; Get-MoveRequest lists them.",
            )
        return request

    async def kick(request: MoveRequest, caller: Caller) -> str:
        """Have the target's host begin; why it could not (it resumes at its next start)."""
        if request.target_server == here():
            mover.start(request.mailbox_guid)
            return ""
        acting_path = f"{API_PREFIX}/move-requests/{request.mailbox}/resume"
        try:
            answer = await context.peers.call(
                request.target_server, on_behalf(caller), "POST", acting_path
            )
        except PeerError as error:
            return error.message
        return "" if answer.status_code < 400 else answer.text[:300]

    @router.post(
        "/move-requests",
        status_code=201,
        tags=["management"],
        responses=error_responses(404, 409),
    )
    async def new_move_request(body: NewMoveRequest, caller: CallerDep) -> MoveRequestView:
        """New-MoveRequest: copy the mailbox to another Mailbox server, then switch to it."""
        action, target = "New-MoveRequest", body.identity
        await require_change(context, caller, RECIPIENT_CHANGE, action, target)
        try:
            request = await directory.add_move_request(
                body.identity, body.target_server, caller.name
            )
        except DirectoryError as error:
            status, code = {
                NotFound: (404, ERROR_NOT_FOUND),
                AlreadyExists: (409, ERROR_ALREADY_EXISTS),
            }.get(type(error), (422, ERROR_INVALID_PARAMETER))
            await audit(context, caller, action, target, "Refused", str(error))
            raise ApiError(status, code, str(error)) from None
        detail = f"TargetServer {request.target_server}; from {request.source_server}"
        await audit(context, caller, action, request.mailbox, "Success", detail)
        problem = await kick(request, caller)
        if problem:
            await directory.set_move_status(
                request.mailbox_guid,
                MoveStatus.QUEUED,
                f"Queued; the host of {request.target_server} did not take it yet: {problem}",
            )
        return _view(await move_of(request.mailbox))

    @router.get("/move-requests", tags=["management"])
    async def list_move_requests(caller: CallerDep) -> list[MoveRequestView]:
        """Get-MoveRequest: every move, by mailbox name."""
        require_read(caller, RECIPIENT_READ)
        return [_view(request) for request in await directory.list_move_requests()]

    @router.get("/move-requests/{identity}", tags=["management"], responses=error_responses(404))
    async def get_move_request(identity: str, caller: CallerDep) -> MoveRequestView:
        """Get-MoveRequest -Identity: one mailbox's move."""
        require_read(caller, RECIPIENT_READ)
        return _view(await move_of(identity))

    @router.post(
        "/move-requests/{identity}/resume",
        status_code=202,
        response_model=MoveRequestView,
        tags=["management"],
        responses=error_responses(404, 503),
    )
    async def resume_move_request(identity: str, request: Request, caller: CallerDep) -> Response:
        """Resume-MoveRequest: the target's host takes the move up again where it stands."""
        move = await move_of(identity, (caller, "Resume-MoveRequest"))
        if remote := await elsewhere(context, request, caller, move.target_server):
            return remote
        await require_change(context, caller, RECIPIENT_CHANGE, "Resume-MoveRequest", identity)
        if move.status is MoveStatus.FAILED:
            await directory.set_move_status(move.mailbox_guid, MoveStatus.QUEUED, "Resumed.")
        mover.start(move.mailbox_guid)
        await audit(context, caller, "Resume-MoveRequest", move.mailbox, "Success", move.status)
        body = _view(await move_of(identity)).model_dump(mode="json")
        return JSONResponse(body, status_code=202)

    @router.delete(
        "/move-requests/{identity}",
        response_model=MoveRequestView,
        tags=["management"],
        responses=error_responses(404, 409, 503),
    )
    async def remove_move_request(identity: str, request: Request, caller: CallerDep) -> Response:
        """Remove-MoveRequest: forget a finished move, or cancel one before its switch."""
        move = await move_of(identity, (caller, "Remove-MoveRequest"))
        if remote := await elsewhere(context, request, caller, move.target_server):
            return remote
        action = "Remove-MoveRequest"
        await require_change(context, caller, RECIPIENT_CHANGE, action, move.mailbox)
        if move.status is MoveStatus.COMPLETION_IN_PROGRESS:
            reason = (
                f"{move.target_server} already serves the mailbox; the move completes by "
                "itself (Get-MoveRequest shows it) and cannot be cancelled now."
            )
            await audit(context, caller, action, move.mailbox, "Refused", reason)
            raise ApiError(409, ERROR_BUSY, reason)
        if move.status is not MoveStatus.COMPLETED and not await mover.cancel(move):
            reason = (
                f"{move.target_server} began serving the mailbox meanwhile; the move "
                "completes by itself and cannot be cancelled now."
            )
            await audit(context, caller, action, move.mailbox, "Refused", reason)
            raise ApiError(409, ERROR_BUSY, reason)
        await directory.remove_move_request(move.mailbox_guid)
        await audit(context, caller, action, move.mailbox, "Success", f"was {move.status}")
        return JSONResponse(_view(move).model_dump(mode="json"))

    # -- the source's maildrop, for the target's host only --------------------------------

    async def for_the_target(guid: uuid.UUID, caller: CallerDep) -> uuid.UUID:
        move = await directory.get_move_request(guid)
        if (
            caller.peer_server is None
            or move is None
            or move.source_server != here()
            or move.target_server != caller.peer_server
        ):
            raise ApiError(403, ERROR_ACCESS_DENIED, "Access is denied.")
        return guid

    # Only the target server's host may read or freeze this computer's copy.
    only_the_target = [Depends(for_the_target)]
    source = mover.source

    async def held_here(guid: uuid.UUID) -> bool:
        mailbox = await directory.get_mailbox_by_guid(guid)
        return mailbox is not None and mailbox.server == here()

    def removed() -> ApiError:
        return ApiError(404, ERROR_NOT_FOUND, "The copy of the mailbox here is removed.")

    @router.get("/maildrops/{guid}/manifest", include_in_schema=False, dependencies=only_the_target)
    async def maildrop_manifest(guid: uuid.UUID) -> Manifest:
        try:
            return _manifest(await source.manifest(guid, held_here=await held_here(guid)))
        except MailboxNotFound:
            raise removed() from None

    @router.get("/maildrops/{guid}/index", include_in_schema=False, dependencies=only_the_target)
    async def maildrop_index(guid: uuid.UUID) -> Response:
        index = await source.index(guid)
        if index is None:
            raise ApiError(404, ERROR_NOT_FOUND, "The maildrop has no index.")
        return Response(index, media_type="application/octet-stream")

    @router.get(
        "/maildrops/{guid}/files/{path:path}", include_in_schema=False, dependencies=only_the_target
    )
    async def maildrop_file(guid: uuid.UUID, path: str) -> Response:
        try:
            content = await source.read(guid, path)
        except ValueError as error:
            raise ApiError(422, ERROR_INVALID_PARAMETER, str(error)) from None
        except FileNotFoundError:
            raise ApiError(404, ERROR_NOT_FOUND, f"{path} is gone.") from None
        return Response(content, media_type="application/octet-stream")

    @router.post("/maildrops/{guid}/freeze", include_in_schema=False, dependencies=only_the_target)
    async def maildrop_freeze(guid: uuid.UUID) -> Manifest:
        try:
            return _manifest(await source.freeze(guid, held_here=await held_here(guid)))
        except MailboxNotFound:
            raise removed() from None
        except MailboxLocked:
            raise ApiError(409, ERROR_BUSY, "A POP3 session holds the mailbox.") from None
        except StoreError as error:
            raise ApiError(503, ERROR_BUSY, str(error)) from None

    @router.delete(
        "/maildrops/{guid}/freeze",
        status_code=204,
        include_in_schema=False,
        dependencies=only_the_target,
    )
    async def maildrop_thaw(guid: uuid.UUID) -> None:
        source.thaw(guid)

    @router.delete(
        "/maildrops/{guid}", status_code=204, include_in_schema=False, dependencies=only_the_target
    )
    async def maildrop_remove(guid: uuid.UUID) -> None:
        mailbox = await directory.get_mailbox_by_guid(guid)
        if mailbox is not None and mailbox.server == here():
            raise ApiError(409, ERROR_BUSY, "This server still holds the mailbox.")
        await source.remove(guid)

    return router
