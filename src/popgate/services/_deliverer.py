"""Delivering one message to one mailbox: the path LMTP and ``popgate deliver`` share.

Find the mailbox by any of its addresses, check its quota, and write the message to the
store, which puts it in ``tmp/``, fsyncs it and renames it into ``new/``: a message is
either whole in the maildrop or not there at all. The message is stored exactly as received:
no header is added, so what the MTA handed over is what a POP3 client retrieves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

from popgate.directory import Directory, Mailbox, Server
from popgate.services._metrics import ServiceMetrics
from popgate.store import MailboxNotFound, MailStore, StoreError

__all__ = ["MAX_MESSAGE_SIZE", "Deliverer", "Delivery", "Outcome"]

logger = logging.getLogger("popgate.delivery")

#: The largest message accepted (LMTP refuses a bigger DATA with 552 5.3.4).
MAX_MESSAGE_SIZE = 64 << 20


class Outcome(Enum):
    """What became of a message for one recipient."""

    DELIVERED = "delivered"
    UNKNOWN_RECIPIENT = "unknown_recipient"
    OVER_QUOTA = "over_quota"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome for one recipient and the words for the sender."""

    outcome: Outcome
    detail: str
    #: The message's UID in the mailbox (its UIDL) once delivered.
    uid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Deliverer:
    """Delivers messages to the mailboxes this Mailbox server holds."""

    directory: Directory
    store: MailStore
    server: Server
    metrics: ServiceMetrics | None = None

    async def find(self, address: str) -> Mailbox | None:
        """The mailbox ``address`` reaches, or None.

        Its address or name in any case; ``+detail`` after the local part is ignored
        (sub-addressing); and ``name@domain`` where domain is the mailbox's own domain or this
        server's name.
        """
        address = address.strip().strip("<>")
        local, at, domain = address.rpartition("@")
        if not at:
            local, domain = address, ""
        base = local.partition("+")[0]
        for candidate in dict.fromkeys((address, f"{base}@{domain}" if domain else base)):
            if (mailbox := await self.directory.get_mailbox(candidate)) is not None:
                return mailbox
        mailbox = await self.directory.get_mailbox(base)
        if mailbox is None or not domain:
            return mailbox
        accepted = {mailbox.address.rpartition("@")[2], self.server.fqdn, self.server.name}
        return mailbox if domain.casefold() in {name.casefold() for name in accepted} else None

    async def deliver_to(self, address: str, content: bytes) -> Delivery:
        """Store ``content`` in the mailbox ``address`` reaches, all or nothing."""
        mailbox = await self.find(address)
        if mailbox is None:
            delivery = Delivery(Outcome.UNKNOWN_RECIPIENT, "no such mailbox here")
        else:
            delivery = await self._deliver(mailbox, content)
        if self.metrics is not None:
            self.metrics.delivery(delivery.outcome.value)
        level = logging.INFO if delivery.outcome is Outcome.DELIVERED else logging.WARNING
        logger.log(level, "delivery to %s: %s (%s)", address[:254], delivery.outcome.value,
                   delivery.detail)  # fmt: skip
        return delivery

    async def _deliver(self, found: Mailbox, content: bytes) -> Delivery:
        try:
            async with self.store.delivery_guard(found.guid):
                # Asked under the guard: a move cannot switch the mailbox away until we are done.
                mailbox = await self.directory.get_mailbox_by_guid(found.guid)
                if mailbox is None:
                    return Delivery(Outcome.UNKNOWN_RECIPIENT, "the mailbox was just removed")
                if mailbox.server is not None and mailbox.server != self.server.name:
                    return Delivery(
                        Outcome.FAILED, f"the mailbox is held by server {mailbox.server}"
                    )
                return await self._store(mailbox, content)
        except StoreError as error:
            return Delivery(Outcome.FAILED, str(error))
        except OSError as error:
            return Delivery(Outcome.FAILED, f"the store could not save it: {error.strerror}")

    async def _store(self, mailbox: Mailbox, content: bytes) -> Delivery:
        try:
            count, size = await self.store.stats(mailbox.guid)
        except MailboxNotFound:
            await self.store.create_mailbox(mailbox.guid)
            count, size = 0, 0
        quota = mailbox.prohibit_send_receive_quota
        if quota is not None and size + len(content) > quota:
            return Delivery(
                Outcome.OVER_QUOTA,
                f"the mailbox holds {size} bytes in {count} messages and may hold {quota}",
            )
        uid = await self.store.deliver(mailbox.guid, content)
        return Delivery(Outcome.DELIVERED, f"saved as {uid}", uid)
