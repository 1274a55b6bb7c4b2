"""The bounce-reason rules, as data: one line a rule, first match wins (read by :mod:`schemas.bounce_reasons`).

Text rules run on the diagnostic lowercased, with addresses and "host ... said:" prefixes removed and
the code prefixes of multi-line replies folded. The order is the policy:

1. wordings only one receiver uses (its postmaster pages name them), where the generic rules would
   misread it (Office 365 answers an unknown address with "Access denied", Mimecast a sender the
   recipient blocked with "Envelope blocked");
2. sender-side refusals (a blocklist, reputation, spam, a virus, authentication, reverse DNS, TLS,
   relaying, the sender address, the message itself): a text naming one of those is never about the
   recipient, whatever else it says ("Sender address rejected: User unknown");
3. the mailbox's state (disabled, full), then system storage;
4. address failures (unknown user, unknown domain, moved, null MX, syntax);
5. transient failures (rate, connections, expiry, network, remote errors);
6. the vaguest sender-side words ("blocked", "policy", "denied").

When no text rule matches, the enhanced status code decides (:data:`CODE_RULES`, RFC 3463 and the
registry's later codes), then the basic reply code (:data:`REPLY_CODE_RULES`), else ``undetermined``
(soft). A new rule is one line here and one fixture under ``tests/fixtures/bounces/``.
"""

from __future__ import annotations

import re
from re import _constants, _parser  # type: ignore[attr-defined]
from typing import Any

