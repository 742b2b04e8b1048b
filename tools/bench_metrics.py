#!/usr/bin/env python3
"""Cost of counting one update check (``metrics.check_answered``) against its floor, same run.

(a) the floor: the three prometheus_client calls an update check needs (checks counter ``inc``,
    offered-files counter ``inc``, latency histogram ``observe``) on children bound once beforehand;
(b) ``metrics.check_answered`` as the update check calls it (child lookup included).

Both run in this process, alternating (a b a b …), each round the same number of calls; prints the
median µs per call of each and the ratio b ÷ a. Target: ratio ≤ 2 (the lookup costs no more than
the counting itself), which keeps counting within a few µs of an update check that takes ~1 ms.

    python tools/bench_metrics.py [--calls 200000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import prometheus_client  # noqa: E402

from devupdate import metrics  # noqa: E402

TARGET_RATIO = 2.0


def floor(calls: int) -> float:
    registry = prometheus_client.CollectorRegistry()
    checks = prometheus_client.Counter("floor_checks", "", ["side", "outcome"], registry=registry)
    offered = prometheus_client.Counter("floor_offered", "", ["side"], registry=registry)
    latency = prometheus_client.Histogram("floor_seconds", "", ["side"], registry=registry,
                                          buckets=metrics._LATENCY_BUCKETS)
    c, o, h = checks.labels("Int", "offered"), offered.labels("Int"), latency.labels("Int")
    started = time.perf_counter()
    for _ in range(calls):
        c.inc()
        o.inc(2)
        h.observe(0.0004)
    return (time.perf_counter() - started) / calls


def counted(calls: int) -> float:
    metrics.check_answered("Int", "offered", 2, 0.0004)  # the first call creates the children
    started = time.perf_counter()
    for _ in range(calls):
        metrics.check_answered("Int", "offered", 2, 0.0004)
    return (time.perf_counter() - started) / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    a, b = [], []
    for _ in range(args.rounds):
        a.append(floor(args.calls))
        b.append(counted(args.calls))
    base, ours = statistics.median(a), statistics.median(b)
    result = {"floor_us": round(base * 1e6, 3), "check_answered_us": round(ours * 1e6, 3),
              "ratio": round(ours / base, 2), "target_ratio": TARGET_RATIO, "rounds": args.rounds,
              "calls": args.calls}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"floor (bound children): {result['floor_us']} µs/call; check_answered: "
              f"{result['check_answered_us']} µs/call; ratio {result['ratio']} (target ≤ {TARGET_RATIO})")
    return 0 if ours / base <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
