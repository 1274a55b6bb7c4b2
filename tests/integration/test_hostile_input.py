"""The hostile corpus (tests/support/hostile_corpus.py) against the running stack while valid traffic flows:
each case is refused cleanly (a 4xx, an SMTP 5xx or a kept non-bounce, a CLI message and a non-zero exit),
nothing answers 5xx, drops a connection or dies, nobody is suppressed by it, and every valid open sent
meanwhile is in the report."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import httpx

from mailpulse.stack import Stack
from schemas.settings import Settings
from schemas.tokens import LinkKind, TokenClaims, TokenCodec
from tests.integration.helpers import edge, report, suppression, unique, wait_until
from tests.support.hostile_corpus import HTTP_CASES, http_status
from tests.support.hostile_mail import CLI_CASES, SMTP_CASES, smtp_conversation
from tests.support.hostile_operator import OPERATOR_CASES, SQL_CASES


class ValidTraffic(threading.Thread):
    """Opens of one campaign through the public edge, one a few milliseconds, until stopped."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings, self.campaign = settings, unique("beside-hostile")
        self.answered = 0
        self.failures: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        codec = TokenCodec(self.settings.secret_keys)
        with httpx.Client(timeout=10) as client:
            while not self.stopping.is_set():
                claims = TokenClaims(LinkKind.OPEN, unique("m"), self.campaign, "news", f"{unique('r')}@example.org")
                answer = client.get(
                    f"{edge(self.settings)}/o/{codec.mint(claims)}.gif", headers={"User-Agent": "Firefox/133.0"}
                )
                if answer.status_code == 200:
                    self.answered += 1
                else:
                    self.failures.append(f"{answer.status_code} {answer.text[:80]}")
                self.stopping.wait(0.01)


def test_the_hostile_corpus_is_refused_cleanly_while_valid_traffic_is_all_accounted_for(
    stack: Settings, tmp_path: Path
) -> None:
    control = Stack(stack)
    pids = {name: control.pid(name) for name in ("edge", "worker", "sink", "smtp-sink")}
    assert all(pids.values())
    valid = ValidTraffic(stack)
    valid.start()
    wrong: list[str] = []
    try:
        for case in [*HTTP_CASES, *OPERATOR_CASES, *SQL_CASES]:
            status = http_status(case.port(stack), case.request(stack))
            if status not in case.allowed:
                wrong.append(f"HTTP {case.name}: {status or 'no answer'}")
        for smtp in SMTP_CASES:
            replies = smtp_conversation(stack.bounce_smtp_port, smtp.commands(stack))
            if replies[-1] // 100 not in smtp.allowed or 0 in replies or any(400 <= r < 500 for r in replies):
                wrong.append(f"SMTP {smtp.name}: {replies}")
        for cli in CLI_CASES:
            wrong += cli_refusal(cli.name, cli.args(stack))
        audience = tmp_path / "audience.csv"
        audience.write_bytes(
            b'email,first_name\r\nok@example.org,A\r\n"a@example.org\r\nBcc: b@example.org",B\r\n\xff\xfe@x,C\r\n'
        )
        html = tmp_path / "a.html"
        html.write_text("<p>hi</p>")
        wrong += cli_refusal(
            "send with a hostile audience file",
            [
                "send",
                "--campaign",
                unique("hostile-file"),
                "--audience",
                str(audience),
                "--subject",
                "s",
                "--html",
                str(html),
            ],
        )
        junk = tmp_path / "junk.eml"
        junk.write_bytes(b"\x00\xff" * 600_000)
        wrong += cli_refusal("ingest a binary file as mail", ["ingest-mail", str(junk)], allow_success=True)
    finally:
        valid.stopping.set()
        valid.join(30)
    assert wrong == [], "\n".join(wrong)

    # Nothing died or restarted, and everything still answers.
    assert {name: control.pid(name) for name in pids} == pids
    assert httpx.get(f"{edge(stack)}/readyz").status_code == 200
    # Nobody was suppressed by a forged bounce, complaint, webhook or link.
    assert not suppression(stack, "victim@example.org")["suppressed"]
    # Every valid open the edge answered meanwhile is in the report, once.
    assert valid.failures == [] and valid.answered > 50
    wait_until(
        lambda: report(stack, valid.campaign)["opens_total"] == valid.answered,
        timeout=60,
        what=f"{valid.answered} opens in the report",
    )


def cli_refusal(name: str, args: list[str], allow_success: bool = False) -> list[str]:
    """What is wrong with how the CLI took ``args``: it must end with a one-line reason, never a traceback."""
    done = subprocess.run([sys.executable, "-m", "mailpulse", *args], capture_output=True, text=True, timeout=120)
    if "Traceback" in done.stderr:
        return [f"CLI {name}: a traceback"]
    if done.returncode == 0:
        return [] if allow_success else [f"CLI {name}: exit 0"]
    if not done.stderr.strip() or done.returncode not in (1, 2):
        return [f"CLI {name}: exit {done.returncode} with {done.stderr.strip()[:200]!r}"]
    return []
