"""The faust app: suppression agent, gated sender agent, retry agent, worker views.

Wiring only; the rules live in :mod:`processors.suppression`,
:mod:`processors.delivery` and :mod:`processors.render`.

At-least-once with agent concurrency 1 (faust's ``exactly_once`` has open
duplicate bugs on rebalance); state is made idempotent by event and message id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import faust
import faust.streams as faust_streams
from faust.web import Request, Response, View

from processors.delivery import RetryPolicy, SmtpOutcome, decide, skipped
from processors.dkim_signing import DkimSigner
from processors.mailer import Mailer, MailerPool, SmtpMailer
from processors.render import RenderContext, render_message
from processors.suppression import Policy, apply_event, decode_entry, encode_entry, suppression_reasons
from schemas.auth import key_is_valid, presented_key
from schemas.codec import DecodeError, decode_event, decode_send_request, encode
from schemas.events import AnyEvent, SendRequest, SuppressionChange, utcnow
from schemas.keys import normalize_address, recipient_key
from schemas.settings import Settings
from schemas.tokens import TokenCodec
from schemas.topics import Topics

log = logging.getLogger(__name__)


@contextlib.contextmanager
def event_context(event: Any) -> Iterator[None]:
    """Make ``event`` faust's current event, as stream iteration does for one event at a time.

    Batched agents (``take_events``) have no current event, and faust tables refuse writes without one.
    """
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


def create_app(settings: Settings, mailer: Mailer | None = None) -> faust.App:
    names = Topics.for_prefix(settings.topic_prefix)
    app = faust.App(
        names.processors_app,
        broker=f"kafka://{settings.bootstrap_servers}",
        store=settings.table_store,
        datadir=str(settings.var_dir / "faust"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee="at_least_once",
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        web_host="127.0.0.1",
        web_port=settings.worker_web_port,
        web_in_thread=False,
        autodiscover=False,
    )

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    events_topic = raw_topic(names.events)
    outbox_topic = raw_topic(names.outbox)
    retry_topic = raw_topic(names.retry)
    suppression_topic = raw_topic(names.suppression)

    # Keyed by recipient like the topics feeding them: each worker holds the
    # suppression entries of exactly the partitions whose sends it handles.
    # JSON keys and string values: faust decodes changelog records as JSON when it recovers a table,
    # whatever the schema says, so raw bytes could not be restored after a restart.
    table_schema: faust.Schema = faust.Schema(
        key_type=str, value_type=str, key_serializer="json", value_serializer="json"
    )
    suppression = app.Table("suppression", partitions=settings.topic_partitions, schema=table_schema)
    sent_log = app.Table("sent-log", partitions=settings.topic_partitions, schema=table_schema)

    policy = Policy(settings.soft_bounce_threshold, timedelta(days=settings.soft_bounce_window_days))
    retry_policy = RetryPolicy(max_attempts=settings.max_send_attempts, base_seconds=settings.retry_base_seconds)
    render_ctx = RenderContext(
        tokens=TokenCodec(settings.secret_keys),
        public_base_url=settings.public_base_url,
        unsubscribe_mailto=settings.unsubscribe_mailto,
        bounce_domain=settings.bounce_domain,
    )
    signer = None
    if settings.dkim_selector:
        signer = DkimSigner.from_files(
            settings.dkim_selector, settings.dkim_domain, Path(settings.dkim_private_key_file)
        )
    if mailer is not None:
        pool = MailerPool(lambda: mailer, 1)
    else:
        pool = MailerPool(lambda: SmtpMailer(settings.smtp_url, signer=signer), settings.smtp_connections)
    counters = {"duplicate_sends": 0, "skipped": 0, "sent": 0, "poison": 0}

    @app.agent(events_topic, concurrency=1)
    async def track_suppression(stream: Any) -> Any:
        async for key, value in stream.items():
            try:
                event = decode_event(value)
            except DecodeError as exc:
                counters["poison"] += 1
                log.warning("skipping undecodable event at key %r: %s", key, exc)
                continue
            if not event.recipient:
                continue
            address = normalize_address(event.recipient)
            before = decode_entry(suppression.get(address))
            after = apply_event(before, event, policy)
            if after is before:
                continue
            suppression[address] = encode_entry(after).decode()
            reasons = suppression_reasons(after)
            change = SuppressionChange(
                recipient=address,
                suppressed=bool(reasons),
                reasons=reasons,
                lists=list(after.lists),
                since=after.since,
                caused_by=event.event_id,
                changed_at=utcnow(),
            )
            if reasons != suppression_reasons(before):
                log.info("suppression changed for a recipient: %s", ",".join(reasons) or "cleared")
                await suppression_topic.send(key=address.encode(), value=encode(change))

    def gate(request: SendRequest) -> list[str]:
        """Why this request must not be mailed now; empty when it may."""
        return suppression_reasons(decode_entry(suppression.get(request.recipient)), request.list_id)

    async def handle_batch(batch: list[tuple[SendRequest, Any]]) -> None:
        """Gate every request, send the rest concurrently over the pool, then publish every outcome.

        The suppression check happens when the batch is taken (a batch takes a fraction of a second),
        and the sent-log is written before events are published: a redelivered request is not mailed again.
        """
        now = utcnow()
        outgoing: list[tuple[SendRequest, Any]] = []
        taken: set[str] = set()
        events: list[AnyEvent] = []
        retries: list[SendRequest] = []
        for request, source in batch:
            if sent_log.get(request.message_id) is not None or request.message_id in taken:
                counters["duplicate_sends"] += 1
                continue
            reasons = gate(request)
            if reasons:
                counters["skipped"] += 1
                events.append(skipped(request, reasons, now))
                continue
            taken.add(request.message_id)
            outgoing.append((request, source))

        async def deliver(request: SendRequest) -> tuple[SmtpOutcome | list[str], datetime]:
            async with pool.connection() as mailer:
                # Checked again once a connection is free: an unsubscribe that arrived while the
                # batch waited still stops this message.
                late = gate(request)
                if late:
                    return late, utcnow()
                outcome = await mailer.send(render_message(request, render_ctx))
                return outcome, utcnow()  # the event time is when the relay answered

        results = await asyncio.gather(*(deliver(request) for request, _ in outgoing))
        for (request, source), (outcome, answered_at) in zip(outgoing, results, strict=True):
            if isinstance(outcome, list):
                counters["skipped"] += 1
                events.append(skipped(request, outcome, answered_at))
                continue
            decision = decide(request, outcome, answered_at, retry_policy)
            if decision.delivered:
                # A table write must know the source partition (co-partitioned changelog): the event's.
                with event_context(source):
                    sent_log[request.message_id] = now.isoformat()
                counters["sent"] += 1
            events.extend(decision.events)
            if decision.retry is not None:
                retries.append(decision.retry)
        futures = [
            await events_topic.send(key=recipient_key(e.recipient, e.campaign_id), value=encode(e)) for e in events
        ]
        futures += [await retry_topic.send(key=r.recipient.encode(), value=encode(r)) for r in retries]
        # Acknowledged before the batch's offsets can commit (at-least-once, nothing lost).
        await asyncio.gather(*futures)

    @app.agent(outbox_topic, concurrency=1)
    async def send_mail(stream: Any) -> Any:
        async for taken in stream.take_events(settings.send_batch_size, within=0.05):
            batch = []
            for event in taken:
                try:
                    batch.append((decode_send_request(event.value), event))
                except DecodeError as exc:
                    counters["poison"] += 1
                    log.warning("skipping undecodable send request: %s", exc)
            await handle_batch(batch)

    @app.agent(retry_topic, concurrency=1)
    async def retry_later(stream: Any) -> Any:
        # Waiting here holds back only the retry topic; the outbox keeps flowing.
        async for value in stream:
            try:
                request = decode_send_request(value)
            except DecodeError as exc:
                log.warning("skipping undecodable retry: %s", exc)
                continue
            if request.not_before is not None:
                delay = (request.not_before - utcnow()).total_seconds()
                if delay > 0:
                    await asyncio.sleep(delay)
            fut = await outbox_topic.send(key=request.recipient.encode(), value=encode(request))
            await fut

    def authorized(request: Request) -> bool:
        return key_is_valid(presented_key(dict(request.headers)), settings.api_keys)

    @app.page("/suppression/{address}")
    class SuppressionView(View):
        async def get(self, request: Request, address: str) -> Response:
            if not authorized(request):
                return self.json({"error": "missing or invalid API key"}, status=401)
            normalized = normalize_address(address)
            entry = decode_entry(suppression.get(normalized))
            reasons = suppression_reasons(entry)
            return self.json({"address": normalized, "suppressed": bool(reasons), "reasons": reasons})

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"ok": True, **counters})

    return app
