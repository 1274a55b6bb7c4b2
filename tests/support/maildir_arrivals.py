"""What the local SMTP sink received and when, read from its Maildir's headers alone (fast enough for
tens of thousands of mails): for the tests and benchmarks that look for a campaign's or a recipient's mail.

A file in ``new/`` never changes once the sink wrote it, so each file's headers are read once per process
and kept: a test that looks for one recipient's mail after a 20,000-mail campaign reads only the files
that arrived since it last looked, not the whole Maildir again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Arrival:
    path: str
    recipient: str  # Delivered-To, lower-cased: the sink's trace header, first in the file
    campaign: str  # X-Mailpulse-Campaign
    at: float  # the file's modification time: when the sink stored it


_seen: dict[str, Arrival] = {}


def _head(path: str) -> dict[str, str]:
    """The mail's header fields, unfolded (the first occurrence of each name wins)."""
    with open(path, "rb") as mail:
        head = mail.read(16384).split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("utf-8", "replace")
    unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ").replace("\n ", " ").replace("\n\t", " ")
    fields: dict[str, str] = {}
    for line in unfolded.splitlines():
        name, sep, value = line.partition(":")
        if sep and name not in fields:
            fields[name] = value.strip()
    return fields


def stored(maildir: Path) -> list[Arrival]:
    """Every mail the sink stored in ``maildir``, its headers read once per file."""
    found = []
    with os.scandir(maildir / "new") as entries:
        for entry in entries:
            arrival = _seen.get(entry.path)
            if arrival is None:
                fields = _head(entry.path)
                arrival = Arrival(
                    entry.path,
                    fields.get("Delivered-To", "").lower(),
                    fields.get("X-Mailpulse-Campaign", ""),
                    entry.stat().st_mtime,
                )
                _seen[entry.path] = arrival
            found.append(arrival)
    return found


def arrivals(maildir: Path, campaign: str, since: float = 0.0) -> list[tuple[str, float]]:
    """(recipient, arrival time) of each of ``campaign``'s mails the sink stored after ``since``."""
    return [(a.recipient, a.at) for a in stored(maildir) if a.campaign == campaign and a.at >= since]


def mail_headers(maildir: Path, recipient: str) -> dict[str, str]:
    """The headers of the first mail stored for ``recipient`` (folded lines unfolded); empty when none."""
    for arrival in stored(maildir):
        if arrival.recipient == recipient.lower():
            return _head(arrival.path)
    return {}
