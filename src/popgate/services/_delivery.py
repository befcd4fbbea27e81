"""MSExchangeDelivery, Microsoft Exchange Mailbox Transport Delivery (Mailbox role): mail in.

The local mail transfer agent (Postfix, Exim) hands messages over by LMTP (RFC 2033,
aiosmtpd) on a TCP port (127.0.0.1:24 by default, ``popgate setup --lmtp``) and on the Unix
socket ``run/lmtp.sock``, or pipes them to ``popgate deliver``. Both take the same path,
:class:`~popgate.services._deliverer.Deliverer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from dataclasses import dataclass

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from popgate.directory import Directory, DirectoryUnavailable, Server
from popgate.home import Home
from popgate.services._deliverer import MAX_MESSAGE_SIZE, Deliverer, Delivery, Outcome
from popgate.services._metrics import ServiceMetrics
from popgate.store import MailStore

__all__ = ["DeliveryListeners", "LmtpHandler", "start_delivery"]

logger = logging.getLogger("popgate.delivery")

#: LMTP's reply for each outcome (RFC 2033 section 4.2, RFC 3463 enhanced codes).
REPLIES = {
    # The UID is the message's UIDL: a sender (Test-PopConnectivity) can find it by it.
    Outcome.DELIVERED: "250 2.0.0 {address} Saved as {uid}",
    Outcome.UNKNOWN_RECIPIENT: "550 5.1.1 {address} No such mailbox here",
    Outcome.OVER_QUOTA: "552 5.2.2 {address} Mailbox full: over its ProhibitSendReceiveQuota",
    Outcome.FAILED: "451 4.3.0 {address} Temporary failure saving the message; try again later",
}


class LmtpHandler:
    """aiosmtpd's hooks: a recipient is checked at RCPT, delivered to at DATA."""

    def __init__(self, deliverer: Deliverer) -> None:
        self.deliverer = deliverer
        #: Deliveries under way: a stopping service lets them finish.
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Accept a recipient this server delivers to; 550 5.1.1 for any other."""
        del server, session, rcpt_options
        try:
            mailbox = await self.deliverer.find(address)
        except DirectoryUnavailable as error:
            logger.warning("lookup of %r deferred: %s", address[:254], error)
            return f"451 4.3.0 <{address}> Temporary failure looking up the recipient"
        except Exception:
            logger.exception("directory lookup of %r failed", address[:254])
            return f"451 4.3.0 <{address}> Temporary failure looking up the recipient"
        if mailbox is None:
            if self.deliverer.metrics is not None:
                self.deliverer.metrics.delivery(Outcome.UNKNOWN_RECIPIENT.value)
            return REPLIES[Outcome.UNKNOWN_RECIPIENT].format(address=f"<{address}>")
        envelope.rcpt_tos.append(address)
        return f"250 2.1.5 <{address}> Recipient ok"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """One reply per accepted recipient, in RCPT order (RFC 2033)."""
        del server, session
        content = envelope.original_content or b""
        self.in_flight += 1
        self.idle.clear()
        try:
            replies = [await self._one(address, content) for address in envelope.rcpt_tos]
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()
        return "\r\n".join(replies)

    async def _one(self, address: str, content: bytes) -> str:
        try:
            delivery = await self.deliverer.deliver_to(address, content)
        except DirectoryUnavailable as error:
            logger.warning("delivery to %r deferred: %s", address[:254], error)
            delivery = Delivery(Outcome.FAILED, "the directory is unavailable")
        except Exception:
            logger.exception("delivery to %r failed", address[:254])
            delivery = Delivery(Outcome.FAILED, "internal error")
        return REPLIES[delivery.outcome].format(address=f"<{address}>", uid=delivery.uid)


class _Lmtp(LMTP):
    """aiosmtpd's LMTP, keeping lines longer than SMTP's 1000 octets.

    The MTA has already accepted the message: refusing it here for a long line would bounce
    mail that any mailbox can hold (Dovecot's LMTP keeps such lines too).
    """

    line_length_limit = 1 << 20


def _lmtp_factory(handler: LmtpHandler, hostname: str) -> LMTP:
    return _Lmtp(
        handler,
        hostname=hostname,
        ident="popgate MSExchangeDelivery",
        data_size_limit=MAX_MESSAGE_SIZE,
        enable_SMTPUTF8=True,
        decode_data=False,
        timeout=300,
    )


@dataclass(frozen=True, slots=True)
class DeliveryListeners:
    """MSExchangeDelivery's open listeners, what it tells the log, and its handler."""

    listeners: list[asyncio.AbstractServer]
    where: str
    handler: LmtpHandler


async def start_delivery(
    home: Home, directory: Directory, server: Server, store: MailStore, metrics: ServiceMetrics
) -> DeliveryListeners:
    """Listen for LMTP on the configured TCP binding and on ``run/lmtp.sock``.

    :raises OSError: a listener could not be opened (the caller words it).
    """
    # aiosmtpd logs every command line (recipients included) at INFO; our own log line per
    # delivery says what matters, so only its warnings and errors get through.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    handler = LmtpHandler(Deliverer(directory=directory, store=store, server=server,
                                    metrics=metrics))  # fmt: skip
    loop = asyncio.get_running_loop()
    factory = functools.partial(_lmtp_factory, handler, server.fqdn)

    listeners: list[asyncio.AbstractServer] = []
    binding = home.lmtp_binding()
    where = []
    try:
        if binding:
            host, _, port = binding.rpartition(":")
            listeners.append(
                await loop.create_server(
                    factory, host=host.strip("[]") or None, port=int(port), reuse_address=True
                )
            )
            where.append(f"LMTP on {binding}")
        path = home.lmtp_socket
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        unix = await loop.create_unix_server(factory, path=str(path))
        # The MTA runs as its own user: anyone local may connect (the folder is 0711), as
        # anyone local may connect to 127.0.0.1:24.
        os.chmod(path, 0o666)  # noqa: S103 - see above
        listeners.append(unix)
        where.append(f"Unix socket {path}")
    except OSError:
        for listener in listeners:
            listener.close()
        raise
    return DeliveryListeners(listeners, ", ".join(where), handler)
