"""Validation of mailbox names, addresses and domains."""

from __future__ import annotations

import pytest

from popgate.directory import InvalidName, validate_address, validate_domain, validate_mailbox_name

VALID_NAMES = ["a", "alice", "Alice.Smith", "a_b-c", "x" * 64, "0", "a.b.c", "-dash", "_u"]

INVALID_NAMES = [
    "",
    "../x",
    "..",
    ".",
    ".hidden",
    "trailing.",
    "a..b",
    "a/b",
    "a\\b",
    "alice@contoso.com",
    "a b",
    " alice",
    "alice\t",
    "a\x00b",
    "a\nb",
    "a\x7fb",
    "x" * 65,
    "émile",
    "\uff41lice",  # fullwidth letter a: looks ASCII, is not
    "a:b",
    "a*b",
]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_mailbox_names_are_returned_unchanged(name: str) -> None:
    assert validate_mailbox_name(name) == name


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_mailbox_names_are_refused_with_advice(name: str) -> None:
    with pytest.raises(InvalidName) as caught:
        validate_mailbox_name(name)
    message = str(caught.value)
    assert "mailbox name" in message
    # The message says what to do, and never echoes raw control characters.
    assert any(word in message for word in ("use", "choose", "must"))
    assert "\x00" not in message
    assert "\n" not in message


def test_long_name_message_gives_the_limit() -> None:
    with pytest.raises(InvalidName, match="at most 64"):
        validate_mailbox_name("x" * 65)


@pytest.mark.parametrize(
    "address", ["alice@contoso.com", "a@b", "Alice.Smith@Contoso.COM", "ü@例え.jp"]
)
def test_valid_addresses(address: str) -> None:
    assert validate_address(address) == address


@pytest.mark.parametrize(
    "address",
    [
        "",
        "alice",
        "@contoso.com",
        "alice@",
        "a@b@c",
        "a b@c",
        "a@b\r\n",
        "a\x00@b",
        "a@" + "b" * 253,
    ],
)
def test_invalid_addresses(address: str) -> None:
    with pytest.raises(InvalidName, match="address"):
        validate_address(address)


def test_domains_are_lower_cased() -> None:
    assert validate_domain("Mail.Contoso.COM") == "mail.contoso.com"


@pytest.mark.parametrize("domain", ["", "-a.com", "a-.com", "a..com", "a_b.com", "a" * 64 + ".com"])
def test_invalid_domains(domain: str) -> None:
    with pytest.raises(InvalidName, match="domain"):
        validate_domain(domain)
