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

``--compare-gthread`` also runs, on the same data and in the same alternation, the same app on
gunicorn's stock threaded worker (what ``serve`` used before): the worker models side by side.

    python tools/bench_slowclients.py [--seconds 10] [--rounds 2] [--connections 64] [--slow 200]
                                      [--interval 2] [--workers N] [--server-threads N]
                                      [--compare-gthread] [--json]

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

from tools.bench_check import LUA, body, cpu_seconds, free_port, run_wrk, seed, stop, verify, wait_ready  # noqa: E402

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


def serve_gthread(port: int) -> None:
    """``devupdate serve``'s app and settings on gunicorn's own ``gthread`` worker (the schema is
    already current: the devupdate server of the same run upgraded it)."""
    from devupdate import db
    from devupdate.runtime import open_runtime
    from devupdate.server import DevupdateServer
    from devupdate.settings import Settings

    class Stock(DevupdateServer):
        def load_config(self):
            super().load_config()
            self.cfg.set("worker_class", "gthread")

    settings = Settings.load(port=port)
    open_runtime(settings)
    db.database.close()
    Stock(settings).run()


def combine(results: list[dict]) -> dict:
    requests = sum(r["requests"] for r in results)
    seconds = sum(r["duration_us"] for r in results) / 1e6
    return {"checks_per_second": round(requests / seconds, 1), "requests": requests,
            "errors": sum(r[k] for r in results for k in ("connect", "read", "write", "status", "timeout")),
            "timeouts": sum(r["timeout"] for r in results),
            "server_cpu_us_per_check": (round(sum(r["cpu_seconds"] for r in results) / requests * 1e6, 1)
                                        if requests else None),
            "p50_ms": round(max(r["p50_us"] for r in results) / 1000, 2),
            "p99_ms": round(max(r["p99_us"] for r in results) / 1000, 2),
            "rounds_per_second": [round(r["rps"], 1) for r in results]}


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
    parser.add_argument("--compare-gthread", action="store_true",
                        help="Also run the same phases against gunicorn's stock gthread worker.")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch data directory.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve-gthread", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_gthread:
        serve_gthread(args.serve_gthread)
        return 0

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
    procs: list[subprocess.Popen] = []
    try:
        settings = Settings.load(env)
        playing = seed(settings, random.Random(7))
        bodies = [body(d) for d in playing]
        bodies_file, script = home / "bodies.txt", home / "rotate.lua"
        bodies_file.write_text("\n".join(bodies) + "\n")
        script.write_text(LUA)
        models = ["devupdate"] + (["gthread"] if args.compare_gthread else [])
        ports, masters = {}, {}
        for model in models:
            port, log = free_port(), home / f"serve-{model}.log"
            command = ([sys.executable, "-m", "devupdate", "serve", "--port", str(port)] if model == "devupdate" else
                       [sys.executable, str(Path(__file__).resolve()), "--serve-gthread", str(port)])
            procs.append(subprocess.Popen(command, env=env, cwd=home, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                          start_new_session=True))
            wait_ready(port, procs[-1], log)
            verify(port, bodies, playing)
            run_wrk(f"http://127.0.0.1:{port}", CHECK_PATH, script, bodies_file, 3, args.connections,
                    args.threads)  # warm up
            ports[model] = port
            masters[model] = procs[-1].pid

        runs = {model: {"clean": [], "slow": []} for model in models}
        dropped = {model: 0 for model in models}
        for _ in range(args.rounds):
            for model, port in ports.items():
                url = f"http://127.0.0.1:{port}"
                master = masters[model]
                before = cpu_seconds(master)
                result = run_wrk(url, CHECK_PATH, script, bodies_file, args.seconds, args.connections, args.threads)
                result["cpu_seconds"] = cpu_seconds(master) - before
                runs[model]["clean"].append(result)
                slow = Slowloris(port, args.slow, args.interval).start()
                try:
                    before = cpu_seconds(master)
                    result = run_wrk(url, CHECK_PATH, script, bodies_file, args.seconds, args.connections,
                                     args.threads)
                    result["cpu_seconds"] = cpu_seconds(master) - before
                    result["slow_open_at_end"] = slow.open
                finally:
                    slow.close()
                dropped[model] += slow.dropped
                runs[model]["slow"].append(result)

        reports = {}
        for model in models:
            clean, slow_result = combine(runs[model]["clean"]), combine(runs[model]["slow"])
            ratio = round(slow_result["checks_per_second"] / clean["checks_per_second"], 3)
            reports[model] = {
                "clean": clean, "slow": slow_result, "ratio": ratio,
                "ratio_per_round": [round(s["rps"] / c["rps"], 3) if c["rps"] else 0.0
                                    for c, s in zip(runs[model]["clean"], runs[model]["slow"], strict=True)],
                "slow_open_at_end_of_phase": [r["slow_open_at_end"] for r in runs[model]["slow"]],
                "slow_sockets_dropped_by_server": dropped[model],
                "meets_target": ratio >= 0.8 and slow_result["timeouts"] == 0 and slow_result["requests"] > 0,
            }
        report = {
            "cpus": os.cpu_count(), "workers": workers, "threads_per_worker": settings.threads,
            "connections": args.connections, "slow_sockets": args.slow, "slow_interval_s": args.interval,
            "seconds_per_phase": args.seconds, "rounds": args.rounds, "models": reports,
            "load_average": os.getloadavg(), "target": {"ratio": 0.8, "timeouts": 0},
        }
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(f"{report['cpus']} CPUs, {workers} workers × {settings.threads} threads, {args.connections} wrk "
                  f"connections, {args.rounds} × {args.seconds} s per phase; slow phase: {args.slow} sockets, "
                  f"one header line every {args.interval:g} s; load average {report['load_average'][0]:.1f}")
            for model, r in reports.items():
                print(f"[{model} worker]")
                for label, p in (("0 slow sockets", r["clean"]), (f"{args.slow} slow sockets", r["slow"])):
                    print(f"  {label:18} {p['checks_per_second']:9.1f} checks/s   p50 {p['p50_ms']:7.2f} ms   "
                          f"p99 {p['p99_ms']:8.2f} ms   errors {p['errors']}   timeouts {p['timeouts']}   "
                          "server CPU " + (f"{p['server_cpu_us_per_check']:.0f} µs/check"
                                           if p["server_cpu_us_per_check"] is not None else "n/a (no check answered)"))
                print(f"  ratio slow ÷ clean {r['ratio']:.3f}   per round "
                      f"{' '.join(f'{x:.3f}' for x in r['ratio_per_round'])}   (target ≥ 0.8 and 0 timeouts: "
                      f"{'met' if r['meets_target'] else 'NOT met'})")
                print(f"  slow sockets open at the end of each slow phase: {r['slow_open_at_end_of_phase']}; "
                      f"dropped by the server (408 / reset) and reconnected: {r['slow_sockets_dropped_by_server']}")
            if "gthread" in reports:
                ours, stock = reports["devupdate"]["clean"], reports["gthread"]["clean"]
                share = ours["checks_per_second"] / stock["checks_per_second"]
                cpu = stock["server_cpu_us_per_check"] / ours["server_cpu_us_per_check"]
                print(f"clean checks/s, devupdate ÷ gthread worker: {share:.3f}   server CPU per check, gthread ÷ "
                      f"devupdate: {cpu:.3f} (less sensitive to other load on the machine)")
        return 0
    finally:
        for proc in procs:
            stop(proc)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"data kept in {home}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
