"""The AUTHORIZATION phase both POP3 services share: USER/PASS and SASL against the directory.

A service subclasses :class:`LoginSession` and says which mechanisms are allowed now, what a
verified mailbox leads to (:meth:`LoginSession.authenticated`), and, where it needs to, how
failures are paced (:meth:`LoginSession.logon_failure`, :meth:`LoginSession.locked_out`).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, nullcontext

from popgate.directory import Directory, DirectoryUnavailable, Mailbox
from popgate.net import Exchange, SessionDriver, format_address
from popgate.protocol import (
    Auth,
    Challenge,
    Command,
    Err,
    LoginServer,
    NeedScramCredentials,
    Ok,
    Pass,
    PlainServer,
    Reply,
    ResponseCode,
    SaslCancel,
    SaslChallenge,
    SaslFailure,
    SaslResponse,
    SaslServer,
    SaslStep,
    SaslSuccess,
    ScramSha256Server,
    User,
    VerifyPassword,
)
from popgate.services._metrics import ServiceMetrics
from popgate.services._protocol_log import (
    ProtocolLog,
    SessionLog,
    context_of,
    describe_command,
)

__all__ = ["LOGON_FAILURE", "LoginSession", "policy_refusal"]

#: Exchange's reply to bad credentials; unknown users get exactly the same.
LOGON_FAILURE = "Logon failure: unknown user name or bad password."


def policy_refusal(mailbox: Mailbox) -> Err | None:
    """Why a mailbox whose credentials are right may still not use POP3, or None."""
    if mailbox.is_administrator:
        # Exchange never lets the Administrator account log on through POP3; say no more
        # than for bad credentials.
        return Err(LOGON_FAILURE, ResponseCode.AUTH)
    if not mailbox.pop_enabled:
        # Not a credentials problem, so not [AUTH] (RFC 3206 AUTH-RESP-CODE).
        return Err(
            "POP3 access is disabled for this mailbox; ask an administrator to enable it.",
            ResponseCode.SYS_PERM,
        )
    return None


def may_act_as(mailbox: Mailbox, authzid: str) -> bool:
    """RFC 4616: an authorization identity other than the user's own is refused."""
    return not authzid or authzid.casefold() in (
        mailbox.name.casefold(),
        mailbox.address.casefold(),
    )


class LockedOutWhileWaitingError(Exception):
    """A lockout began while a password check waited its turn: refuse without checking."""

    def __init__(self, refusal: Err) -> None:
        super().__init__(refusal.text)
        self.refusal = refusal


