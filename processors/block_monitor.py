"""Block rates per campaign and receiving domain over a sliding window (pure; time comes with the events).

A block is a refusal whose reason is the sender's (a blocklist, content, authentication, ...): it says
the sender has a problem at that domain, not the recipient. The day an IP lands on a blocklist every
recipient there is refused; this is how the operator hears of it. Attempts are sends that got an answer
(``sent``, or a refusal at send time); blocks are bounces of class block, at send time or by mail later.

The window is kept in ``WINDOW_BUCKETS`` buckets, so memory per (campaign, domain) stays bounded at any
rate. An alert is raised once when the rate crosses the line, and re-armed when it falls back below.
Each worker judges the share of a domain's traffic it holds (recipients are spread over partitions):
with one worker that is all of it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from processors.ratelimit import recipient_domain
from schemas.bounce_reasons import BounceClass
from schemas.events import AnyEvent, Bounce, Sent

WINDOW_BUCKETS = 10
# Distinct diagnostics remembered per bucket, for the alert's "top diagnostic".
DIAGNOSTICS_PER_BUCKET = 20


@dataclass(frozen=True)
class BlockPolicy:
    rate: float = 0.05
    window_seconds: float = 600.0
    min_attempts: int = 50


@dataclass(frozen=True)
class BlockRate:
    """What crossed the line: the alert's content."""

    campaign_id: str
    domain: str
    attempts: int
    blocked: int
    rate: float
    top_diagnostic: str


@dataclass
class _Bucket:
    attempts: int = 0
    blocked: int = 0
    diagnostics: Counter[str] = field(default_factory=Counter)


@dataclass
class _Window:
    buckets: dict[int, _Bucket] = field(default_factory=dict)
    newest: int = 0
    alerting: bool = False


class BlockMonitor:
    def __init__(self, policy: BlockPolicy) -> None:
        self.policy = policy
        self._bucket_seconds = max(policy.window_seconds / WINDOW_BUCKETS, 1e-3)
        self._windows: dict[tuple[str, str], _Window] = {}

    def observe(self, event: AnyEvent) -> BlockRate | None:
        """Count one event; the block rate when this event made it cross the line, else None."""
        attempt = isinstance(event, Sent) or (isinstance(event, Bounce) and event.source == "smtp")
        blocked = isinstance(event, Bounce) and event.bounce_class is BounceClass.BLOCK
        if not (attempt or blocked) or not event.recipient or not event.campaign_id:
            return None
        key = (event.campaign_id, recipient_domain(event.recipient))
        window = self._windows.setdefault(key, _Window())
        start = int(event.occurred_at.timestamp() // self._bucket_seconds)
        window.newest = max(window.newest, start)
        oldest = window.newest - WINDOW_BUCKETS + 1
        for stale in [s for s in window.buckets if s < oldest]:
            del window.buckets[stale]
        if start < oldest:
            return None  # older than the window: it cannot change what the window says now
        bucket = window.buckets.setdefault(start, _Bucket())
        bucket.attempts += attempt
        if isinstance(event, Bounce) and blocked:
            bucket.blocked += 1
            diagnostic = " ".join(event.diagnostic.split())[:200]
            if diagnostic in bucket.diagnostics or len(bucket.diagnostics) < DIAGNOSTICS_PER_BUCKET:
                bucket.diagnostics[diagnostic] += 1
        return self._judge(key, window)

    def _judge(self, key: tuple[str, str], window: _Window) -> BlockRate | None:
        attempts = sum(b.attempts for b in window.buckets.values())
        blocked = sum(b.blocked for b in window.buckets.values())
        rate = blocked / attempts if attempts else 0.0
        over = attempts >= self.policy.min_attempts and rate >= self.policy.rate
        if not over:
            window.alerting = False  # fell back below the line: the next crossing alerts again
            return None
        if window.alerting:
            return None
        window.alerting = True
        diagnostics: Counter[str] = Counter()
        for bucket in window.buckets.values():
            diagnostics.update(bucket.diagnostics)
        top = diagnostics.most_common(1)[0][0] if diagnostics else ""
        return BlockRate(key[0], key[1], attempts, blocked, round(rate, 6), top)
