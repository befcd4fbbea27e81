"""Sans-IO SASL mechanisms: PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login) and
SCRAM-SHA-256 (RFC 5802, RFC 7677), server and client sides.

A server mechanism is driven with ``step(response)`` (``None`` = AUTH without an initial
response) and answers with a ``SaslStep``: a challenge to send, a password for the driver to
verify, a request for SCRAM credentials, success or failure. The mechanisms know nothing of
POP3 framing or base64; the connection does that.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, Final

from ._errors import LocalProtocolError, RemoteProtocolError
from ._scram_keys import DEFAULT_ITERATIONS, SALT_BYTES, ScramCredentials, salted_password

__all__ = [
    "LoginServer",
    "NeedScramCredentials",
    "PlainServer",
    "SaslChallenge",
    "SaslFailure",
    "SaslServer",
    "SaslStep",
    "SaslSuccess",
    "ScramSha256Client",
    "ScramSha256Server",
    "VerifyPassword",
    "plain_initial_response",
    "saslprep",
    "server_mechanism",
]

#: RFC 4616 section 2: servers accept authzid, authcid and passwd of up to 255 octets each;
#: popgate refuses longer ones rather than hash unbounded input.
MAX_PLAIN_FIELD: Final = 255
#: RFC 5802 section 7: printable = %x21-2B / %x2D-7E (no comma).
_NONCE_RE: Final = re.compile(r"[\x21-\x2b\x2d-\x7e]+", re.ASCII)
#: The server's part of the SCRAM nonce: 18 random bytes, 24 base64url characters.
_NONCE_BYTES: Final = 18
#: RFC 5802 section 7: the proof and the server signature are one SHA-256 output.
_DIGEST_SIZE: Final = hashlib.sha256().digest_size
#: Keys the fake credentials for unknown users; stable for the process, never revealed.
_FAKE_KEY: Final = secrets.token_bytes(32)


# --- steps -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SaslChallenge:
    """Send this challenge (``Challenge(data=...)``) and feed the client's answer to step()."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyPassword:
    """PLAIN/LOGIN finished: the driver checks the password and authorises ``authzid``.

    ``authzid`` is ``""`` when the client asked for none (act as ``authcid``). Both names and
    the password have been through SASLprep (RFC 4013).
    """

    authzid: str
    authcid: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class NeedScramCredentials:
    """Look up ``authcid`` and call ``provide_credentials()`` (``None`` if unknown)."""

    authcid: str
    authzid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SaslSuccess:
    """The mechanism authenticated ``authcid``; the driver still authorises ``authzid``."""

    authcid: str
    authzid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SaslFailure:
    """The exchange failed; answer ``-ERR [AUTH]``. ``reason`` is for logs, not the wire."""

    reason: str


SaslStep = SaslChallenge | VerifyPassword | NeedScramCredentials | SaslSuccess | SaslFailure


class SaslServer:
    """Base of the server mechanisms: ``step()`` always, ``provide_credentials()`` for SCRAM.

    Subclass only inside this module; drivers annotate with it so that one variable can hold
    any mechanism.
    """

    #: The IANA mechanism name.
    name: ClassVar[str] = ""

    def step(self, response: bytes | None) -> SaslStep:
        """Process the client's (decoded) response; ``None`` = no initial response."""
        raise NotImplementedError

    def provide_credentials(self, creds: ScramCredentials | None) -> SaslStep:
        """Answer ``NeedScramCredentials``; only mechanisms that ask for them accept this."""
        raise LocalProtocolError(f"{self.name} does not take SCRAM credentials")


# --- SASLprep --------------------------------------------------------------------------------


def _prohibited(ch: str) -> bool:
    # RFC 4013 section 2.3.
    return (
        stringprep.in_table_c12(ch)
        or stringprep.in_table_c21_c22(ch)
        or stringprep.in_table_c3(ch)
        or stringprep.in_table_c4(ch)
        or stringprep.in_table_c5(ch)
        or stringprep.in_table_c6(ch)
        or stringprep.in_table_c7(ch)
        or stringprep.in_table_c8(ch)
        or stringprep.in_table_c9(ch)
    )


