"""POP3 server settings: Exchange 2013's Set-PopSettings parameters, validated and typed.

:class:`PopSettings` has one field per Set-PopSettings parameter of exchange-pop3.md section 2,
with Exchange 2013's defaults, plus a few popgate extensions. Each field records its Exchange
name in :attr:`PopSettings.EXCHANGE_NAMES`. :func:`parse_setting` turns text as an administrator
types it (``$true``, ``00:30:00``, ``BestBodyFormat``, ``2MB``, ``a,b``) into a checked value.
:class:`CasMailboxSettings` does the same for one mailbox's Set-CASMailbox POP3 parameters.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum, IntEnum, StrEnum, auto
from types import MappingProxyType
from typing import ClassVar, Final

from ._errors import InvalidName, InvalidSetting
from ._model import Role
from ._names import validate_domain

__all__ = [
    "CalendarItemRetrievalOption",
    "CasMailboxSettings",
    "ExtendedProtectionPolicy",
    "LoginType",
    "MimeFormat",
    "MultiValueEdit",
    "PopSettings",
    "RollOver",
    "SortOrder",
    "format_setting",
    "parse_setting",
    "settings_without_effect",
]


class CalendarItemRetrievalOption(IntEnum):
    """How calendar items are presented to POP3 clients."""

    ICALENDAR = 0
    INTRANET_URL = 1
    INTERNET_URL = 2
    #: Requires OwaServerUrl.
    CUSTOM = 3


class ExtendedProtectionPolicy(StrEnum):
    """Extended Protection for Authentication on NTLM."""

    NONE = "None"
    ALLOW = "Allow"
    REQUIRE = "Require"


class LoginType(IntEnum):
    """Authentication policy on the plain port (exchange-pop3.md section 2, LoginType table)."""

    #: Credentials may travel in clear on 110.
    PLAIN_TEXT_LOGIN = 1
    #: 110 needs no TLS, but plaintext authentication is allowed only over TLS.
    PLAIN_TEXT_AUTHENTICATION = 2
    #: Connections on 110 must use STLS before authenticating (Exchange's default).
    SECURE_LOGIN = 3


class MimeFormat(IntEnum):
    """MessageRetrievalMimeFormat: which body parts a retrieved message carries."""

    TEXT_ONLY = 0
    HTML_ONLY = 1
    HTML_AND_TEXT_ALTERNATIVE = 2
    TEXT_ENRICHED_ONLY = 3
    TEXT_ENRICHED_AND_TEXT_ALTERNATIVE = 4
    BEST_BODY_FORMAT = 5
    TNEF = 6


class SortOrder(IntEnum):
    """MessageRetrievalSortOrder: order of messages in the maildrop listing."""

    ASCENDING = 0
    DESCENDING = 1


class RollOver(IntEnum):
    """LogFileRollOverSettings: how often a new protocol log file starts (quota 0 only)."""

    HOURLY = 1
    DAILY = 2
    WEEKLY = 3
    MONTHLY = 4


# Exchange spells enum values in PascalCase; the one irregular spelling is listed here, the
# others are derived from the member name (INTRANET_URL -> IntranetUrl).
_SPELLING_EXCEPTIONS: Final[Mapping[tuple[type[Enum], str], str]] = {
    (CalendarItemRetrievalOption, "ICALENDAR"): "iCalendar"
}
# Microsoft's MIME-format page spells 3 as "TextEnriched" (exchange-pop3.md, S11).
# Keys carry the enum type: IntEnum members of different types compare equal by value.
_ENUM_ALIASES: Final[Mapping[tuple[type[Enum], str], str]] = {
    (MimeFormat, "textenriched"): "TEXT_ENRICHED_ONLY"
}


def _spell(member: Enum) -> str:
    if isinstance(member, StrEnum):
        return member.value
    exception = _SPELLING_EXCEPTIONS.get((type(member), member.name))
    if exception is not None:
        return exception
    return "".join(part.capitalize() for part in member.name.split("_"))


class _Kind(Enum):
    BOOL = auto()
    INT = auto()
    TIMESPAN = auto()
    TEXT = auto()
    ENUM = auto()
    LIST = auto()
    SIZE = auto()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Spec:
    """How one setting is parsed and checked."""

    exchange: str
    kind: _Kind
    low: int | None = None
    high: int | None = None
    enum: type[Enum] | None = None
    #: None is a legal value (it means "not set" or "computed default").
    optional: bool = False
    #: Extra check of a text value or of one list item; returns the normalised text.
    check: Callable[[str, str], str] | None = None
    #: A popgate extension, not an Exchange parameter.
    extension: bool = False


def _range_error(exchange: str, low: object, high: object, got: object) -> InvalidSetting:
    return InvalidSetting(f"{exchange} must be between {low} and {high}; got {got}.")


def _check_port(exchange: str, text: str, item: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise InvalidSetting(f"{exchange}: {item!r} has port {text!r}; use a port from 1 to 65535.")
    return int(text)


def _check_binding(exchange: str, item: str) -> str:
    """``IP:port``, IPv6 in brackets: ``[::]:995``, ``0.0.0.0:995``."""
    match = re.fullmatch(
        r"\[(?P<v6>[^\]]+)\]:(?P<port6>[^:]*)|(?P<v4>[^:\[\]]+):(?P<port4>[^:]*)", item
    )
    example = "use IP:port with IPv6 in brackets, for example '0.0.0.0:995' or '[::]:995'"
    if match is None:
        raise InvalidSetting(f"{exchange}: {item!r} is not a binding; {example}.")
    text = match["v6"] or match["v4"]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidSetting(f"{exchange}: {text!r} is not an IP address; {example}.") from None
    if (address.version == 6) != (match["v6"] is not None):
        raise InvalidSetting(f"{exchange}: {item!r} is malformed; {example}.")
    port = _check_port(exchange, match["port6"] or match["port4"] or "", item)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _check_connection_setting(exchange: str, item: str) -> str:
    """``Host:Port[:SSL|TLS]`` as shown to users (host may be an IPv6 literal in brackets)."""
    example = "use Host:Port[:SSL|TLS], for example 'mail.contoso.com:995:SSL'"
    match = re.fullmatch(
        r"(?P<host>\[[^\]]+\]|[^:\[\]]+):(?P<port>[^:]*)(?::(?P<enc>[^:]*))?", item
    )
    if match is None:
        raise InvalidSetting(f"{exchange}: {item!r} is malformed; {example}.")
    host = match["host"]
    try:
        if host.startswith("["):
            host = f"[{ipaddress.IPv6Address(host[1:-1])}]"
        else:
            try:
                host = str(ipaddress.IPv4Address(host))
            except ValueError:
                host = validate_domain(host)
    except (ValueError, InvalidName):
        raise InvalidSetting(
            f"{exchange}: {match['host']!r} is not a host name; {example}."
        ) from None
    port = _check_port(exchange, match["port"], item)
    encryption = match["enc"]
    if encryption is None:
        return f"{host}:{port}"
    if encryption.upper() not in ("SSL", "TLS"):
        raise InvalidSetting(
            f"{exchange}: encryption {encryption!r} must be SSL or TLS; {example}."
        )
    return f"{host}:{port}:{encryption.upper()}"


#: RFC 2449 section 4: a response line is at most 512 octets including "+OK " and CRLF.
_MAX_BANNER_OCTETS = 512 - len("+OK ") - len("\r\n")


def _check_banner(exchange: str, text: str) -> str:
    if not text.isprintable():
        raise InvalidSetting(
            f"{exchange} must be one line of printable text without control characters."
        )
    if len(text.encode("utf-8")) > _MAX_BANNER_OCTETS:
        raise InvalidSetting(
            f"{exchange} must fit in one POP3 reply: at most {_MAX_BANNER_OCTETS} bytes as UTF-8; "
            f"got {len(text.encode('utf-8'))}."
        )
    return text


def _check_url(exchange: str, text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or not text.isprintable()
        or " " in text
    ):
        raise InvalidSetting(
            f"{exchange} must be an http or https URL such as 'https://mail.contoso.com/owa'; "
            f"got {text!r}."
        )
    return text


def _check_path(exchange: str, text: str) -> str:
    if not text.startswith("/") or not text.isprintable():
        raise InvalidSetting(
            f"{exchange} must be an absolute directory path such as '/var/log/popgate/pop3'; "
            f"got {text!r}."
        )
    return text


def _check_certificate_name(exchange: str, text: str) -> str:
    try:
        return (
            ("*." + validate_domain(text[2:])) if text.startswith("*.") else validate_domain(text)
        )
    except InvalidName:
        raise InvalidSetting(
            f"{exchange} must be a host name such as 'mail.contoso.com'; got {text!r}."
        ) from None


_INT32_MAX: Final = 2_147_483_647
_DAY: Final = 86_400

_SPECS: Final[Mapping[str, _Spec]] = MappingProxyType(
    {
        "authenticated_connection_timeout": _Spec(
            exchange="AuthenticatedConnectionTimeout", kind=_Kind.TIMESPAN, low=30, high=_DAY
        ),
        "pre_authenticated_connection_timeout": _Spec(
            exchange="PreAuthenticatedConnectionTimeout", kind=_Kind.TIMESPAN, low=30, high=3600
        ),
        "banner": _Spec(exchange="Banner", kind=_Kind.TEXT, check=_check_banner),
        "calendar_item_retrieval_option": _Spec(
            exchange="CalendarItemRetrievalOption",
            kind=_Kind.ENUM,
            enum=CalendarItemRetrievalOption,
        ),
        "owa_server_url": _Spec(
            exchange="OwaServerUrl", kind=_Kind.TEXT, optional=True, check=_check_url
        ),
        "enable_exact_rfc822_size": _Spec(exchange="EnableExactRFC822Size", kind=_Kind.BOOL),
        "enable_gssapi_and_ntlm_auth": _Spec(exchange="EnableGSSAPIAndNTLMAuth", kind=_Kind.BOOL),
        "enforce_certificate_errors": _Spec(exchange="EnforceCertificateErrors", kind=_Kind.BOOL),
        "extended_protection_policy": _Spec(
            exchange="ExtendedProtectionPolicy", kind=_Kind.ENUM, enum=ExtendedProtectionPolicy
        ),
        "external_connection_settings": _Spec(
            exchange="ExternalConnectionSettings", kind=_Kind.LIST, check=_check_connection_setting
        ),
        "internal_connection_settings": _Spec(
            exchange="InternalConnectionSettings",
            kind=_Kind.LIST,
            optional=True,
            check=_check_connection_setting,
        ),
        "login_type": _Spec(exchange="LoginType", kind=_Kind.ENUM, enum=LoginType),
        "max_command_size": _Spec(exchange="MaxCommandSize", kind=_Kind.INT, low=40, high=1024),
        "max_connection_from_single_ip": _Spec(
            exchange="MaxConnectionFromSingleIP", kind=_Kind.INT, low=1, high=_INT32_MAX
        ),
        "max_connections": _Spec(exchange="MaxConnections", kind=_Kind.INT, low=1, high=_INT32_MAX),
        "max_connections_per_user": _Spec(
            exchange="MaxConnectionsPerUser", kind=_Kind.INT, low=1, high=_INT32_MAX
        ),
        "message_retrieval_mime_format": _Spec(
            exchange="MessageRetrievalMimeFormat", kind=_Kind.ENUM, enum=MimeFormat
        ),
        "message_retrieval_sort_order": _Spec(
            exchange="MessageRetrievalSortOrder", kind=_Kind.ENUM, enum=SortOrder
        ),
        "protocol_log_enabled": _Spec(exchange="ProtocolLogEnabled", kind=_Kind.BOOL),
        "log_file_location": _Spec(
            exchange="LogFileLocation", kind=_Kind.TEXT, optional=True, check=_check_path
        ),
        "log_file_roll_over_settings": _Spec(
            exchange="LogFileRollOverSettings", kind=_Kind.ENUM, enum=RollOver
        ),
        "log_per_file_size_quota": _Spec(
            exchange="LogPerFileSizeQuota", kind=_Kind.SIZE, low=0, high=2**63 - 1, optional=True
        ),
        "proxy_target_port": _Spec(exchange="ProxyTargetPort", kind=_Kind.INT, low=1, high=65535),
        "ssl_bindings": _Spec(exchange="SSLBindings", kind=_Kind.LIST, check=_check_binding),
        "unencrypted_or_tls_bindings": _Spec(
            exchange="UnencryptedOrTLSBindings", kind=_Kind.LIST, check=_check_binding
        ),
        "suppress_read_receipt": _Spec(exchange="SuppressReadReceipt", kind=_Kind.BOOL),
        "x509_certificate_name": _Spec(
            exchange="X509CertificateName",
            kind=_Kind.TEXT,
            optional=True,
            check=_check_certificate_name,
        ),
        "allow_direct_backend_login": _Spec(
            exchange="AllowDirectBackendLogin", kind=_Kind.BOOL, extension=True
        ),
        "graceful_stop_timeout": _Spec(
            exchange="GracefulStopTimeout", kind=_Kind.TIMESPAN, low=0, high=3600, extension=True
        ),
        "worker_processes": _Spec(
            exchange="WorkerProcesses", kind=_Kind.INT, low=1, high=1024, extension=True
        ),
        "login_failure_delay": _Spec(
            exchange="LoginFailureDelay", kind=_Kind.TIMESPAN, low=0, high=60, extension=True
        ),
        "login_failure_max_delay": _Spec(
            exchange="LoginFailureMaxDelay", kind=_Kind.TIMESPAN, low=0, high=600, extension=True
        ),
        "login_failure_lockout": _Spec(
            exchange="LoginFailureLockout", kind=_Kind.INT, low=1, high=100_000, extension=True
        ),
    }
)


def _lookup_table(specs: Mapping[str, _Spec]) -> Mapping[str, str]:
    """Both spellings, lower-cased, mapped to the field name."""
    return MappingProxyType(
        {key: name for name, spec in specs.items() for key in (name, spec.exchange.lower())}
    )


_LOOKUP: Final = _lookup_table(_SPECS)


def _find(name: str, specs: Mapping[str, _Spec], lookup: Mapping[str, str], unknown: str) -> str:
    """The field for an Exchange parameter name (any case, leading ``-`` allowed) or a field
    name; ``unknown`` ends the error message when there is none."""
    key = name.strip().lstrip("-").lower()
    if key in lookup:
        return lookup[key]
    close = difflib.get_close_matches(key, list(lookup), n=1)
    hint = f" Did you mean {specs[lookup[close[0]]].exchange}?" if close else ""
    raise InvalidSetting(f"{name!r} is not {unknown.format(hint=hint)}")


def _resolve(name: str) -> str:
    """Map an Exchange parameter name (any case) or a snake_case field name to the field."""
    return _find(
        name,
        _SPECS,
        _LOOKUP,
        "a POP3 setting.{hint} Get-PopSettings lists them all, "
        "for example MaxCommandSize or LoginType.",
    )


# --- which role each setting governs ---------------------------------------------------------

#: Settings ownership when roles are split (exchange-pop3.md section 1): a setting takes
#: effect on the servers of this role only; the others apply to both roles.
_CLIENT_ACCESS_SETTINGS: Final = frozenset({
    "AuthenticatedConnectionTimeout", "Banner", "ExternalConnectionSettings",
    "InternalConnectionSettings", "MaxCommandSize", "MaxConnectionFromSingleIP",
    "MaxConnections", "MaxConnectionsPerUser", "PreAuthenticatedConnectionTimeout",
    "UnencryptedOrTLSBindings", "SSLBindings", "LoginFailureDelay", "LoginFailureMaxDelay",
    "LoginFailureLockout", "WorkerProcesses",
})  # fmt: skip
_MAILBOX_SETTINGS: Final = frozenset({
    "CalendarItemRetrievalOption", "EnableExactRFC822Size", "MessageRetrievalSortOrder",
    "OwaServerUrl", "ProxyTargetPort", "SuppressReadReceipt", "AllowDirectBackendLogin",
})  # fmt: skip


def settings_without_effect(names: Iterable[str], roles: Collection[Role]) -> list[str]:
    """The settings among ``names`` that a server with ``roles`` does not use (the role that
    owns them is on other computers), by their Exchange names."""
    owners = {Role.CLIENT_ACCESS: _CLIENT_ACCESS_SETTINGS, Role.MAILBOX: _MAILBOX_SETTINGS}
    unused = set().union(*(owned for role, owned in owners.items() if role not in roles))
    exchange_names = (_SPECS[_resolve(name)].exchange for name in names)
    return [name for name in exchange_names if name in unused]


# --- parsing text as administrators type it -------------------------------------------------

_TIMESPAN = re.compile(r"(?:(?P<d>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2})")
_SIZE = re.compile(r"(?P<n>\d+)\s*(?P<unit>B|KB|MB|GB|TB)?", re.IGNORECASE)
# Exchange's ByteQuantifiedSize counts in powers of 1024.
_UNITS: Final[Mapping[str, int]] = {
    "b": 1,
    "kb": 1 << 10,
    "mb": 1 << 20,
    "gb": 1 << 30,
    "tb": 1 << 40,
}
_NULL: Final = frozenset({"$null", "null", ""})


def parse_bool(text: str, what: str) -> bool:
    """``$true``/``true`` or ``$false``/``false`` (any case), as PowerShell users type them."""
    lowered = text.strip().lower()
    if lowered in ("$true", "true"):
        return True
    if lowered in ("$false", "false"):
        return False
    raise InvalidSetting(f"{what} must be $true or $false; got {text!r}.")


def _parse_text(spec: _Spec, text: str) -> object:
    stripped = text.strip()
    lowered = stripped.lower()
    if spec.optional and lowered in _NULL and spec.kind is not _Kind.SIZE:
        return None
    match spec.kind:
        case _Kind.BOOL:
            return parse_bool(text, spec.exchange)
        case _Kind.INT:
            if re.fullmatch(r"[+-]?\d+", stripped):
                return int(stripped)
            raise InvalidSetting(f"{spec.exchange} must be a whole number; got {text!r}.")
        case _Kind.TIMESPAN:
            if stripped.isdigit():
                return timedelta(seconds=int(stripped))
            match_ = _TIMESPAN.fullmatch(stripped)
            if match_ is None or int(match_["m"]) > 59 or int(match_["s"]) > 59:
                raise InvalidSetting(
                    f"{spec.exchange} must be a time span dd.hh:mm:ss, hh:mm:ss or a number of "
                    f"seconds, for example 00:30:00; got {text!r}."
                )
            if match_["d"] is not None and int(match_["h"]) > 23:
                raise InvalidSetting(
                    f"{spec.exchange}: hours must be 0-23 after a day count; got {text!r}."
                )
            return timedelta(
                days=int(match_["d"] or 0),
                hours=int(match_["h"]),
                minutes=int(match_["m"]),
                seconds=int(match_["s"]),
            )
        case _Kind.ENUM:
            return _parse_enum(spec, stripped)
        case _Kind.LIST:
            if lowered in _NULL:
                return ()
            return tuple(item.strip() for item in stripped.split(",") if item.strip())
        case _Kind.SIZE:
            return parse_size(spec.exchange, stripped)
        case _Kind.TEXT:
            return text
    raise AssertionError(spec.kind)  # pragma: no cover - every kind is handled above


def parse_size(name: str, text: str) -> int | None:
    """A ByteQuantifiedSize as administrators type it (``0``, ``512KB``, ``2 MB``) in bytes;
    None for ``unlimited``. ``name`` is the setting's name, for the error message."""
    stripped = text.strip()
    if stripped.lower() == "unlimited":
        return None
    match_ = _SIZE.fullmatch(stripped)
    if match_ is None:
        raise InvalidSetting(
            f"{name} must be a size such as 0, 2MB, 512KB or unlimited; got {text!r}."
        )
    return int(match_["n"]) * _UNITS[(match_["unit"] or "b").lower()]


