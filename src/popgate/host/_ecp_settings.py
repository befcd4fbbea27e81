"""The admin center's Servers and POP3 settings pages.

Both pages are rendered as skeletons and filled by their scripts from the control API
(``/api/v1/servers``, ``/api/v1/services``, ``/api/v1/pop-settings``), which makes every
permission decision. The POP3 form is described here, one entry per Set-PopSettings
parameter: the API offers no description of the parameters (their types, ranges and
defaults), so the page carries its own, and the tests check it against the directory's
parser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum, IntEnum
from typing import Final, Literal, cast

from fastapi import APIRouter, Request
from fastapi.responses import Response

from popgate.directory import (
    CalendarItemRetrievalOption,
    ExtendedProtectionPolicy,
    LoginType,
    MimeFormat,
    PopSettings,
    RollOver,
    SortOrder,
    format_setting,
)
from popgate.host._api import ControlContext
from popgate.host._ecp import ECP_PREFIX, page_caller, render_page, signed_in
from popgate.host._sessions import Session
from popgate.services import BACKEND, FRONTEND

__all__ = ["FORM", "FormGroup", "SettingField", "pages"]

#: How a setting is edited: its HTML control and how the script reads it back.
Control = Literal["checkbox", "number", "select", "text", "timespan", "list"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingField:
    """One Set-PopSettings parameter on the form."""

    #: The Exchange parameter name: the control's label, name and the API's key.
    exchange: str
    control: Control
    #: What it does, in a sentence; the valid values and the default are added to it.
    purpose: str
    #: Inclusive range: whole numbers, or seconds of a time span.
    low: int | None = None
    high: int | None = None
    #: The enum whose members a select offers.
    enum: type[Enum] | None = None
    #: The valid values when no range or enum states them.
    values: str = ""
    #: The default when the directory's own would read badly (a computed default).
    default: str = ""
    #: An empty list means "not set" (null) rather than "no values".
    optional: bool = False

    @property
    def options(self) -> list[tuple[str, str]]:
        """A select's options as (value, label): Exchange's spelling, and its number."""
        if self.enum is None:
            return []
        return [
            (
                format_setting(self.exchange, member),
                f"{format_setting(self.exchange, member)} ({member.value})"
                if isinstance(member, IntEnum)
                else format_setting(self.exchange, member),
            )
            for member in self.enum
        ]

    @property
    def help(self) -> str:
        """The help text under the control: purpose, valid values, default."""
        return " ".join(part for part in (self.purpose, self._valid(), self._default()) if part)

    def _valid(self) -> str:
        if self.values:
            return f"Valid: {self.values}."
        if self.low is None or self.high is None:
            return ""
        if self.control == "timespan":
            low, high = (
                format_setting(self.exchange, timedelta(seconds=bound))
                for bound in (self.low, self.high)
            )
            return f"Valid: {low} to {high} (hh:mm:ss, d.hh:mm:ss or seconds)."
        return f"Valid: {self.low} to {self.high}."

    def _default(self) -> str:
        if self.default:
            return f"Default: {self.default}."
        value = getattr(_DEFAULTS, _FIELD_OF[self.exchange])
        if isinstance(value, bool):
            text = "on" if value else "off"
        elif value is None or value == ():
            text = "none"
        else:
            text = format_setting(self.exchange, value).replace(",", ", ")
        # A default that is a sentence (the Banner) already ends in a full stop.
        return f"Default: {text}" if text.endswith(".") else f"Default: {text}."


@dataclass(frozen=True, slots=True)
class FormGroup:
    """A fieldset of the form."""

    legend: str
    fields: Sequence[SettingField]


_DEFAULTS: Final = PopSettings()
_FIELD_OF: Final[Mapping[str, str]] = {
    exchange: name for name, exchange in PopSettings.EXCHANGE_NAMES.items()
}
_INT32_MAX: Final = 2_147_483_647

#: Every Set-PopSettings parameter (exchange-pop3.md section 2) and popgate's extensions.
FORM: Final[Sequence[FormGroup]] = (
    FormGroup(
        "Bindings and certificate",
        (
            SettingField(
                exchange="SSLBindings",
                control="list",
                purpose="Where clients connect with TLS from the start (POP3S), one per line.",
                values="IP:port, IPv6 in brackets, such as 0.0.0.0:995 or [::]:995",
            ),
            SettingField(
                exchange="UnencryptedOrTLSBindings",
                control="list",
                purpose="Where clients connect in plain text and may start TLS with STLS, "
                "one per line.",
                values="IP:port, IPv6 in brackets, such as 0.0.0.0:110 or [::]:110",
            ),
            SettingField(
                exchange="ProxyTargetPort",
                control="number",
                purpose="The port MSExchangePOP3BE listens on for sessions that front ends "
                "proxy to it.",
                low=1,
                high=65535,
            ),
            SettingField(
                exchange="InternalConnectionSettings",
                control="list",
                purpose="The server names and ports internal clients are told to use, "
                "one per line; empty restores the default.",
                values="Host:Port[:SSL|TLS], such as mail.contoso.com:995:SSL",
                default="this server's FQDN:995:SSL and FQDN:110:TLS",
                optional=True,
            ),
            SettingField(
                exchange="ExternalConnectionSettings",
                control="list",
                purpose="The server names and ports shown to users outside, one per line.",
                values="Host:Port[:SSL|TLS], such as mail.contoso.com:995:SSL",
            ),
            SettingField(
                exchange="X509CertificateName",
                control="text",
                purpose="The host name of the TLS certificate; empty uses the computer's "
                "self-signed certificate.",
                values="a host name such as mail.contoso.com or *.contoso.com",
            ),
            SettingField(
                exchange="EnforceCertificateErrors",
                control="checkbox",
                purpose="Refuse TLS when the certificate is invalid or does not match the FQDN.",
            ),
        ),
    ),
    FormGroup(
        "Authentication",
        (
            SettingField(
                exchange="LoginType",
                control="select",
                purpose="PlainTextLogin lets passwords travel in clear on the plain port; "
                "PlainTextAuthentication allows plain-text authentication only over TLS; "
                "SecureLogin requires STLS before logging in.",
                enum=LoginType,
            ),
            SettingField(
                exchange="EnableGSSAPIAndNTLMAuth",
                control="checkbox",
                purpose="Allow Integrated Windows authentication (NTLM through GSSAPI) on "
                "connections without TLS.",
            ),
            SettingField(
                exchange="ExtendedProtectionPolicy",
                control="select",
                purpose="Extended Protection for Authentication on NTLM.",
                enum=ExtendedProtectionPolicy,
            ),
        ),
    ),
    FormGroup(
        "Connections and timeouts",
        (
            SettingField(
                exchange="Banner",
                control="text",
                purpose="The greeting clients see after +OK.",
                values="one line of printable text, at most 506 bytes as UTF-8",
            ),
            SettingField(
                exchange="PreAuthenticatedConnectionTimeout",
                control="timespan",
                purpose="How long a connection may idle before it logs in.",
                low=30,
                high=3600,
            ),
            SettingField(
                exchange="AuthenticatedConnectionTimeout",
                control="timespan",
                purpose="How long a logged-in session may idle.",
                low=30,
                high=86_400,
            ),
            SettingField(
                exchange="MaxCommandSize",
                control="number",
                purpose="The longest command line in bytes.",
                low=40,
                high=1024,
            ),
            SettingField(
                exchange="MaxConnections",
                control="number",
                purpose="Connections in all, logged in or not.",
                low=1,
                high=_INT32_MAX,
            ),
            SettingField(
                exchange="MaxConnectionFromSingleIP",
                control="number",
                purpose="Connections from one IP address.",
                low=1,
                high=_INT32_MAX,
            ),
            SettingField(
                exchange="MaxConnectionsPerUser",
                control="number",
                purpose="Sessions of one user at the same time.",
                low=1,
                high=_INT32_MAX,
            ),
        ),
    ),
    FormGroup(
        "Retrieval",
        (
            SettingField(
                exchange="MessageRetrievalMimeFormat",
                control="select",
                purpose="Which body parts a retrieved message carries.",
                enum=MimeFormat,
            ),
            SettingField(
                exchange="MessageRetrievalSortOrder",
                control="select",
                purpose="The order of messages in the maildrop listing.",
                enum=SortOrder,
            ),
            SettingField(
                exchange="EnableExactRFC822Size",
                control="checkbox",
                purpose="Report exact message sizes (Exchange defaults to estimates; popgate "
                "knows exact sizes at no cost).",
            ),
            SettingField(
                exchange="SuppressReadReceipt",
                control="checkbox",
                purpose="Send read receipts when a message is opened only, not also when it "
                "is downloaded.",
            ),
            SettingField(
                exchange="CalendarItemRetrievalOption",
                control="select",
                purpose="How calendar items are presented; Custom needs OwaServerUrl.",
                enum=CalendarItemRetrievalOption,
            ),
            SettingField(
                exchange="OwaServerUrl",
                control="text",
                purpose="Outlook on the web, for CalendarItemRetrievalOption Custom; empty "
                "for none.",
                values="an http or https URL such as https://mail.contoso.com/owa",
            ),
        ),
    ),
    FormGroup(
        "Logging",
        (
            SettingField(
                exchange="ProtocolLogEnabled",
                control="checkbox",
                purpose="Write a protocol log of every POP3 session.",
            ),
            SettingField(
                exchange="LogFileLocation",
                control="text",
                purpose="Where the protocol logs go; empty for logs/pop3 in the data directory.",
                values="an absolute directory path such as /var/log/popgate/pop3",
            ),
            SettingField(
                exchange="LogFileRollOverSettings",
                control="select",
                purpose="How often a new log file starts, when LogPerFileSizeQuota is 0.",
                enum=RollOver,
            ),
            SettingField(
                exchange="LogPerFileSizeQuota",
                control="text",
                purpose="The largest log file: 0 rolls by time only, unlimited keeps one "
                "growing file.",
                values="0, a size such as 512KB, 2MB or 1GB, or unlimited",
            ),
        ),
    ),
    FormGroup(
        "popgate extensions",
        (
            SettingField(
                exchange="AllowDirectBackendLogin",
                control="checkbox",
                purpose="Let mailbox users log in to MSExchangePOP3BE directly (for tests "
                "and single-computer debugging).",
            ),
            SettingField(
                exchange="WorkerProcesses",
                control="number",
                purpose="Processes per service sharing the listening sockets.",
                low=1,
                high=1024,
            ),
            SettingField(
                exchange="GracefulStopTimeout",
                control="timespan",
                purpose="How long a stopping service waits for its sessions to finish.",
                low=0,
                high=3600,
            ),
            SettingField(
                exchange="LoginFailureDelay",
                control="timespan",
                purpose="The wait before answering a failed login; it doubles with each "
                "further failure.",
                low=0,
                high=60,
            ),
            SettingField(
                exchange="LoginFailureMaxDelay",
                control="timespan",
                purpose="The longest wait after failed logins.",
                low=0,
                high=600,
            ),
            SettingField(
                exchange="LoginFailureLockout",
                control="number",
                purpose="Failed logins in a row (per address or account) after which logins "
                "are refused until the wait has passed.",
                low=1,
                high=100_000,
            ),
        ),
    ),
)


def _context(request: Request) -> ControlContext:
    return cast("ControlContext", request.app.state.context)


def pages() -> APIRouter:
    """The routes of the Servers and POP3 settings pages."""
    router = APIRouter(prefix=ECP_PREFIX, include_in_schema=False)

    @router.get("/servers")
    async def servers(request: Request) -> Response:
        session = signed_in(request)
        if not isinstance(session, Session):
            return session
        return render_page(
            request,
            session,
            "servers.html",
            "servers",
            may_read=page_caller(session).may_read,
        )

    @router.get("/pop3")
    async def pop3(request: Request, server: str = "") -> Response:
        session = signed_in(request)
        if not isinstance(session, Session):
            return session
        caller = page_caller(session)
        context = _context(request)
        home_server = context.home.server_name
        target = server.strip() or home_server
        local = target.lower() == home_server.lower()
        # Restart-Service acts on this computer only; the back end first, as the front end
        # proxies to it.
        installed = context.host.processes
        restartable = [
            info.name for info in (BACKEND, FRONTEND) if local and info.name in installed
        ]
        return render_page(
            request,
            session,
            "pop3.html",
            "pop3",
            target=target,
            local=local,
            may_read=caller.may_read,
            may_change=caller.may_control,
            groups=FORM,
            restartable=restartable,
        )

    return router
