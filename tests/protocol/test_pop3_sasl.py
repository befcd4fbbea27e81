"""Checklist sections I (SASL parts), J (PLAIN) and K (SCRAM-SHA-256): the mechanisms."""

from __future__ import annotations

import base64

import pytest

from popgate.protocol import (
    Auth,
    Challenge,
    Err,
    LocalProtocolError,
    LoginServer,
    NeedScramCredentials,
    Ok,
    PlainServer,
    RemoteProtocolError,
    ResponseCode,
    SaslChallenge,
    SaslFailure,
    SaslResponse,
    SaslSuccess,
    ScramCredentials,
    ScramSha256Client,
    ScramSha256Server,
    State,
    VerifyPassword,
    derive_scram_credentials,
    plain_initial_response,
    saslprep,
    server_mechanism,
)
from tests.protocol.pop3_helpers import LOGON_FAILED, LOGON_OK, ConnectionPair, state_of

# RFC 7677 section 3 (recomputed in the checklist, item K/75).
KAT_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
KAT_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
KAT_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
KAT_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
KAT_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
KAT_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
KAT_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
KAT_CREDS = derive_scram_credentials("pencil", salt=KAT_SALT, iterations=4096)


def _scram_to_final(
    client_first: bytes, *, creds: ScramCredentials | None = KAT_CREDS
) -> ScramSha256Server:
    server = ScramSha256Server(nonce=KAT_SERVER_NONCE)
    assert isinstance(server.step(client_first), NeedScramCredentials)
    assert isinstance(server.provide_credentials(creds), SaslChallenge)
    return server


# --- I. SASL in the session ------------------------------------------------------------------


def test_i67_scram_server_final_goes_out_as_a_challenge_then_ok() -> None:
    pair = ConnectionPair()
    client = ScramSha256Client("alice", "pencil")
    [first] = pair.send(Auth(mechanism="SCRAM-SHA-256", initial_response=client.first_message()))
    assert isinstance(first, Challenge)
    [final] = pair.send(SaslResponse(data=client.final_message(first.data)))
    assert isinstance(final, Challenge)
    assert final.data.startswith(b"v=")
    assert pair.wire[-1].startswith(b"+ dj")  # base64 of "v=..."
    client.verify_server_final(final.data)
    assert state_of(pair.driver.server) is State.SASL
    assert pair.send(SaslResponse(data=b"")) == [LOGON_OK]
    assert pair.wire[-2] == b"\r\n"  # the client's empty line
    assert state_of(pair.driver.server) is State.TRANSACTION


def test_i67_scram_without_initial_response_gets_an_empty_challenge() -> None:
    pair = ConnectionPair()
    assert pair.send(Auth(mechanism="SCRAM-SHA-256")) == [Challenge(data=b"")]
    assert pair.wire[-1] == b"+ \r\n"
    client = ScramSha256Client("bob", "a b c")
    [first] = pair.send(SaslResponse(data=client.first_message()))
    assert isinstance(first, Challenge)
    [final] = pair.send(SaslResponse(data=client.final_message(first.data)))
    assert isinstance(final, Challenge)
    client.verify_server_final(final.data)
    assert pair.send(SaslResponse(data=b"")) == [LOGON_OK]


def test_i67_scram_wrong_password_fails_at_the_proof() -> None:
    pair = ConnectionPair()
    client = ScramSha256Client("alice", "wrong")
    [first] = pair.send(Auth(mechanism="SCRAM-SHA-256", initial_response=client.first_message()))
    assert isinstance(first, Challenge)
    assert pair.send(SaslResponse(data=client.final_message(first.data))) == [LOGON_FAILED]
    assert state_of(pair.driver.server) is State.AUTHORIZATION


def test_i69_identities_are_prepared_with_saslprep() -> None:
    assert saslprep("I\u00adX") == "IX"  # soft hyphen maps to nothing
    assert saslprep("user") == "user"
    assert saslprep("USER") == "USER"
    assert saslprep("\u00aa") == "a"  # NFKC
    assert saslprep("\u2168") == "IX"  # roman numeral nine
    assert saslprep("a\u00a0b") == "a b"  # non-ASCII space maps to SPACE
    for bad in ("\u0007", "a\u200eb", "\u0627\u0031"):
        with pytest.raises(ValueError, match=r"character|string"):
            saslprep(bad)
    assert saslprep("\u0627\u0031\u0628") == "\u0627\u0031\u0628"
    assert saslprep("\U0001f600") == "\U0001f600"  # unassigned in 3.2: allowed (query)
    with pytest.raises(ValueError, match="unassigned"):
        saslprep("\U0001f600", allow_unassigned=False)