# fmt: off
_RULES: tuple[tuple[str, str, str], ...] = (
    # (reason, name, pattern)
    # 1. Receiver-specific wordings
    ("rate_limited", "greylisting", r"greylist|graylist"),
    ("unknown_user", "office365-dbeb", r"recipient address rejected: access denied\. (as\(201806281\)|for more information see https://aka\.ms/exosmtperrors)"),
    ("unknown_user", "office365-dbeb-old", r"5\.4\.1 .{0,60}recipient address rejected: access denied"),
    ("unknown_user", "exchange-recipnotfound", r"resolver\.adr\.recip(ient)?notfound|recipient not found by smtp address lookup"),
    ("policy", "exchange-restriction", r"resolver\.rst\.|sendernotauthenticatedforgroup"),
    ("unknown_domain", "exchange-nonexistent-domain", r"smtpsend\.dns\.nonexistentdomain"),
    ("expired", "exchange-queue-expired", r"queue\.expired"),
    ("blocked", "outlook-block-list", r"part of their network is on our block list|\((s3150|s3140|s775)\)|banned sending ip|traffic not accepted from this ip|client blocked from sending"),
    ("unknown_user", "gmail-nosuchuser", r"p=nosuchuser"),
    ("mailbox_full", "gmail-overquota", r"p=overquota(temp|perm)"),
    ("mailbox_disabled", "gmail-disabled", r"p=disableduser"),
    ("blocked", "gmail-rate-of-unsolicited", r"unusual rate of unsolicited mail|p=unsolicitedratelimiterror"),
    ("over_limit", "gmail-receiving-rate", r"p=receivingrate|receiving mail at a rate"),
    ("unknown_domain", "gmail-bad-domain", r"p=badrcptdomain"),
    ("policy", "google-workspace-policy", r"has a policy that prohibited the mail"),
    ("unknown_user", "yahoo-no-account", r"\bdd this user doesn't have an? [\w.-]+ account"),
    ("mailbox_disabled", "yahoo-disabled", r"mailbox is disabled|\(554\.30\)"),
    ("blocked", "yahoo-deferral", r"\[ts0\d\]|\[tss0\d\]|\[bl\d\d\]"),
    ("policy", "yahoo-ph", r"\[ph0\d\]"),
    ("blocked", "aol-block", r"aol will not accept delivery|\(rly:b\d\)"),
    ("unknown_user", "aol-domain-only", r"recipient address rejected: [a-z0-9-]+(\.[a-z0-9-]+)+$"),
    ("unknown_user", "comcast-not-our-customer", r"not our customer"),
    ("blocked", "comcast-cox-bl", r"#bl\d{6}|ipbl\d{4}"),
    ("too_many_connections", "comcast-rl", r"#rl\d{6}"),
    ("policy", "mimecast-envelope-blocked", r"envelope blocked|anti-spoofing"),
    ("blocked", "barracuda-blocked", r"permanent failure for one or more recipients \([^)]*:blocked\)"),
    ("unknown_user", "ironport-address-rejected", r"#5\.1\.0 address rejected"),
    ("rate_limited", "qq-ip-frequency", r"ip frequency limited"),
    ("too_many_connections", "qq-connection-frequency", r"connection frequency limited"),
    ("spam", "netease-spm", r"\bdt:spm\b"),
    ("rate_limited", "netease-rp", r"\brp:(r\d|qrc|rdn|cel)\b"),
    ("blocked", "t-online-bl", r"ask your postmaster for help.*\(bl\)"),
    ("blocked", "free-too-many-spams", r"too many spams from your ip"),
    ("rate_limited", "zoho-unusual-activity", r"unusual sending activity"),
    ("provider_suppressed", "ses-suppression-list", r"suppression list|recent history of bouncing"),
    ("mailbox_disabled", "mailru-disabled", r"local mailbox .{0,80} is unavailable: account is disabled"),
    ("mailbox_full", "domino-mail-file", r"maximum mail file size exceeded|mail ?file .{0,30}quota"),
    ("unknown_user", "domino-directory", r"not listed in domino directory|does not specify a valid notes mail file"),
    # 2. Sender-side refusals
    ("sender_rejected", "sender-rejected", r"sender (address )?(rejected|refused|denied|not allowed|unknown|blocked)|sender verify failed|sender was rejected|envelope sender (domain )?must exist|bad outbound sender|sendasdenied|mail from (address )?(rejected|refused)|sender domain (must exist|not found|does not exist)|domain of sender|sender address .{0,40}(does not exist|not found|unknown|invalid)|send as this sender|smtputf8"),
    ("sending_quota", "sending-quota", r"sending (limit|quota)|daily (user )?sending|submission quota|submissionquotaexceeded"),
    ("no_reverse_dns", "reverse-dns", r"reverse (dns|hostname|lookup|dns entry)|\bptr\b|\brdns\b|cannot find your hostname|client host rejected: cannot find|no reverse"),
    ("blocked", "blocklist", r"blocked using|listed (at|in|on) (zen\.|bl\.|b\.barracuda|cbl\.|dnsbl|spamhaus|spamcop|sorbs|barracuda|an? (rbl|dnsbl|black ?list|block ?list))|is (in|on) an? (rbl|dnsbl|black ?list|block ?list)|\b(dns|rh|ur)?bl\b.{0,20}(listed|lookup)|black ?list|block ?listed|blocklisted|blacklisted|\bdnsbl\b|\brbl\b|spamhaus|spamcop|\bsorbs\b|barracuda ?reputation|cloudmark|dnsbl-lookup|ipcheck\.proofpoint|proofpoint dynamic reputation|reputation (service|check|block)|(ip|sender|domain|poor|bad|low) reputation|due to ip reputation|client host .{0,80}blocked|client host rejected|blocked for spam|block for spam|unexpected volume or user complaints|permanently deferred|will not be accepted from|connections? not accepted|banned"),
    ("virus", "virus", r"virus|malware|infected|trojan|troj/|potentially executable|potential security issue|p=blockedmessage|eicar|phishing"),
    ("auth_failure", "authentication", r"\bspf\b|sender policy framework|\bdkim\b|\bdmarc\b|unauthenticated|domain authentication|authentication (fail|results)|not pass (spf|dkim|dmarc)|required authentication level"),
    ("tls_required", "tls-required", r"starttls|\btls\b (is )?(required|needed)|requires? tls|encryption (is )?required|requiretls|must use tls"),
    ("relay_denied", "relay-denied", r"relay(ing)? (access )?(denied|not (permitted|allowed))|unable to relay|not (permitted|allowed) to relay|we do not relay|open relay not allowed|rcpthosts|relaying (is )?(denied|prohibited)"),
    ("not_compliant", "not-rfc-compliant", r"rfc ?(5322|2822|822)|not (rfc )?compliant|non-?compliant|malformed (message|header)|invalid (message )?header|missing (a )?(valid )?[\w-]+:? header|header .{0,20}(invalid|missing)|multiple from|message-id header"),
    ("spam", "spam", r"\bspam\b|unsolicited|\bube\b|\buce\b|junk ?mail|spam ?(score|points|message)|suspicion of spam|bulk mail|content filter"),
    ("policy", "policy-restriction", r"policy (reasons|restrictions?|violation)|local policy|security polic(y|ies)|content (restrictions|rejected)|administrative prohibition|prohibited|not authori[sz]ed|access denied|does not allow external|rejected by .{0,40}polic"),
    # 3. The mailbox's state, then storage
    ("mailbox_disabled", "mailbox-disabled", r"(mailbox|account|user|address) (is |has been |was )?(disabled|suspended|deactivated|locked|frozen|on hold|inactive)|inactive (email )?(address|account|user|mailbox)|is inactive|disabled for this recipient|mailbox disabled|account (is )?(disabled|suspended)"),
    ("mailbox_full", "mailbox-full", r"mailbox (is )?full|over ?quota|quota (exceeded|exceed)|exceeded (the )?(storage|quota)|out of storage|mail ?box size limit|mailbox (size|storage) (limit|exceeded)|storage (space )?(is )?full|full mailbox|is over (the )?(allowed )?quota|insufficient (disk )?space|boite .{0,30}pleine|mailbox quota|quotaexceeded|mailfolder is over"),
    ("system_full", "system-storage", r"insufficient system storage|system (storage|disk) (is )?full|out of (system )?disk"),
    ("too_big", "message-too-big", r"message (size|too (big|large|long))|size (limit|exceeds)|exceed(s|ed)? .{0,40}size|(message|mail) (is )?too (big|large)|p=maxsizeerror"),
    # 4. Address failures
    ("null_mx", "null-mx", r"\bnull ?mx\b|domain .{0,80}does not accept (e-?)?mail$|accepts no mail"),
    ("address_moved", "address-moved", r"(has|have) moved|user not local|address (has )?changed|relocated|no longer (at|with) (this|the)"),
    ("invalid_address", "address-syntax", r"(bad|invalid|illegal) (recipient )?(address|mailbox)( name)? syntax|address syntax|syntax error in (recipient )?(address|parameters)|malformed (recipient )?address|invalid (recipient )?address format"),
    ("unknown_domain", "unknown-domain", r"host (or domain name )?not found|domain (name )?not found|no such domain|unknown (host|domain)|host unknown|unrouteable domain|nxdomain|non-?existent (domain|host)|couldn'?t find any host|could not find any host|mx records point to non-existent|domain (does not|doesn't) exist|recipient domain (is )?(invalid|unknown)"),
    ("unknown_user", "unknown-user", r"user unknown|unknown (user|recipient|local part|mailbox|address|alias)|no such (user|mailbox|recipient|account|address|person|local user)|(user|address|recipient|mailbox|account|email account) (does not|doesn't|did not) exist|does not exist here|not a valid (recipient|mailbox|user|address)|invalid (recipient|mailbox|user|address)|(recipient|user|mailbox|address|account) (not found|unknown|invalid)|recipient rejected$|mailbox (unavailable|not available|does not exist)|no mailbox here|unrouteable address|no such user here|account (closed|not found)|user not found|address rejected\.|recipient unknown|addressee unknown|not (a )?known user|no longer (valid|active|in use)|no valid recipients"),
    # 5. Transient
    ("too_many_connections", "too-many-connections", r"too many (connections|sessions|concurrent|smtp sessions)|connection (rate|limit)|max(imum)? (number of )?connections|trop de connexions"),
    ("rate_limited", "rate-limited", r"rate limit|rate-limit|ratelimit|frequency limit|throttl|slow down|too many (messages|mails|recipients)|message rate|sending rate|try again later.{0,40}(rate|volume)"),
    ("expired", "expired", r"expired|retry timeout exceeded|queue too long|too long in (the )?queue|cannot send message for|delivery time expired|message timed out|giving up|gave up"),
    ("network_error", "network", r"connection (timed out|refused|reset|lost|closed|dropped)|timed out|timeout|no route to host|(network|host) (is )?unreachable|did not accept our requests to connect|lost connection|broken pipe|dns (error|failure|lookup|query)|servfail|read error|connect to .{0,80}:\d+"),
    ("remote_error", "remote-error", r"temporar(y|ily) (local |system )?(problem|failure|error|unavailable)|(service|resources) (are |is )?(temporarily )?unavailable|service not available|internal (server |resources )?error|system error|server error|local error|lookup failure|hop count exceeded|mail loop|loops back to myself|loop detected|shutting down|closing transmission channel|try again"),
    # 6. The vaguest sender-side words
    ("blocked", "blocked", r"\bblocked\b|\bblock(ed)? ?list|mail refused|reputation|not accepted from"),
    ("policy", "policy", r"\bpolicy\b|not (allowed|permitted)|prohibit|denied|\bfiltered\b|refused"),
)
# fmt: on


