"""Prometheus metrics of one worker (own registry, so tests can build several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "mailpulse_worker_events", "Events read by the suppression and engagement agent", registry=self.registry
        )
        self.suppression_changes = Counter(
            "mailpulse_worker_suppression_changes", "Suppression changes published", ["state"], registry=self.registry
        )
        self.sends = Counter(
            "mailpulse_worker_sends",
            "Send requests by outcome (sent, skipped, skipped_possibly_mailed, held, duplicate, possible_duplicate, "
            "rate_limited, deferred, not_sent, requeued)",
            ["outcome"],
            registry=self.registry,
        )
        self.block_alerts = Counter(
            "mailpulse_worker_block_alerts",
            "Block-rate alerts raised (a campaign's blocked share at one receiving domain crossed the line)",
            registry=self.registry,
        )
        self.alerts = Counter(
            "mailpulse_worker_complaint_alerts",
            "Campaigns whose complaint rate crossed a bulk-sender line",
            ["level"],
            registry=self.registry,
        )
        self.delivery_exits = Counter(
            "mailpulse_worker_delivery_process_exits",
            "Times the delivery process was found gone (its messages' batch is read again; a new one starts)",
            registry=self.registry,
        )
        self.delivery_in_flight = Gauge(
            "mailpulse_worker_delivery_in_flight",
            "Messages handed to the delivery process whose SMTP outcome has not come back",
            registry=self.registry,
        )
        self.auto_pauses = Counter(
            "mailpulse_worker_auto_pauses",
            "Campaigns the worker paused by itself, by what crossed its line (MAILPULSE_AUTO_PAUSE)",
            ["cause"],
            registry=self.registry,
        )
        self.held = Counter(
            "mailpulse_worker_held",
            "Send requests of paused campaigns on the held topic: released (resumed or cancelled) or requeued",
            ["outcome"],
            registry=self.registry,
        )
        self.handoff_waits = Counter(
            "mailpulse_worker_handoff_waits",
            "Hand-offs put back because their partition's acknowledged events were not applied yet",
            registry=self.registry,
        )
        self.poison = Counter(
            "mailpulse_worker_undecodable", "Records skipped as undecodable", ["topic"], registry=self.registry
        )

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0