def test_i69_empty_after_preparation_fails() -> None:
    step = PlainServer().step("\0\u00ad\0secret".encode())
    assert isinstance(step, SaslFailure)
    step = PlainServer().step("\u00ad\0user\0secret".encode())
    assert isinstance(step, SaslFailure)


def test_i70_plain_and_scram_are_implemented() -> None:
    assert isinstance(server_mechanism("plain"), PlainServer)
    assert isinstance(server_mechanism("LOGIN"), LoginServer)
    assert isinstance(server_mechanism("SCRAM-SHA-256"), ScramSha256Server)
    assert server_mechanism("CRAM-MD5") is None


# --- J. PLAIN --------------------------------------------------------------------------------


def test_j72_plain_vectors() -> None:
    assert base64.b64encode(b"\0user\0secret") == b"AHVzZXIAc2VjcmV0"
    assert PlainServer().step(b"\0user\0secret") == VerifyPassword(
        authzid="", authcid="user", password="secret"
    )
    assert base64.b64encode(b"test\0test\0test") == b"dGVzdAB0ZXN0AHRlc3Q="
    assert PlainServer().step(b"test\0test\0test") == VerifyPassword(
        authzid="test", authcid="test", password="test"
    )
    assert plain_initial_response("", "user", "secret") == b"\0user\0secret"
    with pytest.raises(ValueError, match="NUL"):
        plain_initial_response("", "us\0er", "secret")


@pytest.mark.parametrize(
    "message", [b"user\0secret", b"\0user\0secret\0", b"", b"\0\0\0\0", b"usersecret"]
)
def test_j72_wrong_nul_count_fails(message: bytes) -> None:
    assert isinstance(PlainServer().step(message), SaslFailure)


def test_j72_invalid_utf8_fails() -> None:
    assert isinstance(PlainServer().step(b"\0us\xffer\0secret"), SaslFailure)


def test_j72_plain_without_initial_response_sends_empty_challenge() -> None:
    mechanism = PlainServer()
    assert mechanism.step(None) == SaslChallenge(data=b"")
    assert isinstance(mechanism.step(b"\0user\0secret"), VerifyPassword)
    with pytest.raises(LocalProtocolError):
        mechanism.step(b"again")


def test_j73_fields_up_to_255_octets_accepted_empty_or_longer_fail() -> None:
    long = "u" * 255
    step = PlainServer().step(f"{long}\0{long}\0{long}".encode())
    assert step == VerifyPassword(authzid=long, authcid=long, password=long)
    for message in (b"\0" + b"u" * 256 + b"\0pw", b"\0user\0", b"\0\0pw"):
        assert isinstance(PlainServer().step(message), SaslFailure)


def test_j74_authzid_is_reported_for_the_driver_to_authorise() -> None:
    assert PlainServer().step(b"bob\0alice\0pencil") == VerifyPassword(
        authzid="bob", authcid="alice", password="pencil"
    )
    pair = ConnectionPair()
    [reply] = pair.send(Auth(mechanism="PLAIN", initial_response=b"bob\0alice\0pencil"))
    # The mechanism only reports authzid; authorising it is the driver's job (MiniDriver
    # refuses any authzid other than the authcid, as services/ does for real mailboxes).
    assert reply == Err(text="Not authorized.", code=ResponseCode.AUTH)
    assert state_of(pair.driver.server) is State.AUTHORIZATION


def test_login_mechanism_asks_username_then_password() -> None:
    mechanism = LoginServer()
    assert mechanism.step(None) == SaslChallenge(data=b"Username:")
    assert mechanism.step(b"alice") == SaslChallenge(data=b"Password:")
    assert mechanism.step(b"pencil") == VerifyPassword(
        authzid="", authcid="alice", password="pencil"
    )
    with pytest.raises(LocalProtocolError):
        mechanism.step(b"more")
    with_ir = LoginServer()
    assert with_ir.step(b"alice") == SaslChallenge(data=b"Password:")
    assert isinstance(with_ir.step(b""), SaslFailure)
    assert isinstance(LoginServer().step(b"x" * 256), SaslFailure)
    with pytest.raises(LocalProtocolError):
        PlainServer().provide_credentials(None)


def test_login_over_the_wire() -> None:
    pair = ConnectionPair()
    assert pair.send(Auth(mechanism="LOGIN")) == [Challenge(data=b"Username:")]
    assert pair.wire[-1] == b"+ VXNlcm5hbWU6\r\n"
    assert pair.send(SaslResponse(data=b"alice")) == [Challenge(data=b"Password:")]
    assert pair.send(SaslResponse(data=b"pencil")) == [LOGON_OK]


