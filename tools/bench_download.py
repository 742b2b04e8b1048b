#!/usr/bin/env python3
"""Download throughput: a 64 MB image via devupdate (gunicorn, sendfile) vs nginx serving the same
file, driven by the same client (``wrk``) in the same run. Two routes to the same stored object:
``--route phone`` (default) the phones' ``/DeviceUpdateFiles_Int/…`` path, target devupdate ≥ 0.7 ×
nginx; ``--route content`` WSUS's ``/Content/<XX>/<SHA1>.nbt``, target ≥ 0.9 × nginx
(``tools/bench_content.py`` is this with ``--route content``).

Everything is real and throw-away: a temporary data directory, ``devupdate pack`` + ``import`` of a
cab holding the image, ``devupdate serve`` on a free loopback port, and nginx (not as a daemon,
with a temporary configuration) on another, reading the object straight from the filestore.
Rounds alternate (devupdate, nginx, devupdate, nginx, …) so drift hits both sides alike.

    python tools/bench_download.py                       # 64 MB, 2 workers, 4 connections, 3×8 s each
    python tools/bench_download.py --size-mb 64 --connections 8 --duration 10 --rounds 3 --json
    python tools/bench_download.py --route content

Exit status: 0 when the ratio meets ``--target`` (default: the route's), 1 when it does not, 2 on setup
errors.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import free_port, stop  # noqa: E402

VERSION = "4.0.7577.4372"
PATH = f"UCPhone/Polycom/CX600/A/ENU/{VERSION}/CPE.nbt"
TARGETS = {"phone": 0.7, "content": 0.9}  # the phone route's and WSUS /Content's issue targets
NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location = /image {{
            alias {image};
            default_type application/octet-stream;
        }}
    }}
}}
"""
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited with {proc.returncode} before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"no answer from {url} within {timeout}s")


