"""Shared helpers for the fault-injection tests: POP3 and LMTP clients and message ids."""

from __future__ import annotations

import email.parser
import poplib
import smtplib
import time
from collections.abc import Callable

from tests.e2e.conftest import Installation, insecure_client_context

PASSWORD = "Fault-tolerant-1"
#: A message body big enough that a half-written file would be easy to tell from a whole one.
BODY = b"".join(b"line %04d of a message that must arrive whole\r\n" % n for n in range(40))


def message(message_id: str, body: bytes = BODY) -> bytes:
    """A message with a unique Message-ID: the ledger's key."""
    return (
        f"From: sender@example.net\r\nTo: someone@example.net\r\n"
        f"Subject: {message_id}\r\nMessage-ID: <{message_id}>\r\n\r\n"
    ).encode() + body


def message_id_of(lines: list[bytes]) -> str:
    """The Message-ID (without brackets) of a message retrieved as lines."""
    parsed = email.parser.BytesHeaderParser().parsebytes(b"\r\n".join(lines) + b"\r\n")
    return str(parsed["Message-ID"]).strip("<>")


def backend(installation: Installation, user: str, timeout: float = 30) -> poplib.POP3_SSL:
    """A direct, logged-on session on MSExchangePOP3BE (AllowDirectBackendLogin is on)."""
    client = poplib.POP3_SSL(
        "127.0.0.1",
        installation.backend_port,
        context=insecure_client_context(),
        timeout=timeout,
    )
    try:
        client.user(user)
        client.pass_(PASSWORD)
    except BaseException:
        client.close()
        raise
    return client


def lmtp(installation: Installation, recipient: str, content: bytes) -> tuple[int, bytes]:
    """Deliver one message by LMTP; the reply to DATA (or the refusal of RCPT)."""
    with smtplib.LMTP("127.0.0.1", installation.lmtp_port, timeout=60) as client:
        client.ehlo()
        client.mail("sender@example.net")
        code, text = client.rcpt(recipient)
        if code != 250:
            return code, text
        return client.data(content)


def retrieve_all(installation: Installation, user: str) -> list[str]:
    """The Message-ID of every message in the maildrop, in a session that ends by QUIT."""
    client = backend(installation, user)
    try:
        count = client.stat()[0]
        found = [message_id_of(client.retr(n)[1]) for n in range(1, count + 1)]
    finally:
        client.quit()
    return found


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
