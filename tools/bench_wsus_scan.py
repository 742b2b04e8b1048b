"""Benchmark of the WSUS scan (issue 11): N simulated clients run the native scan sequence at once
against ``devupdate serve`` over a synthetic catalog (the generator of bench_wsus_catalog.py) —
SyncUpdates pages until no page is truncated and every update is a leaf, then
GetExtendedUpdateInfo of up to 50 revisions — then the same clients against a bare route on the
same server settings, for the throughput ratio.

    python tools/bench_wsus_scan.py                       # 250,000 revisions (then 1,000,000), 200 and 1,000 clients
    python tools/bench_wsus_scan.py --revisions 20000 --clients 50,200 --no-4x    # a few minutes
    python tools/bench_wsus_scan.py --home /tmp/cat --keep    # keep the catalog; the next run with --home reuses it

Printed per client count: SyncUpdates latency p50/p95/p99 per page; server CPU per full first scan
and per page; the largest worker RSS seen during the run; HTTP 5xx without a SOAP envelope and
InternalServerError faults (both must be 0); the share of ServerBusy answers, and the latency of
ServerBusy and served pages as a separate probe client sees them (one fresh first page every 50 ms
on its own connection during the flood: the flood's own clients are closed-loop, so their latency
is mostly Little's law, clients ÷ answers per second). Then the bare route: every SyncUpdates
answered with the recorded ``wsus-m0-native/flow/000001/response.body`` by the same worker class,
workers and threads, driven by the same clients for as many pages per scan, and devupdate's
SyncUpdates throughput as a ratio of it. With the 4× catalog (3×N more revisions of the same
generator, a quarter of the products selected so the scans stay the size they were) the runs are
repeated and the RSS growth printed.

Every figure comes with the load average (the machine is shared): compare ratios and CPU seconds
from one run, not wall-clock figures across runs. Not part of the test suite (a tool, not a test).

Targets (issue 11, this 2-core machine): p95 ≤ 1 s per page at 200 clients, no 5xx, RSS ≤ 300 MiB
per worker and ≤ 1.05× from the 1× to the 4× catalog, ServerBusy answered in ≤ 100 ms, throughput
≥ 0.5× the bare route.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_wsus_catalog import Catalog, _children, _free_port, _import, _rss  # noqa: E402

CLIENT_NS = "http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
PATH = "/ClientWebService/client.asmx"
SHARED = Path(os.environ.get("DEVUPDATE_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
RECORDED = SHARED / "wsus" / "captures" / "wsus-m0-native" / "flow" / "000001" / "response.body"
INFO = re.compile(rb"<UpdateInfo><ID>(\d+)</ID>.*?<IsLeaf>(true|false)</IsLeaf><Xml>(.*?)</Xml></UpdateInfo>", re.S)
OUT = re.compile(rb"<OutOfScopeRevisionIDs>(.*?)</OutOfScopeRevisionIDs>", re.S)
COOKIE = re.compile(rb"<NewCookie><Expiration>[^<]*</Expiration><EncryptedData>([^<]*)</EncryptedData>")
CODE = re.compile(rb"<ErrorCode>([^<]*)</ErrorCode>")
KIND = re.compile(rb'UpdateType=&quot;(\w+)&quot;|UpdateType="(\w+)"')
INT = re.compile(rb"<int>(\d+)</int>")
BUSY_PAUSE = 0.2  # a client told ServerBusy retries after this (WUA backs off far longer)


def envelope(operation: str, inner: str) -> bytes:
    return (f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><{operation} xmlns="{CLIENT_NS}">{inner}</{operation}>'
            "</s:Body></s:Envelope>").encode()


def cookie_xml(value: str) -> str:
    return f"<cookie><Expiration>2030-01-01T00:00:00Z</Expiration><EncryptedData>{value}</EncryptedData></cookie>"


def request(operation: str, inner: str) -> bytes:
    body = envelope(operation, inner)
    return (f"POST {PATH} HTTP/1.1\r\nHost: wsus.bench\r\nContent-Type: text/xml; charset=utf-8\r\n"
            f'SOAPAction: "{CLIENT_NS}/{operation}"\r\nContent-Length: {len(body)}\r\n\r\n').encode() + body


def sync_request(cookie: str, installed: list[int], other: list[int]) -> bytes:
    inner = cookie_xml(cookie) + "<parameters><ExpressQuery>false</ExpressQuery>"
    if installed:
        inner += "<InstalledNonLeafUpdateIDs>" + "".join(f"<int>{r}</int>" for r in installed) + \
                 "</InstalledNonLeafUpdateIDs>"
    if other:
        inner += "<OtherCachedUpdateIDs>" + "".join(f"<int>{r}</int>" for r in other) + "</OtherCachedUpdateIDs>"
    return request("SyncUpdates", inner + "<SkipSoftwareSync>false</SkipSoftwareSync></parameters>")


class Connection:
    """One keep-alive HTTP/1.1 connection of a simulated client (asyncio, no thread per client)."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, data: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 24)
        assert self.reader is not None
        try:
            self.writer.write(data)
            await self.writer.drain()
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            body = await self.reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            raise
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def new_stats() -> dict:
    return {"pages": [], "busy": [], "faults": {}, "bare_5xx": 0, "scans": 0, "pages_per_scan": [],
            "updates_per_scan": [], "errors": []}


