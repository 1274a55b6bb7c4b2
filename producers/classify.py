"""Who fetched a pixel or followed a link, from user agent and client IP (pure)."""

from __future__ import annotations

import functools
import ipaddress
import socket

from schemas.events import AgentClass

# Apple Mail Privacy Protection prefetches through Apple's own network.
_APPLE_NETWORKS = (ipaddress.ip_network("17.0.0.0/8"),)
_SCANNER_MARKS = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "urldefense",
    "zscaler",
    "symantec",
    "messagelabs",
    "trend micro",
    "trendmicro",
    "safelinks",
    "forcepoint",
    "sophos",
    "fortiguard",
    "cisco",
    "ironport",
)
_BOT_MARKS = (
    "bot",
    "spider",
    "crawl",
    "curl/",
    "wget",
    "python-",
    "httpx",
    "go-http-client",
    "java/",
    "okhttp",
    "headless",
    "preview",
    "scan",
    "monitor",
    "libwww",
    "node-fetch",
    "axios",
)


def _ipv4(ip: str) -> bool:
    # inet_pton is C and strict; the ipaddress module costs ~10 us a call on the pixel's hot path.
    try:
        socket.inet_pton(socket.AF_INET, ip)
    except OSError:
        return False
    return True


def _in_apple_network(ip: str) -> bool:
    if _ipv4(ip):
        return ip.startswith("17.")
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in net for net in _APPLE_NETWORKS)


def classify_agent(user_agent: str, client_ip: str) -> AgentClass:
    by_agent, otherwise = _by_agent(user_agent) if len(user_agent) <= _CACHED_AGENT_CHARS else _marks(user_agent)
    if by_agent is not None:
        return by_agent
    # MPP also fetches from Apple's address space under other agents.
    return AgentClass.APPLE_MPP if _in_apple_network(client_ip) else otherwise


def _marks(user_agent: str) -> tuple[AgentClass | None, AgentClass]:
    """What the agent alone decides before the address is looked at, and what it decides after."""
    ua = user_agent.lower()
    if "googleimageproxy" in ua or "ggpht.com" in ua:
        return AgentClass.GOOGLE_PROXY, AgentClass.GOOGLE_PROXY
    if "yahoomailproxy" in ua:
        return AgentClass.YAHOO_PROXY, AgentClass.YAHOO_PROXY
    if any(mark in ua for mark in _SCANNER_MARKS):
        return AgentClass.SCANNER, AgentClass.SCANNER
    # MPP sends a bare "Mozilla/5.0" from Apple's address space.
    if user_agent.strip() == "Mozilla/5.0":
        return AgentClass.APPLE_MPP, AgentClass.APPLE_MPP
    if not ua.strip() or any(mark in ua for mark in _BOT_MARKS):
        return None, AgentClass.BOT
    return None, AgentClass.HUMAN


# Opens come from a few hundred mail clients and proxies, each with the same agent string every time:
# remembering the answer saves the ~3 us of lowering and scanning per open. Bounded both ways, so odd
# or hostile agents cannot grow it.
_CACHED_AGENT_CHARS = 512
_by_agent = functools.lru_cache(maxsize=4096)(_marks)


def truncate_ip(ip: str, keep_full: bool = False) -> str:
    """IPv4 to its /24, IPv6 to its /48: enough for geography, not for identity."""
    if _ipv4(ip):
        return ip if keep_full else ip.rsplit(".", 1)[0] + ".0"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if keep_full:
        return str(address)
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
