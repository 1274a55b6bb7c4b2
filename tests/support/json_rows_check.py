"""``python -m tests.support.json_rows_check STORE``: insert the same events through the JSONEachRow path the sink
uses and through clickhouse-connect tuples (the column-by-column mapping), and print whether the tables agree.

Run in its own process: chdb allows one data path per process.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from schemas.codec import encode
from schemas.events import (
    AnyEvent,
    Deferred,
    Open,
    SendSkipped,
    SuppressionAdded,
    SuppressionRemoved,
)
from sinks.migrate import migrate
from sinks.rows import COLUMNS, EVENTS, event_to_row
from sinks.store import EventStore
from tests.support.models import event_stream


def sample() -> list[AnyEvent]:
    at = datetime(2026, 11, 20, 8, 30, 15, 123456, tzinfo=UTC)
    extra: list[AnyEvent] = [
        Deferred(
            event_id="d1", occurred_at=at, campaign_id="c", message_id="m", recipient="a@x.org",
            smtp_code=451, smtp_reply="4.7.1 try later", attempt=2, retry_at=at + timedelta(minutes=5),
        ),
        Open(event_id="o1", occurred_at=at, campaign_id="c", message_id="m", recipient=None, user_agent="UA \"q\"\n"),
        SendSkipped(event_id="s1", occurred_at=at, campaign_id="c", message_id="m", recipient="b@x.org", reason="x,y"),
        SuppressionAdded(event_id="a1", occurred_at=at, campaign_id="", message_id="", recipient="c@x.org", reason="r"),
        SuppressionRemoved(event_id="r1", occurred_at=at, campaign_id="", message_id="", recipient="c@x.org"),
    ]  # fmt: skip
    return event_stream(4, ["json-rows"], 120) + extra


def main() -> None:
    store = EventStore(f"chdb://{sys.argv[1]}")
    migrate(store)
    store.command("CREATE TABLE events_tuples AS events")
    events = sample()
    store.write(EVENTS, [EVENTS.to_row(encode(e), 1, n) for n, e in enumerate(events)])
    store.insert("events_tuples", COLUMNS, [event_to_row(e, 1, n) for n, e in enumerate(events)])
    columns = ", ".join(COLUMNS)
    _, by_json = store.query(f"SELECT {columns} FROM events FINAL ORDER BY event_id, kafka_offset")
    _, by_tuples = store.query(f"SELECT {columns} FROM events_tuples FINAL ORDER BY event_id, kafka_offset")
    if by_json == by_tuples and len(by_json) == len({e.event_id for e in events}):
        print(f"IDENTICAL {len(by_json)}")
        return
    for a, b in zip(by_json, by_tuples, strict=False):
        if a != b:
            print("DIFFERENT", dict(zip(COLUMNS, a, strict=True)), dict(zip(COLUMNS, b, strict=True)))
            break
    print(f"rows: json {len(by_json)}, tuples {len(by_tuples)}")
    sys.exit(1)


if __name__ == "__main__":
    main()
