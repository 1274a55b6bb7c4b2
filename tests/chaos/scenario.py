"""The chaos run: traffic of every acknowledged kind through a stack of three brokers, two workers, two edges
and a sink, while processes are SIGKILLed and restarted and a broker is paused; then the books.

Acknowledged means a client was told its event was taken: a campaign's 202 (every send request on Kafka),
a one-click unsubscribe's 200, a webhook's 200, the bounce receiver's 250. Those must all be in ClickHouse and
in the worker's state. Pixels and clicks are answered before Kafka acknowledges them (a broken image or link
helps nobody), so what an edge held when it was killed may be lost: they are counted, not required.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mailpulse.localkafka import LocalKafka
from mailpulse.stack import Stack, StackError
from schemas.attribution import BounceAddresses
from schemas.auth import auth_headers
from schemas.events import message_id_for
from schemas.settings import Settings
from schemas.tokens import LinkKind, TokenClaims, TokenCodec
from tests.support.webhook_signing import POSTMARK_AUTH, postmark_header

ROOT = Path(__file__).resolve().parents[2]
DSN_SAMPLE = ROOT / "tests" / "fixtures" / "bounces" / "postfix_user_unknown.eml"
DSN_MESSAGE = b"4f2b9c0d1e2a4b6c8d0e1f2a3b4c5d6e"  # the sample's message id
EDGE_STEP = 10  # an instance's ports are its service's + 10 (i - 1): mailpulse.stack.INSTANCE_PORT_STEP


def chaos_env(var_dir: Path, base: int) -> dict[str, str]:
    """The stack's settings, every port derived from ``base`` (19600 for `make chaos`)."""
    return {
        "MAILPULSE_VAR_DIR": str(var_dir),
        "MAILPULSE_ENV": "development",
        "MAILPULSE_LOCAL_KAFKA_BROKERS": "3",
        "MAILPULSE_LOCAL_KAFKA_PORT": str(base),
        "MAILPULSE_WORKERS": "2",
        "MAILPULSE_EDGES": "2",
        "MAILPULSE_SMTP_URL": f"smtp://127.0.0.1:{base + 100}",
        "MAILPULSE_SMTP_SINK_PORT": str(base + 100),
        "MAILPULSE_BOUNCE_SMTP_PORT": str(base + 101),
        "MAILPULSE_EDGE_PORT": str(base + 200),
        "MAILPULSE_OPERATOR_PORT": str(base + 201),
        "MAILPULSE_SINK_API_PORT": str(base + 202),
        "MAILPULSE_WORKER_WEB_PORT": str(base + 300),
        "MAILPULSE_API_KEYS": "chaos-operator-key",
        "MAILPULSE_SECRET_KEYS": "chaos-secret",
        "MAILPULSE_POSTMARK_WEBHOOK_AUTH": POSTMARK_AUTH,
        "MAILPULSE_KAFKA_BOOTSTRAP": "",
        "MAILPULSE_CLICKHOUSE_URL": "",
        "MAILPULSE_SINK_BATCH_SECONDS": "0.2",
        "MAILPULSE_RETRY_BASE_SECONDS": "0.5",
        "MAILPULSE_DOMAIN_RATE_LIMITS": "",
        "MAILPULSE_AUTO_PAUSE": "false",  # a chaos run's refusals are the run's, not a receiver's verdict
        "MAILPULSE_DKIM_SELECTOR": "",
        "MAILPULSE_DKIM_DOMAIN": "",
        "MAILPULSE_DKIM_PRIVATE_KEY_FILE": "",
        "MAILPULSE_SMTP_SINK_REPLIES": "",
    }


