"""Applies the numbered migrations in order and records them in ``mailpulse_migrations``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from sinks.migrations import (
    m0001_events,
    m0002_suppression_changes,
    m0003_hourly_rollup,
    m0004_bounce_reasons,
    m0005_attribution,
    m0006_retry_time,
    m0007_campaign_lifecycle,
    m0008_message_outcomes,
)
from sinks.store import EventStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    forwards: Callable[[str | None], list[str]]
    backwards: Callable[[str | None], list[str]]


def _from(number: int, module: ModuleType) -> Migration:
    return Migration(number, module.NAME, module.forwards, module.backwards)


MIGRATIONS: tuple[Migration, ...] = (
    _from(1, m0001_events),
    _from(2, m0002_suppression_changes),
    _from(3, m0003_hourly_rollup),
    _from(4, m0004_bounce_reasons),
    _from(5, m0005_attribution),
    _from(6, m0006_retry_time),
    _from(7, m0007_campaign_lifecycle),
    _from(8, m0008_message_outcomes),
)

_LEDGER = """CREATE TABLE IF NOT EXISTS mailpulse_migrations (
    number UInt32, name String, applied_at DateTime64(6) DEFAULT now64(6), direction Int8
) ENGINE = ReplacingMergeTree(applied_at) ORDER BY number"""


def applied(store: EventStore) -> set[int]:
    store.command(_LEDGER)
    _, rows = store.query("SELECT number, argMax(direction, applied_at) AS d FROM mailpulse_migrations GROUP BY number")
    return {int(number) for number, direction in rows if direction == 1}


def migrate(store: EventStore, cluster: str | None = None, target: int | None = None) -> list[str]:
    """Forwards to ``target`` (default: latest), or backwards when target is below the applied ones."""
    done = applied(store)
    target = MIGRATIONS[-1].number if target is None else target
    steps: list[str] = []
    for migration in MIGRATIONS:
        if migration.number <= target and migration.number not in done:
            for statement in migration.forwards(cluster):
                store.command(statement)
            store.command(
                f"INSERT INTO mailpulse_migrations (number, name, direction) VALUES "
                f"({migration.number}, '{migration.name}', 1)"
            )
            steps.append(f"applied {migration.number:04d}_{migration.name}")
    for migration in reversed(MIGRATIONS):
        if migration.number > target and migration.number in done:
            for statement in migration.backwards(cluster):
                store.command(statement)
            store.command(
                f"INSERT INTO mailpulse_migrations (number, name, direction) VALUES "
                f"({migration.number}, '{migration.name}', -1)"
            )
            steps.append(f"reverted {migration.number:04d}_{migration.name}")
    for step in steps:
        log.info("migration %s", step)
    return steps
