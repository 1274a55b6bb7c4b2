from __future__ import annotations

import pytest

from producers.classify import classify_agent, truncate_ip
from schemas.events import AgentClass


@pytest.mark.parametrize(
    ("ua", "ip", "expected"),
    [
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0", "203.0.113.9", AgentClass.HUMAN),
        ("Mozilla/5.0", "198.51.100.1", AgentClass.APPLE_MPP),
        ("Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15", "17.58.1.2", AgentClass.APPLE_MPP),
        (
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
            "66.249.1.1",
            AgentClass.GOOGLE_PROXY,
        ),
        ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", "1.2.3.4", AgentClass.YAHOO_PROXY),
        ("Mozilla/5.0 Barracuda Sentinel", "1.2.3.4", AgentClass.SCANNER),
        ("curl/8.5.0", "1.2.3.4", AgentClass.BOT),
        ("", "1.2.3.4", AgentClass.BOT),
        ("curl/8.5.0", "17.1.2.3", AgentClass.APPLE_MPP),  # Apple's network is asked before the bot marks
        ("Mozilla/5.0 Barracuda Sentinel", "17.1.2.3", AgentClass.SCANNER),  # and after the scanner marks
        ("Mozilla/5.0 " + "x" * 600 + " bot", "1.2.3.4", AgentClass.BOT),  # too long to be remembered
        ("Mozilla/5.0 " + "x" * 600, "17.1.2.3", AgentClass.APPLE_MPP),
    ],
)
def test_classification(ua: str, ip: str, expected: AgentClass) -> None:
    assert classify_agent(ua, ip) is expected


def test_a_remembered_agent_is_still_judged_by_each_address() -> None:
    agent = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    answers = [classify_agent(agent, ip) for ip in ("203.0.113.9", "17.58.1.2", "203.0.113.9", "17.58.1.2")]
    assert answers == [AgentClass.HUMAN, AgentClass.APPLE_MPP] * 2


def test_ip_truncation() -> None:
    assert truncate_ip("203.0.113.77") == "203.0.113.0"
    assert truncate_ip("2001:db8:abcd:12::1") == "2001:db8:abcd::"
    assert truncate_ip("203.0.113.77", keep_full=True) == "203.0.113.77"
    assert truncate_ip("not an ip") == ""
