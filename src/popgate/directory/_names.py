"""Validation of names that come from administrators: mailboxes, addresses, hosts, members.

Mailbox names end up in file-system paths, log lines and protocol replies, so the rules are
strict allowlists rather than blocklists.
"""

from __future__ import annotations

import ipaddress
import re

from ._errors import InvalidName

__all__ = [
    "MAX_ADDRESS_LENGTH",
    "MAX_MAILBOX_NAME_LENGTH",
    "validate_address",
    "validate_domain",
    "validate_host",
    "validate_mailbox_name",
    "validate_member",
]

MAX_MAILBOX_NAME_LENGTH = 64
#: RFC 5321 section 4.5.3.1.3: a path is at most 256 octets including the angle brackets.
MAX_ADDRESS_LENGTH = 254
#: RFC 1035 section 2.3.4 (253 characters without the trailing dot).
MAX_DOMAIN_LENGTH = 253
MAX_MEMBER_LENGTH = 256

# ASCII only: `str.isalnum` would admit look-alike Unicode letters into paths and logs.
_MAILBOX_NAME = re.compile(r"[A-Za-z0-9._-]+")
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _has_control_or_space(text: str) -> bool:
    return any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text) or not (
        text.isprintable()
    )


def validate_mailbox_name(name: str) -> str:
    """Return ``name`` unchanged if it is a valid mailbox name, else raise :class:`InvalidName`.

    A name is 1 to 64 characters of ASCII letters, digits, ``.``, ``_`` and ``-``; it does not
    start or end with ``.`` and does not contain ``..`` (so it can never act as a path).
    """
    shown = repr(name)
    if not name:
        raise InvalidName("A mailbox name must not be empty; choose a name such as 'alice'.")
    if len(name) > MAX_MAILBOX_NAME_LENGTH:
        raise InvalidName(
            f"The mailbox name {shown[:40]}... is {len(name)} characters long; "
            f"use at most {MAX_MAILBOX_NAME_LENGTH}."
        )
    if _has_control_or_space(name):
        raise InvalidName(
            f"The mailbox name {shown} contains spaces or control characters; "
            "use only letters, digits, '.', '_' and '-'."
        )
    if not _MAILBOX_NAME.fullmatch(name):
        raise InvalidName(
            f"The mailbox name {shown} contains characters that are not allowed; "
            "use only ASCII letters, digits, '.', '_' and '-' (no '/', '@' or spaces)."
        )
    if name.startswith(".") or name.endswith(".") or ".." in name:
        raise InvalidName(
            f"The mailbox name {shown} must not start or end with '.' or contain '..'."
        )
    return name


def validate_domain(domain: str) -> str:
    """Return ``domain`` lower-cased if it is a valid DNS domain name, else raise InvalidName."""
    shown = repr(domain)
    if not domain or len(domain) > MAX_DOMAIN_LENGTH:
        raise InvalidName(
            f"The domain {shown[:60]} must be 1 to {MAX_DOMAIN_LENGTH} characters long, "
            "for example 'contoso.com'."
        )
    if not all(_DNS_LABEL.fullmatch(label) for label in domain.split(".")):
        raise InvalidName(
            f"The domain {shown} is not a valid DNS name; use labels of letters, digits and "
            "'-' separated by '.', for example 'mail.contoso.com'."
        )
    return domain.lower()


def validate_host(host: str) -> str:
    """Return ``host`` normalised if it is a DNS name or an IP address, else raise InvalidName.

    IPv6 addresses are given without brackets; DNS names are lower-cased.
    """
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return validate_domain(host)
    except InvalidName:
        raise InvalidName(
            f"The host {host!r} is neither an IP address nor a valid DNS name; "
            "use a name such as 'mbx01.contoso.com' or an address such as '192.0.2.10'."
        ) from None


def validate_address(address: str) -> str:
    """Return ``address`` unchanged if it looks like ``local@domain``, else raise InvalidName.

    The check is deliberately rough (one ``@``, no spaces or control characters, at most 254
    characters): the MTA is the authority on deliverability, the directory only refuses
    addresses that would be ambiguous or unsafe to log.
    """
    shown = repr(address)
    if not address or len(address) > MAX_ADDRESS_LENGTH:
        raise InvalidName(
            f"The address {shown[:60]} must be 1 to {MAX_ADDRESS_LENGTH} characters long, "
            "for example 'alice@contoso.com'."
        )
    if _has_control_or_space(address):
        raise InvalidName(f"The address {shown} must not contain spaces or control characters.")
    local, at, domain = address.partition("@")
    if not at or "@" in domain or not local or not domain:
        raise InvalidName(
            f"The address {shown} must have exactly one '@' with text on both sides, "
            "for example 'alice@contoso.com'."
        )
    return address


def validate_member(member: str) -> str:
    """Return ``member`` unchanged if it can be a role-group member name, else raise InvalidName.

    Members are mailbox names or operating-system user names, compared exactly as written.
    """
    if not member or len(member) > MAX_MEMBER_LENGTH or _has_control_or_space(member):
        raise InvalidName(
            f"The role-group member {member[:60]!r} must be 1 to {MAX_MEMBER_LENGTH} characters "
            "without spaces or control characters: a mailbox name or a system user name."
        )
    return member
