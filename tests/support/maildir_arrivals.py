"""What the local SMTP sink received and when, read from its Maildir's headers alone (fast enough for
tens of thousands of mails): for the tests and benchmarks that time a campaign's hand-offs."""

from __future__ import annotations

import os
from pathlib import Path


def arrivals(maildir: Path, campaign: str, since: float = 0.0) -> list[tuple[str, float]]:
    """(recipient, arrival time) of each of ``campaign``'s mails the sink stored after ``since``."""
    found = []
    with os.scandir(maildir / "new") as entries:
        for entry in entries:
            arrived = entry.stat().st_mtime
            if arrived < since:
                continue
            with open(entry.path, "rb") as mail:
                head = mail.read(4096).split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
            fields = dict(line.split(b": ", 1) for line in head.splitlines() if b": " in line[:80])
            if fields.get(b"X-Mailpulse-Campaign", b"").strip().decode() == campaign:
                found.append((fields[b"Delivered-To"].strip().decode().lower(), arrived))
    return found


def mail_headers(maildir: Path, recipient: str) -> dict[str, str]:
    """The headers of the first mail stored for ``recipient`` (folded lines unfolded); empty when none."""
    with os.scandir(maildir / "new") as entries:
        for entry in entries:
            with open(entry.path, "rb") as mail:
                head = mail.read(8192).split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("utf-8", "replace")
            unfolded = head.replace("\r\n ", " ").replace("\n ", " ")
            fields = dict(line.split(": ", 1) for line in unfolded.splitlines() if ": " in line)
            if fields.get("Delivered-To", "").lower() == recipient.lower():
                return fields
    return {}
