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
    # The buckets' sums, kept as buckets fill and leave: judging ran once per send and summed them each time.
    attempts: int = 0
    blocked: int = 0
    # Per line: whether it alerted and has not fallen back below since.
    alerting: list[bool] = field(default_factory=list)


class BlockMonitor:
    """One window per (campaign, domain), judged against each policy's line: the block alert and the
    automatic pause share one window (and one pass over each event), each crossing its own line."""

    def __init__(self, policy: BlockPolicy, *more: BlockPolicy) -> None:
        self.policies = (policy, *more)
        if any(other.window_seconds != policy.window_seconds for other in more):
            raise ValueError("the lines of one block monitor share its window")
        self._bucket_seconds = max(policy.window_seconds / WINDOW_BUCKETS, 1e-3)
        self._windows: dict[tuple[str, str], _Window] = {}
        self._none: tuple[BlockRate | None, ...] = (None,) * len(self.policies)

    def observe(self, event: AnyEvent) -> BlockRate | None:
        """Count one event; the block rate when this event made it cross the (first) line, else None."""
        return self.observe_each(event)[0]

    def observe_each(self, event: AnyEvent) -> tuple[BlockRate | None, ...]:
        """Count one event; per policy, the block rate when this event made it cross that line, else None."""
        attempt = isinstance(event, Sent) or (isinstance(event, Bounce) and event.source == "smtp")
        blocked = isinstance(event, Bounce) and event.bounce_class is BounceClass.BLOCK
        if not (attempt or blocked) or not event.recipient or not event.campaign_id:
            return self._none
        key = (event.campaign_id, recipient_domain(event.recipient))
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(alerting=[False] * len(self.policies))
        start = int(event.occurred_at.timestamp() // self._bucket_seconds)
        if start > window.newest:
            window.newest = start
            oldest = start - WINDOW_BUCKETS + 1
            for stale in [s for s in window.buckets if s < oldest]:
                gone = window.buckets.pop(stale)
                window.attempts -= gone.attempts
                window.blocked -= gone.blocked
        elif start < window.newest - WINDOW_BUCKETS + 1:
            return self._none  # older than the window: it cannot change what the window says now
        bucket = window.buckets.get(start)
        if bucket is None:
            bucket = window.buckets[start] = _Bucket()
        bucket.attempts += attempt
        window.attempts += attempt
        if isinstance(event, Bounce) and blocked:
            bucket.blocked += 1
            window.blocked += 1
            diagnostic = " ".join(event.diagnostic.split())[:200]
            if diagnostic in bucket.diagnostics or len(bucket.diagnostics) < DIAGNOSTICS_PER_BUCKET:
                bucket.diagnostics[diagnostic] += 1
        return tuple([self._judge(key, window, line) for line in range(len(self.policies))])

    def _judge(self, key: tuple[str, str], window: _Window, line: int) -> BlockRate | None:
        attempts, blocked = window.attempts, window.blocked
        policy = self.policies[line]
        rate = blocked / attempts if attempts else 0.0
        over = attempts >= policy.min_attempts and rate >= policy.rate
        if not over:
            window.alerting[line] = False  # fell back below the line: the next crossing alerts again
            return None
        if window.alerting[line]:
            return None
        window.alerting[line] = True
        diagnostics: Counter[str] = Counter()
        for bucket in window.buckets.values():
            diagnostics.update(bucket.diagnostics)
        top = diagnostics.most_common(1)[0][0] if diagnostics else ""
        return BlockRate(key[0], key[1], attempts, blocked, round(rate, 6), top)
