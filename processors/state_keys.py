"""The keys of the worker's tables, one type per table and one builder per record type.

A table's keys are strings on the wire (faust's changelog format), but no module spells one out: the
builders here make them, and mypy keeps a key of one table out of another. The encodings are those the
changelogs already hold, so a worker upgraded in place recovers its state unchanged.

==================  ==========================================  =====================================
table               record                                      key
==================  ==========================================  =====================================
suppression         one recipient's entry                       the normalized address
sent-log            one message's state (processors.delivery)   the message id
engagement          one message's facts                         ``m|<partition>|<message id>``
engagement          a campaign's counts on one partition        ``t|<partition>|<campaign>``
engagement          ... for one hour                            ``h|<partition>|<campaign>|<hour>``
engagement          the events feed's resume mark               ``o|<partition>``
campaign-totals     a campaign's rollup                         the campaign id
campaign-totals     ... for one hour                            ``<campaign>\\x1f<hour>``
campaign-totals     the partials feed's resume mark             ``\\x1eoffset|<partition>``
==================  ==========================================  =====================================
"""

from __future__ import annotations

from typing import NewType

from schemas.keys import normalize_address

Address = NewType("Address", str)
MessageId = NewType("MessageId", str)
EngagementKey = NewType("EngagementKey", str)
RollupKey = NewType("RollupKey", str)


def address(recipient: str) -> Address:
    """The suppression key of a recipient: its normalized address."""
    return Address(normalize_address(recipient))


def message(message_id: str) -> MessageId:
    return MessageId(message_id)


class EngagementKeys:
    """Builders of the engagement table's keys (per source partition: each partition's counts are its own)."""

    @staticmethod
    def message(partition: int, message_id: str) -> EngagementKey:
        return EngagementKey(f"m|{partition}|{message_id}")

    @staticmethod
    def totals(partition: int, campaign: str) -> EngagementKey:
        return EngagementKey(f"t|{partition}|{campaign}")

    @staticmethod
    def hour(partition: int, campaign: str, hour: int) -> EngagementKey:
        return EngagementKey(f"h|{partition}|{campaign}|{hour}")

    @staticmethod
    def mark(partition: int) -> EngagementKey:
        return EngagementKey(f"o|{partition}")


class RollupKeys:
    """Builders of the campaign-totals table's keys. No campaign id starts with a control character, so
    the marks never meet a campaign."""

    @staticmethod
    def campaign(campaign: str) -> RollupKey:
        return RollupKey(campaign)

    @staticmethod
    def hour(campaign: str, hour: int) -> RollupKey:
        return RollupKey(f"{campaign}\x1f{hour}")

    @staticmethod
    def mark(partition: int) -> RollupKey:
        return RollupKey(f"\x1eoffset|{partition}")
