"""Per-destination-domain send rate limits (pure: the caller passes the time).

A generic cell rate algorithm per domain: each send books the next slot, up to ``burst`` sends may go
at once, and the answer is how long this send must wait for its slot. Mailbox providers throttle
senders that open too many connections or send too fast per domain; a limit keeps mail from being
deferred (or the sending IP from being rate-limited) in the first place.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DomainLimits:
    """Messages per second per recipient domain; ``default`` applies to every other domain (None: no limit)."""

    per_domain: dict[str, float] = field(default_factory=dict)
    default: float | None = None

    def rate_for(self, domain: str) -> float | None:
        return self.per_domain.get(domain.lower(), self.default)


def recipient_domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


class RateLimiter:
    def __init__(self, limits: DomainLimits, burst: int = 10) -> None:
        self.limits = limits
        self.burst = burst
        # Domain -> theoretical arrival time of the next send at the domain's rate.
        self._tat: dict[str, float] = {}

    def reserve(self, domain: str, now: float, max_wait: float = float("inf")) -> float:
        """Seconds a send to ``domain`` must wait (0.0: it may go now); booked only when within ``max_wait``.

        A send that would wait longer books nothing: it comes back later and asks again, without
        pushing every later send further out.
        """
        rate = self.limits.rate_for(domain)
        if rate is None:
            return 0.0
        interval = 1.0 / rate
        tat = max(self._tat.get(domain, now), now)
        wait = max(0.0, tat - (self.burst - 1) * interval - now)
        if wait <= max_wait:
            self._tat[domain] = tat + interval
        return wait
