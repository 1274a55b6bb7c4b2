"""The enumerations events carry as fields: who fetched a link, how a message is tracked, what an
unsubscribe covers. Apart from the event classes (schemas/events.py), which use them."""

from __future__ import annotations

import enum


class AgentClass(enum.StrEnum):
    """Who fetched a pixel or followed a link. Kept on the event, never used to drop it."""

    HUMAN = "human"
    APPLE_MPP = "apple_mpp"
    GOOGLE_PROXY = "google_proxy"
    YAHOO_PROXY = "yahoo_proxy"
    SCANNER = "scanner"
    BOT = "bot"

    @property
    def is_machine(self) -> bool:
        return self is not AgentClass.HUMAN


class TrackingMode(enum.StrEnum):
    FULL = "full"
    AGGREGATE = "aggregate"
    OFF = "off"


class UnsubscribeScope(enum.StrEnum):
    LIST = "list"
    ALL = "all"
