"""The short form of `make chaos` (issue 18): a few thousand events of every acknowledged kind through 3
brokers, 2 workers, 2 edges and the sink while each kind of process is SIGKILLed once and restarted and a
broker is paused past its session timeout; every check of the books must pass (the table is printed)."""

from __future__ import annotations

import pytest

from tests.chaos.__main__ import run

# Ports of its own (21000-21310) and var/chaos-short: it may run beside `make chaos` (19600-19910).
BASE_PORT = 21000


@pytest.mark.timeout(900)
def test_the_books_balance_after_every_kind_of_process_was_killed_once() -> None:
    assert run(campaigns=2, recipients=1500, rounds=1, seed=2026, base=BASE_PORT, var="chaos-short")