def required_literals(pattern: str) -> tuple[str, ...] | None:
    """Strings of which every match of ``pattern`` contains one, or None when none can be told.

    A text containing none of them cannot match, so the rule is skipped with a substring test: the
    rules are tried in order on every refusal, and most do not apply.
    """
    return _required(list(_parser.parse(pattern)))


_MIN_LITERAL = 3


def _required(items: list[tuple[Any, Any]]) -> tuple[str, ...] | None:
    best: tuple[str, ...] | None = None
    run = ""

    def take(candidate: tuple[str, ...] | None) -> None:
        nonlocal best
        usable = bool(candidate) and all(len(c) >= _MIN_LITERAL for c in candidate or ())
        # The candidate whose shortest string is longest filters best.
        if usable and candidate and (best is None or min(map(len, candidate)) > min(map(len, best))):
            best = candidate

    for op, value in items:
        if op is _constants.LITERAL:
            run += chr(value)
            continue
        prefix = run
        take((run,))
        run = ""
        if op is _constants.SUBPATTERN:
            take(_required(list(value[-1])))
        elif op is _constants.BRANCH:
            alternatives = [_required(list(alternative)) for alternative in value[1]]
            if all(alternatives):
                take(tuple(literal for alternative in alternatives for literal in alternative or ()))
            # The parser moves a prefix the alternatives share out of them ("[ts0|[bl" -> "[" + "ts0|bl"):
            # each alternative still holds that prefix followed by its own leading literal.
            take(tuple(prefix + _leading(list(alternative)) for alternative in value[1]))
        elif op in (_constants.MAX_REPEAT, _constants.MIN_REPEAT) and value[0] >= 1:
            take(_required(list(value[2])))
    take((run,))
    return best