def format_size(size: int | None) -> str:
    """A size as :func:`parse_size` reads it back, in the largest exact unit."""
    if size is None:
        return "unlimited"
    for unit in ("TB", "GB", "MB", "KB"):
        if size and size % _UNITS[unit.lower()] == 0:
            return f"{size // _UNITS[unit.lower()]}{unit}"
    return f"{size}B"


def _parse_enum(spec: _Spec, text: str) -> Enum:
    assert spec.enum is not None
    members = list(spec.enum)
    key = text.replace("_", "").lower()
    for member in members:
        if key in (member.name.replace("_", "").lower(), _spell(member).lower()):
            return member
    alias = _ENUM_ALIASES.get((spec.enum, key))
    if alias is not None:
        return spec.enum[alias]
    if issubclass(spec.enum, IntEnum) and re.fullmatch(r"\d+", text):
        for member in members:
            if member.value == int(text):
                return member
    choices = ", ".join(
        f"{m.value} {_spell(m)}" if isinstance(m, IntEnum) else _spell(m) for m in members
    )
    raise InvalidSetting(f"{spec.exchange} must be one of {choices}; got {text!r}.")


# --- checking typed values ------------------------------------------------------------------


def _check(spec: _Spec, value: object) -> object:
    """Return ``value`` normalised for the setting of ``spec`` (text is parsed first) or raise."""
    if isinstance(value, str) and spec.kind is not _Kind.TEXT:
        value = _parse_text(spec, value)
    if value is None:
        if spec.optional:
            return None
        raise InvalidSetting(f"{spec.exchange} must have a value; $null is not allowed.")
    what = type(value).__name__
    match spec.kind:
        case _Kind.BOOL:
            if isinstance(value, bool):
                return value
            raise InvalidSetting(f"{spec.exchange} must be $true or $false; got a {what}.")
        case _Kind.INT | _Kind.SIZE:
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidSetting(f"{spec.exchange} must be a whole number; got a {what}.")
            if not spec.low <= value <= spec.high:  # type: ignore[operator]
                raise _range_error(spec.exchange, spec.low, spec.high, value)
            return value
        case _Kind.TIMESPAN:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = timedelta(seconds=value)
            if not isinstance(value, timedelta):
                raise InvalidSetting(f"{spec.exchange} must be a time span; got a {what}.")
            assert spec.low is not None
            assert spec.high is not None
            if not timedelta(seconds=spec.low) <= value <= timedelta(seconds=spec.high):
                raise _range_error(
                    spec.exchange,
                    _format_timespan(timedelta(seconds=spec.low)),
                    _format_timespan(timedelta(seconds=spec.high)),
                    _format_timespan(value),
                )
            return value
        case _Kind.ENUM:
            assert spec.enum is not None
            if isinstance(value, spec.enum):
                return value
            # Another IntEnum is an int too; taking its number would silently mix up settings.
            if isinstance(value, int) and not isinstance(value, (bool, Enum)):
                return _parse_enum(spec, str(value))
            raise InvalidSetting(f"{spec.exchange} must be a {spec.enum.__name__}; got a {what}.")
        case _Kind.LIST:
            if not isinstance(value, (tuple, list)) or not all(isinstance(i, str) for i in value):
                raise InvalidSetting(
                    f"{spec.exchange} must be a list of text values; got a {what}."
                )
            assert spec.check is not None
            items = tuple(spec.check(spec.exchange, item.strip()) for item in value)
            if len(set(items)) != len(items):
                raise InvalidSetting(
                    f"{spec.exchange} lists the same value twice: {', '.join(items)}."
                )
            return items
        case _Kind.TEXT:
            if not isinstance(value, str):
                raise InvalidSetting(f"{spec.exchange} must be text; got a {what}.")
            return spec.check(spec.exchange, value) if spec.check else value
    raise AssertionError(spec.kind)  # pragma: no cover


