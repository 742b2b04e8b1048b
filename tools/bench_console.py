#!/usr/bin/env python3
"""p95 of each console page over real HTTP at 100,000 devices and 1,000 rules, against a baseline.

Seeds the database directly (``bench_check.seed``: 1,000 approved rules, their images, 100,000
inventory rows) plus ``--days`` of hourly activity (totals per side, and per rule the checks of two
versions and the devices moving to the approved one), starts ``devupdate serve``, signs in, and
requests each page ``--requests`` times, interleaved with the baseline (``/healthz``: the same
server, no page to build). Prints p50 / p95 in ms per page and the p95 ratio to the baseline.
Target: p95 ≤ 200 ms per page.

    python tools/bench_console.py [--requests 40] [--days 90] [--database-url URL] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from tools import bench_check  # noqa: E402

TARGET_MS = 200.0
PASSWORD = "bench-console-password"


def seed_activity(settings, days: int, rng: random.Random) -> int:
    """Hourly rows as a busy fleet leaves them: every hour both sides' totals, per rule its checks on
    the approved and the old version, and, over the last week, devices arriving on the approved one."""
    from devupdate import db
    from devupdate.devices import activity
    from devupdate.rules.models import Rule
    from devupdate.runtime import open_runtime

    open_runtime(settings)
    last = activity.hour_of(time.time())
    tally = activity.Tally()
    rules = [rule_id for (rule_id,) in db.tuples(Rule.select(Rule.id))]
    written = 0
    for hour in range(last - days * 24 + 1, last + 1):
        for side, share in (("internal", 0.8), ("external", 0.2)):
            tally.add(hour, activity.CHECK, "", "", side, int(4200 * share))
            tally.add(hour, activity.DOWNLOAD, "", "", side, int(60 * share), int(60 * share) * 2_500_000)
        for rule_id in rules:
            tally.add(hour, activity.CHECK, rule_id, bench_check.APPROVED, "internal", rng.randint(1, 5))
            tally.add(hour, activity.CHECK, rule_id, bench_check.OLD, "internal", rng.randint(1, 5))
            if hour > last - 7 * 24 and rng.random() < 0.1:
                tally.add(hour, activity.ARRIVE, rule_id, bench_check.APPROVED, "internal")
                tally.add(hour, activity.LEAVE, rule_id, bench_check.OLD, "internal")
        if len(tally) > 50_000:
            with db.write_transaction():
                written += activity.write(tally)
            tally = activity.Tally()
    with db.write_transaction():
        written += activity.write(tally)
    # the approvals happened five days ago: the rule pages draw five days of curve
    approved = db.utcnow().replace(microsecond=0) - dt.timedelta(days=5)
    Rule.update(approved_at=approved).execute()
    db.database.close()
    return written


def sign_in(base: str) -> requests.Session:
    """The console's cookie is Secure (a browser sends it to http://127.0.0.1, requests does not):
    carried by hand in a Cookie header."""
    session = requests.Session()

    def carry(answer: requests.Response) -> None:
        for cookie in answer.cookies:
            session.headers["Cookie"] = f"{cookie.name}={cookie.value}"
        session.cookies.clear()

    form = session.get(f"{base}/console/sign-in")
    carry(form)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    answer = session.post(f"{base}/console/sign-in", data={"name": "bench", "password": PASSWORD,
                                                            "csrf_token": token, "next": "/console/"},
                          headers={"Origin": base}, allow_redirects=False)
    carry(answer)
    if answer.status_code != 303 or session.get(f"{base}/console/", allow_redirects=False).status_code != 200:
        raise SystemExit(f"sign-in failed: {answer.status_code} {answer.text[:300]}")
    return session


def measure(session: requests.Session, base: str, pages: dict[str, str], count: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in pages}
    for path in pages.values():  # warm up: snapshot, templates, connection
        session.get(base + path, allow_redirects=False).raise_for_status()
    for _ in range(count):
        for name, path in pages.items():
            started = time.perf_counter()
            answer = session.get(base + path, allow_redirects=False)
            elapsed = (time.perf_counter() - started) * 1000
            if answer.status_code != 200:
                raise SystemExit(f"{path}: {answer.status_code}")
            times[name].append(elapsed)
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=40, help="Requests per page.")
    parser.add_argument("--days", type=int, default=90, help="Days of hourly activity seeded.")
    parser.add_argument("--database-url", default="", help="Default: SQLite in a scratch data directory.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from devupdate.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="bench-console-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVUPDATE_")}
    env.update({"DEVUPDATE_HOME": str(home), "DEVUPDATE_SERVER_NAME": "bench",
                "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", "")})
    if args.database_url:
        env["DEVUPDATE_DATABASE_URL"] = args.database_url
    settings = Settings.load(env)
    started = time.monotonic()
    bench_check.seed(settings, random.Random(7))
    rows = seed_activity(settings, args.days, random.Random(8))
    seeded = time.monotonic() - started
    subprocess.run([sys.executable, "-m", "devupdate", "admins", "add", "bench", "--role", "admin",
                    "--password-stdin"], env=env, cwd=home, input=PASSWORD + "\n", text=True, check=True,
                   capture_output=True)
    port = bench_check.free_port()
    log = home / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "devupdate", "serve", "--port", str(port)], env=env, cwd=home,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        bench_check.wait_ready(port, proc, log)
        base = f"http://127.0.0.1:{port}"
        session = sign_in(base)
        rule = "00000000-0000-0000-0000-000000000001"
        pages = {"baseline /healthz": "/healthz", "dashboard": "/console/", "rule page": f"/console/rules/{rule}",
                 "rules": "/console/rules", "devices": "/console/devices"}
        times = measure(session, base, pages, args.requests)
    finally:
        bench_check.stop(proc)
    base_p95 = p95(times["baseline /healthz"])
    result = {name: {"p50_ms": round(statistics.median(v), 1), "p95_ms": round(p95(v), 1),
                     "ratio_p95": round(p95(v) / base_p95, 1)} for name, v in times.items()}
    if args.json:
        print(json.dumps({"seconds_seeding": round(seeded, 1), "activity_rows": rows, "pages": result}, indent=2))
    else:
        db_name = "PostgreSQL" if args.database_url else "SQLite"
        print(f"{db_name}: 100,000 devices, 1,000 rules, {rows} hourly activity rows ({args.days} days), "
              f"seeded in {seeded:.0f} s; {args.requests} requests per page")
        for name, r in result.items():
            verdict = "" if name.startswith("baseline") else ("  ok" if r["p95_ms"] <= TARGET_MS else "  OVER 200 ms")
            print(f"  {name:20} p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms  ×{r['ratio_p95']:<6}{verdict}")
    over = [name for name, r in result.items() if not name.startswith("baseline") and r["p95_ms"] > TARGET_MS]
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
