"""The ``mailpulse`` command: services, the local stack, campaign intake and reports."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mailpulse.errors import CliError
from schemas.settings import Settings, SettingsError

Handler = Callable[[argparse.Namespace, Settings], int]


def say(line: str) -> None:
    print(line, flush=True)


# -- services ---------------------------------------------------------------


def cmd_edge(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.services import serve_edge

    serve_edge(settings)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.services import serve_worker

    serve_worker(settings)
    return 0


def cmd_sink(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.service import serve

    return serve(settings)


def cmd_smtp_sink(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.smtp_sink import load_replies, serve

    try:
        replies = load_replies(settings.smtp_sink_replies)
    except (OSError, ValueError) as exc:
        raise CliError(f"MAILPULSE_SMTP_SINK_REPLIES: {exc}", status=2) from None
    serve(settings.var_dir / "maildir", "127.0.0.1", settings.smtp_sink_port, replies)
    return 0


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.localkafka import LocalKafka, kafka_version

    kafka = LocalKafka.from_settings(settings)
    if args.action == "fetch":
        kafka.fetch()
        say(f"Apache Kafka {kafka_version()} jars in {kafka.libs}")
    elif args.action == "start":
        if not settings.uses_local_kafka:
            raise CliError(f"MAILPULSE_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} is set: no local broker to start")
        kafka.start()
        say(f"Apache Kafka {kafka_version()} ready on 127.0.0.1:{kafka.port}")
    elif args.action == "stop":
        kafka.stop()
        say("local Kafka stopped")
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.topics_admin import ensure_topics

    created = ensure_topics(settings)
    say(f"created: {', '.join(created)}" if created else "all topics present")
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.migrate import migrate
    from sinks.store import EventStore

    steps = migrate(EventStore(settings.clickhouse_url), cluster=args.cluster, target=args.target)
    say("\n".join(steps) if steps else "schema up to date")
    return 0


# -- local stack --------------------------------------------------------------


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.stack import Stack

    settings.refuse_development_secret()  # before any service starts, not in the edge's log
    Stack(settings, say).up()
    return 0


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.stack import Stack

    Stack(settings, say).down()
    say("stack down")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.stack import Stack

    settings.refuse_development_secret()
    stack = Stack(settings, say)
    try:
        stack.up()
        say("all services running; Ctrl-C stops them")
        stack.wait()
    finally:
        stack.down()
        say("stack down")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.stack import Stack

    status = Stack(settings).status()
    for name, ok in status.items():
        say(f"{name:10} {'up' if ok else 'down'}")
    return 0 if all(status.values()) else 1


# -- campaigns and reports --------------------------------------------------


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.intake import enqueue_campaign

    return enqueue_campaign(args, settings, say)


def cmd_ingest_mail(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.intake import ingest_mail

    return ingest_mail(args.file, settings, say, args.recipient)


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.queries import print_report

    return print_report(settings, args.campaign, args.format, by_hour=args.by == "hour")


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.queries import run_replay

    return run_replay(settings, args.topic, args.from_time, args.from_offset, args.to_time, say)


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.queries import print_sql

    return print_sql(settings, args.statement, args.format)


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.queries import print_stats

    return print_stats(settings, args.campaign, args.format, by_hour=args.by == "hour")


def cmd_suppression(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse import suppression_admin as admin

    if args.action == "export":
        if args.address:
            raise CliError("export takes no address", status=2)
        fmt = args.format if args.format in ("csv", "jsonl") else "csv"
        return admin.export(settings, fmt, args.include_cleared, say=lambda line: print(line, file=sys.stderr))
    if not args.address:
        raise CliError(f"{args.action} needs an ADDRESS", status=2)
    if args.action == "check":
        from mailpulse.queries import suppression_check

        result = suppression_check(settings, admin.checked_address(args.address))
        say(json.dumps(result) if args.format == "json" else admin.describe(result))
        return 0
    return admin.change_suppression(settings, args.action, args.address, args.list_id or "", args.reason, say)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.demo import run_demo

    return run_demo(settings, say, recipients=args.recipients)


# -- parser -----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailpulse",
        description="Email engagement tracking: edges -> Kafka -> faust processors and sender -> ClickHouse. "
        "Settings come from MAILPULSE_* environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    add("up", cmd_up, "start the local stack in the background; returns once every service is ready")
    add("down", cmd_down, "stop the local stack")
    add("run", cmd_run, "run the local stack in the foreground; Ctrl-C stops everything")
    add("status", cmd_status, "show which services of the local stack are up")
    add(
        "demo", cmd_demo, "send a demo campaign through the running stack, simulate engagement, print the report"
    ).add_argument("--recipients", type=int, default=20, help="audience size (default 20)")
    add("edge", cmd_edge, "serve the public edge and the operator edge (foreground)")
    add("worker", cmd_worker, "run the faust worker: suppression, sender and retry agents (foreground)")
    add("sink", cmd_sink, "run the ClickHouse sink and its query API (foreground)")
    add("smtp-sink", cmd_smtp_sink, "run the local SMTP sink storing mail in var/maildir (foreground)")
    add("kafka", cmd_kafka, "manage the local Kafka broker").add_argument("action", choices=["fetch", "start", "stop"])
    add("topics", cmd_topics, "create the project's topics on the broker")
    migrate = add("migrate", cmd_migrate, "apply ClickHouse migrations (or revert to --target)")
    migrate.add_argument("--cluster", help="create Replicated tables ON CLUSTER this name")
    migrate.add_argument("--target", type=int, help="migrate forwards or backwards to this number")

    send = add("send", cmd_send, "enqueue one send request per audience recipient on the outbox topic")
    send.add_argument("--campaign", required=True, help="campaign id")
    send.add_argument("--audience", required=True, type=Path, help="CSV (email column) or JSON Lines file")
    send.add_argument("--subject", required=True, help="subject; $variables from the audience are filled in")
    send.add_argument("--html", type=Path, help="HTML template file")
    send.add_argument("--text", type=Path, help="plain-text template file")
    send.add_argument("--list", dest="list_id", default="default", help="list id (default: default)")
    send.add_argument("--tracking", choices=["full", "aggregate", "off"], default="full")
    send.add_argument("--from", dest="from_address", help="From header (default MAILPULSE_FROM_ADDRESS)")

    ingest = add(
        "ingest-mail",
        cmd_ingest_mail,
        "read one bounce or complaint mail (RFC 3464, ARF, or plain) "
        "and publish its events; for mailbox pipes (exit 75: retry later)",
    )
    ingest.add_argument("file", nargs="?", default="-", help="the message file, or - for standard input (default)")
    ingest.add_argument(
        "--recipient",
        action="append",
        default=[],
        help="the envelope recipient the MTA delivered it to (Postfix pipe: ${recipient}); it may be the"
        " bounce address that ties the report to its message. Repeatable",
    )

    report = add("report", cmd_report, "print a campaign report from ClickHouse")
    report.add_argument("--campaign", required=True)
    report.add_argument(
        "--format",
        choices=["table", "json", "csv", "html"],
        default="table",
        help="html: the report page the sink serves (needs the sink running)",
    )
    report.add_argument("--by", choices=["hour"], help="hourly rows instead of totals")

    replay = add("replay", cmd_replay, "re-read a topic range into ClickHouse (reports stay unchanged)")
    replay.add_argument("--topic", required=True, help="mailpulse.events or mailpulse.suppression")
    start = replay.add_mutually_exclusive_group(required=True)
    start.add_argument("--from-time", help="ISO 8601 time (UTC if no zone)")
    start.add_argument("--from-offset", type=int, help="offset in every partition")
    replay.add_argument("--to-time", help="ISO 8601 time; default: the end offsets at start")

    sql = add("sql", cmd_sql, "run a read-only SQL statement against the events store")
    sql.add_argument("statement")
    sql.add_argument("--format", choices=["table", "json", "csv"], default="table")

    stats = add("stats", cmd_stats, "print a campaign's live counts from the worker (the keys of `report`)")
    stats.add_argument("--campaign", required=True)
    stats.add_argument("--format", choices=["table", "json", "csv"], default="table")
    stats.add_argument("--by", choices=["hour"], help="hourly rows instead of totals")

    suppression = add(
        "suppression",
        cmd_suppression,
        "add, remove (as audited events), check or export suppressed addresses",
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


SERVICES = {"edge", "worker", "sink", "smtp-sink"}


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