def parse_setting(name: str, text: str) -> object:
    """Parse ``text`` as the value of setting ``name`` and check it.

    ``name`` is an Exchange parameter name in any case (``MaxCommandSize``) or the field name
    (``max_command_size``). ``text`` is what a user types: ``$true``/``false``; time spans
    ``dd.hh:mm:ss``, ``hh:mm:ss`` or seconds; enum names (any case) or numbers; lists
    ``a,b``; sizes ``2MB`` or ``unlimited``; whole numbers; ``$null`` clears an optional
    setting. Raises :class:`InvalidSetting` with a message naming the setting and the rule.
    """
    field_name = _resolve(name)
    return _check(_SPECS[field_name], _parse_text(_SPECS[field_name], text))


def _format_timespan(value: timedelta) -> str:
    total = int(value.total_seconds())
    days, rest = divmod(total, _DAY)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{days}.{clock}" if days else clock


def format_setting(name: str, value: object) -> str:
    """Format ``value`` of setting ``name`` the way :func:`parse_setting` reads it back."""
    spec = _SPECS[_resolve(name)]
    if value is None:
        return "unlimited" if spec.kind is _Kind.SIZE else "$null"
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if isinstance(value, timedelta):
        return _format_timespan(value)
    if isinstance(value, Enum):
        return _spell(value)
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def _to_json_value(value: object) -> object:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        return int(seconds) if seconds.is_integer() else seconds
    if isinstance(value, Enum):
        return _spell(value)
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass(frozen=True, slots=True)
class MultiValueEdit:
    """``@{Add=...; Remove=...}``: edit a multi-valued setting instead of replacing it.

    Removing a value that is not there, or adding one that is, changes nothing, as in
    Exchange; values are compared after normalisation (``0.0.0.0:0995`` is ``0.0.0.0:995``).
    """

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    def applied_to(self, spec: _Spec, current: tuple[str, ...]) -> tuple[str, ...]:
        """The new list of the setting of ``spec`` whose value is ``current``."""
        if spec.kind is not _Kind.LIST:
            multi = ", ".join(s.exchange for s in _SPECS.values() if s.kind is _Kind.LIST)
            raise InvalidSetting(
                f"{spec.exchange} has a single value; @{{Add=...; Remove=...}} edits only the "
                f"multi-valued settings {multi}."
            )
        assert spec.check is not None
        removed = {spec.check(spec.exchange, item.strip()) for item in self.remove}
        kept = [item for item in current if item not in removed]
        added = (spec.check(spec.exchange, item.strip()) for item in self.add)
        return tuple(dict.fromkeys([*kept, *added]))


