"""MSExchangePOP3BE, the Microsoft Exchange POP3 Backend service (Mailbox role).

It listens on ProxyTargetPort (TLS) and on a Unix socket for sessions proxied by front ends,
opens the maildrop under an exclusive lock and serves it. A front end authenticates as a
trusted server with SASL PLAIN: authorization identity = the mailbox, authentication
identity = ``frontend/<server name>``, password = that server's proxy secret. Before AUTH it
may send ``XCLIENT ADDR=<ip> PORT=<port> SESSION=<id>``; the attributes are used for logs only
once the AUTH proves the peer is a trusted front end. Direct logins by mailbox users are off
unless the ``AllowDirectBackendLogin`` setting is on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from popgate.directory import Directory, Mailbox, PopSettings, Server, SortOrder
from popgate.net import Exchange, SessionTimers
from popgate.protocol import (
    Auth,
    Capa,
    Challenge,
    Command,
    Dele,
    Err,
    List,
    MessageBody,
    MultiLine,
    Noop,
    Ok,
    Pass,
    Quit,
    Reply,
    ResponseCode,
    Retr,
    Rset,
    SaslCancel,
    SaslResponse,
    ServerConnection,
    Stat,
    State,
    Stls,
    Top,
    Uidl,
    Utf8,
    Xclient,
    capabilities,
)
from popgate.services._login import LoginSession
from popgate.services._metrics import ServiceMetrics
from popgate.services._protocol_log import ProtocolLog
from popgate.store import (
    MailboxLocked,
    MailboxNotFound,
    MailboxSession,
    MailStore,
    MessageGone,
    MessageInfo,
)

__all__ = [
    "FRONTEND_PRINCIPAL_PREFIX",
    "IDLE_TIMEOUT_ATTRIBUTE",
    "MAX_COMMAND_SIZE_ATTRIBUTE",
    "BackendConfig",
    "BackendSession",
]

#: XCLIENT attributes with the front end's MaxCommandSize and AuthenticatedConnectionTimeout
#: (seconds): Client Access settings, which apply to the proxied session when roles are split.
MAX_COMMAND_SIZE_ATTRIBUTE = "MAXCMD"
IDLE_TIMEOUT_ATTRIBUTE = "IDLE"
MAX_COMMAND_SIZE_RANGE = range(40, 1025)
IDLE_TIMEOUT_RANGE = range(30, 86_401)

logger = logging.getLogger("popgate.backend")

#: Authentication identities of trusted front ends start with this; mailbox names never
#: contain "/", so the two cannot collide.
FRONTEND_PRINCIPAL_PREFIX = "frontend/"

#: Longest line before login: Exchange's upper bound for MaxCommandSize.
INTERNAL_COMMAND_SIZE = 1024
SIGN_OFF = "Microsoft Exchange Server POP3 server signing off."
NO_SUCH_MESSAGE = "No such message."
#: Lines of a login attempt: the protocol log settles whose session this is after them.
LOGIN_LINES = (Pass, Auth, SaslResponse, SaslCancel)


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendConfig:
    """What every backend session shares: the directory, the store and effective settings."""

    directory: Directory
    store: MailStore
    server: Server
    settings: PopSettings
    metrics: ServiceMetrics
    #: This process's protocol log; None when ProtocolLogEnabled is off.
    protocol_log: ProtocolLog | None = None


class BackendSession(LoginSession):
    """One session on MSExchangePOP3BE."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        config: BackendConfig,
        *,
        tls_active: bool,
    ) -> None:
        settings = config.settings
        super().__init__(
            reader,
            writer,
            # MaxCommandSize is the Client Access server's setting (Exchange): before login the
            # peer is usually a front end, whose XCLIENT and AUTH lines may be longer than a
            # small client limit, so the limit applies from TRANSACTION on.
            ServerConnection(max_command_size=INTERNAL_COMMAND_SIZE, tls_active=tls_active),
            SessionTimers(
                pre_authenticated=settings.pre_authenticated_connection_timeout.total_seconds(),
                authenticated=settings.authenticated_connection_timeout.total_seconds(),
            ),
        )
        self.config = config
        self.directory = config.directory
        self.metrics = config.metrics
        self.direct_logins = settings.allow_direct_backend_login
        self.client_attributes: dict[str, str] = {}
        #: The trusted front end (its server name) that logged this session on, once it has.
        self.frontend: str | None = None
        self.start_protocol_log(config.protocol_log)
        if self.protocol_log is not None:
            # Rows wait until a front end's AUTH shows whose session this is (see on_exchange).
            self.protocol_log.hold()
        self.mailbox: Mailbox | None = None
        self.maildrop: MailboxSession | None = None
        self.messages: Sequence[MessageInfo] = ()
        self.deleted: set[int] = set()

    def greeting(self) -> Ok:
        """Exchange's banner."""
        return Ok(self.config.settings.banner)

    async def handle(self, command: Command) -> Reply:
        """Answer one command; the engine has already checked that it is valid now."""
        if (login_reply := await self.handle_login(command)) is not None:
            return login_reply
        match command:
            case Capa():
                return MultiLine(status=Ok("Capability list follows"), lines=self._capabilities())
            case Noop():
                return Ok()
            case Utf8():
                return Ok("UTF8 enabled")
            case Quit():
                return await self._quit()
            case Xclient(attributes=attributes):
                self.client_attributes = dict(attributes)
                return Ok()
            case Stls():
                return Err("STLS is not offered by the POP3 Backend service.")
            case Stat():
                count, size = self._totals()
                return Ok(f"{count} {size}")
            case List(msg=None):
                lines = tuple(f"{n} {info.size}" for n, info in self._live())
                return MultiLine(status=Ok(f"{len(lines)} messages"), lines=lines)
            case List(msg=int(number)):
                info = self._message(number)
                return Ok(f"{number} {info.size}") if info else Err(NO_SUCH_MESSAGE)
            case Uidl(msg=None):
                lines = tuple(f"{n} {info.uid}" for n, info in self._live())
                return MultiLine(status=Ok(), lines=lines)
            case Uidl(msg=int(number)):
                info = self._message(number)
                return Ok(f"{number} {info.uid}") if info else Err(NO_SUCH_MESSAGE)
            case Retr(msg=number):
                info = self._message(number)
                if info is None:
                    return Err(NO_SUCH_MESSAGE)
                try:
                    content = await self._maildrop().read(info.uid)
                except MessageGone:
                    return self._message_gone(number)
                self.metrics.retrieved(len(content))
                return MessageBody(
                    status=Ok(f"{info.size} octets"), content=content, crlf_form=True
                )
            case Top(msg=number, lines=body_lines):
                info = self._message(number)
                if info is None:
                    return Err(NO_SUCH_MESSAGE)
                try:
                    content = await self._maildrop().read_top(info.uid, body_lines)
                except MessageGone:
                    return self._message_gone(number)
                self.metrics.retrieved(len(content))
                return MessageBody(status=Ok(), content=content, crlf_form=True)
            case Dele(msg=number):
                if self._message(number) is None:
                    return Err(NO_SUCH_MESSAGE)
                self.deleted.add(number)
                return Ok(f"Message {number} deleted.")
            case Rset():
                self.deleted.clear()
                count, size = self._totals()
                return Ok(f"Maildrop has {count} messages ({size} octets).")
        return Err("Command is not valid in this state.")

    def on_exchange(self, exchange: Exchange) -> None:
        """Log the row; after a login attempt, write held rows under the right session id.

        XCLIENT's attributes are believed only once AUTH proves a trusted front end: then the
        rows carry the front end's session id and the client's address, so ``grep ID`` finds
        the session in both services' logs; otherwise this session's own id and peer.
        """
        super().on_exchange(exchange)
        log = self.protocol_log
        if log is None or not isinstance(exchange.command, LOGIN_LINES):
            return
        if isinstance(exchange.reply, Challenge):
            return
        if self.frontend is None:
            log.release()
            return
        attributes = self.client_attributes
        client = None
        if address := attributes.get("ADDR"):
            host = f"[{address}]" if ":" in address else address
            client = f"{host}:{attributes['PORT']}" if "PORT" in attributes else host
        log.release(session_id=attributes.get("SESSION"), client_address=client)

    async def finish(self, *, quit_received: bool) -> None:
        """A session that did not QUIT releases the maildrop and deletes nothing."""
        if self.maildrop is not None:
            maildrop, self.maildrop = self.maildrop, None
            await maildrop.close()
            if not quit_received and self.deleted:
                self.log.info(
                    "session %s ended without QUIT; %d deletions not applied",
                    self.session_id,
                    len(self.deleted),
                )

    # -- AUTHORIZATION -------------------------------------------------------------------

    def mechanisms(self) -> list[str]:
        """PLAIN for front ends; LOGIN and SCRAM-SHA-256 too when users may log in directly."""
        return ["PLAIN", "LOGIN", "SCRAM-SHA-256"] if self.direct_logins else ["PLAIN"]

    def _capabilities(self) -> tuple[str, ...]:
        return capabilities(
            stls=False,
            user=self.direct_logins,
            sasl=self.mechanisms(),
            implementation="popgate MSExchangePOP3BE",
        )

    def _direct_logins_disabled(self) -> Err:
        return Err(
            "Direct logins to the POP3 Backend service are disabled; connect to the POP3 "
            "service (MSExchangePOP3) instead.",
            ResponseCode.SYS_PERM,
        )

    def user_refusal(self) -> Err | None:
        """USER is for direct logins only."""
        return None if self.direct_logins else self._direct_logins_disabled()

    def unsupported_mechanism(self, name: str) -> Err:
        """LOGIN and SCRAM-SHA-256 exist here only for direct logins."""
        if name in ("LOGIN", "SCRAM-SHA-256"):
            return self._direct_logins_disabled()
        return super().unsupported_mechanism(name)

    async def password_login(self, authcid: str, authzid: str, password: str) -> Reply:
        """A trusted front end (``frontend/<server>``) or, when allowed, a mailbox user."""
        if not authcid.startswith(FRONTEND_PRINCIPAL_PREFIX):
            if not self.direct_logins:
                return self._direct_logins_disabled()
            return await super().password_login(authcid, authzid, password)
        self.login_mechanism = "PROXY"
        frontend = authcid.removeprefix(FRONTEND_PRINCIPAL_PREFIX)
        if not await self.directory.verify_proxy_secret(frontend, password):
            return await self.logon_failure(authcid, "bad proxy secret")
        self.frontend = frontend
        self.note(f"ProxiedBy={frontend};BackendSession={self.session_id}")
        mailbox = await self.directory.get_mailbox(authzid) if authzid else None
        if mailbox is None:
            return await self.logon_failure(authcid, f"unknown mailbox {authzid[:64]!r}")
        client = self.client_attributes.get("ADDR", "?")
        frontend_session = self.client_attributes.get("SESSION", "?")
        self.note_user(mailbox.name)
        self.log.info(
            "session %s: front end %s proxies %s for client %s (front-end session %s)",
            self.session_id,
            frontend,
            mailbox.name,
            client,
            frontend_session,
            extra={
                "event": "proxy_login",
                "user": mailbox.name,
                "client": client,
                "frontend_session": frontend_session,
            },
        )
        return await self.authorize(mailbox)

    def _frontend_setting(self, attribute: str, own: int, valid: range) -> int:
        """A Client Access setting the trusted front end sent in XCLIENT, else our own."""
        sent = self.client_attributes.get(attribute, "")
        if self.frontend is None or not sent.isdigit() or int(sent) not in valid:
            return own
        return int(sent)

    def _moved(self) -> Reply:
        self.note("MailboxMoved")
        return Err(
            "The mailbox has just moved to another server; log in again.", ResponseCode.SYS_TEMP
        )

    async def authenticated(self, mailbox: Mailbox) -> Reply:
        """Open the maildrop under its lock."""
        if mailbox.server is not None and mailbox.server != self.config.server.name:
            return Err(
                f"This mailbox is held by server {mailbox.server}, not this one.",
                ResponseCode.SYS_PERM,
            )
        store = self.config.store
        try:
            try:
                maildrop = await store.open(mailbox.guid)
            except MailboxNotFound:
                # No maildrop yet, or a move just took it to another server.
                current = await self.config.directory.get_mailbox_by_guid(mailbox.guid)
                if current is None or current.server not in (None, self.config.server.name):
                    return self._moved()
                await store.create_mailbox(mailbox.guid)
                try:
                    maildrop = await store.open(mailbox.guid)
                except MailboxNotFound:
                    return self._moved()
        except MailboxLocked:
            self.metrics.lock_conflict()
            self.note("MailboxInUse")
            return Err("The mailbox is in use by another session.", ResponseCode.IN_USE)
        self.mailbox, self.maildrop = mailbox, maildrop
        settings = self.config.settings
        self.connection.max_command_size = self._frontend_setting(
            MAX_COMMAND_SIZE_ATTRIBUTE, settings.max_command_size, MAX_COMMAND_SIZE_RANGE
        )
        self.timers.use_authenticated_timeout(
            self._frontend_setting(
                IDLE_TIMEOUT_ATTRIBUTE,
                int(settings.authenticated_connection_timeout.total_seconds()),
                IDLE_TIMEOUT_RANGE,
            )
        )
        messages = maildrop.messages
        if self.config.settings.message_retrieval_sort_order is SortOrder.DESCENDING:
            messages = tuple(reversed(messages))
        self.messages = messages
        self.log.info(
            "session %s: %s logged on",
            self.session_id,
            mailbox.name,
            extra={"event": "login", "user": mailbox.name},
        )
        return Ok("User successfully logged on.")

    # -- TRANSACTION ---------------------------------------------------------------------

    def _message_gone(self, number: int) -> Err:
        self.metrics.error("store")
        self.log.warning("session %s: message %d vanished from the store", self.session_id, number)
        return Err("The message was removed by another program.", ResponseCode.SYS_TEMP)

    def _maildrop(self) -> MailboxSession:
        assert self.maildrop is not None
        return self.maildrop

    def _message(self, number: int) -> MessageInfo | None:
        if 1 <= number <= len(self.messages) and number not in self.deleted:
            return self.messages[number - 1]
        return None

    def _live(self) -> list[tuple[int, MessageInfo]]:
        deleted = self.deleted
        return [(n, info) for n, info in enumerate(self.messages, 1) if n not in deleted]

    def _totals(self) -> tuple[int, int]:
        live = self._live()
        return len(live), sum(info.size for _, info in live)

    async def _quit(self) -> Reply:
        if self.connection.state is not State.UPDATE or self.maildrop is None:
            return Ok(SIGN_OFF)
        maildrop, self.maildrop = self.maildrop, None
        doomed = [self.messages[n - 1].uid for n in sorted(self.deleted)]
        failed = await maildrop.commit(doomed)
        if failed:
            self.metrics.error("store")
            self.log.warning("session %s: %d deletions failed", self.session_id, len(failed))
            return Err("Some deleted messages could not be removed.", ResponseCode.SYS_TEMP)
        return Ok(SIGN_OFF)