async def scan(port: int, cookie: str, stats: dict, deadline: float, max_pages: int | None) -> None:
    """One client's first full scan (ServerBusy pages retried after BUSY_PAUSE). The evaluator:
    categories apply, one detectoid in four applies, no software is installed. ``max_pages``: stop
    after so many pages (the bare route answers the same page for ever)."""
    connection = Connection(port)
    cache: dict[int, tuple[bool, bool]] = {}  # rid → (is_leaf, installed)
    pages = 0
    try:
        while time.time() < deadline:
            installed = [rid for rid, (leaf, inst) in cache.items() if not leaf and inst][:400]
            chosen = set(installed)
            data = sync_request(cookie, installed, [rid for rid in cache if rid not in chosen])
            started = time.perf_counter()
            try:
                status, body = await connection.post(data)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                stats["errors"].append(type(exc).__name__)
                return
            took = time.perf_counter() - started
            if status != 200:
                code = CODE.search(body)
                if code is None:
                    stats["bare_5xx"] += status >= 500
                    stats["errors"].append(str(status))
                    return
                name = code.group(1).decode()
                stats["faults"][name] = stats["faults"].get(name, 0) + 1
                if name != "ServerBusy":
                    return
                stats["busy"].append(took)
                await asyncio.sleep(BUSY_PAUSE)
                continue
            stats["pages"].append(took)
            pages += 1
            found = COOKIE.search(body)
            if found is not None and not found.group(1).startswith(b"AAAAAAAA"):  # the recorded one is redacted
                cookie = found.group(1).decode()
            for out in OUT.findall(body):
                for rid in INT.findall(out):
                    cache.pop(int(rid), None)
            new = INFO.findall(body)
            for rid, leaf, xml in new:
                kind = KIND.search(xml)
                update_type = (kind.group(1) or kind.group(2)) if kind else b""
                cache[int(rid)] = (leaf == b"true", update_type == b"Category"
                                   or (update_type == b"Detectoid" and int(rid) % 4 == 0))
            if max_pages is not None and pages >= max_pages:
                break
            if b"<Truncated>true</Truncated>" not in body and all(leaf == b"true" for _, leaf, _ in new):
                break
        else:
            stats["errors"].append("scan not finished before the deadline")
            return
        ids = sorted(cache)[:50]
        inner = (cookie_xml(cookie) + "<revisionIDs>" + "".join(f"<int>{r}</int>" for r in ids) + "</revisionIDs>"
                 "<infoTypes><XmlUpdateFragmentType>Extended</XmlUpdateFragmentType><XmlUpdateFragmentType>"
                 "LocalizedProperties</XmlUpdateFragmentType></infoTypes><locales><string>en-US</string>"
                 "<string>en</string></locales>")
        try:
            await connection.post(request("GetExtendedUpdateInfo", inner))
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            stats["errors"].append(type(exc).__name__)
            return
        stats["scans"] += 1
        stats["pages_per_scan"].append(pages)
        stats["updates_per_scan"].append(len(cache))
    finally:
        connection.close()