def run_wrk(wrk: str, url: str, threads: int, connections: int, duration: int) -> dict[str, float]:
    out = subprocess.run([wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "60s", url],
                         capture_output=True, text=True, timeout=duration + 120).stdout
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)([KMGT]?B)", out)
    requests = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not transfer or not requests:
        raise SystemExit(f"could not parse wrk output:\n{out}")
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} error responses during the run:\n{out}")
    return {"bytes_per_s": float(transfer.group(1)) * _UNITS[transfer.group(2)],
            "requests_per_s": float(requests.group(1))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--route", choices=sorted(TARGETS), default="phone",
                        help="phone: /DeviceUpdateFiles_Int/…; content: WSUS /Content/<XX>/<SHA1>.nbt")
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="devupdate workers = nginx worker processes")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--duration", type=int, default=8, help="seconds per round and server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--target", type=float, help="ratio to pass (default: 0.7 phone, 0.9 content)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.target is None:
        args.target = TARGETS[args.route]

    wrk = shutil.which("wrk")
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not wrk or not nginx:
        print("needs wrk and nginx (apt-get install wrk nginx)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    home = work / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVUPDATE_")}
    # cwd is not the data directory, and PYTHONSAFEPATH keeps cwd off sys.path anyway
    env.update(DEVUPDATE_HOME=str(home), PYTHONSAFEPATH="1", DEVUPDATE_ACTOR="bench")
    procs: list[subprocess.Popen] = []

    def cli(*argv: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "devupdate", *argv], capture_output=True, text=True, env=env,
                              cwd=work, timeout=600)
        if proc.returncode:
            raise SystemExit(f"devupdate {' '.join(argv)} failed:\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    try:
        image = work / "CPE.nbt"
        with open(image, "wb") as handle:
            for _ in range(args.size_mb):
                handle.write(os.urandom(1 << 20))
        (work / "CPE.cat").write_bytes(os.urandom(2048))
        sha = hashlib.sha256(image.read_bytes()).hexdigest()
        size = image.stat().st_size
        cli("pack", str(work / "bench.cab"), str(image), str(work / "CPE.cat"), "--brand", "Polycom",
            "--model", "CX600", "--version", VERSION)
        cli("db", "upgrade")
        cli("import", str(work / "bench.cab"))
        stored = home / "filestore" / "images" / sha[:2] / sha
        assert stored.stat().st_size == size, "the import did not store the image under its SHA-256"

        port = free_port()
        server_env = {**env, "DEVUPDATE_PORT": str(port), "DEVUPDATE_WORKERS": str(args.workers),
                      "DEVUPDATE_HOST": "127.0.0.1"}
        server = subprocess.Popen([sys.executable, "-m", "devupdate", "serve"], env=server_env, cwd=work,
                                  stdout=open(work / "serve.log", "wb"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        procs.append(server)
        wait_http(f"http://127.0.0.1:{port}/healthz", server)

        nginx_port = free_port()
        (work / "nginx").mkdir()
        conf = work / "nginx" / "nginx.conf"
        conf.write_text(NGINX_CONF.format(workers=args.workers, work=work / "nginx", port=nginx_port, image=stored,
                                          user="user root;" if os.geteuid() == 0 else ""))
        front = subprocess.Popen([nginx, "-p", str(work / "nginx"), "-c", str(conf), "-e",
                                  str(work / "nginx" / "error.log")], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(front)
        sha1 = hashlib.sha1(image.read_bytes()).hexdigest().upper()
        route = f"Content/{sha1[-2:]}/{sha1}.nbt" if args.route == "content" else f"DeviceUpdateFiles_Int/{PATH}"
        urls = {"devupdate": f"http://127.0.0.1:{port}/{route}",
                "nginx": f"http://127.0.0.1:{nginx_port}/image"}
        wait_http(urls["nginx"], front)

        for name, url in urls.items():  # both serve the same bytes
            with urllib.request.urlopen(url, timeout=60) as response:
                digest = hashlib.sha256()
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
            if digest.hexdigest() != sha:
                raise SystemExit(f"{name} served bytes that do not hash to {sha}")

        results: dict[str, list[dict[str, float]]] = {"devupdate": [], "nginx": []}
        for _ in range(args.rounds):
            for name, url in urls.items():
                results[name].append(run_wrk(wrk, url, args.threads, args.connections, args.duration))
        summary = {}
        for name, runs in results.items():
            rates = [r["bytes_per_s"] for r in runs]
            summary[name] = {"MiB_per_s": round(statistics.median(rates) / 2**20, 1),
                             "rounds_MiB_per_s": [round(r / 2**20, 1) for r in rates],
                             "downloads_per_s": round(statistics.median(r["requests_per_s"] for r in runs), 2)}
        ratio = summary["devupdate"]["MiB_per_s"] / summary["nginx"]["MiB_per_s"]
        report = {"route": args.route, "size_bytes": size, "workers": args.workers, "connections": args.connections,
                  "duration_s": args.duration, "rounds": args.rounds, **summary, "ratio": round(ratio, 3),
                  "target": args.target, "pass": ratio >= args.target}
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(f"{args.route} route, image {size / 2**20:.0f} MiB, {args.workers} workers, wrk -t{args.threads} "
                  f"-c{args.connections}, {args.rounds} rounds x {args.duration}s each (median)")
            for name in ("devupdate", "nginx"):
                s = summary[name]
                print(f"  {name:9s} {s['MiB_per_s']:8.1f} MiB/s  {s['downloads_per_s']:6.2f} downloads/s  "
                      f"rounds {s['rounds_MiB_per_s']}")
            print(f"  ratio devupdate/nginx = {ratio:.3f}  (target >= {args.target}: "
                  f"{'PASS' if ratio >= args.target else 'FAIL'})")
        return 0 if ratio >= args.target else 1
    finally:
        for proc in reversed(procs):
            stop(proc, signal.SIGQUIT if proc.args[0] == nginx else signal.SIGTERM)
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
