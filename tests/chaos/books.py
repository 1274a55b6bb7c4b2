"""The chaos run's books: waiting until every queued send has an outcome, then checking what clients were told
against ClickHouse, the worker's suppression table and the SMTP sink's Maildir."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx

from tests.chaos.scenario import Chaos
from tests.support.maildir_arrivals import stored


def sql(chaos: Chaos, statement: str) -> list[dict[str, Any]]:
    answer = httpx.post(f"{chaos.sink}/sql", content=statement.encode(), headers=chaos.headers, timeout=60)
    answer.raise_for_status()
    body = answer.json()
    return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]


def settled(chaos: Chaos, timeout: float = 300) -> None:
    """Until every queued send has an outcome in ClickHouse and nothing more arrives for 5 s."""
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
        elif rows["done"] >= expected and time.monotonic() - since > 5:
            return
        time.sleep(1)
    raise RuntimeError(f"the books did not settle in {timeout:.0f}s")


def check(chaos: Chaos) -> list[tuple[str, str, bool]]:
    """(check, figure, passed) rows."""
    rows: list[tuple[str, str, bool]] = []
    maildir = [a for a in stored(chaos.settings.var_dir / "maildir") if a.campaign.startswith("chaos-")]
    mailed = Counter(a.recipient for a in maildir)
    first_mail = {}
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
    counts = sql(
        chaos,
        "SELECT count() AS n, uniqExact(event_id) AS ids, countIf(kind = 'open') AS opens FROM events "
        "WHERE campaign_id LIKE 'chaos-%'",
    )[0]
    rows.append(
        ("raw events stored once", f"{counts['n']:,} rows, {counts['ids']:,} ids", counts["n"] == counts["ids"])
    )
    for kind, acked in (("unsubscribe", chaos.books.unsubscribed), ("bounce", chaos.books.bounced)):
        stored_for = {
            r["recipient"]
            for r in sql(
                chaos, f"SELECT DISTINCT recipient FROM events WHERE kind = '{kind}' AND campaign_id LIKE 'chaos-%'"
            )
        }
        lost = set(acked) - stored_for
        rows.append((f"acknowledged {kind}s in ClickHouse", f"{len(acked) - len(lost):,} of {len(acked):,}", not lost))
    lost_opens = chaos.books.opens_answered - counts["opens"]
    rows.append(
        (
            "pixels answered / stored (an edge killed loses what it held)",
            f"{chaos.books.opens_answered:,} / {counts['opens']:,}",
            lost_opens >= 0,
        )
    )
    wrong = []
    for address in [*chaos.books.unsubscribed, *chaos.books.bounced]:
        answer = httpx.get(f"{chaos.workers[0]}/suppression/{address}", headers=chaos.headers, timeout=10)
        if not answer.json().get("suppressed"):
            wrong.append(address)
    suppressed = len(chaos.books.unsubscribed) + len(chaos.books.bounced)
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
