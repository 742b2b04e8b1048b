#!/usr/bin/env python3
"""Update checks/s and p99 of ``devupdate serve`` with 0 and with 200 slow sockets open, same run.

The service is seeded as in ``tools/bench_check.py`` (1,000 rules, 100,000 known devices, 20 test
devices) and driven by the same ``wrk`` run shape. Phases alternate (clean, slow, clean, slow …):

- clean: nothing but wrk;
- slow: 200 sockets, each from its own loopback address (127.0.2.x, as 200 attacking hosts
  would be), send a request head one header line every 2 s and never finish it. When the server
  drops one (``408`` after the header timeout, or a reset), it reconnects at once, so 200 stay
  open for the whole phase.

Prints checks/s and p99 of each phase kind, the ratio slow ÷ clean, wrk's errors and timeouts, and
how many slow sockets the server dropped. Target (issue 8, item 3): ratio ≥ 0.8 and 0 timeouts.

    python tools/bench_slowclients.py [--seconds 10] [--rounds 2] [--connections 64] [--slow 200]
                                      [--interval 2] [--workers N] [--server-threads N] [--json]

wrk's own connections all come from 127.0.0.1, so the run sets the per-source connection limit
far above them (``DEVUPDATE_MAX_CONNECTIONS_PER_SOURCE``); the slow sockets stay under it on
their own addresses. Needs wrk (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.bench_check import LUA, body, free_port, run_wrk, seed, stop, verify, wait_ready  # noqa: E402

CHECK_PATH = "/RequestHandler/ucdevice.upx"


class Slowloris:
    """``count`` sockets that keep a request head unfinished, one header line every ``interval``."""

    def __init__(self, port: int, count: int, interval: float):
        self.port, self.count, self.interval = port, count, interval
        self.addresses = [f"127.0.{2 + n // 250}.{n % 250 + 1}" for n in range(count)]
        self.dropped = 0  # sockets the server closed (408, reset)
        self.refused = 0  # connects that failed
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.open = 0

    def _connect(self, address: str) -> None:
        sock = socket.socket()
        try:
            sock.bind((address, 0))
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(f"POST {CHECK_PATH} HTTP/1.1\r\nHost: bench\r\n".encode())
        except OSError:
            self.refused += 1
            sock.close()
            return
        sock.setblocking(False)
        self._selector.register(sock, selectors.EVENT_READ, address)
        self.open += 1

    def _drop(self, key) -> None:
        self._selector.unregister(key.fileobj)
        key.fileobj.close()
        self.open -= 1
        self.dropped += 1

    def start(self) -> Slowloris:
        for address in self.addresses:
            self._connect(address)
        self._thread.start()
        return self

    def _run(self) -> None:
        line, next_line = 0, time.monotonic() + self.interval
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(65536)
                except OSError:
                    data = b""
                if not data:  # dropped (after its 408): come back at once, as an attacker would
                    address = key.data
                    self._drop(key)
                    self._connect(address)
            if time.monotonic() >= next_line:
                line += 1
                next_line += self.interval
                for key in list(self._selector.get_map().values()):
                    try:
                        key.fileobj.send(b"X-Slow-%d: still coming\r\n" % line)
                    except OSError:
                        address = key.data
                        self._drop(key)
                        self._connect(address)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        self._selector.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="Timed seconds per phase.")
    parser.add_argument("--rounds", type=int, default=2, help="Alternating rounds (clean slow clean slow …).")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections.")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads.")
    parser.add_argument("--slow", type=int, default=200, help="Slow sockets in the slow phases.")
    parser.add_argument("--interval", type=float, default=2.0, help="Seconds between a slow socket's header lines.")
    parser.add_argument("--workers", type=int, help="Server workers (default: devupdate's).")
    parser.add_argument("--server-threads", type=int, help="Threads per worker (default: devupdate's).")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch data directory.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from devupdate.settings import Settings

    workers = args.workers or Settings.workers
    home = Path(tempfile.mkdtemp(prefix="bench-slow-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVUPDATE_")}
    env.update({"DEVUPDATE_HOME": str(home), "DEVUPDATE_SERVER_NAME": "bench", "DEVUPDATE_WORKERS": str(workers),
                "DEVUPDATE_THREADS": str(args.server_threads or Settings.threads),
                "DEVUPDATE_MAX_CONNECTIONS_PER_SOURCE": str(max(4096, 4 * args.connections)),
                "DEVUPDATE_PUBLIC_INTERNAL_URL": "http://ucupdates-r2.contoso.com",
                "DEVUPDATE_PUBLIC_EXTERNAL_URL": "https://ucupdates.contoso.com",
                "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", "")})
    proc = None
    try:
        settings = Settings.load(env)
        playing = seed(settings, random.Random(7))
        bodies = [body(d) for d in playing]
        bodies_file, script = home / "bodies.txt", home / "rotate.lua"
        bodies_file.write_text("\n".join(bodies) + "\n")
        script.write_text(LUA)
        port, log = free_port(), home / "serve.log"
        proc = subprocess.Popen([sys.executable, "-m", "devupdate", "serve", "--port", str(port)], env=env, cwd=home,
                                stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_ready(port, proc, log)
        verify(port, bodies, playing)
        url = f"http://127.0.0.1:{port}"
        run_wrk(url, CHECK_PATH, script, bodies_file, 3, args.connections, args.threads)  # warm up

        runs: dict[str, list[dict]] = {"clean": [], "slow": []}
        dropped = refused = 0
        for _ in range(args.rounds):
            runs["clean"].append(run_wrk(url, CHECK_PATH, script, bodies_file, args.seconds, args.connections,
                                         args.threads))
            slow = Slowloris(port, args.slow, args.interval).start()
            try:
                result = run_wrk(url, CHECK_PATH, script, bodies_file, args.seconds, args.connections, args.threads)
                result["slow_open_at_end"] = slow.open
            finally:
                slow.close()
            dropped += slow.dropped
            refused += slow.refused
            runs["slow"].append(result)

        def combine(results: list[dict]) -> dict:
            requests = sum(r["requests"] for r in results)
            seconds = sum(r["duration_us"] for r in results) / 1e6
            return {"checks_per_second": round(requests / seconds, 1), "requests": requests,
                    "errors": sum(r[k] for r in results for k in ("connect", "read", "write", "status", "timeout")),
                    "timeouts": sum(r["timeout"] for r in results),
                    "p50_ms": round(max(r["p50_us"] for r in results) / 1000, 2),
                    "p99_ms": round(max(r["p99_us"] for r in results) / 1000, 2),
                    "rounds_per_second": [round(r["rps"], 1) for r in results]}

        clean, slow_result = combine(runs["clean"]), combine(runs["slow"])
        report = {
            "cpus": os.cpu_count(), "workers": workers, "threads_per_worker": settings.threads,
            "connections": args.connections, "slow_sockets": args.slow, "slow_interval_s": args.interval,
            "seconds_per_phase": args.seconds, "rounds": args.rounds,
            "clean": clean, "slow": slow_result,
            "slow_open_at_end_of_phase": [r["slow_open_at_end"] for r in runs["slow"]],
            "slow_sockets_dropped_by_server": dropped, "slow_connects_failed": refused,
            "ratio": round(slow_result["checks_per_second"] / clean["checks_per_second"], 3),
            "ratio_per_round": [round(s["rps"] / c["rps"], 3)
                                for c, s in zip(runs["clean"], runs["slow"], strict=True)],
            "p99_ratio": round(slow_result["p99_ms"] / clean["p99_ms"], 3) if clean["p99_ms"] else None,
            "load_average": os.getloadavg(), "target": {"ratio": 0.8, "timeouts": 0},
        }
        report["meets_target"] = report["ratio"] >= 0.8 and slow_result["timeouts"] == 0
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(f"{report['cpus']} CPUs, {workers} workers × {settings.threads} threads, {args.connections} wrk "
                  f"connections, {args.rounds} × {args.seconds} s per phase; slow phase: {args.slow} sockets, "
                  f"one header line every {args.interval:g} s")
            for label, r in (("0 slow sockets", clean), (f"{args.slow} slow sockets", slow_result)):
                print(f"{label:18} {r['checks_per_second']:9.1f} checks/s   p50 {r['p50_ms']:6.2f} ms   "
                      f"p99 {r['p99_ms']:7.2f} ms   errors {r['errors']}   timeouts {r['timeouts']}")
            print(f"ratio slow ÷ clean {report['ratio']:.3f}   per round "
                  f"{' '.join(f'{x:.3f}' for x in report['ratio_per_round'])}   (target ≥ 0.8 and 0 timeouts: "
                  f"{'met' if report['meets_target'] else 'NOT met'})")
            print(f"slow sockets open at the end of each slow phase: {report['slow_open_at_end_of_phase']}; "
                  f"dropped by the server (408 / reset) and reconnected: {dropped}; connects failed: {refused}")
        return 0
    finally:
        if proc is not None:
            stop(proc)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"data kept in {home}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