@dataclass
class Books:
    """What clients were told, with when."""

    campaigns: dict[str, list[str]] = field(default_factory=dict)
    unsubscribed: dict[str, float] = field(default_factory=dict)  # address -> acknowledged at (epoch)
    bounced: dict[str, float] = field(default_factory=dict)  # Postmark webhooks
    dsn_bounced: dict[str, float] = field(default_factory=dict)  # bounce mail taken by the SMTP receiver
    opens_answered: int = 0
    clicks_answered: int = 0
    retries: Counter[str] = field(default_factory=Counter)  # refused or failed attempts, by kind
    unsure: dict[str, set[str]] = field(default_factory=dict)  # whom a failed attempt named, by kind
    lock: threading.Lock = field(default_factory=threading.Lock)

    def retry(self, kind: str, person: str | None = None) -> None:
        """A request that failed or was refused: its event may still have been stored (the door died after
        handing it to Kafka), so the model allows for it without requiring it."""
        with self.lock:
            self.retries[kind] += 1
            if person is not None:
                self.unsure.setdefault(kind, set()).add(person)


@dataclass
class Outage:
    action: str
    service: str
    down_seconds: float  # from the signal until the service answered again
    gating_seconds: float | None = None  # a worker: until it refused a suppressed address again


class Chaos:
    def __init__(self, env: dict[str, str], say: Callable[[str], None] = print, seed: int = 7) -> None:
        self.environ = {**os.environ, **env}
        self.settings = Settings.from_env(self.environ)
        self.say = say
        self.stack = Stack(self.settings, say=lambda line: None, environ=self.environ)
        self.kafka = LocalKafka.from_settings(self.settings)
        self.rng = random.Random(seed)
        self.books = Books()
        self.codec = TokenCodec(self.settings.secret_keys)
        self.stop = threading.Event()
        self.outages: list[Outage] = []
        self.failed_starts = 0
        self.exited_unasked: list[str] = []  # services found dead that no failure had killed
        s = self.settings
        self.edges = [f"http://127.0.0.1:{s.edge_port + EDGE_STEP * n}" for n in range(2)]
        self.operators = [f"http://127.0.0.1:{s.operator_port + EDGE_STEP * n}" for n in range(2)]
        self.workers = [f"http://127.0.0.1:{s.worker_web_port + EDGE_STEP * n}" for n in range(2)]
        self.sink = f"http://127.0.0.1:{s.sink_api_port}"
        self.headers = auth_headers(s.api_keys)

    # -- the stack -----------------------------------------------------------------------------------------
    def up(self) -> None:
        self.stack.down()
        shutil.rmtree(self.settings.var_dir, ignore_errors=True)
        self.say("starting 3 brokers, 2 workers, 2 edges, the sink and the SMTP sink")
        self.stack.up(timeout=180)

    def down(self) -> None:
        for node in self.kafka.nodes:  # a paused broker would hold its stop forever
            node.signal(signal.SIGCONT)
        self.stack.down()

    # -- traffic -------------------------------------------------------------------------------------------
    def _post(self, urls: list[str], path: str, **kwargs: Any) -> httpx.Response | None:
        """One attempt at each door in turn (one may be dead): the first answer below 500, or None."""
        for url in self.rng.sample(urls, len(urls)):
            try:
                answer = httpx.post(url + path, timeout=15, **kwargs)
            except httpx.HTTPError:
                continue
            if answer.status_code < 500:
                return answer
        return None

    def send_campaigns(self, campaigns: int, recipients: int) -> None:
        for number in range(campaigns):
            campaign = f"chaos-{number}"
            people = [f"p{number}-{n}@example.org" for n in range(recipients)]
            for start in range(0, recipients, 400):
                part = people[start : start + 400]
                body = {
                    "campaign_id": campaign,
                    "list_id": "news",
                    "subject": "Chaos $first_name",
                    "html": "<p>Hi</p>",
                    "text": "Hi",
                    "recipients": [{"email": p, "first_name": "C"} for p in part],
                }
                while not self.stop.is_set():
                    answer = self._post(self.operators, "/campaigns", json=body, headers=self.headers)
                    if answer is not None and answer.status_code == 202:
                        break
                    self.books.retry("campaign")
                    time.sleep(0.5)
            with self.books.lock:  # the client threads read it
                self.books.campaigns[campaign] = people

    def engage(self, until: threading.Event) -> None:
        """One-click unsubscribes, Postmark bounces, bounce mail, clicks and pixels, on random recipients, until
        ``until``."""
        while not until.is_set():
            with self.books.lock:
                known = [(c, p) for c, people in self.books.campaigns.items() for p in people[::13]]
            if not known:
                time.sleep(0.2)
                continue
            campaign, person = self.rng.choice(known)
            roll = self.rng.random()
            if roll < 0.3 and person not in self.books.unsubscribed:
                token = self.codec.mint(TokenClaims(LinkKind.UNSUBSCRIBE, f"m-{person}", campaign, "news", person))
                answer = self._post(self.edges, f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
                if answer is not None and answer.status_code == 200:
                    self.books.unsubscribed.setdefault(person, time.time())  # the first acknowledgement binds
                else:
                    self.books.retry("unsubscribe", person)
            elif roll < 0.45 and person not in self.books.bounced:
                record = {
                    "RecordType": "Bounce",
                    "Type": "HardBounce",
                    "ID": self.rng.randrange(1 << 40),
                    "Email": person,
                    "MessageID": f"pm-{person}",
                    "BouncedAt": "2026-12-02T10:00:00Z",
                    "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
                    "Metadata": {"mailpulse_campaign": campaign, "mailpulse_message": f"m-{person}"},
                }
                answer = self._post(self.edges, "/webhooks/postmark", json=record, headers=postmark_header())
                if answer is not None and answer.status_code == 200:
                    self.books.bounced.setdefault(person, time.time())
                else:
                    self.books.retry("webhook", person)
            elif roll < 0.55 and person not in self.books.dsn_bounced:
                self.bounce_mail(campaign, person)
            elif roll < 0.75:
                self.track(LinkKind.CLICK, campaign, person)
            else:
                self.track(LinkKind.OPEN, campaign, person)
            time.sleep(0.005)

    def track(self, kind: LinkKind, campaign: str, person: str) -> None:
        """A pixel or a click through a random edge; answered before Kafka has it, so counted, not required."""
        url = "https://example.com/offer" if kind is LinkKind.CLICK else None
        token = self.codec.mint(TokenClaims(kind, f"o-{self.rng.randrange(1 << 60)}", campaign, "news", person, url))
        path = f"/o/{token}.gif" if kind is LinkKind.OPEN else f"/c/{token}"
        try:
            answer = httpx.get(f"{self.rng.choice(self.edges)}{path}", timeout=5)
        except httpx.HTTPError:
            self.books.retry(kind.name.lower())
            return
        with self.books.lock:  # several client threads
            if kind is LinkKind.OPEN and answer.status_code == 200:
                self.books.opens_answered += 1
            elif kind is LinkKind.CLICK and answer.status_code in (302, 303, 307):
                self.books.clicks_answered += 1

    def bounce_mail(self, campaign: str, person: str) -> None:
        """A Postfix DSN for the person's real message, to its signed VERP address at the SMTP receiver; the
        receiver's 250 is the acknowledgement."""
        message = message_id_for(campaign, person)
        dsn = DSN_SAMPLE.read_bytes().replace(b"autumn-2026", campaign.encode())
        dsn = dsn.replace(b"nobody@example.org", person.encode()).replace(DSN_MESSAGE, message.encode())
        to = BounceAddresses(self.settings.secret_keys).address(message, person, self.settings.bounce_domain)
        wire = dsn.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        ports = [self.settings.bounce_smtp_port + EDGE_STEP * n for n in range(2)]  # each edge has a receiver
        for port in self.rng.sample(ports, len(ports)):
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=15) as smtp:
                    smtp.sendmail("", [to], wire)
            except (smtplib.SMTPException, OSError):
                continue
            self.books.dsn_bounced.setdefault(person, time.time())
            return
        self.books.retry("bounce mail", person)

    # -- failures ------------------------------------------------------------------------------------------
    def _wait(self, ready: Callable[[], bool], timeout: float = 180) -> float:
        started = time.monotonic()
        while not ready():
            if time.monotonic() - started > timeout:
                raise RuntimeError("a service did not come back")
            time.sleep(0.1)
        return time.monotonic() - started

    def _answers(self, url: str) -> Callable[[], bool]:
        def check() -> bool:
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        return check

    def _gates(self, worker: str) -> Callable[[], bool]:
        def check() -> bool:
            with self.books.lock:
                suppressed = list(self.books.unsubscribed)[:1]
            if not suppressed:
                return True
            try:
                answer = httpx.get(f"{worker}/suppression/{suppressed[0]}", headers=self.headers, timeout=2)
            except httpx.HTTPError:
                return False
            return answer.status_code == 200 and bool(answer.json().get("suppressed"))

        return check

    def dead_unasked(self, killing: str = "") -> list[str]:
        """Services not running that no failure killed: each one a fault of the pipeline, not of the run."""
        dead = [p.service for p in self.stack.status() if p.state == "down" and p.service != killing]
        if dead:
            self.say(f"  exited on their own: {', '.join(dead)}")
            self.exited_unasked += dead
        return dead

    def kill_service(self, name: str, health: str, worker: str | None = None) -> None:
        self.dead_unasked()
        pid = self.stack.pid(name)
        if pid is None:
            return
        self.say(f"  SIGKILL {name} (pid {pid})")
        started = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        time.sleep(self.rng.uniform(0.5, 2.0))
        self.restart(killed=name)
        self._wait(self._answers(health))
        down = time.monotonic() - started
        gating = self._wait(self._gates(worker)) + down if worker else None
        self.outages.append(Outage("SIGKILL + restart", name, down, gating))

    def restart(self, killed: str = "", attempts: int = 10) -> None:
        """Start what is not running, as a supervisor would: a process that exits at start (a worker started
        while a broker is still coming back does) is started again, and counted. Anything down besides
        ``killed`` exited on its own, and is named first."""
        self.dead_unasked(killed)
        for _ in range(attempts):
            try:
                self.stack.up(timeout=180)
                return
            except StackError as exc:
                self.say(f"    {exc}; starting it again")
                self.failed_starts += 1
                time.sleep(2)
        raise RuntimeError(f"not running after {attempts} starts")

    def kill_broker(self, node: int) -> None:
        self.say(f"  SIGKILL kafka-{node}")
        started = time.monotonic()
        self.kafka.node(node).signal(signal.SIGKILL)
        time.sleep(self.rng.uniform(3, 8))
        self.kafka.start_node(node)
        self.outages.append(Outage("SIGKILL + restart", f"kafka-{node}", time.monotonic() - started))

    def pause_broker(self, node: int, seconds: float) -> None:
        self.say(f"  SIGSTOP kafka-{node} for {seconds:.0f} s (past its session timeout)")
        started = time.monotonic()
        self.kafka.node(node).signal(signal.SIGSTOP)
        time.sleep(seconds)
        self.kafka.node(node).signal(signal.SIGCONT)
        self.outages.append(Outage("SIGSTOP + SIGCONT", f"kafka-{node}", time.monotonic() - started))

    def failures(self, rounds: int) -> list[Callable[[], None]]:
        """Each kind of process killed ``rounds`` times, in a random order, and one broker paused."""
        w = self.workers
        actions: list[Callable[[], None]] = []
        for _ in range(rounds):
            actions += [
                lambda: self.kill_service("worker-1", f"{w[0]}/healthz", w[0]),
                lambda: self.kill_service("worker-2", f"{w[1]}/healthz", w[1]),
                lambda: self.kill_service("edge-1", f"{self.edges[0]}/readyz"),
                lambda: self.kill_service("edge-2", f"{self.edges[1]}/readyz"),
                lambda: self.kill_service("sink", f"{self.sink}/healthz"),
                lambda: self.kill_broker(self.rng.randint(1, 3)),
            ]
        self.rng.shuffle(actions)
        actions.insert(self.rng.randrange(len(actions) + 1), lambda: self.pause_broker(self.rng.randint(1, 3), 12))
        return actions
