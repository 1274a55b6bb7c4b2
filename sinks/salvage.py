"""A batch the store refused: store what it can hold, and name the records it cannot, each with its reason.

The sink hands ClickHouse most records as they came (:func:`sinks.rows.raw_event_line`), so a malformed one
makes ClickHouse refuse its whole batch. Only then is the batch mapped again record by record, strictly:
a record the mapping refuses goes to the dead-letter topic with the mapping's reason; the rest are inserted,
and an insert ClickHouse still refuses is split in halves until each refused row stands alone, which goes
to the dead-letter topic with ClickHouse's reason. A batch of n rows with k bad ones costs about
2k log2(n) more inserts, paid only by batches that hold a bad record.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from schemas.codec import DecodeError
from sinks.rows import MappedRow

# ClickHouse error codes that mean "this data cannot be stored as it is" (a bad row), as opposed to "the
# insert could not run" (the server down, busy or out of memory), which is retried as a whole. A violated
# table constraint is not among them: it is the operator's policy for the whole table (the sink stops and
# says so on /healthz, tests/integration/test_sink_failures.py), not a verdict on one record.
REFUSED_DATA_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        25,  # CANNOT_PARSE_ESCAPE_SEQUENCE
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        32,  # ATTEMPT_TO_READ_AFTER_EOF
        33,  # CANNOT_READ_ALL_DATA
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA (an unknown or duplicated field among them)
        131,  # TOO_LARGE_STRING_SIZE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        377,  # CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING
        641,  # CANNOT_PARSE_BOOL
    }
)
_CODE = re.compile(r"Code: (\d+)\.")

Source = tuple[bytes, int, int]  # a record's value, partition and offset
Refused = tuple[int, str]  # a record's position in its batch, and why it cannot be stored


def refuses_data(exc: BaseException) -> bool:
    """Whether ClickHouse refused the rows sent (then the bad ones are found), not the insert itself."""
    match = _CODE.search(str(exc))
    return match is not None and int(match.group(1)) in REFUSED_DATA_CODES


def reason_of(exc: BaseException) -> str:
    """ClickHouse's words for a refused row, short enough for a Kafka header."""
    text = " ".join(str(exc).split())
    return text[:500]


def salvage(
    sources: Sequence[Source],
    to_row: Callable[[bytes, int, int], MappedRow],
    insert: Callable[[list[MappedRow]], None],
) -> list[Refused]:
    """Insert every record of a refused batch that can be stored; return the others, in batch order.

    ``insert`` raises what the store raised: an error that is not :func:`refuses_data` propagates (the
    caller retries the whole batch; rows stored meanwhile are stored again, which reports do not count
    twice, since they count distinct ids).
    """
    refused: list[Refused] = []
    rows: list[MappedRow] = []
    positions: list[int] = []
    for position, (value, partition, offset) in enumerate(sources):
        try:
            rows.append(to_row(value, partition, offset))
        except DecodeError as exc:
            refused.append((position, str(exc)))
            continue
        positions.append(position)
    _split(rows, positions, insert, refused)
    return sorted(refused)


def _split(
    rows: list[MappedRow], positions: list[int], insert: Callable[[list[MappedRow]], None], refused: list[Refused]
) -> None:
    if not rows:
        return
    try:
        insert(rows)
    except Exception as exc:
        if not refuses_data(exc):
            raise
        if len(rows) == 1:
            refused.append((positions[0], reason_of(exc)))
            return
        half = len(rows) // 2
        _split(rows[:half], positions[:half], insert, refused)
        _split(rows[half:], positions[half:], insert, refused)
