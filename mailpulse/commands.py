"""What each ``mailpulse`` command does (the parser and its examples are in :mod:`mailpulse.cli`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from mailpulse.errors import CliError
from schemas.settings import Settings


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
        say(f"Apache Kafka {kafka_version()} ready on {kafka.bootstrap}")
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

    processes = Stack(settings).status()
    if args.format == "json":
        say(json.dumps([dataclasses.asdict(p) for p in processes], indent=2))
    else:
        say(f"{'SERVICE':12} {'PID':>8} {'PORT':>6}  STATE")
        for p in processes:
            say(f"{p.service:12} {p.pid or '-':>8} {p.port:>6}  {p.state}")
    return 0 if all(p.state == "up" for p in processes) else 1


# -- campaigns and reports --------------------------------------------------


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.intake import enqueue_campaign

    return enqueue_campaign(args, settings, say)


def cmd_ingest_mail(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.intake import ingest_mail

    return ingest_mail(args.file, settings, say, args.recipient)


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.queries import print_report

    if args.open:
        from urllib.parse import quote

        from mailpulse.operator_key import operator_keys
        from producers.operator_session import LINK_SECONDS, sign_in_link

        keys = operator_keys(settings)
        if not keys:
            raise CliError(
                "no operator API key: set MAILPULSE_API_KEYS, or start the local stack (`make up`)", status=2
            )
        path = f"/ui/campaigns/{quote(args.campaign, safe='')}/report"
        say(sign_in_link(keys[0], f"http://127.0.0.1:{settings.operator_port}", path))
        print(
            f"(opens the report page in a browser, signed in; valid for {LINK_SECONDS // 60} minutes)", file=sys.stderr
        )
        return 0
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


def cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse.settings_doc import effective, settings_markdown

    if args.markdown:
        sys.stdout.write(settings_markdown())
        return 0
    values = effective(settings)
    if args.format == "json":
        say(json.dumps(values, indent=2))
    else:
        width = max(map(len, values))
        for name, value in values.items():
            say(f"{name:{width}}  {value}")
    return 0


def cmd_campaign(args: argparse.Namespace, settings: Settings) -> int:
    from mailpulse import campaign_admin
    from schemas.campaigns import CampaignAction

    if args.action == "list":
        return campaign_admin.print_list(settings, args.format, say)
    if not args.campaign:
        raise CliError(f"{args.action} needs a CAMPAIGN id", status=2)
    if args.action == "status":
        return campaign_admin.print_status(settings, args.campaign, args.format, say)
    return campaign_admin.change_campaign(settings, CampaignAction(args.action), args.campaign, args.reason, say)