@dataclass(frozen=True, slots=True, kw_only=True)
class PopSettings:
    """The POP3 settings of one server, as Get-PopSettings shows them.

    Defaults are Exchange 2013's (exchange-pop3.md section 2) with one deliberate deviation:
    ``enable_exact_rfc822_size`` defaults to True, because popgate knows every message's exact
    size from its store at no cost, whereas Exchange had to render the message. The fields in
    ``POPGATE_EXTENSIONS`` have no Exchange counterpart (direct backend logins, graceful stop,
    worker processes, failed-login delays).

    Constructing an instance validates every field and raises :class:`InvalidSetting`.
    """

    #: Maps every field to its Exchange parameter name (or popgate's name for extensions).
    EXCHANGE_NAMES: ClassVar[Mapping[str, str]] = MappingProxyType(
        {name: spec.exchange for name, spec in _SPECS.items()}
    )
    #: Fields that are popgate extensions rather than Exchange parameters.
    POPGATE_EXTENSIONS: ClassVar[frozenset[str]] = frozenset(
        name for name, spec in _SPECS.items() if spec.extension
    )

    authenticated_connection_timeout: timedelta = timedelta(minutes=30)
    pre_authenticated_connection_timeout: timedelta = timedelta(minutes=1)
    banner: str = "The Microsoft Exchange POP3 service is ready."
    calendar_item_retrieval_option: CalendarItemRetrievalOption = (
        CalendarItemRetrievalOption.ICALENDAR
    )
    owa_server_url: str | None = None
    #: popgate deviation: Exchange defaults to False (estimated sizes).
    enable_exact_rfc822_size: bool = True
    enable_gssapi_and_ntlm_auth: bool = True
    enforce_certificate_errors: bool = False
    extended_protection_policy: ExtendedProtectionPolicy = ExtendedProtectionPolicy.NONE
    external_connection_settings: tuple[str, ...] = ()
    #: None means the computed default; see :meth:`internal_connection_settings_for`.
    internal_connection_settings: tuple[str, ...] | None = None
    login_type: LoginType = LoginType.SECURE_LOGIN
    max_command_size: int = 512
    max_connection_from_single_ip: int = _INT32_MAX
    max_connections: int = _INT32_MAX
    max_connections_per_user: int = 16
    message_retrieval_mime_format: MimeFormat = MimeFormat.BEST_BODY_FORMAT
    message_retrieval_sort_order: SortOrder = SortOrder.ASCENDING
    protocol_log_enabled: bool = False
    #: None means ``<data dir>/logs/pop3``.
    log_file_location: str | None = None
    log_file_roll_over_settings: RollOver = RollOver.DAILY
    #: Bytes per log file; 0 rolls by time only, None (``unlimited``) keeps one file.
    log_per_file_size_quota: int | None = 0
    proxy_target_port: int = 1995
    ssl_bindings: tuple[str, ...] = ("[::]:995", "0.0.0.0:995")
    unencrypted_or_tls_bindings: tuple[str, ...] = ("[::]:110", "0.0.0.0:110")
    suppress_read_receipt: bool = False
    x509_certificate_name: str | None = None
    #: popgate extension: lets mailbox users log in to MSExchangePOP3BE directly, which
    #: Exchange never allows; for tests and single-box debugging.
    allow_direct_backend_login: bool = False
    #: popgate extension: how long a stopping service waits for sessions to finish.
    graceful_stop_timeout: timedelta = field(default=timedelta(seconds=30))
    #: popgate extension: processes per service that share the listening sockets.
    worker_processes: int = 1
    #: popgate extension: the front end waits this long before answering a failed login,
    #: doubling with each further failure from the same address or for the same account...
    login_failure_delay: timedelta = field(default=timedelta(seconds=1))
    #: ...up to this much.
    login_failure_max_delay: timedelta = field(default=timedelta(seconds=15))
    #: popgate extension: after this many failures in a row (per address or per account),
    #: logins are refused with [LOGIN-DELAY] until the delay has passed.
    login_failure_lockout: int = 10

    def __post_init__(self) -> None:
        for name in _SPECS:
            # Normalise in place (lists to tuples, seconds to timedelta); frozen needs this.
            object.__setattr__(self, name, _check(_SPECS[name], getattr(self, name)))
        if (
            self.calendar_item_retrieval_option is CalendarItemRetrievalOption.CUSTOM
            and self.owa_server_url is None
        ):
            raise InvalidSetting(
                "CalendarItemRetrievalOption Custom requires OwaServerUrl; set both together, "
                "for example -CalendarItemRetrievalOption Custom -OwaServerUrl https://mail/owa."
            )

    def internal_connection_settings_for(self, fqdn: str) -> tuple[str, ...]:
        """The InternalConnectionSettings in force on a server with this FQDN."""
        if self.internal_connection_settings is not None:
            return self.internal_connection_settings
        return (f"{fqdn}:995:SSL", f"{fqdn}:110:TLS")

    def with_changes(
        self, changes: Mapping[str, object], *, fqdn: str | None = None
    ) -> PopSettings:
        """Return a copy with ``changes`` applied; keys are field or Exchange names.

        Values are typed values, text as :func:`parse_setting` reads it, or a
        :class:`MultiValueEdit` of a multi-valued setting's current value; an unset
        InternalConnectionSettings is edited from its computed default for ``fqdn``.
        """
        resolved: dict[str, object] = {}
        for name, value in changes.items():
            field_name = _resolve(name)
            spec = _SPECS[field_name]
            if isinstance(value, MultiValueEdit):
                current = getattr(self, field_name)
                if field_name == "internal_connection_settings" and fqdn is not None:
                    current = self.internal_connection_settings_for(fqdn)
                resolved[field_name] = value.applied_to(spec, current or ())
            else:
                # Text is read as parse_setting reads it, so "$null" clears an optional setting.
                resolved[field_name] = _parse_text(spec, value) if isinstance(value, str) else value
        return dataclasses.replace(self, **resolved)  # type: ignore[arg-type]

    def to_json(self, *, full: bool = False) -> dict[str, object]:
        """A JSON-ready dict; only values that differ from the defaults unless ``full``.

        Storing only the differences records what an administrator changed and lets popgate
        change a default in a later release without rewriting stored rows.
        """
        default = _DEFAULTS
        return {
            name: _to_json_value(getattr(self, name))
            for name in _SPECS
            if full or getattr(self, name) != getattr(default, name)
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> PopSettings:
        """Build settings from :meth:`to_json` output; missing keys take their defaults.

        Unknown keys are ignored so that a row written by a newer popgate still loads.
        """
        return cls.with_changes(_DEFAULTS, {k: v for k, v in data.items() if k in _SPECS})


_DEFAULTS: Final = PopSettings()


_CAS_SPECS: Final[Mapping[str, _Spec]] = MappingProxyType(
    {
        "pop_enabled": _Spec(exchange="PopEnabled", kind=_Kind.BOOL),
        "pop_use_protocol_defaults": _Spec(exchange="PopUseProtocolDefaults", kind=_Kind.BOOL),
        "pop_messages_retrieval_mime_format": _Spec(
            exchange="PopMessagesRetrievalMimeFormat", kind=_Kind.ENUM, enum=MimeFormat
        ),
        "pop_enable_exact_rfc822_size": _Spec(exchange="PopEnableExactRFC822Size", kind=_Kind.BOOL),
        "pop_force_ical_for_calendar_retrieval_option": _Spec(
            exchange="PopForceICalForCalendarRetrievalOption", kind=_Kind.BOOL
        ),
        "pop_suppress_read_receipt": _Spec(exchange="PopSuppressReadReceipt", kind=_Kind.BOOL),
    }
)
_CAS_LOOKUP: Final = _lookup_table(_CAS_SPECS)


@dataclass(frozen=True, slots=True, kw_only=True)
class CasMailboxSettings:
    """A mailbox's POP3 settings as Get-CASMailbox shows them (exchange-pop3.md section 3).

    PopEnabled False blocks POP3 and makes the others moot. The four settings after
    PopUseProtocolDefaults apply only when it is False; otherwise the server's settings do.
    Constructing an instance validates every field and raises :class:`InvalidSetting`.
    """

    #: Maps every field to its Set-CASMailbox parameter name.
    EXCHANGE_NAMES: ClassVar[Mapping[str, str]] = MappingProxyType(
        {name: spec.exchange for name, spec in _CAS_SPECS.items()}
    )

    pop_enabled: bool = True
    pop_use_protocol_defaults: bool = True
    pop_messages_retrieval_mime_format: MimeFormat = MimeFormat.BEST_BODY_FORMAT
    pop_enable_exact_rfc822_size: bool = False
    pop_force_ical_for_calendar_retrieval_option: bool = False
    pop_suppress_read_receipt: bool = False

    def __post_init__(self) -> None:
        for name, spec in _CAS_SPECS.items():
            object.__setattr__(self, name, _check(spec, getattr(self, name)))

    def with_changes(self, changes: Mapping[str, object]) -> CasMailboxSettings:
        """Return a copy with ``changes`` applied: Set-CASMailbox parameter names in any case
        (or field names) to typed values or text such as ``$false`` or ``TextOnly``."""
        resolved: dict[str, object] = {}
        for name, value in changes.items():
            field_name = _find(
                name,
                _CAS_SPECS,
                _CAS_LOOKUP,
                "a POP3 setting of mailboxes.{hint} Get-CASMailbox lists them all, "
                "for example PopEnabled or PopUseProtocolDefaults.",
            )
            spec = _CAS_SPECS[field_name]
            resolved[field_name] = _parse_text(spec, value) if isinstance(value, str) else value
        return dataclasses.replace(self, **resolved)  # type: ignore[arg-type]

    def to_json(self, *, full: bool = False) -> dict[str, object]:
        """A JSON-ready dict of field names; only values that differ from the defaults
        unless ``full``."""
        return {
            name: _to_json_value(getattr(self, name))
            for name in _CAS_SPECS
            if full or getattr(self, name) != getattr(_CAS_DEFAULTS, name)
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> CasMailboxSettings:
        """Build settings from :meth:`to_json` output; missing and unknown keys as in
        :meth:`PopSettings.from_json`."""
        return _CAS_DEFAULTS.with_changes({k: v for k, v in data.items() if k in _CAS_SPECS})


_CAS_DEFAULTS: Final = CasMailboxSettings()
