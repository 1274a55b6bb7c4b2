"""The mailer against real SMTP servers (aiosmtpd): pipelined transactions (RFC 2920) where the relay offers
them, aiosmtplib's one command at a time where it does not, with the same answers either way."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from processors.delivery import SmtpOutcome
from processors.mailer import SmtpMailer
from processors.render import RenderedMessage
from processors.smtp_pipelining import PipelinedSession, SmtpReplies
from tests.support.smtp_relays import MESSAGE, QuirkyHandler, send_all, serve, stored

RECIPIENTS = [
    "reader@example.org",
    "hardbounce@example.org",
    "softbounce@example.org",
    "retryonce@example.org",
    "retryonce@example.org",
    "last@example.org",
]


@pytest.mark.parametrize("pipelining", [True, False])
def test_both_ways_give_the_relays_answers_and_keep_the_connection_usable_after_a_refusal(
    quirky: str, maildir: Path, pipelining: bool
) -> None:
    outcomes, pipelined = send_all(SmtpMailer(quirky, pipelining=pipelining), RECIPIENTS)

    assert pipelined is pipelining
    assert [o.code for o in outcomes] == [250, 550, 452, 451, 250, 250]
    assert "5.1.1" in outcomes[1].reply and "Mailbox full" in outcomes[2].reply
    delivered = stored(maildir)
    assert sorted(m["Delivered-To"] for m in delivered) == [
        "last@example.org",
        "reader@example.org",
        "retryonce@example.org",
    ]
    # Dot-stuffing: the content's own leading period arrives as it was.
    assert all(".a line that starts with a period" in m.get_content() for m in delivered)  # type: ignore[attr-defined]


@pytest.mark.parametrize("pipelining", [True, False])
def test_senders_sharing_a_connection_each_get_their_own_answer(quirky: str, maildir: Path, pipelining: bool) -> None:
    """Two senders on one connection, as the delivery process runs them: pipelined, the next envelope goes out
    with the content before it, and answers, refusals and resets still pair with their own messages."""
    answers = {"reader": 250, "hardbounce": 550, "softbounce": 452, "retryonce": 451, "other": 250}
    kinds = list(answers)
    expected = {f"{kinds[i % len(kinds)]}{i}@example.org": answers[kinds[i % len(kinds)]] for i in range(60)}
    recipients = list(expected)
    mailer = SmtpMailer(quirky, pipelining=pipelining)

    async def run() -> tuple[dict[str, int], int]:
        queue = list(reversed(recipients))
        codes: dict[str, int] = {}

        async def sender() -> None:
            while queue:
                recipient = queue.pop()
                outcome = await mailer.send(RenderedMessage(MESSAGE, "bounces+t@example.com", recipient))
                codes[recipient] = outcome.code

        await asyncio.gather(sender(), sender())
        carried = mailer._connection.carried if isinstance(mailer._connection, PipelinedSession) else -1
        await mailer.close()
        return codes, carried

    codes, carried = asyncio.run(run())
    assert codes == expected
    accepted = sorted(r for r in recipients if codes[r] == 250)
    assert sorted(m["Delivered-To"] for m in stored(maildir)) == accepted
    if pipelining:
        assert carried > len(accepted) // 2  # most envelopes rode along with the content before them
    else:
        assert carried == -1


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_message_that_cannot_go_out_fails_alone_and_the_connection_stays(
    quirky: str, maildir: Path, pipelining: bool
) -> None:
    """An address SMTP cannot carry, or a DKIM key that cannot sign: that message's own answer, before
    anything is written, and the connection (shared by another sender in the delivery process) stays open."""
    from processors.dkim_signing import DkimSigner

    mailer = SmtpMailer(quirky, pipelining=pipelining)
    unsigned = SmtpMailer(quirky, pipelining=pipelining, signer=DkimSigner("s", "example.com", b"not a key"))

    async def run() -> tuple[list[SmtpOutcome], bool, SmtpOutcome]:
        first = await mailer.send(RenderedMessage(MESSAGE, "bounces+t@example.com", "before@example.org"))
        connection = mailer._connection
        bad = await mailer.send(RenderedMessage(MESSAGE, "bounces+t@example.com", "two words@example.org"))
        after = await mailer.send(RenderedMessage(MESSAGE, "bounces+t@example.com", "after@example.org"))
        kept = mailer._connection is connection and connection is not None and connection.is_connected
        await mailer.close()
        refused_key = await unsigned.send(RenderedMessage(MESSAGE, "bounces+t@example.com", "signed@example.org"))
        await unsigned.close()
        return [first, bad, after], kept, refused_key

    (first, bad, after), kept, refused_key = asyncio.run(run())
    assert (first.code, bad.code, after.code) == (250, 553, 250)
    assert bad.reply.startswith("5.1.3") and "two words" in bad.reply
    assert kept  # the same connection carried the message after the refused one
    assert refused_key.code == 0 and "DKIM" in refused_key.reply  # retried, then failed, like a relay down
    assert sorted(m["Delivered-To"] for m in stored(maildir)) == ["after@example.org", "before@example.org"]


def test_a_relay_without_pipelining_gets_one_command_at_a_time(one_at_a_time: str, maildir: Path) -> None:
    outcomes, pipelined = send_all(SmtpMailer(one_at_a_time), ["reader@example.org", "hardbounce@example.org"])

    assert not pipelined
    assert [o.code for o in outcomes] == [250, 550]
    assert [m["Delivered-To"] for m in stored(maildir)] == ["reader@example.org"]


def test_the_declared_size_lets_the_relay_refuse_a_message_too_large_before_its_content(maildir: Path) -> None:
    for url in serve(QuirkyHandler(maildir), data_size_limit=len(MESSAGE) + 10):
        outcomes, pipelined = send_all(SmtpMailer(url), ["reader@example.org"], MESSAGE + b"x" * 100 + b"\r\n")
        assert pipelined
        assert outcomes[0].code == 552
        assert (
            "exceeds fixed maximum message size" in outcomes[0].reply
        )  # at MAIL FROM ... SIZE=, not after the content
        assert stored(maildir) == []


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_relay_that_hangs_up_or_closes_fails_that_message_and_the_next_one_reconnects(
    quirky: str, maildir: Path, pipelining: bool
) -> None:
    outcomes, _ = send_all(
        SmtpMailer(quirky, pipelining=pipelining),
        ["hangup@example.org", "reader@example.org", "closing@example.org", "last@example.org"],
    )

    assert [o.code for o in outcomes] == [0, 250, 421, 250]
    # The relay stored it and hung up before answering its content: the retry may duplicate it, and says so.
    assert "after the message was sent" in outcomes[0].reply and outcomes[0].after_content
    assert not any(o.after_content for o in outcomes[1:])  # a 421 at RCPT: nothing went out
    assert sorted(m["Delivered-To"] for m in stored(maildir)) == [
        "hangup@example.org",
        "last@example.org",
        "reader@example.org",
    ]


def test_a_relay_that_does_not_answer_times_out_and_the_connection_is_dropped(quirky: str) -> None:
    mailer = SmtpMailer(quirky, timeout=0.5)

    async def run() -> tuple[SmtpOutcome, bool]:
        outcome = await asyncio.wait_for(
            mailer.send(RenderedMessage(MESSAGE, "b@example.com", "silent@example.org")), 3
        )
        return outcome, mailer._connection is None

    outcome, dropped = asyncio.run(run())
    assert outcome.code == 0 and "timed out" in outcome.reply
    assert outcome.after_content  # it waited for the answer to the content: the relay may have it
    assert dropped


def test_replies_are_matched_to_commands_however_the_bytes_arrive() -> None:
    async def run() -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        replies = SmtpReplies()
        three = replies.expect(3)
        for chunk in (
            b"250 2.1.0 Ok\r\n250-first",
            b" line\r\n250 2.1.5 second\r\n35",
            b"4 End data\r\n250 queued\r\n",
        ):
            replies.data_received(chunk)
        one = replies.expect(1)  # its reply came with the others, before it was asked for
        return await three, await one

    three, one = asyncio.run(run())
    assert three == [(250, "2.1.0 Ok"), (250, "first line\n2.1.5 second"), (354, "End data")]
    assert one == [(250, "queued")]


def test_a_malformed_or_endless_reply_fails_whoever_waits() -> None:
    async def run(data: bytes) -> BaseException | None:
        replies = SmtpReplies()
        waiting = replies.expect(1)
        replies.data_received(data)
        return waiting.exception() if waiting.done() else None

    assert "malformed" in str(asyncio.run(run(b"hello there\r\n")))
    assert "too long" in str(asyncio.run(run(b"250-" + b"x" * 40_000)))
