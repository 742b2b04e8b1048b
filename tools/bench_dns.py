#!/usr/bin/env python3
"""Queries/s of ``devupdate dns serve`` against BIND ``named`` serving the same records.

Both run on 127.0.0.1 with the same zone content (SOA, NS, A/AAAA of the discovery names), are
hit by ``dnsperf`` with the same query file (positive A/AAAA in mixed case, NODATA, NXDOMAIN,
SOA) for the same duration, one after the other. The responder runs as the real command in its
own process with rate limiting off (one source sending flat out is exactly what it is meant to
stop). Target from issue 4: the responder answers at least 10,000 queries/s.

    python tools/bench_dns.py [--seconds 10] [--clients 4] [--json]

Needs dnsperf and named (apt-get install dnsperf bind9).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devupdate.dns.records import RecordSet  # noqa: E402

DOMAINS = ("contoso.com", "fabrikam.local")
ADDRESSES = ("10.0.0.5", "10.0.0.6", "2001:db8::5")
TARGET = 10_000


def free_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit("no free port")


def query_file(path: Path) -> Path:
    lines = []
    for domain in DOMAINS:
        upper = f"UCUPDATES-R2.{domain.upper()}"
        lines += [f"ucupdates-r2.{domain} A", f"ucupdates.{domain} A", f"ucupdates-r2.{domain} AAAA",
                  f"{upper} A", f"ucupdates-r2.{domain} A", f"ucupdates.{domain} AAAA",
                  f"ucupdates-r2.{domain} MX", f"printer{len(lines)}.{domain} A", f"{domain} SOA"]
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_for(port: int, proc: subprocess.Popen, what: str) -> None:
    import dns.message
    import dns.query

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with status {proc.returncode}")
        try:
            dns.query.udp(dns.message.make_query(f"ucupdates-r2.{DOMAINS[0]}", "A"), "127.0.0.1", port=port,
                          timeout=0.3)
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not answer on port {port}")


def start_responder(work: Path, port: int) -> subprocess.Popen:
    home = work / "home"
    home.mkdir()
    (home / "devupdate.toml").write_text(f"dns_domains = {list(DOMAINS)!r}\ndns_addresses = {list(ADDRESSES)!r}\n"
                                         .replace("'", '"'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVUPDATE_")}
    env.update(DEVUPDATE_HOME=str(home), PYTHONPATH=str(REPO))
    code = "from devupdate.dns.cli import group; group(prog_name='devupdate dns')"
    return subprocess.Popen([sys.executable, "-c", code, "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--rate-limit", "0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_named(work: Path, port: int) -> subprocess.Popen:
    records = RecordSet(DOMAINS, ADDRESSES)
    zones = []
    for domain in DOMAINS:
        lines = [r.zone_line() for r in records.zone_records(serial=1) if r.name.endswith(f"{domain}.")]
        (work / f"db.{domain}").write_text("\n".join(lines) + "\n")
        zones.append(f'zone "{domain}" {{ type primary; file "{work}/db.{domain}"; }};')
    (work / "named.conf").write_text(f"""
options {{ directory "{work}"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};
  recursion no; pid-file "{work}/named.pid"; session-keyfile "{work}/session.key"; dnssec-validation no;
  rate-limit {{ responses-per-second 0; }}; }};
controls {{ }};
{chr(10).join(zones)}
""")
    return subprocess.Popen([shutil.which("named"), "-g", "-c", str(work / "named.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def dnsperf(port: int, queries: Path, seconds: int, clients: int) -> dict[str, float]:
    proc = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds),
                           "-c", str(clients), "-q", "200", "-t", "2"], capture_output=True, text=True,
                          timeout=seconds + 60)
    out = proc.stdout + proc.stderr
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    if proc.returncode != 0 or not qps:
        raise SystemExit(f"dnsperf failed:\n{out}")
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    latency = re.search(r"Average Latency \(s\):\s+([\d.]+)", out)
    return {"qps": float(qps.group(1)), "lost": int(lost.group(1)) if lost else 0,
            "latency_ms": float(latency.group(1)) * 1000 if latency else 0.0}


def run(name: str, start, work: Path, queries: Path, seconds: int, clients: int) -> dict[str, float]:
    port = free_port()
    proc = start(work, port)
    try:
        wait_for(port, proc, name)
        return dnsperf(port, queries, seconds, clients)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="dnsperf run length per server (default 10)")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf client sockets (default 4)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    for tool in ("dnsperf", "named"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (apt-get install dnsperf bind9)")
    with tempfile.TemporaryDirectory(prefix="bench-dns-") as temp:
        work = Path(temp)
        queries = query_file(work / "queries.txt")
        (work / "responder").mkdir()
        (work / "named").mkdir()
        responder = run("devupdate dns serve", start_responder, work / "responder", queries, args.seconds, args.clients)
        named = run("named", start_named, work / "named", queries, args.seconds, args.clients)
    ratio = responder["qps"] / named["qps"] if named["qps"] else 0.0
    result = {"seconds": args.seconds, "clients": args.clients, "cpus": os.cpu_count(), "responder": responder,
              "named": named, "ratio": round(ratio, 3), "target_qps": TARGET, "target_met": responder["qps"] >= TARGET}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for label, figures in (("devupdate dns serve", responder), ("named (BIND)", named)):
            print(f"{label:<20} {figures['qps']:>10,.0f} queries/s   lost {figures['lost']:<6} "
                  f"avg latency {figures['latency_ms']:.2f} ms")
        print(f"{'ratio':<20} {ratio:>10.2f}   (responder / named, {args.seconds} s each, {args.clients} clients, "
              f"{os.cpu_count()} CPUs)")
        print(f"target {TARGET:,} queries/s: {'met' if result['target_met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
