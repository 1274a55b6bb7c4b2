"""The worker's delivery process against a real SMTP server (aiosmtpd): answers, the late gate, death."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import mailbox
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailpulse.smtp_sink import MaildirHandler
from processors.caught_up import EVENTS_BEHIND
from processors.courier import Courier, CourierError
from processors.delivery import DeliveryResult, SmtpOutcome
from processors.delivery_process import QUIT_SECONDS
from schemas.events import SendRequest, message_id_for, utcnow
from schemas.settings import Settings
from tests.support.ports import free_port


class SlowHandler(MaildirHandler):
    """The embedded sink, except that mail for ``slow@`` is answered only after a long pause, and mail for
    ``brief@`` after a second."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if any(rcpt.startswith("slow@") for rcpt in envelope.rcpt_tos):
            await asyncio.sleep(20)
        if any(rcpt.startswith("brief@") for rcpt in envelope.rcpt_tos):
            await asyncio.sleep(1)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture()
def relay(tmp_path: Path) -> Iterator[tuple[Settings, Path]]:
    maildir, port = tmp_path / "Maildir", free_port()
    controller = Controller(SlowHandler(maildir), hostname="127.0.0.1", port=port)
    controller.start()
    settings = Settings.from_env(
        {
            "MAILPULSE_SMTP_URL": f"smtp://127.0.0.1:{port}",
            "MAILPULSE_SECRET_KEYS": "delivery-test",
            "MAILPULSE_SMTP_CONNECTIONS": "2",
            "MAILPULSE_VAR_DIR": str(tmp_path / "var"),
        }
    )
    try:
        yield settings, maildir
    finally:
        controller.stop()


def request(recipient: str, subject: str = "Hello") -> SendRequest:
    return SendRequest(
        message_id=message_id_for("courier", recipient),
        campaign_id="courier",
        recipient=recipient,
        list_id="news",
        from_address="News <news@example.com>",
        subject=subject,
        html="<html><body><a href='https://example.com/a'>a</a></body></html>",
        text="see https://example.com/a",
        enqueued_at=utcnow(),
    )


def nothing_bars() -> list[str]:
    return []


def stored(maildir: Path) -> list[email.message.EmailMessage]:
    box = mailbox.Maildir(str(maildir), create=False)
    messages = [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default) for key in box.iterkeys()]
    return [m for m in messages if isinstance(m, email.message.EmailMessage)]


def test_each_request_is_rendered_sent_and_answered_with_the_relays_reply(relay: tuple[Settings, Path]) -> None:
    settings, maildir = relay

    async def run() -> list[DeliveryResult]:
        courier = Courier(settings)
        try:
            recipients = ["reader@example.org", "hardbounce@example.org", "retryonce@example.org"]
            return list(await asyncio.gather(*(courier.deliver(request(r), nothing_bars) for r in recipients)))
        finally:
            await courier.close()

    ok, hard, deferred = asyncio.run(run())
    assert isinstance(ok.outcome, SmtpOutcome) and ok.outcome.code == 250
    assert isinstance(hard.outcome, SmtpOutcome) and hard.outcome.code == 550 and "5.1.1" in hard.outcome.reply
    assert isinstance(deferred.outcome, SmtpOutcome) and deferred.outcome.code == 451
    [message] = stored(maildir)
    assert message["Delivered-To"] == "reader@example.org"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Return-Path"].startswith("<bounces+")  # the VERP envelope sender crossed the process line


def test_a_request_barred_at_hand_off_is_neither_rendered_nor_sent(relay: tuple[Settings, Path]) -> None:
    settings, maildir = relay

    async def run() -> tuple[DeliveryResult, DeliveryResult]:
        courier = Courier(settings)
        try:
            barred = await courier.deliver(request("reader@example.org"), lambda: ["unsubscribed:news"])
            broken = await courier.deliver(request("other@example.org", "Hi\r\nBcc: x@evil.example"), nothing_bars)
            return barred, broken
        finally:
            await courier.close()

    barred, broken = asyncio.run(run())
    assert barred.outcome == ["unsubscribed:news"]
    assert broken.outcome == ["unrenderable: line break in the Subject header"]
    assert stored(maildir) == []


def test_queued_mail_to_a_recipient_just_suppressed_or_of_a_partition_behind_is_given_back(
    relay: tuple[Settings, Path],
) -> None:
    """Every sender is busy with a slow relay; what waits behind them is given back when its recipient's
    suppression changes or its partition's events fall behind, and goes out otherwise."""
    settings, maildir = relay

    async def run() -> tuple[list[DeliveryResult], bool]:
        courier = Courier(settings)
        try:
            await courier.start()
            busy = [asyncio.create_task(courier.deliver(request(f"slow@{n}.example"), nothing_bars)) for n in range(4)]
            await asyncio.sleep(0.5)
            queued = {
                who: asyncio.create_task(courier.deliver(request(f"{who}@example.org"), nothing_bars, partition))
                for who, partition in (("unsubscribed", 3), ("behind", 4), ("waiting", 5))
            }
            await asyncio.sleep(0.3)
            courier.recheck(recipient="Unsubscribed@Example.org")
            courier.recheck(partition=4)
            given_back = await asyncio.wait_for(asyncio.gather(queued["unsubscribed"], queued["behind"]), 10)
            await asyncio.sleep(0.3)
            still_waiting = not queued["waiting"].done()
            for task in [*busy, queued["waiting"]]:
                task.cancel()
            return list(given_back), still_waiting
        finally:
            await courier.close(timeout=1)

    given_back, still_waiting = asyncio.run(run())
    assert [r.outcome for r in given_back] == [[EVENTS_BEHIND], [EVENTS_BEHIND]]
    assert still_waiting
    assert stored(maildir) == []