def saslprep(value: str, *, allow_unassigned: bool = True) -> str:
    """Prepare a user name or password with SASLprep (RFC 4013); raise ``ValueError``.

    Mapping, NFKC, prohibited output and bidi checks follow RFC 4013 with the Unicode 3.2
    tables of the stdlib ``stringprep`` module. Unassigned code points are allowed by default
    (the "query" profile of RFC 3454 section 7), so characters newer than Unicode 3.2 still
    work; pass ``allow_unassigned=False`` for the "stored strings" profile.
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch  # RFC 4013 section 2.1: non-ASCII space
        for ch in value
        if not stringprep.in_table_b1(ch)  # ... and "commonly mapped to nothing"
    )
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)  # RFC 4013 section 2.2
    for ch in prepared:
        if _prohibited(ch):
            raise ValueError("prohibited character")
        if not allow_unassigned and stringprep.in_table_a1(ch):
            raise ValueError("unassigned code point")
    # RFC 3454 section 6: bidirectional strings.
    if any(stringprep.in_table_d1(ch) for ch in prepared):
        if any(stringprep.in_table_d2(ch) for ch in prepared):
            raise ValueError("mixed-direction string")
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            raise ValueError("RandALCat string must start and end with RandALCat")
    return prepared


def _prepare(raw: bytes, what: str, *, allow_empty: bool = False) -> str | SaslFailure:
    try:
        prepared = saslprep(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return SaslFailure(reason=f"{what} fails UTF-8 or SASLprep")
    if not prepared and (raw or not allow_empty):
        # RFC 4616 section 2 / RFC 5034 section 4: empty after preparation fails.
        return SaslFailure(reason=f"{what} is empty")
    return prepared


# --- PLAIN -----------------------------------------------------------------------------------


def _parse_plain(message: bytes) -> SaslStep:
    parts = message.split(b"\0")
    if len(parts) != 3:
        return SaslFailure(reason="PLAIN message needs exactly two NULs")
    if any(len(part) > MAX_PLAIN_FIELD for part in parts):
        return SaslFailure(reason=f"PLAIN field longer than {MAX_PLAIN_FIELD} octets")
    authzid = _prepare(parts[0], "authzid", allow_empty=True)
    authcid = _prepare(parts[1], "authcid")
    password = _prepare(parts[2], "password")
    if isinstance(authzid, SaslFailure):
        return authzid
    if isinstance(authcid, SaslFailure):
        return authcid
    if isinstance(password, SaslFailure):
        return password
    return VerifyPassword(authzid=authzid, authcid=authcid, password=password)


class PlainServer(SaslServer):
    """PLAIN (RFC 4616): ``[authzid] NUL authcid NUL passwd``."""

    name: ClassVar[str] = "PLAIN"

    def __init__(self) -> None:
        self._challenged = False
        self._done = False

    def step(self, response: bytes | None) -> SaslStep:
        """An empty challenge first if there was no initial response, then the verdict."""
        if self._done:
            raise LocalProtocolError("PLAIN exchange already finished")
        if response is None:
            if self._challenged:
                raise LocalProtocolError("step(None) is only for the first call")
            self._challenged = True
            return SaslChallenge(data=b"")  # RFC 4616 section 2: client-first, empty challenge
        self._done = True
        return _parse_plain(response)


def plain_initial_response(authzid: str, authcid: str, password: str) -> bytes:
    """The PLAIN message for a client (raw octets; the caller base64-encodes for the wire)."""
    fields = (authzid, authcid, password)
    if any("\0" in value for value in fields):
        raise ValueError("PLAIN fields must not contain NUL")
    return b"\0".join(value.encode("utf-8") for value in fields)


# --- LOGIN -----------------------------------------------------------------------------------


class LoginServer(SaslServer):
    """LOGIN (draft-murchison-sasl-login): challenges ``Username:`` then ``Password:``."""

    name: ClassVar[str] = "LOGIN"

    def __init__(self) -> None:
        self._username: bytes | None = None
        self._asked_username = False
        self._done = False

    def step(self, response: bytes | None) -> SaslStep:
        """Ask for what is missing; an initial response is taken as the user name."""
        if self._done:
            raise LocalProtocolError("LOGIN exchange already finished")
        if self._username is None:
            if response is None:
                if self._asked_username:
                    raise LocalProtocolError("step(None) is only for the first call")
                self._asked_username = True
                return SaslChallenge(data=b"Username:")
            if len(response) > MAX_PLAIN_FIELD:
                self._done = True
                return SaslFailure(reason=f"user name longer than {MAX_PLAIN_FIELD} octets")
            self._username = response
            return SaslChallenge(data=b"Password:")
        if response is None:
            raise LocalProtocolError("step(None) is only for the first call")
        self._done = True
        if len(response) > MAX_PLAIN_FIELD:
            return SaslFailure(reason=f"password longer than {MAX_PLAIN_FIELD} octets")
        authcid = _prepare(self._username, "authcid")
        password = _prepare(response, "password")
        if isinstance(authcid, SaslFailure):
            return authcid
        if isinstance(password, SaslFailure):
            return password
        return VerifyPassword(authzid="", authcid=authcid, password=password)


# --- SCRAM-SHA-256 ---------------------------------------------------------------------------


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def _escape_saslname(name: str) -> str:
    # RFC 5802 section 5.1: "=" and "," are sent as "=3D" and "=2C".
    return name.replace("=", "=3D").replace(",", "=2C")


_SASLNAME_ESCAPE_RE: Final = re.compile(r"=(?!2C|3D)")


def _unescape_saslname(text: str) -> str | None:
    # RFC 5802 section 5.1: any "=" not followed by "2C" or "3D" fails the exchange.
    if _SASLNAME_ESCAPE_RE.search(text):
        return None
    return text.replace("=2C", ",").replace("=3D", "=")


def _check_nonce(nonce: str) -> str:
    if not _NONCE_RE.fullmatch(nonce):
        raise ValueError("nonce must be printable ASCII without ','")
    return nonce


def _split_attributes(text: str) -> list[tuple[str, str]] | None:
    # RFC 5802 section 7: attr-val = ALPHA "=" value.
    pairs = []
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=" or not part[0].isascii() or not part[0].isalpha():
            return None
        pairs.append((part[0], part[2:]))
    return pairs


class _ScramStage(Enum):
    START = "START"
    CREDENTIALS = "CREDENTIALS"
    FINAL = "FINAL"
    ACK = "ACK"
    DONE = "DONE"


class ScramSha256Server(SaslServer):
    """SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding.

    Flow: ``step(client-first)`` -> ``NeedScramCredentials``; ``provide_credentials()`` ->
    server-first challenge; ``step(client-final)`` -> ``v=`` challenge (RFC 5034: no
    additional data with success); ``step(b"")`` -> ``SaslSuccess``. For an unknown user
    (``None`` credentials) the exchange continues with a fake salt derived deterministically
    from the user name, so neither the text nor the timing reveals that the user is unknown;
    it fails at the proof.

    :param nonce: the server's nonce part (for known-answer tests); random by default.
    :param fake_salt_key: key for the fake salts; a per-process random key by default. Pass a
        configured secret so that salts for unknown users also survive restarts.
    """

    name: ClassVar[str] = "SCRAM-SHA-256"

    def __init__(self, *, nonce: str | None = None, fake_salt_key: bytes | None = None) -> None:
        self._server_nonce = (
            secrets.token_urlsafe(_NONCE_BYTES) if nonce is None else _check_nonce(nonce)
        )
        self._fake_key = _FAKE_KEY if fake_salt_key is None else fake_salt_key
        self._stage = _ScramStage.START
        self._challenged = False
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._authcid = ""
        self._authzid = ""
        self._credentials: ScramCredentials | None = None
        self._known_user = False
        self._auth_message = b""

    def _fail(self, reason: str) -> SaslFailure:
        self._stage = _ScramStage.DONE
        return SaslFailure(reason=reason)

    def step(self, response: bytes | None) -> SaslStep:
        """Feed the client's next message (``None``: AUTH without initial response)."""
        match self._stage:
            case _ScramStage.START if response is None and not self._challenged:
                self._challenged = True
                return SaslChallenge(data=b"")  # client-first mechanism: empty challenge
            case _ScramStage.START if response is not None:
                return self._client_first(response)
            case _ScramStage.FINAL if response is not None:
                return self._client_final(response)
            case _ScramStage.ACK if response is not None:
                if response:
                    return self._fail("non-empty response after server-final")
                self._stage = _ScramStage.DONE
                return SaslSuccess(authcid=self._authcid, authzid=self._authzid)
        raise LocalProtocolError(f"step() not expected in stage {self._stage.value}")

    def _client_first(self, message: bytes) -> SaslStep:
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            return self._fail("client-first is not UTF-8")
        parts = text.split(",", 2)
        if len(parts) != 3:
            return self._fail("malformed gs2 header")
        flag, authzid_field, bare = parts
        # RFC 5802 section 6: "n" = no binding; "y" = client could bind but thinks we can't,
        # which is true (no -PLUS mechanism is offered); "p=" asks for binding we lack.
        if flag not in ("n", "y"):
            return self._fail("channel binding not supported")
        authzid = ""
        if authzid_field:
            if not authzid_field.startswith("a="):
                return self._fail("malformed authzid")
            unescaped = _unescape_saslname(authzid_field[2:])
            if unescaped is None:
                return self._fail("bad escape in authzid")
            prepared = _prepare(unescaped.encode("utf-8"), "authzid")
            if isinstance(prepared, SaslFailure):
                return self._fail(prepared.reason)
            authzid = prepared
        attributes = _split_attributes(bare)
        if attributes is None or len(attributes) < 2:
            return self._fail("malformed client-first-message-bare")
        if attributes[0][0] == "m":
            return self._fail("mandatory extension not supported")  # RFC 5802 section 5.1
        (key_n, raw_name), (key_r, client_nonce) = attributes[0], attributes[1]
        if key_n != "n" or key_r != "r":
            return self._fail("client-first needs n= then r=")
        name = _unescape_saslname(raw_name)
        if name is None:
            return self._fail("bad escape in username")
        authcid = _prepare(name.encode("utf-8"), "username")
        if isinstance(authcid, SaslFailure):
            return self._fail(authcid.reason)
        if not _NONCE_RE.fullmatch(client_nonce):
            return self._fail("malformed client nonce")
        self._gs2_header = f"{flag},{authzid_field},"
        self._client_first_bare = bare
        self._nonce = client_nonce + self._server_nonce
        self._authcid = authcid
        self._authzid = authzid
        self._stage = _ScramStage.CREDENTIALS
        return NeedScramCredentials(authcid=authcid, authzid=authzid)

    def provide_credentials(self, creds: ScramCredentials | None) -> SaslStep:
        """The credentials for ``NeedScramCredentials.authcid``, or ``None`` if unknown."""
        if self._stage is not _ScramStage.CREDENTIALS:
            raise LocalProtocolError("provide_credentials() not expected now")
        self._known_user = creds is not None
        if creds is None:
            seed = self._authcid.encode("utf-8")
            creds = ScramCredentials(
                salt=_hmac(self._fake_key, b"salt\0" + seed)[:SALT_BYTES],
                iterations=DEFAULT_ITERATIONS,
                stored_key=_hmac(self._fake_key, b"stored\0" + seed),
                server_key=_hmac(self._fake_key, b"server\0" + seed),
            )
        self._credentials = creds
        self._server_first = f"r={self._nonce},s={_b64(creds.salt)},i={creds.iterations}"
        self._stage = _ScramStage.FINAL
        return SaslChallenge(data=self._server_first.encode("ascii"))

    def _client_final(self, message: bytes) -> SaslStep:
        creds = self._credentials
        assert creds is not None
        try:
            text = message.decode("ascii")
        except UnicodeDecodeError:
            return self._fail("client-final is not ASCII")
        attributes = _split_attributes(text)
        if attributes is None or len(attributes) < 3:
            return self._fail("malformed client-final-message")
        (key_c, binding), (key_r, nonce), (key_p, proof_b64) = (
            attributes[0],
            attributes[1],
            attributes[-1],
        )
        if key_c != "c" or key_r != "r" or key_p != "p":
            return self._fail("client-final needs c=, r= and finally p=")
        # RFC 5802 section 5.1: c= repeats the gs2 header (c=biws for "n,,").
        if _unb64(binding) != self._gs2_header.encode("utf-8"):
            return self._fail("channel binding data does not match the gs2 header")
        if not hmac.compare_digest(nonce.encode("ascii"), self._nonce.encode("ascii")):
            return self._fail("nonce mismatch")
        proof = _unb64(proof_b64)
        if proof is None or len(proof) != _DIGEST_SIZE:
            return self._fail("malformed proof")
        without_proof = text[: text.rindex(",p=")]
        self._auth_message = ",".join(
            (self._client_first_bare, self._server_first, without_proof)
        ).encode("utf-8")
        client_signature = _hmac(creds.stored_key, self._auth_message)
        client_key = _xor(proof, client_signature)
        # RFC 5802 section 3: the proof is valid iff H(ClientKey) equals StoredKey.
        valid = hmac.compare_digest(hashlib.sha256(client_key).digest(), creds.stored_key)
        if not (valid and self._known_user):
            return self._fail("invalid proof")
        server_signature = _hmac(creds.server_key, self._auth_message)
        self._stage = _ScramStage.ACK
        return SaslChallenge(data=b"v=" + base64.b64encode(server_signature))


