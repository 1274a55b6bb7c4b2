"""Open and click events from a verified token and the request that followed it (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from producers.classify import classify_agent, truncate_ip
from schemas.events import Click, Open, new_event_id
from schemas.tokens import TokenClaims


def _visit(claims: TokenClaims, user_agent: str, ip: str, occurred_at: datetime, keep_full_ip: bool) -> dict[str, Any]:
    """The fields an open and a click share: who (per the token), when, and by what agent."""
    return {
        "event_id": new_event_id(),
        "occurred_at": occurred_at,
        "campaign_id": claims.campaign_id,
        "message_id": claims.message_id,
        "recipient": claims.recipient,
        "list_id": claims.list_id,
        "user_agent": user_agent,
        "client_ip": truncate_ip(ip, keep_full_ip),
        "agent_class": classify_agent(user_agent, ip),
    }


def open_event(claims: TokenClaims, user_agent: str, ip: str, occurred_at: datetime, keep_full_ip: bool) -> Open:
    return Open(**_visit(claims, user_agent, ip, occurred_at, keep_full_ip))


def click_event(
    claims: TokenClaims, url: str, user_agent: str, ip: str, occurred_at: datetime, keep_full_ip: bool
) -> Click:
    return Click(url=url, **_visit(claims, user_agent, ip, occurred_at, keep_full_ip))