# --- K. SCRAM-SHA-256 ------------------------------------------------------------------------


def test_k75_known_answer_server() -> None:
    server = ScramSha256Server(nonce=KAT_SERVER_NONCE)
    assert server.step(None) == SaslChallenge(data=b"")
    assert server.step(KAT_CLIENT_FIRST) == NeedScramCredentials(authcid="user", authzid="")
    assert server.provide_credentials(KAT_CREDS) == SaslChallenge(data=KAT_SERVER_FIRST)
    assert server.step(KAT_CLIENT_FINAL) == SaslChallenge(data=KAT_SERVER_FINAL)
    assert server.step(b"") == SaslSuccess(authcid="user", authzid="")
    with pytest.raises(LocalProtocolError):
        server.step(b"")


def test_k75_known_answer_client() -> None:
    client = ScramSha256Client("user", "pencil", nonce=KAT_CLIENT_NONCE)
    assert client.first_message() == KAT_CLIENT_FIRST
    assert client.final_message(KAT_SERVER_FIRST) == KAT_CLIENT_FINAL
    client.verify_server_final(KAT_SERVER_FINAL)
    with pytest.raises(RemoteProtocolError):
        client.verify_server_final(b"v=" + base64.b64encode(b"\0" * 32))
    with pytest.raises(RemoteProtocolError):
        client.verify_server_final(b"e=invalid-proof")


def test_k76_iterations_and_nonce_checks() -> None:
    assert derive_scram_credentials("x").iterations >= 4096
    server = _scram_to_final(KAT_CLIENT_FIRST)
    wrong_nonce = KAT_CLIENT_FINAL.replace(b"k0,p=", b"k1,p=")
    assert isinstance(server.step(wrong_nonce), SaslFailure)
    # Client side: the combined nonce must start with the client nonce.
    client = ScramSha256Client("user", "pencil", nonce=KAT_CLIENT_NONCE)
    with pytest.raises(RemoteProtocolError):
        client.final_message(b"r=other" + KAT_SERVER_NONCE.encode() + b",s=AAAA,i=4096")
    with pytest.raises(RemoteProtocolError):
        client.final_message(b"r=" + KAT_CLIENT_NONCE.encode() + b",s=AAAA,i=4096")
    with pytest.raises(RemoteProtocolError):
        client.final_message(KAT_SERVER_FIRST.replace(b"i=4096", b"i=0"))


def test_k76_server_combined_nonce_starts_with_client_nonce() -> None:
    server = ScramSha256Server()
    server.step(KAT_CLIENT_FIRST)
    challenge = server.provide_credentials(KAT_CREDS)
    assert isinstance(challenge, SaslChallenge)
    assert challenge.data.startswith(b"r=" + KAT_CLIENT_NONCE.encode())
    assert len(challenge.data.split(b",")[0]) > len(b"r=" + KAT_CLIENT_NONCE.encode()) + 16


@pytest.mark.parametrize(
    ("name", "expected"),
    [("us=2Cer", "us,er"), ("us=3Der", "us=er"), ("=3D=2C", "=,")],
)
def test_k77_escapes_in_user_names(name: str, expected: str) -> None:
    server = ScramSha256Server()
    step = server.step(f"n,,n={name},r=abc".encode())
    assert step == NeedScramCredentials(authcid=expected, authzid="")
    client = ScramSha256Client(expected, "pw", nonce="abc")
    assert client.first_message() == f"n,,n={name},r=abc".encode()


@pytest.mark.parametrize(
    "client_first",
    [
        b"n,,n=us=2Xer,r=abc",
        b"n,,n=us=er,r=abc",
        b"n,,n=user=,r=abc",
        b"n,,m=ext,n=user,r=abc",
        b"n,a=bad=escape,n=user,r=abc",
        b"n,,n=,r=abc",
        b"n,,r=abc,n=user",
        b"n,,n=user",
        b"n,,n=user,r=a,b",
        b"n,,n=user,r=",
        b"n,n=user,r=abc",
        b"n,x=1,n=user,r=abc",
        b"n,,n=\xff,r=abc",
        b"n",
    ],
)
def test_k77_malformed_client_first_fails(client_first: bytes) -> None:
    assert isinstance(ScramSha256Server().step(client_first), SaslFailure)