def run_clients(port: int, tokens: list[str], deadline: float, max_pages: int | None) -> dict:
    """A client process: one coroutine per client, all at once (spawned: no state shared)."""
    stats = new_stats()

    async def main() -> None:
        await asyncio.gather(*(scan(port, token, stats, deadline, max_pages) for token in tokens))

    cpu = time.process_time()
    asyncio.run(main())
    stats["client_cpu"] = time.process_time() - cpu
    return stats


def probe(port: int, token: str, stop: Any, out: Any) -> None:
    """One request every 50 ms on its own connection while the flood runs: a fresh client's first
    SyncUpdates page (heavy class, as the flood's). Sends (kind, seconds) pairs back."""
    data = sync_request(token, [], [])
    seen: list[tuple[str, float]] = []

    async def main() -> None:
        connection = Connection(port)
        while not stop.is_set():
            started = time.perf_counter()
            try:
                status, body = await connection.post(data)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                seen.append(("error", time.perf_counter() - started))
                await asyncio.sleep(0.05)
                continue
            took = time.perf_counter() - started
            code = CODE.search(body) if status != 200 else None
            seen.append(("ok" if status == 200 else code.group(1).decode() if code else f"http-{status}", took))
            await asyncio.sleep(max(0.0, 0.05 - took))
        connection.close()

    asyncio.run(main())
    out.send(seen)
    out.close()


