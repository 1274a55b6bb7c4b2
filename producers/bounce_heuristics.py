"""Non-standard bounces (pure): what Exim, qmail, Yahoo, MDaemon and the rest write instead of RFC 3464.

flufl.bounce's detectors find the failed addresses (Exim's X-Failed-Recipients header saves running them);
each failure's reason is read from the bounce's own words next to its address, before any copy of the
original message. Delay warnings and SMTP session transcripts are read too; auto-replies are recognised
as no failure at all.
"""

from __future__ import annotations

import re

from flufl.bounce import all_failures

from producers.bounce_records import BounceRecord, RecordKind
from producers.mail_reading import MailView
from schemas.bounce_reasons import SmtpStage, classify

# How reports name the command a refusal answered ("in reply to RCPT TO command", "after RCPT TO:").
_STAGE_WORDS = (
    (("in reply to mail", "after mail"), SmtpStage.MAIL),
    (("in reply to rcpt", "after rcpt"), SmtpStage.RCPT),
    (("in reply to end of data", "after end of data", "in reply to data", "after data"), SmtpStage.DATA),
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|auto:|out of (the )?office|abwesenheit|r[ée]ponse automatique"
    r"|absence|vacation|away from|on leave|please (verify|confirm) your (email|address)|challenge)",
    re.I,
)
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery|mail ?router|mdaemon|courier mail server", re.I)
# Where a non-standard bounce stops describing failures and copies the original message.
_COPY_MARKS = re.compile(
    r"^-+ ?(this is a copy|below this line|original message|the original message|attached message)", re.I | re.M
)
# Exim's and others' delay warnings: "has not yet been delivered to one or more of its recipients".
_NOT_YET = re.compile(r"has not yet been delivered|not been delivered yet|delivery (is )?delayed", re.I)
_ADDRESS_LINE = re.compile(r"^\s+<?([\w.+'=-]+@[\w-]+(?:\.[\w-]+)+)>?:?\s*$", re.M)
# A session transcript (MDaemon, Kerio, hMailServer, ...): the recipient, then the server's refusal.
_TRANSCRIPT = re.compile(r"RCPT TO:\s*<([^<>\s]+@[^<>\s]+)>[^\n]*\n((?:\s*[<>]*\s*[45]\d\d[ -][^\n]*\n?)+)", re.I)


def stage_near(text: str, recipient: str | None) -> SmtpStage:
    """The SMTP command a report's human-readable part says the refusal answered, near the recipient."""
    if not text:
        return SmtpStage.UNKNOWN
    lowered = text.lower()
    at = lowered.find(recipient) if recipient else -1
    near = " ".join((lowered[at : at + 800] if at >= 0 else lowered[:2000]).split())
    for words, stage in _STAGE_WORDS:
        if any(word in near for word in words):
            return stage
    return SmtpStage.UNKNOWN


def is_auto_reply(mail: MailView) -> bool:
    """A vacation or out-of-office answer, or a challenge to prove we are human: no delivery failure."""
    sender = mail.header("From")
    if _DAEMON.search(sender) or not sender.strip():
        return False
    auto = mail.header("Auto-Submitted").lower()
    marked = (
        auto.startswith("auto-replied")
        or (auto.startswith("auto-generated") and bool(mail.headers("X-Auto-Response-Suppress")))
        or any(mail.headers(h) for h in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Boxbe-Status"))
        or mail.header("Precedence").lower() == "auto_reply"
    )
    return marked or bool(_AUTO_SUBJECT.search(mail.header("Subject")))


def _before_copy(text: str) -> str:
    """A non-standard bounce's own words, without the copy of the original message it may append."""
    copy = _COPY_MARKS.search(text)
    return text[: copy.start()] if copy else text


def _failure_window(text: str, address: str) -> str:
    """The lines of a bounce's own words (``_before_copy``) about one address: from it to the next blank line."""
    at = text.lower().find(address)
    if at < 0:
        return text[:1000]
    rest = text[at:]
    blank = re.search(r"\n\s*\n(?!\s+\S)", rest)
    window = rest[: blank.start()] if blank else rest
    return window[:1500]


def _delay_warning(text: str) -> list[BounceRecord]:
    """A warning that delivery is still being tried: one delay record per address it lists."""
    head = _before_copy(text)
    found = _NOT_YET.search(head)
    if found is None:
        return []
    records = []
    for match in _ADDRESS_LINE.finditer(head, found.end()):
        address = match.group(1).lower()
        window = _failure_window(head, address)
        verdict = classify(_after_address_line(window))
        records.append(BounceRecord(address, RecordKind.DELAY, verdict, " ".join(window.split())[:1000]))
    return records


def _transcript(text: str) -> list[BounceRecord]:
    records = []
    for match in _TRANSCRIPT.finditer(text):
        reply = "\n".join(line.strip().lstrip("<> ") for line in match.group(2).strip().splitlines())
        if reply.startswith("2"):
            continue
        verdict = classify(reply, stage=SmtpStage.RCPT, gave_up=True)
        records.append(BounceRecord(match.group(1).lower(), RecordKind.BOUNCE, verdict, " ".join(reply.split())[:1000]))
    return records


def heuristic_records(mail: MailView) -> list[BounceRecord]:
    text, sender = mail.text, mail.header("From")
    if _DAEMON.search(sender) and (warning := _delay_warning(text)):
        return warning
    # Exim (and the MTAs that copy it: GMX, cPanel hosts) names the failed addresses in a header of its
    # own: no need to run flufl.bounce's two dozen detectors over the message to find them.
    named = {a.strip().strip("<>").lower().encode() for v in mail.headers("X-Failed-Recipients") for a in v.split(",")}
    named.discard(b"")
    if named:
        temporary, permanent = frozenset[bytes](), frozenset(named)
    else:
        try:
            temporary, permanent = all_failures(mail.message())
        except Exception:  # some flufl.bounce detectors raise on odd mail; that mail is simply no bounce
            temporary, permanent = frozenset(), frozenset()
    if not temporary and not permanent:
        return _transcript(text) if _DAEMON.search(sender) else []
    records = []
    failures = [(a, RecordKind.DELAY) for a in temporary if a not in permanent]
    failures += [(a, RecordKind.BOUNCE) for a in permanent]
    own_words = _before_copy(text)
    for raw, kind in failures:
        address = raw.decode("utf-8", "replace").lower()
        window = _failure_window(own_words, address)
        answer = _after_address_line(window)
        verdict = classify(answer, stage=stage_near(window, None), gave_up=kind is RecordKind.BOUNCE)
        diagnostic = window if answer is window else " ".join(answer.split())
        records.append(BounceRecord(address, kind, verdict, diagnostic[:1000]))
    return records


def _after_address_line(window: str) -> str:
    """The address line itself names nobody's reason; what follows is the remote answer or the MTA's verdict."""
    _, newline, rest = window.partition("\n")
    return rest if newline else window