def test_queued_mail_whose_check_grew_too_old_before_its_transaction_is_given_back_and_goes_first_again(
    relay: tuple[Settings, Path],
) -> None:
    """Every sender is busy for a second; a message whose suppression check may begin a transaction only
    for 0.3 s more waits past that and comes back unsent to be checked again (the worker or the delivery
    process starved, nothing told it), while one whose check stays good goes out. Handed over again, it
    goes before the messages queued behind it, or a long queue would give it back again and again."""
    settings, maildir = relay

    def brief(n: int) -> asyncio.Task[DeliveryResult]:
        return asyncio.create_task(courier.deliver(request(f"brief@{n}.example"), nothing_bars))

    async def run() -> tuple[DeliveryResult, DeliveryResult, DeliveryResult, list[DeliveryResult]]:
        try:
            await courier.start()
            busy = [brief(n) for n in range(4)]
            await asyncio.sleep(0.3)
            soon, later = time.monotonic() + 0.3, time.monotonic() + 30
            stale = asyncio.create_task(courier.deliver(request("stale@example.org"), nothing_bars, 1, lambda: soon))
            good = asyncio.create_task(courier.deliver(request("good@example.org"), nothing_bars, 1, lambda: later))
            await asyncio.sleep(0.1)
            queued = [brief(n) for n in range(10, 18)]  # two seconds of the senders' time
            given_back = await asyncio.wait_for(stale, 10)
            again = await courier.deliver(request("stale@example.org"), nothing_bars, 1, lambda: later, again=True)
            rest = await asyncio.gather(good, *busy, *queued)
            return given_back, again, rest[0], list(rest[5:])
        finally:
            await courier.close()

    courier = Courier(settings)
    given_back, again, good, queued = asyncio.run(run())
    assert given_back.outcome == [EVENTS_BEHIND]
    assert isinstance(good.outcome, SmtpOutcome) and good.outcome.code == 250
    assert isinstance(again.outcome, SmtpOutcome) and again.outcome.code == 250
    # Ahead of the four brief ones still queued when it came back (the senders took the other four).
    assert sum(r.at > again.at for r in queued) >= 4
    delivered = sorted(m["Delivered-To"] for m in stored(maildir) if not m["Delivered-To"].startswith("brief@"))
    assert delivered == ["good@example.org", "stale@example.org"]  # once: the stale hand-off never went out


def test_a_dead_delivery_process_fails_what_it_held_and_the_next_request_gets_a_new_one(
    relay: tuple[Settings, Path],
) -> None:
    settings, maildir = relay

    exits: list[int] = []

    async def run() -> tuple[DeliveryResult | BaseException, DeliveryResult, int | None, int | None]:
        courier = Courier(settings, on_exit=lambda: exits.append(1))
        try:
            held = asyncio.create_task(courier.deliver(request("slow@example.org"), nothing_bars))
            while not courier._waiting:  # handed over; the relay sits on its DATA
                await asyncio.sleep(0.01)
            assert courier.in_flight() == 1
            assert courier._process is not None
            first = courier._process.pid
            courier._process.kill()
            error = await asyncio.wait_for(asyncio.gather(held, return_exceptions=True), 30)
            after = await courier.deliver(request("reader@example.org"), nothing_bars)
            assert courier._process is not None
            return error[0], after, first, courier._process.pid
        finally:
            await courier.close()

    error, after, first, second = asyncio.run(run())
    assert exits == [1]  # the death, not the close at the end
    assert isinstance(error, CourierError)
    assert isinstance(after.outcome, SmtpOutcome) and after.outcome.code == 250
    assert first != second
    assert [m["Delivered-To"] for m in stored(maildir)] == ["reader@example.org"]


def test_the_delivery_process_leaves_with_its_worker_even_mid_message(relay: tuple[Settings, Path]) -> None:
    settings, _ = relay

    async def run() -> tuple[int | None, float]:
        courier = Courier(settings)
        held = asyncio.create_task(courier.deliver(request("slow@example.org"), nothing_bars))
        while not courier._waiting:  # handed over; the relay sits on its DATA for 20 s
            await asyncio.sleep(0.01)
        process, frames = courier._process, courier._frames
        assert process is not None and frames is not None
        started = time.monotonic()
        frames.writer.transport.abort()  # the worker's end of the socket gone, as when it is killed
        await asyncio.get_running_loop().run_in_executor(None, process.join, 15)
        with contextlib.suppress(CourierError):
            await held
        return process.exitcode, time.monotonic() - started

    exitcode, took = asyncio.run(run())
    assert exitcode == 0
    assert took < QUIT_SECONDS + 3  # it did not wait for the relay's answer, nobody would record it
