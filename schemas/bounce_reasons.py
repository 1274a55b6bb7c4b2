"""Why a message was refused, and what that does to the recipient (pure; one classifier for every path).

The bounce-mail intake (DSN, ARF and non-standard bounces), the sender's SMTP replies and the
provider webhooks all call :func:`classify`. It reads the diagnostic text first, the enhanced
status code (RFC 3463) next and the basic reply code last: real receivers answer "user unknown"
with 5.7.1 or no code at all, and "blocked using Spamhaus" with 5.x.x, so the class of the code
alone suppresses the wrong people both ways. The rules are data, in :mod:`schemas.bounce_rules`;
``docs/bounces.md`` lists the taxonomy and what each reason does.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

from schemas.bounce_rules import ALWAYS_TRIED, CODE_RULES, LITERAL_INDEX, REPLY_CODE_RULES, TEXT_RULES


class BounceClass(enum.StrEnum):
    """What a refusal does to the recipient, decided by its reason."""

    HARD = "hard"  # the address failed: suppressed at once
    SOFT = "soft"  # it may work later: counted toward the soft-bounce policy
    BLOCK = "block"  # the sender was refused (blocklist, content, authentication, ...): suppresses nobody


class BounceReason(enum.StrEnum):
    # Address failures: the address cannot receive mail. Suppressed at once (hard).
    UNKNOWN_USER = "unknown_user"
    UNKNOWN_DOMAIN = "unknown_domain"
    ADDRESS_MOVED = "address_moved"
    NULL_MX = "null_mx"
    INVALID_ADDRESS = "invalid_address"
    PROVIDER_SUPPRESSED = "provider_suppressed"
    # Transient: the address may work later. Soft, counted toward the soft-bounce policy.
    MAILBOX_FULL = "mailbox_full"
    OVER_LIMIT = "over_limit"
    MAILBOX_DISABLED = "mailbox_disabled"
    EXPIRED = "expired"
    REMOTE_ERROR = "remote_error"
    SYSTEM_FULL = "system_full"
    NETWORK_ERROR = "network_error"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    RATE_LIMITED = "rate_limited"
    UNDETERMINED = "undetermined"
    # Sender-side refusals: about the sender, its IP, its content or its setup. Never suppress (block).
    BLOCKED = "blocked"
    SPAM = "spam"
    VIRUS = "virus"
    POLICY = "policy"
    TOO_BIG = "too_big"
    NO_REVERSE_DNS = "no_reverse_dns"
    AUTH_FAILURE = "auth_failure"
    TLS_REQUIRED = "tls_required"
    RELAY_DENIED = "relay_denied"
    SENDER_REJECTED = "sender_rejected"
    NOT_COMPLIANT = "not_compliant"
    SENDING_QUOTA = "sending_quota"
    RELAY_UNAVAILABLE = "relay_unavailable"

    @property
    def bounce_class(self) -> BounceClass:
        return _CLASS[self]


_ADDRESS = {
    BounceReason.UNKNOWN_USER,
    BounceReason.UNKNOWN_DOMAIN,
    BounceReason.ADDRESS_MOVED,
    BounceReason.NULL_MX,
    BounceReason.INVALID_ADDRESS,
    BounceReason.PROVIDER_SUPPRESSED,
}
_TRANSIENT = {
    BounceReason.MAILBOX_FULL,
    BounceReason.OVER_LIMIT,
    BounceReason.MAILBOX_DISABLED,
    BounceReason.EXPIRED,
    BounceReason.REMOTE_ERROR,
    BounceReason.SYSTEM_FULL,
    BounceReason.NETWORK_ERROR,
    BounceReason.TOO_MANY_CONNECTIONS,
    BounceReason.RATE_LIMITED,
    BounceReason.UNDETERMINED,
}
_CLASS = {
    reason: BounceClass.HARD if reason in _ADDRESS else BounceClass.SOFT if reason in _TRANSIENT else BounceClass.BLOCK
    for reason in BounceReason
}
# A failed report whose last attempt got no answer (or none we can read) says the queue lifetime ran out.
_GAVE_UP_ON = {BounceReason.NETWORK_ERROR, BounceReason.UNDETERMINED}


class SmtpStage(enum.StrEnum):
    """Which command an SMTP reply answered (``UNKNOWN`` when a report does not say)."""

    CONNECT = "connect"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    UNKNOWN = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: BounceReason
    # The enhanced status code found (or given), "" when there is none.
    status: str
    # Which rule decided: "text:<name>", "status:<code>", "code:<reply code>", "stage:<stage>", "none".
    rule: str
    # The receiver itself said "try again" (4xx or 4.x.x): even an address failure then counts as soft.
    temporary: bool = False

    @property
    def bounce_class(self) -> BounceClass:
        if self.temporary and self.reason in _ADDRESS:
            return BounceClass.SOFT
        return self.reason.bounce_class


_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
# A reply code opens the text, a line, or follows "said:", "reason:", "<<<" or a DSN type ("smtp;").
_REPLY_CODE = re.compile(r"(?:^|\n|[;:(]|<<<)\s*#?([245][0-5]\d)(?=[ -]|$)")
# Addresses and "host x[ip] said:" prefixes carry no reason, and a local part like "spamtrap" or a host
# like "mx.barracuda..." must not look like one.
_ADDRESSES = re.compile(r"<[^<>\s]*@[^<>\s]*>|[\w.+'=-]+@[\w-]+(?:\.[\w-]+)+")
_SAID = re.compile(r"\bhost \S+ ?(?:\[[\d.:a-f]+\])? said:", re.I)
_MULTILINE_PREFIX = re.compile(r"(?m)^\s*[245]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3}\s)?")


def enhanced_status(text: str) -> str:
    match = _STATUS.search(text)
    return match.group(0) if match else ""


def reply_code(text: str) -> int:
    match = _REPLY_CODE.search(text)
    return int(match.group(1)) if match else 0


def _clean(text: str) -> str:
    if "\n" in text:
        text = _MULTILINE_PREFIX.sub(" ", text)
    if "@" in text:
        text = _ADDRESSES.sub(" ", text)
    if "said:" in text:
        text = _SAID.sub(" ", text)
    return " ".join(text.lower().split())


@functools.lru_cache(maxsize=8192)
def _by_text(cleaned: str) -> tuple[BounceReason, str] | None:
    # Receivers repeat the same few hundred wordings; the cache saves the rule scan for those.
    candidates = set(ALWAYS_TRIED)
    for _, owners in LITERAL_INDEX.iter(cleaned):
        candidates.update(owners)
    # In rule order; a rule none of whose words is in the text cannot match it.
    for index in sorted(candidates):
        name, reason, pattern, _ = TEXT_RULES[index]
        if pattern.search(cleaned):
            return BounceReason(reason), name
    return None


def classify(
    text: str,
    status: str = "",
    code: int = 0,
    stage: SmtpStage = SmtpStage.UNKNOWN,
    gave_up: bool = False,
) -> Verdict:
    """The reason of one refusal.

    ``text``: the diagnostic (an SMTP reply, a DSN's Diagnostic-Code, a provider's description);
    ``status``/``code``: the enhanced status and reply code when known apart from the text (read from
    the text otherwise); ``stage``: the command answered; ``gave_up``: the report is final (a DSN's
    ``Action: failed``) although the answer may have been temporary.
    """
    given = _STATUS.search(status) if status else None
    status = given.group(0) if given else enhanced_status(text)
    code = code or reply_code(text)
    temporary = status.startswith("4") if status else 400 <= code < 500
    if stage is SmtpStage.CONNECT:
        return Verdict(BounceReason.RELAY_UNAVAILABLE, status, "stage:connect", temporary=True)
    found = _by_text(_clean(text)) if text else None
    if found is not None:
        reason, rule = found[0], f"text:{found[1]}"
    else:
        reason, rule = _by_codes(status, code)
    if stage is SmtpStage.MAIL and reason.bounce_class is not BounceClass.BLOCK:
        # Nothing refused at MAIL FROM is about the recipient: the relay has not even seen it yet.
        reason, rule = BounceReason.SENDER_REJECTED, f"stage:mail({rule})"
    if gave_up and temporary and reason in _GAVE_UP_ON:
        reason, rule = BounceReason.EXPIRED, f"gave-up({rule})"
    return Verdict(reason, status, rule, temporary=temporary)


def _by_codes(status: str, code: int) -> tuple[BounceReason, str]:
    if status:
        klass, subject, detail = status.split(".")
        for key in (f"{klass}.{subject}.{detail}", f"x.{subject}.{detail}", f"x.{subject}.x"):
            if key in CODE_RULES:
                return BounceReason(CODE_RULES[key]), f"status:{status}"
    if code and str(code) in REPLY_CODE_RULES:
        return BounceReason(REPLY_CODE_RULES[str(code)]), f"code:{code}"
    return BounceReason.UNDETERMINED, "none"
