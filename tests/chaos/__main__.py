"""`make chaos`: python -m tests.chaos [--campaigns N] [--recipients N] [--rounds N] [--seed N] [--clients N]."""

from __future__ import annotations

import argparse
import sys
import threading
import time

from tests.chaos.books import check, settled
from tests.chaos.scenario import ROOT, Chaos, chaos_env


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(
    campaigns: int, recipients: int, rounds: int, seed: int, base: int = 19600, var: str = "chaos", clients: int = 1
) -> bool:
    chaos = Chaos(chaos_env(ROOT / "var" / var, base), say=say, seed=seed)
    started = time.monotonic()
    chaos.up()
    try:
        engaging = threading.Event()
        engagement = [threading.Thread(target=chaos.engage, args=(engaging,), daemon=True) for _ in range(clients)]
        sending = threading.Thread(target=chaos.send_campaigns, args=(campaigns, recipients), daemon=True)
        for client in engagement:
            client.start()
        sending.start()
        actions = chaos.failures(rounds)
        say(f"traffic under way: {campaigns} campaigns of {recipients:,}; {len(actions)} failures to come")
        for number, action in enumerate(actions, start=1):
            time.sleep(chaos.rng.uniform(1, 4))
            say(f"[{number}/{len(actions)}] {time.monotonic() - started:.0f}s")
            action()
        sending.join()
        engaging.set()
        for client in engagement:
            client.join(30)
        say("every failure done and every campaign queued; waiting for the books to settle")
        chaos.restart()  # as a supervisor would, naming what exited on its own: the books are still checked
        settled(chaos)
        checks = check(chaos)
        chaos.dead_unasked()
        exited = ", ".join(chaos.exited_unasked) or "none"
        checks.append(("processes that exited without being killed", exited, not chaos.exited_unasked))
    finally:
        chaos.down()
    print("\n## Chaos run\n")
    print("| service | what | unavailable | gating again after |\n| --- | --- | ---: | ---: |")
    for o in chaos.outages:
        gating = f"{o.gating_seconds:.1f} s" if o.gating_seconds is not None else ""
        print(f"| {o.service} | {o.action} | {o.down_seconds:.1f} s | {gating} |")
    books = chaos.books
    driven = (
        f"{sum(len(p) for p in books.campaigns.values()):,} sends queued, {len(books.unsubscribed):,} one-click "
        f"unsubscribes, {len(books.bounced):,} webhook bounces, {len(books.dsn_bounced):,} bounce mails, "
        f"{books.clicks_answered:,} clicks and {books.opens_answered:,} pixels answered"
    )
    print(f"\ntraffic: {driven}")
    print("\n| check | figure | passed |\n| --- | --- | --- |")
    for name, figure, passed in checks:
        print(f"| {name} | {figure} | {'yes' if passed else 'NO'} |")
    retries = ", ".join(f"{kind} {n}" for kind, n in sorted(chaos.books.retries.items())) or "none"
    print(f"\nclient retries while doors were down: {retries}; processes that exited at start and were started")
    print(f"again: {chaos.failed_starts}; ran {time.monotonic() - started:.0f} s")
    return all(passed for _, _, passed in checks)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--campaigns", type=int, default=10)
    parser.add_argument("--recipients", type=int, default=10_000, help="per campaign")
    parser.add_argument("--rounds", type=int, default=3, help="kills of each kind of process")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--clients", type=int, default=4, help="threads sending unsubscribes, bounces, clicks, pixels")
    args = parser.parse_args()
    say(f"chaos seed {args.seed}")
    return 0 if run(args.campaigns, args.recipients, args.rounds, args.seed, clients=args.clients) else 1


if __name__ == "__main__":
    sys.exit(main())