class ScramSha256Client:
    """The client side of SCRAM-SHA-256 (no channel binding).

    ``verify_server_final()`` raises ``RemoteProtocolError`` when the server cannot prove it
    knows the credentials; so does ``final_message()`` for a malformed server-first message.
    """

    def __init__(
        self, username: str, password: str, *, nonce: str | None = None, authzid: str = ""
    ) -> None:
        self._username = saslprep(username)
        self._password = saslprep(password)
        self._authzid = saslprep(authzid) if authzid else ""
        self._nonce = secrets.token_urlsafe(_NONCE_BYTES) if nonce is None else _check_nonce(nonce)
        authzid_field = f"a={_escape_saslname(self._authzid)}" if self._authzid else ""
        self._gs2_header = f"n,{authzid_field},"
        self._first_bare = f"n={_escape_saslname(self._username)},r={self._nonce}"
        self._server_signature: bytes | None = None

    def first_message(self) -> bytes:
        """client-first-message (send it as the AUTH initial response)."""
        return (self._gs2_header + self._first_bare).encode("utf-8")

    def final_message(self, server_first: bytes) -> bytes:
        """client-final-message, computed from the server-first challenge."""
        try:
            text = server_first.decode("ascii")
        except UnicodeDecodeError:
            raise RemoteProtocolError("server-first is not ASCII") from None
        attributes = _split_attributes(text)
        if attributes is None or len(attributes) < 3 or attributes[0][0] == "m":
            raise RemoteProtocolError("malformed server-first-message")
        (key_r, nonce), (key_s, salt_b64), (key_i, iterations_text) = attributes[:3]
        if (key_r, key_s, key_i) != ("r", "s", "i"):
            raise RemoteProtocolError("server-first needs r=, s= and i=")
        # RFC 5802 section 5.1: the combined nonce starts with ours and adds something.
        if not nonce.startswith(self._nonce) or nonce == self._nonce:
            raise RemoteProtocolError("server nonce does not extend the client nonce")
        if not _NONCE_RE.fullmatch(nonce):
            raise RemoteProtocolError("malformed server nonce")
        salt = _unb64(salt_b64)
        if not salt or not iterations_text.isdigit() or not 0 < int(iterations_text) < 2**31:
            raise RemoteProtocolError("malformed salt or iteration count")
        salted = salted_password(self._password.encode("utf-8"), salt, int(iterations_text))
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c={_b64(self._gs2_header.encode('utf-8'))},r={nonce}"
        auth_message = f"{self._first_bare},{text},{without_proof}".encode()
        proof = _xor(client_key, _hmac(stored_key, auth_message))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={_b64(proof)}".encode("ascii")

    def verify_server_final(self, server_final: bytes) -> None:
        """Check the server's ``v=`` signature; raise ``RemoteProtocolError`` if wrong."""
        if self._server_signature is None:
            raise LocalProtocolError("verify_server_final() before final_message()")
        if server_final.startswith(b"e="):
            raise RemoteProtocolError(f"server reported {server_final[2:64]!r}")
        if not server_final.startswith(b"v="):
            raise RemoteProtocolError("malformed server-final-message")
        signature = _unb64(server_final[2:].decode("ascii", "replace"))
        if signature is None or not hmac.compare_digest(signature, self._server_signature):
            raise RemoteProtocolError("server signature mismatch")


def server_mechanism(name: str) -> SaslServer | None:
    """A fresh server mechanism for ``name`` (case-insensitive), or ``None`` if unsupported."""
    match name.upper():
        case "PLAIN":
            return PlainServer()
        case "LOGIN":
            return LoginServer()
        case "SCRAM-SHA-256":
            return ScramSha256Server()
    return None
