"""The sink's fast path (records to ClickHouse as they came) and what happens to a batch ClickHouse refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from schemas.codec import encode
from schemas.events import Click, Open, Sent
from sinks.rows import EVENTS, raw_event_line
from sinks.salvage import refuses_data, salvage

NOW = datetime(2026, 12, 3, 8, tzinfo=UTC)
OPEN = Open(event_id="e1", occurred_at=NOW, campaign_id="c", message_id="m", recipient="a@example.org")


def test_a_record_as_the_producers_write_it_is_its_own_line_with_the_kafka_coordinates() -> None:
    line = raw_event_line(encode(OPEN), 4, 17)
    assert line is not None
    assert json.loads(line) == {**json.loads(encode(OPEN)), "kafka_partition": 4, "kafka_offset": 17}
    # The line the strict path makes of the same record holds the same values.
    assert json.loads(line) == json.loads(EVENTS.to_row(encode(OPEN), 4, 17))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "record",
    [
        b'{"kind": "open", "event_id": "e1"}',  # not as msgspec writes it: decoded strictly
        b'{"event_id":"e1","kind":"open","occurred_at":"2026-12-03T08:00:00Z","campaign_id":"c","message_id":"m"}',
        b'{"kind":"poll","event_id":"e1","occurred_at":"2026-12-03T08:00:00Z","campaign_id":"c","message_id":"m"}',
        b'{"kind":"open","occurred_at":"2026-12-03T08:00:00Z","campaign_id":"c","message_id":"m"}',  # no id
        b'{"kind":"open","event_id":"e1","campaign_id":"c","message_id":"m"}',  # no time
        b'{"kind":"open","event_id":"e1","occurred_at":"2026-12-03T08:00:00Z","campaign_id":"c","message_id":"m"',
        b"",
    ],
)
def test_a_record_that_does_not_look_canonical_takes_the_strict_path(record: bytes) -> None:
    assert raw_event_line(record, 0, 0) is None


class Store:
    """ClickHouse's refusal as it words it, for rows holding ``"bad"``; or an outage, for every insert."""

    def __init__(self, down: bool = False) -> None:
        self.stored: list[bytes] = []
        self.inserts = 0
        self.down = down

    def insert(self, rows: list[object]) -> None:
        self.inserts += 1
        if self.down:
            raise RuntimeError("Code: 210. DB::NetException: Connection refused (127.0.0.1:8123)")
        lines = [r for r in rows if isinstance(r, bytes)]
        if any(b"bad" in line for line in lines):
            raise RuntimeError("Code: 117. DB::Exception: Unknown field found while parsing JSONEachRow format: bad")
        self.stored += lines


def _source(event: Open | Click | Sent, offset: int) -> tuple[bytes, int, int]:
    return encode(event), 0, offset


def test_a_refused_batch_stores_every_good_record_and_names_each_bad_one() -> None:
    good = [_source(Open(event_id=f"e{n}", occurred_at=NOW, campaign_id="c", message_id=f"m{n}"), n) for n in range(64)]
    batch = list(good)
    batch[5] = (b'{"kind":"open","this is": not json}', 0, 5)
    batch[40] = (b"x", 0, 40)
    store = Store()

    def lines(value: bytes, partition: int, offset: int) -> bytes:
        row = EVENTS.to_row(value, partition, offset)
        assert isinstance(row, bytes)
        return row.replace(b'"m33"', b'"bad"')  # a row the mapping accepts and ClickHouse refuses

    refused = salvage(batch, lines, store.insert)
    assert [position for position, _ in refused] == [5, 33, 40]
    assert "malformed event JSON" in refused[0][1] and "Unknown field" in refused[1][1]
    assert len(store.stored) == 61 and not any(b'"bad"' in line for line in store.stored)
    assert store.inserts < 2 * 1 * 7 + 2  # one bad row in 62: about 2 log2(62) inserts, not one per row


def test_an_outage_during_a_salvage_is_raised_for_the_whole_batch_to_be_retried() -> None:
    with pytest.raises(RuntimeError, match="Connection refused"):
        salvage([_source(OPEN, 0)], EVENTS.to_row, Store(down=True).insert)


def test_only_refused_data_is_searched_row_by_row() -> None:
    assert refuses_data(RuntimeError("Code: 27. DB::Exception: Cannot parse input: expected '{' before: 'x'"))
    assert not refuses_data(RuntimeError("Code: 469. DB::Exception: Constraint `policy` is violated"))
    assert not refuses_data(RuntimeError("Code: 241. DB::Exception: Memory limit (total) exceeded"))
    assert not refuses_data(RuntimeError("Code: 252. DB::Exception: Too many parts (300)"))
    assert not refuses_data(ConnectionError("[Errno 111] Connection refused"))
