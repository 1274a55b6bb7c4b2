"""Mail to a message's mailto: unsubscribe address, at the edge's SMTP receiver (the bounce receiver's port).

RCPT checks the address's token (:mod:`schemas.mailto`): one we did not mint, or tampered with, gets 550
and nothing is published. At the end of DATA the message's recipient, campaign and list are looked up at
the sink (the address names only the message), and the unsubscribe is published exactly as the one-click
POST publishes it: 250 only once Kafka acknowledged it, 451 (the sending server retries) when the sink or
Kafka cannot answer yet. What the mail says is not read: mail to the address is the request (RFC 2369).
The event id derives from the mail (its Message-ID, else its bytes) and the message, so a redelivery
after a 451 counts once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re

from producers.message_lookup import LookupUnavailable, MessageLookup
from producers.publisher import Publisher, PublishError
from schemas.codec import encode
from schemas.events import Unsubscribe, UnsubscribeScope, utcnow
from schemas.keys import recipient_key
from schemas.mailto import MailtoAddresses, MailtoError, is_unsubscribe_address
from schemas.topics import Topics

log = logging.getLogger(__name__)

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


class MailtoUnsubscribes:
    def __init__(
        self,
        mailto: MailtoAddresses,
        domain: str,
        lookup: MessageLookup,
        publisher: Publisher,
        topics: Topics,
        timeout: float,
    ) -> None:
        self.mailto, self.domain, self.lookup = mailto, domain.lower().rstrip("."), lookup
        self.publisher, self.topics, self.timeout = publisher, topics, timeout

    def serves(self, address: str) -> bool:
        """Whether ``address`` is for this path (an unsubscribe address at the unsubscribe domain)."""
        return is_unsubscribe_address(address) and address.rpartition("@")[2].lower().rstrip(".>") == self.domain

    def authentic(self, address: str) -> bool:
        try:
            self.mailto.message_id(address)
        except MailtoError:
            return False
        return True

    async def unsubscribe(self, addresses: list[str], raw: bytes) -> str:
        """Publish the unsubscribe of each address's message; the SMTP answer."""
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        found = _MESSAGE_ID.search(head)
        mail_id = found.group(1).decode("ascii", "replace") if found else hashlib.sha256(raw).hexdigest()
        try:
            events = [await self._event(address, mail_id) for address in addresses]
        except LookupUnavailable as exc:
            log.warning("mailto unsubscribe: the sink cannot tell the recipient now: %s", exc)
            return "451 4.3.0 Cannot look this message up now, try again later"
        if any(event is None for event in events):
            # Authentic, but its `sent` is not stored yet (the sink a moment behind): the server tries again.
            return "451 4.3.0 This message is not known here yet, try again later"
        try:
            await asyncio.gather(
                *(
                    self.publisher.publish_confirmed(
                        self.topics.events, recipient_key(e.recipient, e.campaign_id), encode(e), self.timeout
                    )
                    for e in events
                    if e is not None
                )
            )
        except PublishError as exc:
            log.warning("mailto unsubscribe not acknowledged by Kafka, asking the sender to retry: %s", exc)
            return "451 4.3.0 Temporarily unable to record this unsubscribe, try again later"
        return "250 2.0.0 Unsubscribed"

    async def _event(self, address: str, mail_id: str) -> Unsubscribe | None:
        message_id = self.mailto.message_id(address)  # authentic: checked at RCPT
        sent = await self.lookup(message_id)
        if sent is None:
            return None
        event_id = hashlib.blake2b(f"mailto\x00{message_id}\x00{mail_id}".encode(), digest_size=16).hexdigest()
        return Unsubscribe(
            event_id=event_id,
            occurred_at=utcnow(),
            campaign_id=sent["campaign_id"],
            message_id=message_id,
            recipient=sent["recipient"],
            list_id=sent["list_id"],
            scope=UnsubscribeScope.LIST,
            method="mailto",
        )
