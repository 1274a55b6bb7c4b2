"""The ``mailpulse`` command: services, the local stack, campaign intake and reports.

Each command's ``--help`` ends with an example; the handlers are in :mod:`mailpulse.commands`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mailpulse import commands as c
from mailpulse.errors import CliError
from schemas.campaigns import id_problem
from schemas.settings import Settings, SettingsError

Handler = Callable[[argparse.Namespace, Settings], int]
SERVICES = {"edge", "worker", "sink", "smtp-sink"}
# Exit status of a command whose reader went away (`| head`), as a process killed by SIGPIPE.
BROKEN_PIPE = 141


def campaign_id(value: str) -> str:
    """An argparse type: a campaign id the intake could have taken (exit 2 with the reason otherwise)."""
    problem = id_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(f"a campaign id {problem}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailpulse",
        description="Email engagement tracking: edges -> Kafka -> faust processors and sender -> ClickHouse. "
        "Settings come from MAILPULSE_* environment variables (`mailpulse settings`, docs/settings.md).",
        epilog="examples:\n  mailpulse up && mailpulse demo\n  mailpulse report --campaign autumn-2026",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str, *examples: str) -> argparse.ArgumentParser:
        epilog = "example:\n" + "\n".join(f"  {example}" for example in examples)
        formatter = argparse.RawDescriptionHelpFormatter
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog, formatter_class=formatter)
        p.set_defaults(handler=handler)
        return p

    add("up", c.cmd_up, "start the local stack in the background; returns once every service is ready", "mailpulse up")
    add("down", c.cmd_down, "stop the local stack", "mailpulse down")
    add("run", c.cmd_run, "run the local stack in the foreground; Ctrl-C stops everything", "mailpulse run")
    add(
        "status",
        c.cmd_status,
        "show every process of the local stack, its pid, port and state (exit 1 if one is down)",
        "mailpulse status",
        "mailpulse status --format json",
    ).add_argument("--format", choices=["table", "json"], default="table")
    add(
        "demo",
        c.cmd_demo,
        "send a demo campaign through the running stack, simulate engagement, print the report",
        "mailpulse up && mailpulse demo --recipients 50",
    ).add_argument("--recipients", type=int, default=20, help="audience size (default 20)")
    add("edge", c.cmd_edge, "serve the public edge and the operator edge (foreground)", "mailpulse edge")
    add("worker", c.cmd_worker, "run the worker: suppression, rollup, sender, retries (foreground)", "mailpulse worker")
    add("sink", c.cmd_sink, "run the ClickHouse sink and its query API (foreground)", "mailpulse sink")
    add("smtp-sink", c.cmd_smtp_sink, "run the local SMTP sink storing mail in var/maildir", "mailpulse smtp-sink")
    add(
        "kafka", c.cmd_kafka, "manage the local Kafka broker(s): fetch the jars, start, stop", "mailpulse kafka fetch"
    ).add_argument("action", choices=["fetch", "start", "stop"])
    add("topics", c.cmd_topics, "create the project's topics on the broker", "mailpulse topics")
    migrate = add(
        "migrate", c.cmd_migrate, "apply ClickHouse migrations (or revert to --target)", "mailpulse migrate --target 5"
    )
    migrate.add_argument("--cluster", help="create Replicated tables ON CLUSTER this name")
    migrate.add_argument("--target", type=int, help="migrate forwards or backwards to this number")
    settings = add(
        "settings",
        c.cmd_settings,
        "print the settings in effect (secrets masked), or their documentation",
        "mailpulse settings --format json",
        "mailpulse settings --markdown > docs/settings.md",
    )
    settings.add_argument("--format", choices=["table", "json"], default="table")
    settings.add_argument("--markdown", action="store_true", help="every setting's documentation (docs/settings.md)")

    send = add(
        "send",
        c.cmd_send,
        "enqueue one send request per audience recipient on the outbox topic (progress on stderr)",
        "mailpulse send --campaign autumn --audience people.csv --subject 'News for $first_name' --html news.html",
    )
    send.add_argument("--campaign", required=True, type=campaign_id, help="campaign id")
    send.add_argument("--audience", required=True, type=Path, help="CSV (email column) or JSON Lines file")
    send.add_argument("--subject", required=True, help="subject; $variables from the audience are filled in")
    send.add_argument("--html", type=Path, help="HTML template file")
    send.add_argument("--text", type=Path, help="plain-text template file")
    send.add_argument("--list", dest="list_id", default="default", help="list id (default: default)")
    send.add_argument("--tracking", choices=["full", "aggregate", "off"], default="full")
    send.add_argument("--from", dest="from_address", help="From header (default MAILPULSE_FROM_ADDRESS)")

    ingest = add(
        "ingest-mail",
        c.cmd_ingest_mail,
        "read one bounce or complaint mail (RFC 3464, ARF, or plain) and publish its events; for mailbox pipes "
        "(exit 75: retry later)",
        "mailpulse ingest-mail --recipient bounces+4f2b...@bounces.example.com < bounce.eml",
    )
    ingest.add_argument("file", nargs="?", default="-", help="the message file, or - for standard input (default)")
    ingest.add_argument(
        "--recipient",
        action="append",
        default=[],
        help="the envelope recipient the MTA delivered it to (Postfix pipe: ${recipient}); it may be the"
        " bounce address that ties the report to its message. Repeatable",
    )

    campaign = add(
        "campaign",
        c.cmd_campaign,
        "pause, resume or cancel a campaign (returns once the worker applied it; a cancel is final), "
        "or show its state and progress",
        "mailpulse campaign pause autumn --reason 'wrong link in the footer'",
        "mailpulse campaign status autumn --format json",
    )
    campaign.add_argument("action", choices=["pause", "resume", "cancel", "status", "list"])
    campaign.add_argument("campaign", nargs="?", type=campaign_id, help="the campaign id (not for list)")
    campaign.add_argument("--reason", default="", help="why (pause, resume, cancel): kept on the event")
    campaign.add_argument("--format", choices=["table", "json"], default="table")

    report = add(
        "report",
        c.cmd_report,
        "print a campaign report from ClickHouse",
        "mailpulse report --campaign autumn --format json",
        "mailpulse report --campaign autumn --open   # a link for the browser",
    )
    report.add_argument("--campaign", required=True, type=campaign_id)
    report.add_argument(
        "--format",
        choices=["table", "json", "csv", "html"],
        default="table",
        help="html: the report page the sink serves (needs the sink running)",
    )
    report.add_argument("--by", choices=["hour"], help="hourly rows instead of totals")
    report.add_argument(
        "--open",
        action="store_true",
        help="print a short-lived link that opens the report page in a browser, signed in",
    )

    replay = add(
        "replay",
        c.cmd_replay,
        "re-read a topic range into ClickHouse (reports stay unchanged; progress on stderr)",
        "mailpulse replay --topic mailpulse.events --from-time 2026-12-01T00:00",
    )
    replay.add_argument("--topic", required=True, help="mailpulse.events or mailpulse.suppression")
    start = replay.add_mutually_exclusive_group(required=True)
    start.add_argument("--from-time", help="ISO 8601 time (UTC if no zone)")
    start.add_argument("--from-offset", type=int, help="offset in every partition")
    replay.add_argument("--to-time", help="ISO 8601 time; default: the end offsets at start")

    sql = add(
        "sql",
        c.cmd_sql,
        "run a read-only SQL statement on the project's tables (limited in time, rows and memory)",
        'mailpulse sql "SELECT kind, count() FROM events GROUP BY kind" --format csv | head',
    )
    sql.add_argument("statement")
    sql.add_argument("--format", choices=["table", "json", "csv"], default="table")

    stats = add(
        "stats",
        c.cmd_stats,
        "print a campaign's live counts from the worker (the keys of `report`)",
        "mailpulse stats --campaign autumn --by hour",
    )
    stats.add_argument("--campaign", required=True, type=campaign_id)
    stats.add_argument("--format", choices=["table", "json", "csv"], default="table")
    stats.add_argument("--by", choices=["hour"], help="hourly rows instead of totals")

    suppression = add(
        "suppression",
        c.cmd_suppression,
        "add, remove (as audited events), check or export suppressed addresses",
        "mailpulse suppression add reader@example.org --reason 'asked by phone'",
        "mailpulse suppression export --format jsonl > suppressed.jsonl",
    )
    suppression.add_argument("action", choices=["add", "remove", "check", "export"])
    suppression.add_argument("address", nargs="?", help="the address (not for export)")
    suppression.add_argument("--list", dest="list_id", help="only this list (add, remove); default: every list")
    suppression.add_argument("--reason", default="", help="a note kept on the event (add, remove)")
    suppression.add_argument(
        "--format",
        choices=["text", "json", "csv", "jsonl"],
        default=None,
        help="check: text or json; export: csv (default) or jsonl",
    )
    suppression.add_argument(
        "--include-cleared", action="store_true", help="export: also addresses whose suppression was lifted"
    )
    return parser


def _quiet_stdout() -> None:
    """The reader of standard output went away: later writes (and the flush at exit) go nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"mailpulse: {exc}", file=sys.stderr)
        return 2
    from mailpulse.logs import configure

    configure(settings, service=args.command if args.command in SERVICES else None)
    try:
        result: Any = args.handler(args, settings)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        return BROKEN_PIPE
    except CliError as exc:
        print(f"mailpulse {args.command}: {exc}", file=sys.stderr)
        return exc.status
    except SettingsError as exc:
        print(f"mailpulse {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line for the user; the traceback is not the interface
        print(f"mailpulse {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return int(result)
