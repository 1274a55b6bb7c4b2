"""Bounce classification speed: corpus mails parsed and classified per CPU-second (one core: the
process's own CPU time, so another process or the hypervisor taking the core does not count), and SMTP
replies classified per CPU-second. "cold": the classifier's cache of wordings cleared before each item (every
text new to it); "warm": as a receiver meets the same providers' wordings again and again."""

from __future__ import annotations

import time
from pathlib import Path

from producers.bounce_intake import Attribution, events_from_mail
from producers.bounce_mail import parse_mail
from schemas.bounce_reasons import SmtpStage, classify
from schemas.events import utcnow
from schemas.settings import Settings
from tests.bench.common import Row, median_of, print_table, say
from tests.support.reply_corpus import reply_code, reply_text, smtp_replies

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOAL = 5_000.0


def _mails() -> list[bytes]:
    return [p.read_bytes() for p in sorted((FIXTURES / "bounces").glob("*.eml"))]


def _replies() -> list[tuple[str, int, SmtpStage]]:
    return [(reply_text(reply), reply_code(reply), SmtpStage(stage)) for stage, _, reply in smtp_replies()]


def _clear() -> None:
    from schemas import bounce_reasons

    bounce_reasons._by_text.cache_clear()


def mails_per_second(mails: list[bytes], passes: int, cold: bool) -> float:
    attribution = Attribution(["bench-secret"])  # checking each report's proofs is part of the cost
    started = time.process_time()
    for _ in range(passes):
        for raw in mails:
            if cold:
                _clear()
            events_from_mail(parse_mail(raw), utcnow(), attribution)
    return passes * len(mails) / (time.process_time() - started)


def replies_per_second(replies: list[tuple[str, int, SmtpStage]], passes: int, cold: bool) -> float:
    started = time.process_time()
    for _ in range(passes):
        for text, code, stage in replies:
            if cold:
                _clear()
            classify(text, code=code, stage=stage)
    return passes * len(replies) / (time.process_time() - started)


def main(settings: Settings, quick: bool) -> None:
    mails, replies = _mails(), _replies()
    passes = 2 if quick else 20
    say(f"  {len(mails)} bounce mails and {len(replies)} SMTP replies, {passes} passes a run")
    mails_per_second(mails, 1, cold=False)  # imports and first compiles out of the measurement
    cold = median_of(3, lambda _: mails_per_second(mails, passes, cold=True), "bounce mails/s, cold")
    warm = median_of(3, lambda _: mails_per_second(mails, passes, cold=False), "bounce mails/s, warm")
    r_cold = median_of(3, lambda _: replies_per_second(replies, passes * 10, cold=True), "SMTP replies/s, cold")
    r_warm = median_of(3, lambda _: replies_per_second(replies, passes * 10, cold=False), "SMTP replies/s, warm")
    print_table(
        "bounce classification (one core)",
        [
            Row("bounce mails parsed and classified, cold", cold, "mails/CPU-s", f">= {GOAL:,.0f}", cold >= GOAL),
            Row("bounce mails parsed and classified, warm", warm, "mails/CPU-s", f">= {GOAL:,.0f}", warm >= GOAL),
            Row("SMTP replies classified, cold", r_cold, "replies/CPU-s"),
            Row("SMTP replies classified, warm", r_warm, "replies/CPU-s"),
        ],
    )
