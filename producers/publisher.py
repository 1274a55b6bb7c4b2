"""The edge's only way to Kafka: a small interface and its confluent-kafka implementation.

``publish`` is fire-and-forget (the pixel never waits); ``publish_confirmed``
resolves only once the broker acknowledged the record with ``acks=all`` and
raises :class:`PublishError` when it cannot within the timeout.

Neither ever blocks an event loop. When librdkafka's bounded queue is full (the
broker has been unreachable for a while), ``publish_confirmed`` raises at once
(the client is told 503 and retries) and ``publish`` on an edge sheds the record
and counts it (``on_shed``); a command-line publisher (``shed_when_full=False``)
waits for room instead, since nothing else runs on its thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, Producer

from schemas.kafka_config import producer_config
from schemas.settings import Settings

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """The broker did not acknowledge the record in time."""


class Publisher(Protocol):
    def publish(self, topic: str, key: bytes, value: bytes) -> None: ...

    async def publish_confirmed(self, topic: str, key: bytes, value: bytes, timeout: float) -> None: ...

    def is_ready(self, timeout: float) -> bool: ...

    def flush(self, timeout: float) -> int: ...

    def close(self, timeout: float = 30.0) -> None: ...


DeliveryHook = Callable[[bool], None]
ShedHook = Callable[[], None]


class KafkaPublisher:
    def __init__(
        self,
        settings: Settings,
        on_delivery: DeliveryHook | None = None,
        on_shed: ShedHook | None = None,
        shed_when_full: bool = False,
    ) -> None:
        # Two clients: fire-and-forget records report back only on failure (a callback per pixel
        # costs GIL time under load); confirmed records report every outcome to their caller.
        # Their requests were answered already, so fire-and-forget records can wait to fill larger
        # batches: fewer produce requests cost the broker (on the same small machine) less per event.
        bounds = {
            "queue.buffering.max.messages": settings.edge_queue_max_messages,
            "message.timeout.ms": int(settings.edge_delivery_timeout_seconds * 1000),
        }
        self._fast = Producer(
            producer_config(
                settings,
                **{"delivery.report.only.error": True, "on_delivery": self._report, "linger.ms": 20, **bounds},
            )
        )
        self._producer = Producer(producer_config(settings, **bounds))
        self._on_delivery = on_delivery or (lambda ok: None)
        self._on_shed = on_shed or (lambda: None)
        self._shed_when_full = shed_when_full
        self._last_shed_log = 0.0
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._closed.is_set():
            self._fast.poll(0.0)
            self._producer.poll(0.05)

    def _report(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            log.error("event not delivered to %s: %s", msg.topic(), err)
        self._on_delivery(err is None)

    @staticmethod
    def _produce(
        producer: Producer, topic: str, key: bytes, value: bytes, on_delivery: Callable[[Any, Any], None] | None = None
    ) -> bool:
        """Hand the record to librdkafka; False when its queue is full."""
        try:
            if on_delivery is None:
                producer.produce(topic, value=value, key=key)
            else:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
        except BufferError:
            return False
        return True

    def publish(self, topic: str, key: bytes, value: bytes) -> None:
        # No per-record callback: failures still reach _report through the producer-wide one
        # (delivery.report.only.error), and a callback per pixel costs GIL time under load.
        while not self._produce(self._fast, topic, key, value):
            if self._shed_when_full:
                self._shed(topic)
                return
            self._fast.poll(0.05)  # a command's own thread: wait for deliveries instead of dropping

    def _shed(self, topic: str) -> None:
        self._on_shed()
        now = time.monotonic()
        if now - self._last_shed_log > 5.0:  # one line every few seconds, not one per request
            self._last_shed_log = now
            log.error("the queue to Kafka is full (broker unreachable?): shedding events for %s", topic)

    async def publish_confirmed(self, topic: str, key: bytes, value: bytes, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def settle(err: KafkaError | None, msg: Message) -> None:
            self._report(err, msg)

            def resolve() -> None:
                if future.done():
                    return
                if err is None:
                    future.set_result(None)
                else:
                    future.set_exception(PublishError(str(err)))

            loop.call_soon_threadsafe(resolve)

        if not self._produce(self._producer, topic, key, value, on_delivery=settle):
            # Never wait on the event loop for room: the client is told to retry.
            raise PublishError("the queue to Kafka is full (broker unreachable?)")
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            # The record stays queued and idempotent retries go on; the client is
            # told to retry, and a duplicate unsubscribe is harmless.
            raise PublishError(f"broker did not acknowledge within {timeout:.1f}s") from None

    def is_ready(self, timeout: float) -> bool:
        try:
            self._fast.list_topics(timeout=timeout)
        except Exception:
            return False
        return True

    def flush(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        remaining: int = self._fast.flush(timeout)
        remaining += self._producer.flush(max(0.0, deadline - time.monotonic()))
        return remaining

    def close(self, timeout: float = 30.0) -> None:
        """Flush, then destroy both clients; the publisher is unusable afterwards."""
        remaining = self.flush(timeout)
        if remaining:
            log.error("%d events still undelivered at shutdown", remaining)
        self._closed.set()
        self._poller.join(timeout=2)
        # librdkafka destroys a client only with its last reference: one kept (by an app object that outlives
        # its lifespan) reconnects to an unreachable broker, and logs each attempt, as long as the process runs.
        for producer in (self._fast, self._producer):
            producer.purge(in_queue=True, in_flight=True, blocking=False)
        del self._fast, self._producer
