"""`mailpulse send`: read the audience and templates, enqueue send requests with progress."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from mailpulse.errors import CliError
from mailpulse.progress import Progress
from producers.campaigns import Campaign, CampaignError, build_requests, read_audience
from producers.publisher import KafkaPublisher
from schemas.campaigns import campaign_record, queued_event
from schemas.codec import encode
from schemas.events import TrackingMode
from schemas.keys import recipient_key
from schemas.settings import Settings
from schemas.topics import Topics


def _read(path: object, what: str) -> str:
    if path is None:
        return ""
    try:
        return open(str(path), encoding="utf-8").read()
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror}", status=2) from None
    except UnicodeDecodeError:
        raise CliError(f"{what} {path} is not UTF-8 text", status=2) from None


def enqueue_campaign(args: argparse.Namespace, settings: Settings, say: Callable[[str], None]) -> int:
    audience_text = _read(args.audience, "audience")
    fmt = "jsonl" if str(args.audience).endswith((".jsonl", ".ndjson")) else "csv"
    try:
        campaign = Campaign(
            campaign_id=args.campaign,
            list_id=args.list_id,
            from_address=args.from_address or settings.from_address,
            subject=args.subject,
            html=_read(args.html, "HTML template"),
            text=_read(args.text, "text template"),
            tracking=TrackingMode(args.tracking),
        )
        intake = build_requests(campaign, read_audience(audience_text, fmt))
    except CampaignError as exc:
        raise CliError(str(exc), status=2) from None
    for row, reason in intake.rejected[:20]:
        say(f"  row {row} refused: {reason}")
    if len(intake.rejected) > 20:
        say(f"  ... and {len(intake.rejected) - 20} more refused rows")
    if not intake.requests:
        raise CliError("no valid recipients in the audience")
    failures: list[bool] = []
    publisher = KafkaPublisher(settings, on_delivery=lambda ok: failures.append(True) if not ok else None)
    outbox = Topics.for_prefix(settings.topic_prefix).outbox
    total = len(intake.requests)
    started = time.monotonic()
    with Progress(f"queueing {campaign.campaign_id}", total, "request") as progress:
        for request in intake.requests:
            publisher.publish(outbox, recipient_key(request.recipient, request.campaign_id), encode(request))
            progress.update()
    say(f"  waiting for Kafka to acknowledge {total} send requests")
    remaining = publisher.flush(60.0)
    if not remaining and not failures:
        # What was queued, for the campaign's progress (the same audience sent again counts once).
        key, value = campaign_record(queued_event(campaign.campaign_id, (r.message_id for r in intake.requests)))
        publisher.publish(Topics.for_prefix(settings.topic_prefix).campaigns, key, value)
        remaining = publisher.flush(30.0)
    publisher.close()
    if remaining or failures:
        raise CliError(
            f"{remaining + len(failures)} send requests were not acknowledged by Kafka; run again "
            "(message ids are stable, nobody is mailed twice)"
        )
    say(
        f"campaign {campaign.campaign_id}: queued {total} send requests "
        f"({intake.duplicates} duplicate rows, {len(intake.rejected)} refused) in "
        f"{time.monotonic() - started:.1f}s"
    )
    return 0


def ingest_mail(path: str, settings: Settings, say: Callable[[str], None], recipients: list[str] | None = None) -> int:
    """`mailpulse ingest-mail [FILE|-]`, for mailbox pipes: exit 0 once recorded (or kept), 75 to make the
    delivering MTA retry when Kafka cannot acknowledge."""
    import asyncio
    import sys

    from producers.bounce_intake import Attribution, Keeper, ingest
    from producers.publisher import PublishError

    try:
        raw = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()  # noqa: SIM115
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", status=2) from None
    if not raw.strip():
        raise CliError("the message is empty", status=2)
    publisher = KafkaPublisher(settings)
    keeper = Keeper.from_settings(settings)
    topics = Topics.for_prefix(settings.topic_prefix)
    try:
        # The envelope recipient comes as --recipient, or as the report's Delivered-To / X-Original-To.
        attribution = Attribution.from_settings(settings)
        envelope = list(recipients or [])
        result = asyncio.run(
            ingest(raw, envelope, publisher, topics, keeper, settings.publish_timeout_seconds, attribution)
        )
    except PublishError as exc:
        raise CliError(f"Kafka did not acknowledge ({exc}); deliver again later", status=75) from None
    finally:
        publisher.close()
    if result.published and result.kept is not None:
        say(f"{result.report} report: published {result.published} event(s); undetermined, kept at {result.kept}")
    elif result.published:
        say(f"{result.report} report: published {result.published} event(s)")
    elif result.kept is not None:
        say(f"no bounce or complaint found ({result.report}); kept for inspection at {result.kept}")
    else:
        say(f"{result.report}: nothing to record")
    if result.unattributed:
        say(
            f"{result.unattributed} of them name no message sent to that recipient: recorded, suppressing nobody"
            " (MAILPULSE_TRUST_UNATTRIBUTED_BOUNCES)"
        )
    return 0
