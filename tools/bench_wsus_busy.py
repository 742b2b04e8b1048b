"""SOAP admission control under a flood (spec/wsus.md S8, §9): N clients post GetConfig (or Ping)
as fast as they are answered to one ``devupdate serve``, far beyond the capacity set for the
light class; every answer is classed and timed by the client.

    python tools/bench_wsus_busy.py                                  # 200 clients, capacity 1, no wait
    python tools/bench_wsus_busy.py --clients 1000 --seconds 20
    python tools/bench_wsus_busy.py --light-in-flight 2 --light-wait 0.5 --light-queue 64

Printed: answers per second; the share of ``ServerBusy`` faults beyond capacity; latency p50 /
p95 / p99 / max of the served answers and of the ServerBusy ones (from the request's last byte
sent to the answer's last byte read); and what must be 0: HTTP 5xx without a SOAP envelope,
``InternalServerError`` faults, anything else. Targets (issue 11, item 6): ServerBusy answered in
≤ 100 ms, no 5xx without an envelope, no InternalServerError.

The flood's clients run closed-loop in one process, so their own latency is mostly the flood's
(Little's law: clients ÷ answers per second) — on 2 cores the client is slower than the server.
A separate *probe* process therefore sends one request every 20 ms on its own connection during
the flood: its latencies are what one more client sees from the server under that load, and the
ServerBusy target is checked on them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.bench_check import cpu_seconds, free_port, stop, wait_ready  # noqa: E402

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
CLIENT_NS = "http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService"
MONITORABLE_NS = "http://www.microsoft.com/SoftwareDistribution/Server/IMonitorable"
PATH = "/ClientWebService/Client.asmx"
BODIES = {
    "GetConfig": (f"{CLIENT_NS}/GetConfig", f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><GetConfig xmlns="{CLIENT_NS}">'
                  "<protocolVersion>2.90</protocolVersion></GetConfig></s:Body></s:Envelope>"),
    "Ping": (f"{MONITORABLE_NS}/Ping", f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><Ping xmlns="{MONITORABLE_NS}">'
             "<pingLevel>0</pingLevel></Ping></s:Body></s:Envelope>"),
}


def request_bytes(operation: str) -> bytes:
    action, body = BODIES[operation]
    data = body.encode()
    return (f"POST {PATH} HTTP/1.1\r\nHost: wsus.bench\r\nContent-Type: text/xml; charset=utf-8\r\n"
            f'SOAPAction: "{action}"\r\nContent-Length: {len(data)}\r\n\r\n').encode() + data


def classify(status: int, headers: dict[str, str], body: bytes, operation: str) -> str:
    enveloped = headers.get("content-type", "").startswith("text/xml") and b"<s:Envelope" in body[:200]
    if status == 200 and enveloped and f"<{operation}Response".encode() in body:
        return "ok"
    if status >= 500 and not enveloped:
        return "5xx-without-envelope"
    if status == 500 and enveloped:
        for code in (b"ServerBusy", b"InternalServerError"):
            if b"<ErrorCode>" + code + b"</ErrorCode>" in body:
                return code.decode()
        return "other-fault"
    return f"http-{status}"


async def client(port: int, request: bytes, operation: str, until: float, results: list[tuple[str, float]]) -> None:
    reader = writer = None
    while time.monotonic() < until:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            writer.write(request)
            await writer.drain()
            sent = time.perf_counter()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {n.strip().lower(): v.strip() for n, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            results.append((classify(int(lines[0].split()[1]), headers, body, operation), time.perf_counter() - sent))
            if headers.get("connection", "").lower() == "close":
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            results.append(("connection-error", 0.0))
            if writer is not None:
                writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def flood(port: int, clients: int, seconds: float, operation: str) -> list[tuple[str, float]]:
    results: list[tuple[str, float]] = []
    until = time.monotonic() + seconds
    request = request_bytes(operation)
    await asyncio.gather(*(client(port, request, operation, until, results) for _ in range(clients)))
    return results


def probe(port: int, request: bytes, operation: str, seconds: float, out) -> None:
    """One more client beside the flood: a request every 20 ms, each answer classed and timed."""
    results: list[tuple[str, float]] = []
    until = time.monotonic() + seconds
    sock = None
    while time.monotonic() < until:
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(request)
            sent = time.perf_counter()
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {n.strip().lower(): v.strip() for n, _, v in (line.partition(":") for line in lines[1:] if line)}
            while len(body) < int(headers.get("content-length", "0")):
                body += sock.recv(65536)
            results.append((classify(int(lines[0].split()[1]), headers, body, operation), time.perf_counter() - sent))
            if headers.get("connection", "").lower() == "close":
                sock.close()
                sock = None
        except OSError:
            results.append(("connection-error", 0.0))
            sock = None
        time.sleep(0.02)
    out.send(results)


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000, 1)
    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1] * 1000, 1)}


def rejected(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("devupdate_wsus_soap_rejected_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            totals[reason] = totals.get(reason, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--operation", choices=sorted(BODIES), default="GetConfig")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--server-threads", type=int, default=4)
    parser.add_argument("--light-in-flight", type=int, default=1)
    parser.add_argument("--light-queue", type=int, default=128)
    parser.add_argument("--light-wait", type=float, default=0.0)
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="bench-wsus-busy-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVUPDATE_")}
    env.update({"DEVUPDATE_HOME": str(home), "DEVUPDATE_SERVER_NAME": "bench", "DEVUPDATE_WORKERS": str(args.workers),
                "DEVUPDATE_THREADS": str(args.server_threads), "DEVUPDATE_WSUS_ALLOW_HTTP_SOAP": "true",
                "DEVUPDATE_MAX_CONNECTIONS_PER_SOURCE": str(max(4096, 2 * args.clients)),
                "DEVUPDATE_WSUS_LIGHT_IN_FLIGHT": str(args.light_in_flight),
                "DEVUPDATE_WSUS_LIGHT_QUEUE": str(args.light_queue),
                "DEVUPDATE_WSUS_LIGHT_WAIT": str(args.light_wait)})
    port, log = free_port(), home / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "devupdate", "serve", "--port", str(port)], env=env, cwd=home,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(port, proc, log)
        asyncio.run(flood(port, 4, 1.0, args.operation))  # warm up
        before_rejected, before_cpu = rejected(port), cpu_seconds(proc.pid)
        receiving, sending = multiprocessing.Pipe(duplex=False)
        prober = multiprocessing.Process(target=probe, args=(port, request_bytes(args.operation), args.operation,
                                                             args.seconds, sending))
        started = time.monotonic()
        prober.start()
        results = asyncio.run(flood(port, args.clients, args.seconds, args.operation))
        elapsed = time.monotonic() - started
        probed = receiving.recv()
        prober.join(30)
        cpu = cpu_seconds(proc.pid) - before_cpu
        after_rejected = rejected(port)
    finally:
        stop(proc)
    counts: dict[str, int] = {}
    for outcome, _ in results:
        counts[outcome] = counts.get(outcome, 0) + 1
    total = len(results)
    figures = {
        "clients": args.clients, "seconds": round(elapsed, 1), "operation": args.operation,
        "capacity": {"in_flight": args.light_in_flight, "queue": args.light_queue, "wait": args.light_wait,
                     "workers": args.workers, "threads": args.server_threads},
        "answers": total, "answers_per_s": round(total / elapsed), "outcomes": counts,
        "server_busy_share": round(counts.get("ServerBusy", 0) / total, 3) if total else None,
        "ok_latency_ms": percentiles([s for o, s in results if o == "ok"]),
        "server_busy_latency_ms": percentiles([s for o, s in results if o == "ServerBusy"]),
        "probe": {"answers": len(probed), "outcomes": {o: sum(1 for p, _ in probed if p == o) for o, _ in probed},
                  "ok_latency_ms": percentiles([s for o, s in probed if o == "ok"]),
                  "server_busy_latency_ms": percentiles([s for o, s in probed if o == "ServerBusy"])},
        "server_cpu_s": round(cpu, 2),
        "rejected_by_reason": {k: after_rejected.get(k, 0) - before_rejected.get(k, 0) for k in after_rejected},
        "must_be_zero": {k: counts.get(k, 0) + sum(1 for o, _ in probed if o == k)
                         for k in ("5xx-without-envelope", "InternalServerError", "other-fault", "connection-error")},
    }
    shutil.rmtree(home, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{args.clients} clients, {args.operation}, light class {args.light_in_flight} in flight / queue "
              f"{args.light_queue} / wait {args.light_wait} s, {args.workers} worker(s) × "
              f"{args.server_threads} threads")
        print(f"  {total} answers in {elapsed:.1f} s ({figures['answers_per_s']}/s), server CPU {cpu:.1f} s")
        print(f"  ServerBusy share {figures['server_busy_share']:.1%}   outcomes {counts}")
        print(f"  served     ms {figures['ok_latency_ms']}")
        print(f"  ServerBusy ms {figures['server_busy_latency_ms']}")
        print(f"  rejected by reason (server metrics) {figures['rejected_by_reason']}")
        print(f"  probe (one more client, a request every 20 ms): {figures['probe']['outcomes']}")
        print(f"    served     ms {figures['probe']['ok_latency_ms']}")
        print(f"    ServerBusy ms {figures['probe']['server_busy_latency_ms']}")
        print(f"  must be 0: {figures['must_be_zero']}")
    busy = figures["probe"]["server_busy_latency_ms"]["p99"]
    return 0 if not any(figures["must_be_zero"].values()) and (busy is None or busy <= 100) else 1


if __name__ == "__main__":
    sys.exit(main())
