"""The chaos run's books: waiting until every queued send has an outcome, then checking what clients were told
against ClickHouse, the worker's suppression table and the SMTP sink's Maildir."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import httpx
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from schemas.events import POSSIBLY_MAILED
from schemas.topics import Topics
from tests.chaos.scenario import Books, Chaos
from tests.support.maildir_arrivals import stored


def sql(chaos: Chaos, statement: str) -> list[dict[str, Any]]:
    answer = httpx.post(f"{chaos.sink}/sql", content=statement.encode(), headers=chaos.headers, timeout=60)
    answer.raise_for_status()
    body = answer.json()
    return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]


def group_lag(chaos: Chaos, group: str, topic: str) -> dict[int, tuple[int, int]]:
    """Per partition of ``topic`` that ``group`` has not read to its end: (committed offset, end offset)."""
    admin = AdminClient({"bootstrap.servers": chaos.settings.bootstrap_servers})
    committed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(30)
    done = {tp.partition: max(tp.offset, 0) for tp in committed.topic_partitions if tp.topic == topic}
    ends = admin.list_offsets(
        {TopicPartition(topic, p): OffsetSpec.latest() for p in range(chaos.settings.topic_partitions)},
        request_timeout=30,
    )
    lags = {tp.partition: (done.get(tp.partition, 0), future.result().offset) for tp, future in ends.items()}
    return {p: (at, end) for p, (at, end) in sorted(lags.items()) if end > at}


def sink_lag(chaos: Chaos) -> int:
    """Records of the events topic the sink has not committed yet (it commits after its insert)."""
    topics = Topics.for_prefix(chaos.settings.topic_prefix)
    lags = group_lag(chaos, f"{chaos.settings.topic_prefix}-sink", topics.events)
    return sum(end - at for at, end in lags.values())


def stuck(chaos: Chaos) -> str:
    """What a run that did not settle was waiting for: the worker feeds' unread records by partition, and
    what each worker says of its feeds (``/feeds``)."""
    topics = Topics.for_prefix(chaos.settings.topic_prefix)
    lines = []
    for feed, topic in (("sender", topics.outbox), ("retries", topics.retry), ("held", topics.held)):
        try:
            lags = group_lag(chaos, f"{topics.processors_app}-{feed}", topic)
        except Exception as exc:  # the diagnosis must not hide the failure it explains
            lines.append(f"{feed}: lag unknown ({exc})")
            continue
        behind = ", ".join(f"p{p} {at}/{end}" for p, (at, end) in lags.items()) or "none"
        lines.append(f"{feed} feed, committed/end where behind: {behind}")
    for url in chaos.workers:
        try:
            answer = httpx.get(f"{url}/feeds", headers=chaos.headers, timeout=10).json()
        except (httpx.HTTPError, ValueError) as exc:
            lines.append(f"{url}: no answer ({exc})")
            continue
        lines.append(f"{url}: {json.dumps(answer, sort_keys=True)}")
    return "\n".join(lines)


def settled(chaos: Chaos, timeout: float = 300) -> None:
    """Until every queued send has an outcome in ClickHouse, the sink has stored all of the events topic and
    nothing more arrives for 5 s."""
    expected = sum(len(p) for p in chaos.books.campaigns.values())
    last, since, deadline = -1, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = sql(
            chaos,
            "SELECT count() AS n, uniqExactIf(message_id, kind IN ('sent', 'send.skipped', 'failed')) AS done "
            "FROM events WHERE campaign_id LIKE 'chaos-%'",
        )[0]
        if rows["n"] != last:
            last, since = rows["n"], time.monotonic()
        elif rows["done"] >= expected and time.monotonic() - since > 5 and sink_lag(chaos) == 0:
            return
        time.sleep(1)
    raise RuntimeError(f"the books did not settle in {timeout:.0f}s; what was still waiting:\n{stuck(chaos)}")


def check(chaos: Chaos) -> list[tuple[str, str, bool]]:
    """(check, figure, passed) rows."""
    rows: list[tuple[str, str, bool]] = []
    maildir = [a for a in stored(chaos.settings.var_dir / "maildir") if a.campaign.startswith("chaos-")]
    mailed = Counter(a.recipient for a in maildir)
    first_mail: dict[str, float] = {}
    for a in sorted(maildir, key=lambda a: a.at):
        first_mail.setdefault(a.recipient, a.at)
    queued = {p for people in chaos.books.campaigns.values() for p in people}
    skipped = {
        r["recipient"]
        for r in sql(chaos, "SELECT recipient FROM events WHERE kind = 'send.skipped' AND campaign_id LIKE 'chaos-%'")
    }
    missing = queued - set(mailed) - skipped
    rows.append(
        (
            "every queued recipient mailed or skipped as suppressed",
            f"{len(queued) - len(missing):,} of {len(queued):,}",
            not missing,
        )
    )
    duplicates = sum(n - 1 for n in mailed.values())
    worker_kills = sum(o.service.startswith("worker") for o in chaos.outages)
    bound = worker_kills * 2 * chaos.settings.send_batch_size
    rows.append(
        (
            "mails sent twice (bound: 2 batches per worker kill)",
            f"{duplicates:,} (bound {bound:,})",
            duplicates <= bound,
        )
    )
    # Skips of requests found pending: a worker died in their SMTP transaction, so some did go out.
    maybe_mailed = {
        r["recipient"]
        for r in sql(
            chaos,
            "SELECT DISTINCT recipient FROM events WHERE kind = 'send.skipped' AND campaign_id LIKE 'chaos-%' "
            f"AND has(splitByChar(',', reason), '{POSSIBLY_MAILED}')",
        )
    }
    rows.append(
        (
            "skipped after a crash that may have mailed them (in the Maildir; bound as above)",
            f"{len(maybe_mailed):,} ({sum(1 for p in maybe_mailed if mailed[p]):,})",
            len(maybe_mailed) <= bound,
        )
    )
    counts = sql(
        chaos,
        "SELECT count() AS n, uniqExact(event_id) AS ids, uniqExactIf(event_id, kind = 'open') AS opens, "
        "uniqExactIf(event_id, kind = 'click') AS clicks, "
        "uniqExactIf(event_id, kind = 'open') AS open_ids FROM events "
        "WHERE campaign_id LIKE 'chaos-%'",
    )[0]
    # The sink writes before it commits and a redelivered send publishes its kept outcome again, under its
    # id: a raw row may be stored twice, and reports count distinct ids. What must hold is one outcome a send,
    # as reports count: one `sent` id or one `send.skipped` id. A skip that says possibly_mailed may follow a
    # stored `sent` (the event reached Kafka, the sent mark did not, the address was suppressed before the
    # redelivery): reports count that message sent and not skipped, so the pair is one outcome, shown apart.
    outcomes = sql(
        chaos,
        "SELECT countIf(sent > 1 OR skips > 1 OR (sent = 1 AND skips = 1 AND NOT maybe)) AS twice, "
        "countIf(sent = 1 AND skips = 1 AND maybe) AS mailed_then_skipped FROM ("
        "SELECT uniqExactIf(event_id, kind = 'sent') AS sent, uniqExactIf(event_id, kind = 'send.skipped') AS skips, "
        f"max(kind = 'send.skipped' AND has(splitByChar(',', reason), '{POSSIBLY_MAILED}')) AS maybe "
        "FROM events WHERE campaign_id LIKE 'chaos-%' AND kind IN ('sent', 'send.skipped') GROUP BY message_id)",
    )[0]
    twice = outcomes["twice"]
    figure = f"{twice:,} ({outcomes['mailed_then_skipped']:,} sent, then skipped as possibly mailed)"
    rows.append(("sends with more than one outcome, as reports count (distinct ids)", figure, twice == 0))
    rows.append(("raw rows / distinct event ids", f"{counts['n']:,} / {counts['ids']:,}", counts["n"] >= counts["ids"]))
    acknowledged = (
        ("unsubscribes", "kind = 'unsubscribe'", chaos.books.unsubscribed),
        ("webhook bounces", "kind = 'bounce' AND source = 'postmark'", chaos.books.bounced),
        ("bounce mails", "kind = 'bounce' AND source = 'mail-dsn'", chaos.books.dsn_bounced),
    )
    for name, where, acked in acknowledged:
        stored_for = {
            r["recipient"]
            for r in sql(chaos, f"SELECT DISTINCT recipient FROM events WHERE {where} AND campaign_id LIKE 'chaos-%'")
        }
        lost = set(acked) - stored_for
        rows.append((f"acknowledged {name} in ClickHouse", f"{len(acked) - len(lost):,} of {len(acked):,}", not lost))
    for kind, answered, stored_n, errors in (
        ("pixels", chaos.books.opens_answered, counts["opens"], chaos.books.retries["open"]),
        ("clicks", chaos.books.clicks_answered, counts["clicks"], chaos.books.retries["click"]),
    ):
        # Each stored one was answered, or its request failed at the client (an edge killed between its hand-off
        # and its answer); what an edge held when killed is lost (fire-and-forget).
        figure = f"{answered:,} / {stored_n:,} ({errors:,} requests failed)"
        rows.append((f"{kind} answered / stored", figure, stored_n <= answered + errors))
    rows.append(reports_match(chaos, mailed, counts["open_ids"], maybe_mailed))
    wrong = []
    for address in {*chaos.books.unsubscribed, *chaos.books.bounced, *chaos.books.dsn_bounced}:
        answer = httpx.get(f"{chaos.workers[0]}/suppression/{address}", headers=chaos.headers, timeout=10)
        if not answer.json().get("suppressed"):
            wrong.append(address)
    suppressed = len({*chaos.books.unsubscribed, *chaos.books.bounced, *chaos.books.dsn_bounced})
    rows.append(("suppression equals the model", f"{suppressed - len(wrong):,} of {suppressed:,}", not wrong))
    late = [
        a
        for a in maildir
        if a.recipient in chaos.books.unsubscribed and a.at > chaos.books.unsubscribed[a.recipient] + 1.0
    ]
    rows.append(("mail more than 1 s after an acknowledged unsubscribe", f"{len(late)}", not late))
    for a in late[:5]:
        chaos.say(
            f"  late: {a.recipient} ({a.campaign}) stored {a.at - chaos.books.unsubscribed[a.recipient]:.2f} s "
            f"after its unsubscribe was acknowledged at {chaos.books.unsubscribed[a.recipient]:.3f}"
        )
    return rows


def report_model(
    books: Books, ours: set[str], mailed: Counter[str], maybe_mailed: set[str]
) -> dict[str, tuple[int, int]]:
    """A campaign's counts as (low, high) from what was acknowledged. A bounce mail for a message not sent
    yet suppresses it, and the report counts it bounced, not skipped; an attempt that failed at the client
    may still have been stored (the door died after handing it to Kafka), so it widens the range. A request
    skipped as possibly mailed (found pending after a crash) the report counts skipped, though the SMTP
    sink may hold it."""

    def acked(*kinds: dict[str, float]) -> int:
        return sum(1 for kind in kinds for p in kind if p in ours)

    def maybe(kind: str, acknowledged: dict[str, float]) -> int:
        return len({p for p in books.unsure.get(kind, set()) if p in ours and p not in acknowledged})

    not_mailed = {p for p in ours if not mailed[p]}
    mailed_then_skipped = len({p for p in maybe_mailed if p in ours and mailed[p]})
    unsure_dsn = {p for p in books.unsure.get("bounce mail", set()) if p not in books.dsn_bounced}
    unsubscribes = acked(books.unsubscribed)
    hard = acked(books.bounced, books.dsn_bounced)
    return {
        "sent": (len(ours) - len(not_mailed) - mailed_then_skipped, len(ours) - len(not_mailed)),
        "skipped": (
            len(not_mailed - set(books.dsn_bounced) - unsure_dsn),
            len(not_mailed - set(books.dsn_bounced)) + mailed_then_skipped,
        ),
        "unsubscribes": (unsubscribes, unsubscribes + maybe("unsubscribe", books.unsubscribed)),
        "bounced_hard": (hard, hard + maybe("webhook", books.bounced) + maybe("bounce mail", books.dsn_bounced)),
    }


def reports_match(chaos: Chaos, mailed: Counter[str], open_ids: int, maybe_mailed: set[str]) -> tuple[str, str, bool]:
    """Each campaign's report (the sink's ``/reports``) against the model of what was acknowledged: every
    recipient sent or skipped, as many sent as the SMTP sink got, one unsubscribe and one hard bounce per
    acknowledged one (webhook and bounce mail name different messages), every stored open counted."""
    wrong: list[str] = []
    opens = 0
    for campaign, people in chaos.books.campaigns.items():
        answer = httpx.get(f"{chaos.sink}/reports/{campaign}", headers=chaos.headers, timeout=60)
        answer.raise_for_status()
        report = answer.json()
        model = report_model(chaos.books, set(people), mailed, maybe_mailed)
        for key, (low, high) in model.items():
            got = int(report.get(key, -1))
            if not low <= got <= high:
                wrong.append(f"{campaign} {key} {got} not in [{low}, {high}]")
        opens += int(report.get("opens_total", 0))
    if opens != open_ids:
        wrong.append(f"opens in reports {opens} != stored {open_ids}")
    for line in wrong[:5]:
        chaos.say(f"  report: {line}")
    figure = f"{len(chaos.books.campaigns)} campaigns" + (f", {len(wrong)} counts differ" if wrong else "")
    return ("campaign reports equal the model (sent, skipped, unsubscribes, hard bounces, opens)", figure, not wrong)