def _cpu(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / ticks


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> str:
    return (f"p50 {pct(values, .5) * 1000:.0f} / p95 {pct(values, .95) * 1000:.0f} / p99 {pct(values, .99) * 1000:.0f}"
            f" / max {max(values or [float('nan')]) * 1000:.0f} ms (n={len(values)})")


def load() -> str:
    return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def serve(env: dict[str, str], bare: bool) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    serve_env = {**env, "DEVUPDATE_PORT": str(port), "DEVUPDATE_HOST": "127.0.0.1"}
    command = [sys.executable, str(Path(__file__).resolve()), "--serve-bare"] if bare else \
        [sys.executable, "-m", "devupdate", "serve"]
    proc = subprocess.Popen(command, env=serve_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start") from None
            time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def rejected(port: int) -> dict[str, float]:
    """ServerBusy refusals by reason (full: beyond the queue; timeout: after the queue wait) from /metrics."""
    found: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith("devupdate_wsus_soap_rejected_total{"):
                    reason = re.search(r'reason="([^"]*)"', line)
                    if reason:
                        found[reason.group(1)] = found.get(reason.group(1), 0) + float(line.rsplit(" ", 1)[1])
    except OSError:
        pass
    return found


def flood(port: int, proc: subprocess.Popen, tokens: list[str], probe_token: str | None, processes: int,
          timeout: float, max_pages: int | None = None) -> dict:
    """Every client at once from ``processes`` client processes; server CPU and worker RSS around it."""
    pids = [proc.pid, *_children(proc.pid)]
    workers = pids[1:] or pids
    rss_seen = {pid: 0 for pid in workers}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in workers:
                try:
                    rss_seen[pid] = max(rss_seen[pid], _rss(pid))
                except OSError:
                    pass
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    context = multiprocessing.get_context("spawn")
    prober = receiving = stop_probe = None
    if probe_token is not None:
        stop_probe = context.Event()
        receiving, sending = context.Pipe(duplex=False)
        prober = context.Process(target=probe, args=(port, probe_token, stop_probe, sending))
    cpu_before, started = _cpu(pids), time.perf_counter()
    deadline = time.time() + timeout
    parts = [tokens[n::processes] for n in range(processes)]
    with context.Pool(processes) as pool:
        pending = [pool.apply_async(run_clients, (port, part, deadline, max_pages)) for part in parts if part]
        if prober is not None:
            prober.start()
        results = [p.get() for p in pending]
    wall = time.perf_counter() - started
    cpu = _cpu(pids) - cpu_before
    probed: list[tuple[str, float]] = []
    if prober is not None and stop_probe is not None and receiving is not None:
        stop_probe.set()
        probed = receiving.recv()
        prober.join()
    done.set()
    sampler.join()
    merged = new_stats()
    for part in results:
        for key in ("pages", "busy", "pages_per_scan", "updates_per_scan", "errors"):
            merged[key] += part[key]
        merged["scans"] += part["scans"]
        merged["bare_5xx"] += part["bare_5xx"]
        for name, count in part["faults"].items():
            merged["faults"][name] = merged["faults"].get(name, 0) + count
    merged.update(wall=wall, cpu=cpu, rss=rss_seen, probe=probed,
                  client_cpu=sum(part["client_cpu"] for part in results))
    return merged


def report(count: int, run: dict, rejected_by: dict[str, float]) -> None:
    pages, scans = len(run["pages"]), max(run["scans"], 1)
    busy = run["faults"].get("ServerBusy", 0)
    answers = pages + sum(run["faults"].values())
    probe_busy = [t for kind, t in run["probe"] if kind == "ServerBusy"]
    probe_ok = [t for kind, t in run["probe"] if kind == "ok"]
    probe_other = [kind for kind, _ in run["probe"] if kind not in ("ok", "ServerBusy")]
    print(f"{count} clients ({load()}): {run['scans']} full scans in {run['wall']:.1f} s, {pages} SyncUpdates pages "
          f"({statistics.mean(run['pages_per_scan'] or [0]):.1f} per scan, "
          f"{statistics.mean(run['updates_per_scan'] or [0]):.0f} updates per scan), "
          f"{pages / run['wall']:.1f} pages/s", flush=True)
    print(f"  SyncUpdates page latency {ms(run['pages'])}", flush=True)
    print(f"  server CPU {run['cpu']:.1f} s = {run['cpu'] / scans:.3f} s per full first scan = "
          f"{run['cpu'] / max(pages, 1) * 1000:.1f} ms per page; client CPU {run['client_cpu']:.1f} s", flush=True)
    print("  worker RSS (largest seen): " + ", ".join(f"{v / 2**20:.0f} MiB" for v in run["rss"].values()), flush=True)
    internal = run["faults"].get("InternalServerError", 0)
    print(f"  5xx without envelope {run['bare_5xx']}; InternalServerError {internal};"
          f" other errors {len(run['errors'])} {sorted(set(run['errors']))[:5]}; faults {run['faults']}", flush=True)
    print(f"  ServerBusy {busy} of {answers} answers ({100 * busy / max(answers, 1):.1f} %; server: "
          f"{', '.join(f'{k} {v:.0f}' for k, v in sorted(rejected_by.items())) or 'none'}); flood's ServerBusy "
          f"latency {ms(run['busy'])}", flush=True)
    if run["probe"]:
        print(f"  probe (a request every 50 ms): ServerBusy {ms(probe_busy)}; served {ms(probe_ok)}"
              + (f"; other {sorted(set(probe_other))}" if probe_other else ""), flush=True)


def register(settings, names: list[str]) -> list[str]:
    from devupdate.wsus.client import auth, cookies, keys
    from devupdate.wsus.targeting import service as targeting

    tokens = []
    for client_id in names:
        targeting.register_computer(client_id, {"OSMajorVersion": 10, "OSBuildNumber": 26200})
        state = auth.issue_client_cookie(client_id, protocol="2.90", settings=settings)
        tokens.append(cookies.to_text(keys.seal(state)))
    return tokens


def select_products(products: list[str]) -> None:
    from devupdate.wsus.catalog import service
    from devupdate.wsus.catalog.models import SelectedProduct

    for (category_id,) in SelectedProduct.select(SelectedProduct.category_id).tuples():
        service.select_product(category_id, actor="bench", selected=False)
    for product in products:
        service.select_product(product, actor="bench")


def phase(label: str, args, env: dict[str, str], settings, counts: list[int]) -> tuple[dict[int, dict], int]:
    """The devupdate runs at each client count (fresh clients each), on one server."""
    from devupdate import db

    runs: dict[int, dict] = {}
    prefix = f"{label}-{int(time.time())}"
    tokens = {count: register(settings, [f"{prefix}-{count}-{n:05d}" for n in range(count)]) for count in counts}
    probe_tokens = register(settings, [f"{prefix}-probe-{count}" for count in counts])
    db.database.close()  # the server's workers write too
    proc, port = serve(env, bare=False)
    try:
        for index, count in enumerate(counts):
            before = rejected(port)
            run = flood(port, proc, tokens[count], probe_tokens[index], args.client_processes, args.timeout)
            after = rejected(port)
            report(count, run, {k: v - before.get(k, 0) for k, v in after.items()})
            runs[count] = run
    finally:
        stop(proc)
    db.database.connect(reuse_if_open=True)
    return runs, port


def bare_phase(env: dict[str, str], tokens: list[str], processes: int, timeout: float, pages: int) -> dict:
    proc, port = serve(env, bare=True)
    try:
        return flood(port, proc, tokens, None, processes, timeout, max_pages=pages)
    finally:
        stop(proc)


def serve_bare() -> None:
    """``--serve-bare``: ``devupdate serve``'s gunicorn (worker class, workers, threads, keep-alive from
    the same settings) with an application that answers every request with the recorded page."""
    from devupdate.server import DevupdateServer, configure_logging
    from devupdate.settings import Settings

    page = RECORDED.read_bytes()

    def application(environ, start_response):
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(page))),
                                  ("Cache-Control", "private")])
        return [page]

    class BareServer(DevupdateServer):
        def load(self):
            return application

    configure_logging()
    BareServer(Settings.load(dict(os.environ))).run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--revisions", type=int, default=250_000, help="N (default 250,000); the 4x phase adds 3xN")
    parser.add_argument("--clients", default="200,1000", help="comma-separated client counts (default 200,1000)")
    parser.add_argument("--products", type=int, default=8, help="products selected for the scans (of 200; the 4x "
                        "phase selects a quarter of them, so the scans keep their size)")
    parser.add_argument("--no-4x", dest="four", action="store_false", help="skip the 4x catalog phase")
    parser.add_argument("--no-bare", dest="bare", action="store_false", help="skip the bare-route ratio")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="threads per worker (default: the setting's default)")
    parser.add_argument("--client-processes", type=int, default=2, help="processes the simulated clients run in")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one client count's run may take")
    parser.add_argument("--database-url", help="an empty PostgreSQL database instead of SQLite")
    parser.add_argument("--home", help="data directory; a catalog already imported there by an earlier --keep run "
                        "with the same --revisions is reused")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a server setting for "
                        "both servers, e.g. --set DEVUPDATE_WSUS_HEAVY_QUEUE=8 (repeatable)")
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare()
        return
    counts = [int(c) for c in args.clients.split(",")]
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="bench-wsus-scan-"))
    home.mkdir(parents=True, exist_ok=True)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DEVUPDATE_")}, "DEVUPDATE_HOME": str(home)}
    if args.database_url:
        env["DEVUPDATE_DATABASE_URL"] = args.database_url
    os.environ.update(env)
    from devupdate import db, schema
    from devupdate.settings import Settings

    settings = Settings.load(env)
    db.open_database(settings.effective_database_url).connect()
    schema.upgrade()
    env.update({"DEVUPDATE_WORKERS": str(args.workers), "DEVUPDATE_WSUS_ALLOW_HTTP_SOAP": "true",
                "DEVUPDATE_WSUS_CLIENT_COOKIE_LIFETIME": "86400",
                # real clients come from many addresses; these all come from 127.0.0.1
                "DEVUPDATE_MAX_CONNECTIONS_PER_SOURCE": str(min(65535, max(counts) * 2 + 64))})
    if args.threads:
        env["DEVUPDATE_THREADS"] = str(args.threads)
    for item in args.set:
        name, _, value = item.partition("=")
        if not name.startswith("DEVUPDATE_") or not value:
            raise SystemExit(f"--set {item!r}: give DEVUPDATE_NAME=VALUE")
        env[name] = value
    threads = args.threads or Settings.load(env).threads
    print(f"devupdate serve: {args.workers} workers x {threads} threads; heavy class per worker (in flight, queue, "
          f"wait): {Settings.load(env).wsus_admission('heavy')}; {os.cpu_count()} CPUs, {load()}", flush=True)
    try:
        from devupdate.wsus.targeting import service as targeting

        targeting.seed()
        catalog = Catalog()
        marker = home / "bench-wsus-scan.json"
        if marker.is_file() and json.loads(marker.read_text()).get("revisions") == args.revisions:
            products = json.loads(marker.read_text())["products"]
            print(f"catalog: {args.revisions} revisions reused from {home}", flush=True)
            if args.four:
                raise SystemExit("--home reuse covers the 1x catalog only: add --no-4x, or use a new --home")
        else:
            stored, elapsed = _import(catalog, args.revisions)
            products = catalog.products
            marker.write_text(json.dumps({"revisions": args.revisions, "products": products}))
            print(f"catalog: {stored} revisions imported in {elapsed:.0f} s ({load()})", flush=True)
        select_products(products[:args.products])
        runs, _port = phase("1x", args, env, settings, counts)
        if args.bare:
            count = counts[0]
            pages = round(statistics.mean(runs[count]["pages_per_scan"] or [1]))
            tokens = register(settings, [f"bare-{int(time.time())}-{n:05d}" for n in range(count)])
            db.database.close()
            bare = bare_phase(env, tokens, args.client_processes, args.timeout, pages)
            db.database.connect(reuse_if_open=True)
            ours, floor = len(runs[count]["pages"]) / runs[count]["wall"], len(bare["pages"]) / bare["wall"]
            print(f"bare route, {count} clients x {pages} pages ({load()}): {floor:.1f} pages/s, page latency "
                  f"{ms(bare['pages'])}, server CPU {bare['cpu'] / max(len(bare['pages']), 1) * 1000:.1f} ms per page, "
                  f"client CPU {bare['client_cpu']:.1f} s, errors {len(bare['errors'])}", flush=True)
            print(f"  devupdate SyncUpdates throughput = {ours / floor:.2f}x the bare route (target >= 0.5)",
                  flush=True)
        if args.four:
            more, elapsed = _import(catalog, 3 * args.revisions, args.revisions)
            print(f"catalog: {more} more revisions imported in {elapsed:.0f} s ({load()})", flush=True)
            select_products(products[:max(1, args.products // 4)])
            runs4, _port = phase("4x", args, env, settings, counts[:1])
            one = max(runs[counts[0]]["rss"].values())
            four = max(runs4[counts[0]]["rss"].values())
            print(f"worker RSS at {counts[0]} clients: {one / 2**20:.0f} MiB with {args.revisions} revisions, "
                  f"{four / 2**20:.0f} MiB with {4 * args.revisions}: {four / one:.3f}x (target <= 1.05x)", flush=True)
    finally:
        db.database.close()
        if args.keep or args.home:
            print(f"data kept in {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