class LoginSession(SessionDriver):
    """USER/PASS and AUTH (PLAIN, LOGIN, SCRAM-SHA-256) for a POP3 service."""

    directory: Directory
    metrics: ServiceMetrics
    pending_user: str | None = None
    mechanism: SaslServer | None = None
    scram_mailbox: Mailbox | None = None
    sasl_user: str = ""
    #: The mechanism of the login attempt under way (``USER`` for USER/PASS), for counting.
    login_mechanism: str | None = None
    #: This session's rows of the protocol log; None when ProtocolLogEnabled is off.
    protocol_log: SessionLog | None = None
    #: What the protocol log's next row says after ``R=`` (``Msg=...``), set while answering.
    log_note: str | None = None

    def start_protocol_log(self, log: ProtocolLog | None) -> None:
        """Log this session's lines to ``log`` (None: not at all)."""
        if log is not None:
            server = format_address(self.writer.get_extra_info("sockname"))
            self.protocol_log = SessionLog(log, self.session_id, server, self.peer)

    def note(self, message: str) -> None:
        """Add ``Msg=message`` to the protocol log's row of the command being answered."""
        self.log_note = f"{self.log_note};{message}" if self.log_note else message

    def note_user(self, name: str) -> None:
        """The protocol log's ``user`` column from now on."""
        if self.protocol_log is not None:
            self.protocol_log.user = name[:64]

    # -- counters and the protocol log ---------------------------------------------------

    def on_start(self) -> None:
        """Count the session as open; log the connection."""
        self.metrics.session_started()
        if self.protocol_log is not None:
            self.protocol_log.write("", "", "Msg=connect")

    def on_command(self, verb: str) -> None:
        """Count the command by verb."""
        self.metrics.command(verb)

    def on_sent(self, size: int) -> None:
        """Count the bytes sent."""
        self.metrics.sent(size)

    def on_exchange(self, exchange: Exchange) -> None:
        """One protocol log row per line answered."""
        note, self.log_note = self.log_note, None
        if self.protocol_log is None:
            return
        command, parameters = describe_command(exchange.command, exchange.verb)
        self.protocol_log.write(
            command,
            parameters,
            context_of(exchange.reply, note),
            seconds=exchange.seconds,
            request_size=exchange.request_size,
            reply_size=exchange.reply_size,
        )

    def on_end(self, result: str, seconds: float) -> None:
        """Count the session as ended; one that ended in an unexpected exception is an error."""
        self.metrics.session_ended(result, seconds)
        if result == "error":
            self.metrics.error("internal")
        if self.protocol_log is not None:
            self.protocol_log.write("", "", f"Msg=disconnect;R={result}", seconds=seconds)
            self.protocol_log.release()

    def _count_login(self, reply: Reply) -> None:
        """Count the attempt under way once ``reply`` settles it."""
        if self.login_mechanism is None or isinstance(reply, Challenge):
            return
        if isinstance(reply, Ok):
            result = "success"
        elif isinstance(reply, Err) and reply.code is ResponseCode.AUTH:
            result = "failure"
        elif isinstance(reply, Err) and reply.code is ResponseCode.LOGIN_DELAY:
            result = "locked_out"
        else:
            result = "refused"
        self.metrics.login(self.login_mechanism, result)
        self.login_mechanism = None

    def mechanisms(self) -> list[str]:
        """The SASL mechanisms allowed on this connection now, as CAPA lists them."""
        raise NotImplementedError

    def user_refusal(self) -> Err | None:
        """Why USER is not allowed now, or None."""
        return None

    async def password_login(self, authcid: str, authzid: str, password: str) -> Reply:
        """Check a password (USER/PASS, PLAIN, LOGIN) and log the mailbox on."""
        if locked := self.locked_out(authcid):
            return locked
        try:
            mailbox = await self.directory.verify_password(
                authcid, password, check_turn=self.password_check_turn(authcid)
            )
        except LockedOutWhileWaitingError as waited:
            return waited.refusal
        if mailbox is None:
            return await self.logon_failure(authcid, "bad credentials")
        if not may_act_as(mailbox, authzid):
            return await self.logon_failure(authcid, f"may not act as {authzid[:64]!r}")
        return await self.authorize(mailbox)

    async def authenticated(self, mailbox: Mailbox) -> Reply:
        """The credentials are right and policy allows the mailbox: what happens now."""
        raise NotImplementedError

    def locked_out(self, user: str) -> Err | None:
        """A refusal without checking credentials (brute-force lockout), or None."""
        del user
        return None

    def password_check_turn(self, user: str) -> AbstractAsyncContextManager[object]:
        """Held while argon2id checks ``user``'s password (not for a remembered one): the
        front end shares the checks out by address; it raises :class:`LockedOutWhileWaitingError`
        if a lockout began while the check waited its turn."""
        del user
        return nullcontext()

    async def logon_failure(self, user: str, reason: str) -> Err:
        """Log a failed login and return the reply for it."""
        self.note("AuthFailed")
        self.log.info(
            "session %s: logon failure from %s for %r: %s",
            self.session_id,
            self.peer,
            user[:64],
            reason,
            extra={"event": "login_failed", "user": user[:64]},
        )
        return Err(LOGON_FAILURE, ResponseCode.AUTH)

    async def handle_login(self, command: Command) -> Reply | None:
        """Answer USER, PASS, AUTH and SASL lines; None for any other command."""
        try:
            reply = await self._login_reply(command)
        except DirectoryUnavailable as error:
            reply = self._directory_unavailable(error)
        if reply is not None:
            self._count_login(reply)
        return reply

    async def _login_reply(self, command: Command) -> Reply | None:
        match command:
            case User(name=name):
                if refusal := self.user_refusal():
                    return refusal
                self.pending_user = name
                self.note_user(name)
                return Ok()
            case Pass(password=password):
                user, self.pending_user = self.pending_user or "", None
                self.login_mechanism = "USER"
                return await self.password_login(user, "", password)
            case Auth(mechanism=name, initial_response=initial):
                return await self._start_sasl(name, initial)
            case SaslResponse(data=data):
                assert self.mechanism is not None
                return await self._sasl_step(self.mechanism.step(data))
            case SaslCancel():
                self.mechanism = self.login_mechanism = None
                return Err("Authentication cancelled.")
        return None

    def _directory_unavailable(self, error: DirectoryUnavailable) -> Err:
        """A login the directory cannot decide now: a temporary refusal, logged in one line
        (a database that is down or locked is an operating condition, not a bug)."""
        self.mechanism = self.scram_mailbox = None
        self.metrics.error("directory")
        self.note("DirectoryUnavailable")
        self.log.warning(
            "session %s: login not possible now: %s",
            self.session_id,
            error,
            extra={"event": "directory_unavailable"},
        )
        return Err(
            "The directory is not available right now; try again later.", ResponseCode.SYS_TEMP
        )

    def unsupported_mechanism(self, name: str) -> Err:
        """The reply to AUTH with a mechanism not allowed now."""
        return Err(f"Unsupported authentication mechanism {name[:40]}.")

    async def _start_sasl(self, name: str, initial: bytes | None) -> Reply:
        if name not in self.mechanisms():
            return self.unsupported_mechanism(name)
        self.login_mechanism = name
        mechanism: SaslServer
        if name == "PLAIN":
            mechanism = PlainServer()
        elif name == "LOGIN":
            mechanism = LoginServer()
        else:
            mechanism = ScramSha256Server()
        self.mechanism = mechanism
        return await self._sasl_step(mechanism.step(initial))

    async def _sasl_step(self, step: SaslStep) -> Reply:
        match step:
            case SaslChallenge(data=data):
                return Challenge(data)
            case VerifyPassword(authzid=authzid, authcid=authcid, password=password):
                self.mechanism = None
                self.note_user(authcid)
                return await self.password_login(authcid, authzid, password)
            case NeedScramCredentials(authcid=authcid):
                assert self.mechanism is not None
                self.sasl_user = authcid
                self.note_user(authcid)
                if locked := self.locked_out(authcid):
                    self.mechanism = None
                    return locked
                found = await self.directory.scram_credentials(authcid)
                self.scram_mailbox = found[0] if found else None
                credentials = found[1] if found else None
                return await self._sasl_step(self.mechanism.provide_credentials(credentials))
            case SaslSuccess(authzid=authzid):
                self.mechanism = None
                mailbox, self.scram_mailbox = self.scram_mailbox, None
                if mailbox is None or not may_act_as(mailbox, authzid):
                    return await self.logon_failure(self.sasl_user, "authzid")
                return await self.authorize(mailbox)
            case SaslFailure(reason=reason):
                self.mechanism = None
                return await self.logon_failure(self.sasl_user or "?", reason)
        raise AssertionError(f"unexpected SASL step {step!r}")

    async def authorize(self, mailbox: Mailbox) -> Reply:
        """Apply policy to a mailbox whose credentials are right, then :meth:`authenticated`."""
        refusal = policy_refusal(mailbox)
        if refusal is not None:
            if refusal.code is ResponseCode.AUTH:
                return await self.logon_failure(mailbox.name, "policy: Administrator")
            self.note("PopDisabled")
            return refusal
        self.note_user(mailbox.name)
        return await self.authenticated(mailbox)
