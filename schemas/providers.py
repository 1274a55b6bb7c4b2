"""The mailbox provider of a recipient, from its domain (pure): what reports group bounces by.

Only the consumer domains of the four providers big enough to matter on their own; a company domain
hosted by one of them is "other" (knowing that takes an MX lookup, which the pipeline does not do).
"""

from __future__ import annotations

import enum


class MailboxProvider(enum.StrEnum):
    GMAIL = "gmail"
    OUTLOOK = "outlook"
    YAHOO = "yahoo"
    ICLOUD = "icloud"
    OTHER = "other"


_EXACT = {
    "gmail.com": MailboxProvider.GMAIL,
    "googlemail.com": MailboxProvider.GMAIL,
    "msn.com": MailboxProvider.OUTLOOK,
    "windowslive.com": MailboxProvider.OUTLOOK,
    "passport.com": MailboxProvider.OUTLOOK,
    "ymail.com": MailboxProvider.YAHOO,
    "rocketmail.com": MailboxProvider.YAHOO,
    "aol.com": MailboxProvider.YAHOO,
    "aim.com": MailboxProvider.YAHOO,
    "verizon.net": MailboxProvider.YAHOO,
    "att.net": MailboxProvider.YAHOO,
    "sbcglobal.net": MailboxProvider.YAHOO,
    "bellsouth.net": MailboxProvider.YAHOO,
    "icloud.com": MailboxProvider.ICLOUD,
    "me.com": MailboxProvider.ICLOUD,
    "mac.com": MailboxProvider.ICLOUD,
}
# Country variants: hotmail.co.uk, live.fr, outlook.de, yahoo.co.jp, aol.de, ...
_FIRST_LABEL = {
    "hotmail": MailboxProvider.OUTLOOK,
    "outlook": MailboxProvider.OUTLOOK,
    "live": MailboxProvider.OUTLOOK,
    "yahoo": MailboxProvider.YAHOO,
    "aol": MailboxProvider.YAHOO,
}


def mailbox_provider(recipient: str | None) -> MailboxProvider:
    if not recipient or "@" not in recipient:
        return MailboxProvider.OTHER
    domain = recipient.rsplit("@", 1)[1].strip().lower().rstrip(".")
    found = _EXACT.get(domain)
    if found is not None:
        return found
    first, _, rest = domain.partition(".")
    # Only a public suffix after the name (com, fr, co.uk, com.br), not outlook.contoso.com.
    if rest and all(0 < len(label) <= 3 for label in rest.split(".")) and rest.count(".") <= 1:
        return _FIRST_LABEL.get(first, MailboxProvider.OTHER)
    return MailboxProvider.OTHER
