"""Benchmark of the upstream role: a downstream server pulls the whole catalog from ``devupdate
serve`` (GetRevisionIdList unfiltered, then GetUpdateData in batches of 100) with N revisions and
again with 4×N, sampling the worker's RSS every 20 ms while the answers stream. Memory must not
follow the catalog (the lists are written while they are read, never held whole).

    python tools/bench_wsus_upstream.py                     # N = 25,000 (then 100,000)
    python tools/bench_wsus_upstream.py --revisions 62500   # N = 62,500 (then 250,000, the issue's size)

Prints, per size: identities/s and bytes of the list, revisions/s of GetUpdateData, and the worker's
peak RSS during each as a ratio to its idle RSS in the same run; then the 4×N peak over the N peak.
Targets: peak RSS ≤ 300 MiB, ≤ 1.10× from N to 4×N. Slow (imports the catalog): not in the suite.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_wsus_catalog import Catalog, _children, _free_port, _import, _rss  # noqa: E402

SD = "http://www.microsoft.com/SoftwareDistribution"
SYNC = "/ServerSyncWebService/ServerSyncWebService.asmx"
ACCOUNT = "6f1c2f6e-3f0b-4d3a-9b1e-0d2f6a1c5e12"


def _envelope(operation: str, inner: str, namespace: str = SD) -> bytes:
    return (f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><{operation} '
            f'xmlns="{namespace}">{inner}</{operation}></s:Body></s:Envelope>').encode()


def _post(url: str, path: str, operation: str, inner: str, namespace: str = SD, **kwargs) -> requests.Response:
    return requests.post(url + path, data=_envelope(operation, inner, namespace), timeout=600,
                         headers={"Content-Type": "text/xml; charset=utf-8",
                                  "SOAPAction": f'"{namespace}/{operation}"'}, **kwargs)


def _text(body: bytes, name: str) -> str:
    match = re.search(rb"<" + name.encode() + rb">([^<]*)</", body)
    assert match, body[:500]
    return match.group(1).decode()


def cookie(url: str) -> str:
    auth_ns = f"{SD}/Server/DssAuthWebService"
    auth = _text(_post(url, "/DssAuthWebService/DssAuthWebService.asmx", "GetAuthorizationCookie",
                       f"<accountName>bench.invalid</accountName><accountGuid>{ACCOUNT}</accountGuid>",
                       auth_ns).content, "CookieData")
    answer = _post(url, SYNC, "GetCookie", "<authCookies><AuthorizationCookie><PlugInId>DssTargeting</PlugInId>"
                   f"<CookieData>{auth}</CookieData></AuthorizationCookie></authCookies>"
                   "<protocolVersion>1.20</protocolVersion>").content
    return (f"<cookie><Expiration>{_text(answer, 'Expiration')}</Expiration>"
            f"<EncryptedData>{_text(answer, 'EncryptedData')}</EncryptedData></cookie>")


class Peak:
    """The highest RSS of ``pid`` while the block runs (sampled every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()

    def __enter__(self) -> Peak:
        self.peak = _rss(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss(self.pid))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(env: dict[str, str], label: str, batches: int) -> int:
    port = _free_port()
    env = {**env, "DEVUPDATE_PORT": str(port), "DEVUPDATE_HOST": "127.0.0.1", "DEVUPDATE_WORKERS": "1",
           "DEVUPDATE_WSUS_ALLOW_HTTP_SOAP": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "devupdate", "serve"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("devupdate serve did not answer /healthz within 60 s") from None
                time.sleep(0.2)
        dss = cookie(url)
        worker = (_children(proc.pid) or [proc.pid])[0]
        idle = _rss(worker)
        started = time.perf_counter()
        with Peak(worker) as listing:
            answer = _post(url, SYNC, "GetRevisionIdList", dss + "<filter><GetConfig>false</GetConfig></filter>",
                           stream=True)
            size, tail, ids = 0, b"", []
            for chunk in answer.iter_content(256 * 1024):
                size += len(chunk)
                data = tail + chunk
                ids.extend(re.findall(rb"<UpdateID>([^<]+)</UpdateID><RevisionNumber>(\d+)<", data))
                tail = data[-200:]
        seconds = time.perf_counter() - started
        identities = list(dict.fromkeys(ids))
        print(f"{label}: GetRevisionIdList {len(identities)} identities, {size / 2**20:.1f} MiB streamed in "
              f"{seconds:.1f} s = {len(identities) / seconds:.0f} identities/s; worker RSS idle "
              f"{idle / 2**20:.1f} MiB, peak {listing.peak / 2**20:.1f} MiB = {listing.peak / idle:.2f}x idle",
              flush=True)
        started = time.perf_counter()
        fetched = 0
        with Peak(worker) as data:
            for batch in range(batches):
                chosen = identities[batch * 100:(batch + 1) * 100]
                if not chosen:
                    break
                inner = "".join(f"<UpdateIdentity><UpdateID>{u.decode()}</UpdateID><RevisionNumber>{n.decode()}"
                                "</RevisionNumber></UpdateIdentity>" for u, n in chosen)
                body = _post(url, SYNC, "GetUpdateData", dss + f"<updateIds>{inner}</updateIds>").content
                fetched += body.count(b"<ServerSyncUpdateData>")
        seconds = time.perf_counter() - started
        print(f"{label}: GetUpdateData {fetched} revisions in {seconds:.1f} s = {fetched / seconds:.0f} revisions/s; "
              f"worker RSS peak {data.peak / 2**20:.1f} MiB = {data.peak / idle:.2f}x idle", flush=True)
        return max(listing.peak, data.peak)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--revisions", type=int, default=25_000, help="N (default 25000); then 4×N")
    parser.add_argument("--batches", type=int, default=50, help="GetUpdateData batches of 100 per size")
    parser.add_argument("--database-url", help="An empty PostgreSQL database instead of SQLite.")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-wsus-upstream-"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DEVUPDATE_")}, "DEVUPDATE_HOME": str(home)}
    if args.database_url:
        env["DEVUPDATE_DATABASE_URL"] = args.database_url
    os.environ.update(env)
    from devupdate import db, schema
    from devupdate.settings import Settings

    db.open_database(Settings.load(env).effective_database_url).connect()
    schema.upgrade()
    try:
        catalog = Catalog()
        stored, elapsed = _import(catalog, args.revisions)
        print(f"imported {stored} revisions in {elapsed:.0f} s", flush=True)
        peak_n = measure(env, f"N={args.revisions}", args.batches)
        more, elapsed = _import(catalog, 3 * args.revisions, stored)
        print(f"imported {more} more revisions in {elapsed:.0f} s", flush=True)
        peak_4n = measure(env, f"4N={4 * args.revisions}", args.batches)
        print(f"peak worker RSS with 4N over N: {peak_4n / peak_n:.3f}x (target <= 1.10x; <= 300 MiB: "
              f"{'yes' if peak_4n <= 300 * 2**20 else 'NO'})")
    finally:
        db.database.close()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