def _leading(items: list[tuple[Any, Any]]) -> str:
    run = ""
    for op, value in items:
        if op is not _constants.LITERAL:
            break
        run += chr(value)
    return run


TEXT_RULES: tuple[tuple[str, str, re.Pattern[str], tuple[str, ...] | None], ...] = tuple(
    # ASCII: \b and \w need not consult Unicode tables (the texts are lowercased; a rule names ASCII words).
    (name, reason, re.compile(pattern, re.ASCII), required_literals(pattern))
    for reason, name, pattern in _RULES
)

# Enhanced status codes: "class.subject.detail" exact, "x.subject.detail" for either class, "x.subject.x".
CODE_RULES: dict[str, str] = {
    "x.1.1": "unknown_user",
    "x.1.2": "unknown_domain",
    "x.1.3": "invalid_address",
    "x.1.6": "address_moved",
    "x.1.10": "null_mx",
    "x.1.7": "sender_rejected",
    "x.1.8": "sender_rejected",
    "x.2.1": "mailbox_disabled",
    "x.2.2": "mailbox_full",
    "x.2.3": "too_big",
    "x.2.4": "remote_error",
    "x.3.1": "system_full",
    "x.3.4": "too_big",
    "x.3.x": "remote_error",
    "5.4.4": "unknown_domain",
    "x.4.5": "rate_limited",
    "x.4.6": "remote_error",
    "x.4.7": "expired",
    "x.4.x": "network_error",
    "x.5.x": "remote_error",
    "x.6.x": "not_compliant",
    "x.7.1": "policy",
    "x.7.7": "not_compliant",
    "x.7.8": "sender_rejected",
    "x.7.10": "tls_required",
    "x.7.11": "tls_required",
    "x.7.13": "mailbox_disabled",
    "x.7.17": "address_moved",
    "x.7.18": "address_moved",
    "x.7.20": "auth_failure",
    "x.7.21": "auth_failure",
    "x.7.22": "auth_failure",
    "x.7.23": "auth_failure",
    "x.7.24": "auth_failure",
    "x.7.25": "no_reverse_dns",
    "x.7.26": "auth_failure",
    "x.7.27": "sender_rejected",
    "x.7.28": "blocked",
    "x.7.29": "auth_failure",
    "x.7.30": "tls_required",
    "x.7.x": "policy",
}
# Basic reply codes (RFC 5321), when neither the text nor an enhanced status says more.
REPLY_CODE_RULES: dict[str, str] = {
    "421": "remote_error",
    "450": "remote_error",
    "451": "remote_error",
    "452": "system_full",
    "530": "tls_required",
    "551": "address_moved",
    "552": "mailbox_full",
}


def _literal_index() -> Any:
    """One Aho-Corasick automaton over every rule's words: a single pass over a text tells which rules
    could match it (pyahocorasick, C). Value of each word: the indices of the rules holding it."""
    import ahocorasick

    owners: dict[str, list[int]] = {}
    for index, (_, _, _, literals) in enumerate(TEXT_RULES):
        for literal in literals or ():
            owners.setdefault(literal, []).append(index)
    automaton = ahocorasick.Automaton()
    for literal, indices in owners.items():
        automaton.add_word(literal, tuple(indices))
    automaton.make_automaton()
    return automaton


LITERAL_INDEX = _literal_index()
# Rules no word can rule out: tried on every text.
ALWAYS_TRIED: frozenset[int] = frozenset(i for i, (_, _, _, literals) in enumerate(TEXT_RULES) if literals is None)
