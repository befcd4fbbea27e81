"""Checklist sections E (CAPA) and F (response codes): the CAPA helper and code formatting."""

from __future__ import annotations

import pytest

from popgate.protocol import (
    Capa,
    Err,
    LocalProtocolError,
    MultiLine,
    Ok,
    Pass,
    ResponseCode,
    State,
    Stls,
    User,
    capabilities,
)
from tests.protocol.pop3_helpers import ConnectionPair, greeted, one_event, server_in


def _caps(**overrides: object) -> tuple[str, ...]:
    options: dict[str, object] = {"stls": True, "user": True, "sasl": ["PLAIN", "SCRAM-SHA-256"]}
    options.update(overrides)
    return capabilities(**options)  # type: ignore[arg-type]


def test_e37_capa_works_in_both_states_and_is_multi_line() -> None:
    for state in (State.AUTHORIZATION, State.AWAITING_PASS, State.TRANSACTION):
        server = server_in(state)
        assert one_event(server, b"CAPA\r\n") == Capa()
        wire = server.send(MultiLine(Ok("Capability list follows"), _caps(stls=False)))
        assert wire.endswith(b"\r\n.\r\n")
        for line in wire.split(b"\r\n")[1:-2]:
            assert len(line) + 2 <= 512
            assert not line.startswith(b".")


def test_e37_capa_takes_no_arguments() -> None:
    event = one_event(greeted(), b"CAPA X\r\n")
    assert event.__class__.__name__ == "BadCommand"


def test_e37_default_listing() -> None:
    assert _caps() == (
        "TOP",
        "UIDL",
        "USER",
        "SASL PLAIN SCRAM-SHA-256",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "EXPIRE NEVER",
        "UTF8 USER",
        "IMPLEMENTATION popgate",
        "STLS",
    )


def test_e38_authorization_capabilities_are_announced_in_both_states() -> None:
    before = set(_caps(stls=False))
    after = set(_caps(stls=False))
    assert before <= after
    assert "USER" in _caps(expire="30 USER")
    assert "EXPIRE 30 USER" in _caps(expire="30 USER")


def test_e39_stls_only_where_allowed_now() -> None:
    assert "STLS" in _caps(stls=True)
    assert "STLS" not in _caps(stls=False)
    pair = ConnectionPair()
    [before] = pair.send(Capa())
    assert isinstance(before, MultiLine)
    assert "STLS" in before.lines
    pair.login()
    [after] = pair.send(Capa())
    assert isinstance(after, MultiLine)
    assert "STLS" not in after.lines


def test_e40_sasl_still_listed_after_auth() -> None:
    pair = ConnectionPair()
    pair.login()
    [listing] = pair.send(Capa())
    assert isinstance(listing, MultiLine)
    assert "SASL PLAIN SCRAM-SHA-256" in listing.lines


def test_e41_a_server_with_stls_implements_capa() -> None:
    server = greeted()
    assert one_event(server, b"CAPA\r\n") == Capa()
    server.send(MultiLine(Ok(), _caps()))
    assert one_event(server, b"STLS\r\n") == Stls()


def test_e43_expire_and_login_delay() -> None:
    assert "EXPIRE NEVER" in _caps()
    assert "EXPIRE 0" in _caps(expire="0")
    assert not any(line.startswith("EXPIRE") for line in _caps(expire=None))
    assert "LOGIN-DELAY 900" in _caps(login_delay=900)
    for bad in ({"expire": "soon"}, {"login_delay": -1}, {"sasl": ["BAD MECH"]}):
        with pytest.raises(ValueError, match=r"expire|negative|mechanism"):
            _caps(**bad)


def test_e44_implementation_is_optional() -> None:
    assert "IMPLEMENTATION popgate MSExchangePOP3BE" in _caps(
        implementation="popgate MSExchangePOP3BE"
    )
    assert not any(line.startswith("IMPLEMENTATION") for line in _caps(implementation=None))
    with pytest.raises(ValueError, match="single line"):
        _caps(implementation="a\r\nSTLS")
    with pytest.raises(ValueError, match="512"):
        _caps(implementation="x" * 600)


def test_e_optional_tokens_can_be_switched_off() -> None:
    lines = _caps(resp_codes=False, pipelining=False, utf8=False, user=False, sasl=[])
    assert lines == ("TOP", "UIDL", "EXPIRE NEVER", "IMPLEMENTATION popgate", "STLS")
    assert "UTF8" in _caps(user=False)


# --- F. response codes -----------------------------------------------------------------------


def test_f45_plain_text_never_starts_with_a_bracket() -> None:
    with pytest.raises(LocalProtocolError):
        Err("[not a code]")
    assert Err("text [with] brackets").text == "text [with] brackets"


@pytest.mark.parametrize(
    ("code", "wire"),
    [
        (ResponseCode.IN_USE, b"-ERR [IN-USE] The mailbox is in use.\r\n"),
        (ResponseCode.LOGIN_DELAY, b"-ERR [LOGIN-DELAY] The mailbox is in use.\r\n"),
        (ResponseCode.AUTH, b"-ERR [AUTH] The mailbox is in use.\r\n"),
        (ResponseCode.SYS_TEMP, b"-ERR [SYS/TEMP] The mailbox is in use.\r\n"),
        (ResponseCode.SYS_PERM, b"-ERR [SYS/PERM] The mailbox is in use.\r\n"),
        (ResponseCode.UTF8, b"-ERR [UTF8] The mailbox is in use.\r\n"),
    ],
)
def test_f46_to_f49_response_codes_serialise_in_brackets(code: ResponseCode, wire: bytes) -> None:
    server = server_in(State.AWAITING_PASS)
    one_event(server, b"PASS pencil\r\n")
    assert server.send(Err("The mailbox is in use.", code)) == wire


def test_f47_auth_code_on_credential_failures_over_the_wire() -> None:
    pair = ConnectionPair()
    [_, failed] = pair.send(User(name="alice"), Pass(password="bad"))
    assert isinstance(failed, Err)
    assert failed.code is ResponseCode.AUTH
    assert pair.wire[-1].endswith(
        b"-ERR [AUTH] Logon failure: unknown user name or bad password.\r\n"
    )
