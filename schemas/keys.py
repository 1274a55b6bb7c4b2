"""The partition key shared by every topic: the normalized recipient address."""

from __future__ import annotations


def normalize_address(address: str) -> str:
    """Lower-cased, trimmed address; the identity of a recipient everywhere."""
    return address.strip().lower()


def recipient_key(recipient: str | None, campaign_id: str) -> bytes:
    # Aggregate-mode events name no recipient; the campaign keeps them together.
    if recipient:
        return normalize_address(recipient).encode()
    return f"campaign:{campaign_id}".encode()