def test_k78_gs2_header_and_channel_binding() -> None:
    # "y,,": the client could bind but thinks we can't; we offer no -PLUS, so accept.
    server = ScramSha256Server(nonce=KAT_SERVER_NONCE)
    assert isinstance(
        server.step(b"y,,n=user,r=" + KAT_CLIENT_NONCE.encode()), NeedScramCredentials
    )
    server.provide_credentials(KAT_CREDS)
    # c= must repeat the header, so "c=biws" (for "n,,") fails here.
    assert isinstance(server.step(KAT_CLIENT_FINAL), SaslFailure)
    # "p=" asks for channel binding we do not have.
    assert isinstance(ScramSha256Server().step(b"p=tls-unique,,n=user,r=abc"), SaslFailure)
    assert isinstance(ScramSha256Server().step(b"x,,n=user,r=abc"), SaslFailure)


@pytest.mark.parametrize(
    "client_final",
    [
        KAT_CLIENT_FINAL.replace(b"c=biws", b"c=eSws"),
        KAT_CLIENT_FINAL.replace(b"c=biws", b"c=!!!!"),
        KAT_CLIENT_FINAL.replace(b"c=biws,", b""),
        KAT_CLIENT_FINAL.replace(b"p=dHzb", b"p=dHzc"),
        KAT_CLIENT_FINAL.replace(b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", b"p=AAAA"),
        KAT_CLIENT_FINAL.replace(b"p=", b"q="),
        KAT_CLIENT_FINAL + b",x=1",
        b"c=biws",
        b"\xff",
    ],
)
def test_k78_c_and_proof_are_always_validated(client_final: bytes) -> None:
    assert isinstance(_scram_to_final(KAT_CLIENT_FIRST).step(client_final), SaslFailure)


def test_k78_tampered_client_final_fails_the_proof() -> None:
    client = ScramSha256Client("user", "pencil", nonce=KAT_CLIENT_NONCE)
    server = _scram_to_final(client.first_message())
    final = _final_with(client.final_message(KAT_SERVER_FIRST))
    assert isinstance(server.step(final), SaslFailure)  # the proof covers the extension


def _final_with(final: bytes) -> bytes:
    without, _, proof = final.rpartition(b",p=")
    return without + b",x=ext,p=" + proof


def test_k79_unknown_user_fails_at_the_proof_with_a_stable_fake_salt() -> None:
    first = b"n,,n=nobody,r=" + KAT_CLIENT_NONCE.encode()
    challenges = []
    for _ in range(2):
        server = ScramSha256Server(nonce=KAT_SERVER_NONCE)
        assert server.step(first) == NeedScramCredentials(authcid="nobody", authzid="")
        challenge = server.provide_credentials(None)
        assert isinstance(challenge, SaslChallenge)
        challenges.append(challenge.data)
        client = ScramSha256Client("nobody", "pencil", nonce=KAT_CLIENT_NONCE)
        assert isinstance(server.step(client.final_message(challenge.data)), SaslFailure)
    assert challenges[0] == challenges[1]
    assert b",i=4096" in challenges[0]
    other = ScramSha256Server(nonce=KAT_SERVER_NONCE)
    other.step(b"n,,n=somebody,r=" + KAT_CLIENT_NONCE.encode())
    assert other.provide_credentials(None) != SaslChallenge(data=challenges[0])


def test_k77_authzid_escapes_and_mechanism_misuse() -> None:
    client = ScramSha256Client("user", "pencil", nonce="abc", authzid="boss,=")
    assert client.first_message() == b"n,a=boss=2C=3D,n=user,r=abc"
    server = ScramSha256Server()
    assert server.step(client.first_message()) == NeedScramCredentials(
        authcid="user", authzid="boss,="
    )
    with pytest.raises(LocalProtocolError):
        server.step(b"again")
    with pytest.raises(LocalProtocolError):
        ScramSha256Server().provide_credentials(None)
    with pytest.raises(LocalProtocolError):
        client.verify_server_final(b"v=")
    with pytest.raises(ValueError, match="nonce"):
        ScramSha256Server(nonce="a,b")
    after_ack = _scram_to_final(KAT_CLIENT_FIRST)
    after_ack.step(KAT_CLIENT_FINAL)
    assert isinstance(after_ack.step(b"unexpected"), SaslFailure)


def test_k_client_rejects_malformed_server_first() -> None:
    for bad in (b"\xff", b"x", b"m=1,r=a,s=b,i=1", b"s=AAAA,r=abc,i=1"):
        with pytest.raises(RemoteProtocolError):
            ScramSha256Client("u", "p", nonce="abc").final_message(bad)
    assert Ok() == Ok()
