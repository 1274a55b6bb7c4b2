from __future__ import annotations

import pytest

from processors.ratelimit import DomainLimits, RateLimiter, recipient_domain
from schemas.settings import Settings, SettingsError


def test_a_burst_goes_at_once_then_sends_are_spaced_at_the_rate() -> None:
    limiter = RateLimiter(DomainLimits({"gmail.com": 10.0}), burst=3)
    waits = [limiter.reserve("gmail.com", now=100.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])


def test_the_bucket_refills_with_time_and_other_domains_are_independent() -> None:
    limiter = RateLimiter(DomainLimits({"gmail.com": 10.0}, default=1.0), burst=1)
    assert limiter.reserve("gmail.com", 0.0) == 0.0
    assert limiter.reserve("gmail.com", 0.0) == pytest.approx(0.1)
    assert limiter.reserve("gmail.com", 5.0) == 0.0  # idle for a while: no debt carried
    assert limiter.reserve("example.org", 0.0) == 0.0
    assert limiter.reserve("example.org", 0.0) == pytest.approx(1.0)  # the default rate
    assert RateLimiter(DomainLimits()).reserve("any.org", 0.0) == 0.0  # no limits configured


def test_sustained_rate_never_exceeds_the_limit() -> None:
    limiter = RateLimiter(DomainLimits({"yahoo.com": 50.0}), burst=10)
    send_times = [0.0 + limiter.reserve("yahoo.com", 0.0) for _ in range(1000)]
    # Any one-second window holds at most rate + burst sends.
    for start in send_times:
        assert sum(1 for t in send_times if start <= t < start + 1.0) <= 60


def test_recipient_domain_and_settings_parsing() -> None:
    assert recipient_domain("Someone@GMail.com") == "gmail.com"
    settings = Settings.from_env({"MAILPULSE_DOMAIN_RATE_LIMITS": "gmail.com=50, *=200"})
    assert settings.domain_rate_limits == (("gmail.com", 50.0), ("*", 200.0))
    with pytest.raises(SettingsError, match="domain=messages_per_second"):
        Settings.from_env({"MAILPULSE_DOMAIN_RATE_LIMITS": "gmail.com:50"})
    with pytest.raises(SettingsError):
        Settings.from_env({"MAILPULSE_DOMAIN_RATE_LIMITS": "gmail.com=-1"})


def test_a_send_that_would_wait_too_long_books_nothing() -> None:
    limiter = RateLimiter(DomainLimits({"gmail.com": 1.0}), burst=1)
    assert limiter.reserve("gmail.com", 0.0, max_wait=0.5) == 0.0
    assert limiter.reserve("gmail.com", 0.0, max_wait=0.5) == pytest.approx(1.0)  # too far: not booked
    assert limiter.reserve("gmail.com", 0.0, max_wait=0.5) == pytest.approx(1.0)  # still the same slot
    assert limiter.reserve("gmail.com", 1.0, max_wait=0.5) == 0.0  # it comes back when the slot is due
