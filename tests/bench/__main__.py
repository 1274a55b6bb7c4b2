"""`make bench`: benchmarks measured side by side in one run; prints tables of medians and ratios.

`python -m tests.bench [--quick] [sink ...]` runs a subset; progress goes to stderr, tables to stdout.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from tests.bench import bounce_bench, edge_bench, honour_bench, processor_bench, report_bench, sender_bench, sink_bench
from tests.bench.common import bench_settings, say, start_broker

SUITES = {
    "edge": edge_bench.main,
    "processors": processor_bench.main,
    "sender": sender_bench.main,
    "sink": sink_bench.main,
    "reports": report_bench.main,
    "bounces": bounce_bench.main,
    "honour": honour_bench.main,
}
# Suites that need no broker (pure work on one core).
WITHOUT_BROKER = {"bounces", "reports"}


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"any of {', '.join(SUITES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    unknown = set(args.suites) - set(SUITES)
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(sorted(unknown))}")
    settings = bench_settings()
    # A terminated bench still stops its broker (the `finally` below), as an interrupted one does.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    chosen = args.suites or list(SUITES)
    kafka = start_broker(settings) if set(chosen) - WITHOUT_BROKER else None
    started = time.monotonic()
    try:
        for name in chosen:
            say(f"== {name} ==")
            SUITES[name](settings, args.quick)
    finally:
        if kafka is not None:
            kafka.stop()
    say(f"bench finished in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
