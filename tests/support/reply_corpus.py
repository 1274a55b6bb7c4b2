"""The SMTP reply corpus (``tests/fixtures/smtp_replies.tsv``), read once for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "smtp_replies.tsv"


def smtp_replies() -> list[tuple[str, str, str]]:
    """(stage, expected reason, reply as written: ``\\n`` between the lines of a multi-line reply)."""
    rows = []
    for line in CORPUS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            stage, reason, reply = line.split("\t", 2)
            rows.append((stage, reason, reply))
    return rows


def reply_text(reply: str) -> str:
    """The reply as a relay sends it: its lines joined by newlines."""
    return reply.replace("\\n", "\n")


def reply_code(reply: str) -> int:
    return int(reply[:3]) if reply[:3].isdigit() else 0
