#!/usr/bin/env python3
"""The external side's password checks under ``devupdate serve``, in one run:

1. login cost: median time of external update checks with a wrong password for a known user and
   for an unknown user (alternating, one at a time), and their ratio (target: about 1);
2. internal update check median and max, alone and while ``--clients`` threads send wrong Basic
   credentials to the external side as fast as they are answered — on a server with the default
   failed-login limit (the guessers are answered 429 after it) and on one with the limit off
   (only the per-worker hashing slots protect the internal side). Ratios are against the
   median measured alone on the same server.

    python tools/bench_auth.py [--rounds 40] [--clients 16] [--seconds 10] [--workers 2] [--threads 4]
                               [--password-check-slots N] [--json]

Sends traffic to 127.0.0.1 only, bounded by ``--rounds`` and ``--seconds``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import phonesim  # noqa: E402
from procs import free_port  # noqa: E402

EXT, INT = "/RequestHandlerExt/ucdevice.upx", "/RequestHandler/ucdevice.upx"
BODY = phonesim.make_fleet(1, seed=3)[0].request_xml()


class Server:
    """``devupdate serve`` on a data directory of its own, with the external user ``phones``."""

    def __init__(self, home: Path, workers: int, threads: int, **env: str):
        self.port = free_port()
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("DEVUPDATE_")},
                    "DEVUPDATE_HOME": str(home), "DEVUPDATE_HOST": "127.0.0.1", "DEVUPDATE_PORT": str(self.port),
                    "DEVUPDATE_WORKERS": str(workers), "DEVUPDATE_THREADS": str(threads), **env}
        home.mkdir(parents=True)
        subprocess.run([sys.executable, "-m", "devupdate", "users", "add", "phones", "--password-stdin"],
                       input="correct horse\n", text=True, env=self.env, check=True, capture_output=True)
        self.log = open(home / "server.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "devupdate", "serve"], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if request(self.port, "GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"server did not start; see {home / 'server.log'}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def request(port: int, method: str, path: str, headers: dict | None = None, body: bytes | None = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, float]:
    """One request; (status, seconds)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "text/xml; charset=utf-8", **(headers or {})})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        if own:
            conn.close()


def login_cost(port: int, rounds: int) -> dict:
    known, unknown = [], []
    request(port, "POST", EXT, basic("phones", "warm-up"), BODY)
    for n in range(rounds):
        for user, into in (("phones", known), (f"nobody{n}", unknown)):
            status, seconds = request(port, "POST", EXT, basic(user, f"wrong {n}"), BODY)
            assert status == 401, status
            into.append(seconds)
    k, u = statistics.median(known), statistics.median(unknown)
    return {"known_ms": round(k * 1000, 1), "unknown_ms": round(u * 1000, 1), "ratio": round(u / k, 3)}


def internal_checks(port: int, until: float, minimum: int = 20) -> list[float]:
    """One check per connection, as phones do (so any worker may answer), one after another."""
    times = []
    while time.monotonic() < until or len(times) < minimum:
        status, seconds = request(port, "POST", INT, body=BODY)
        assert status == 200, status
        times.append(seconds)
    return times


def under_attack(port: int, clients: int, seconds: float) -> tuple[list[float], Counter]:
    stop, answers, lock = time.monotonic() + seconds, Counter(), threading.Lock()

    def guess(n: int) -> None:
        conn, attempt = http.client.HTTPConnection("127.0.0.1", port, timeout=60), 0
        while time.monotonic() < stop:
            try:
                status, _ = request(port, "POST", EXT, basic("phones", f"guess {n} {attempt}"), BODY, conn=conn)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn, status = http.client.HTTPConnection("127.0.0.1", port, timeout=60), "error"
            attempt += 1
            with lock:
                answers[status] += 1
        conn.close()

    threads = [threading.Thread(target=guess, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # every guesser is sending
    times = internal_checks(port, stop)
    for thread in threads:
        thread.join(timeout=90)
    return times, answers


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"median_ms": round(statistics.median(times) * 1000, 2),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
            "max_ms": round(max(times) * 1000, 1), "checks": len(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="login-cost requests per kind of user")
    parser.add_argument("--clients", type=int, default=16, help="threads sending wrong passwords")
    parser.add_argument("--seconds", type=float, default=10, help="length of each attack")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--password-check-slots", type=int, default=0, help="per worker; 0: the default")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result: dict = {"workers": args.workers, "threads": args.threads, "clients": args.clients,
                    "password_check_slots": args.password_check_slots}
    slots = {"DEVUPDATE_PASSWORD_CHECK_SLOTS": str(args.password_check_slots)}
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        limit_off = {**slots, "DEVUPDATE_EXTERNAL_AUTH_FAILURE_LIMIT": "0"}
        for name, env in (("limit-default", slots), ("limit-off", limit_off)):
            server = Server(Path(tmp) / name, args.workers, args.threads, **env)
            try:
                if name == "limit-off":
                    result["login_cost"] = login_cost(server.port, args.rounds)
                alone = summary(internal_checks(server.port, time.monotonic() + 3))
                times, answers = under_attack(server.port, args.clients, args.seconds)
                attacked = summary(times)
                result[name] = {"alone": alone, "attacked": attacked,
                                "ratio": round(attacked["median_ms"] / alone["median_ms"], 2),
                                "guess_answers": {str(k): v for k, v in sorted(answers.items(), key=str)}}
            finally:
                server.stop()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    cost = result["login_cost"]
    print(f"login cost (wrong password, {args.rounds} each): known user {cost['known_ms']} ms, "
          f"unknown user {cost['unknown_ms']} ms, ratio unknown/known {cost['ratio']}")
    for name in ("limit-default", "limit-off"):
        row = result[name]
        alone, attacked = row["alone"], row["attacked"]
        print(f"internal checks, {name}: alone median {alone['median_ms']} ms (p90 {alone['p90_ms']}, max "
              f"{alone['max_ms']}); with {args.clients} wrong-password clients median {attacked['median_ms']} ms "
              f"(p90 {attacked['p90_ms']}, max {attacked['max_ms']}, {attacked['checks']} checks in "
              f"{args.seconds:g} s), ratio {row['ratio']}; guesses answered {row['guess_answers']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
