"""Benchmark of server-server sync: A (``devupdate serve`` with a synthetic catalog of N revisions, the
generator of ``tools/bench_wsus_catalog.py``) and B syncing from empty with ``devupdate wsus sync``, on
one machine, with separate homes, databases and filestores.

    python tools/bench_wsus_sync.py                                # N = 20,000, a 1 GiB file
    python tools/bench_wsus_sync.py --revisions 250000             # the issue's size (A's import ~35 min here)
    python tools/bench_wsus_sync.py --revisions 5000 --file-mib 64 # a quick run

Prints:
- the first sync from empty: revisions/s and the time to a complete catalog on B;
- the peak RSS of both sides during it (A's serving processes and B's sync process, sampled from
  /proc every 20 ms) — the memory must not follow the catalog (target ≤ 300 MiB per process);
- an incremental sync after ``--more`` (1,000) new revisions on A (target ≤ 10 s);
- content: a phone image of ``--file-mib`` MiB imported on A and pulled by B with one connection
  drop injected mid-file (a relay in front of A cuts the first connection for the file); the
  throughput as a ratio of ``curl`` fetching the same URL through the same relay in the same run
  (target ≥ 0.8×), and of ``curl`` straight from A.

B talks to A through the relay for the whole run, so both sides of every ratio cross it. Slow (imports
the catalog): not in the suite.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_wsus_catalog import Catalog, _children, _free_port, _import, _rss  # noqa: E402

MIB = 1 << 20
PIPE_SIZE = 1 << 20


class Peaks:
    """The highest RSS of each process of some trees while the block runs (sampled every 20 ms)."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots, self.peaks, self._stop = roots, {name: 0 for name in roots}, threading.Event()

    def _sample(self) -> None:
        for name, root in self.roots.items():
            try:
                pids = [root, *_tree(root)]
                self.peaks[name] = max(self.peaks[name], *(_rss(pid) for pid in pids))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def __enter__(self) -> Peaks:
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _tree(pid: int) -> list[int]:
    found = []
    try:
        for child in _children(pid):
            found += [child, *_tree(child)]
    except FileNotFoundError:
        pass
    return found


class Relay:
    """A TCP relay on loopback in front of A (``splice``: no copy through Python). The first connection
    that asks for ``drop_path`` is cut after ``drop_after`` bytes of the answer; it records when the
    requests for that path started and when their last byte went out, and the ``Range`` headers."""

    def __init__(self, target: int, drop_path: str = "", drop_after: int = 0) -> None:
        self.target, self.drop_path, self.drop_after = target, drop_path, drop_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.dropped = False
        self.lock = threading.Lock()
        self.seen: list[dict[str, object]] = []  # per request for drop_path: start, end, range, bytes

    def start(self) -> Relay:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target))
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            head = client.recv(65536)
            if not head:
                return
            record: dict[str, object] | None = None
            limit = -1
            first_line, _, rest = head.partition(b"\r\n")
            if self.drop_path and self.drop_path.encode().lower() in first_line.lower():
                ranges = [line.split(b":", 1)[1].strip().decode() for line in rest.split(b"\r\n")
                          if line.lower().startswith(b"range:")]
                record = {"start": time.perf_counter(), "range": ranges[0] if ranges else None, "bytes": 0}
                with self.lock:
                    self.seen.append(record)
                    if not self.dropped and self.drop_after:
                        self.dropped, limit = True, self.drop_after
            upstream.sendall(head)
            back = threading.Thread(target=_pump, args=(client, upstream, -1, None), daemon=True)
            back.start()
            _pump(upstream, client, limit, record)
            if record is not None:
                record["end"] = time.perf_counter()
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


def _pump(src: socket.socket, dst: socket.socket, limit: int, record: dict[str, object] | None) -> None:
    """Move bytes src → dst until EOF (or ``limit`` bytes, then stop: the caller closes both)."""
    read_end, write_end = os.pipe()
    try:
        import fcntl

        fcntl.fcntl(read_end, 1031, PIPE_SIZE)  # F_SETPIPE_SZ
    except OSError:
        pass
    moved = 0
    try:
        while limit < 0 or moved < limit:
            want = PIPE_SIZE if limit < 0 else min(PIPE_SIZE, limit - moved)
            try:
                got = os.splice(src.fileno(), write_end, want)
            except OSError:
                return
            if got == 0:
                break
            left = got
            while left:
                try:
                    left -= os.splice(read_end, dst.fileno(), left)
                except BlockingIOError:
                    select.select([], [dst], [])
                except OSError:
                    return
            moved += got
            if record is not None:
                record["bytes"] = moved
        if limit < 0:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
    finally:
        os.close(read_end)
        os.close(write_end)


def _environ(home: Path, database_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVUPDATE_")}
    env.update({"DEVUPDATE_HOME": str(home), **extra})
    if database_url:
        env["DEVUPDATE_DATABASE_URL"] = database_url
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devupdate", *args], env=env, capture_output=True, text=True,
                          check=True)


def _serve(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = {**env, "DEVUPDATE_PORT": str(port), "DEVUPDATE_HOST": "127.0.0.1", "DEVUPDATE_WORKERS": "1",
           "DEVUPDATE_WSUS_ALLOW_HTTP_SOAP": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "devupdate", "serve"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return proc, port
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("devupdate serve (A) did not answer /healthz within 60 s") from None
            time.sleep(0.2)


def _sync(env: dict[str, str], upstream: str, a_pid: int) -> tuple[dict, float, Peaks]:
    """``devupdate wsus sync --json`` on B; its summary, wall time and both sides' peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "devupdate", "wsus", "sync", "--upstream", upstream, "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with Peaks({"A": a_pid, "B": proc.pid}) as peaks:
        out, err = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"B's sync failed ({proc.returncode}): {err.decode()[-2000:]}\n{out.decode()[-2000:]}")
    return json.loads(out), seconds, peaks


def _a_peak(peaks: Peaks) -> str:
    return f"{peaks.peaks['A'] / MIB:.1f} MiB"


def _write_image(path: Path, mib: int) -> None:
    block = os.urandom(MIB)
    with open(path, "wb") as handle:
        for i in range(mib):  # distinct blocks, cheaply: a counter in front of one random MiB
            handle.write(i.to_bytes(8, "big") + block[8:])


def _curl(url: str, out: str) -> float:
    """Seconds curl takes to fetch ``url`` into ``out``."""
    proc = subprocess.run(["curl", "-sS", "--fail", "-o", out, "-w", "%{time_total} %{size_download}", url],
                          capture_output=True, text=True, check=True, timeout=3600)
    return float(proc.stdout.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--revisions", type=int, default=20_000, help="A's catalog (default 20000)")
    parser.add_argument("--more", type=int, default=1_000, help="new revisions before the incremental sync")
    parser.add_argument("--file-mib", type=int, default=1024, help="size of the content file (default 1024)")
    parser.add_argument("--b-database-url", help="An empty PostgreSQL database for B instead of SQLite.")
    parser.add_argument("--keep", action="store_true", help="Keep the data directories (printed).")
    args = parser.parse_args()
    if not shutil.which("curl"):
        raise SystemExit("curl is needed for the content baseline")
    root = Path(tempfile.mkdtemp(prefix="bench-wsus-sync-"))
    home_a, home_b = root / "a", root / "b"
    home_a.mkdir()
    home_b.mkdir()
    env_a = _environ(home_a)
    env_b = _environ(home_b, args.b_database_url, DEVUPDATE_WSUS_SYNC_RETRY_BASE="0.05",
                     DEVUPDATE_WSUS_SYNC_TIMEOUT="600")
    os.environ.update(env_a)
    from devupdate import db, schema
    from devupdate.settings import Settings

    db.open_database(Settings.load(env_a).effective_database_url).connect()
    schema.upgrade()
    _cli(env_b, "db", "upgrade")
    a_proc = relay = None
    try:
        catalog = Catalog()
        stored, elapsed = _import(catalog, args.revisions)
        print(f"A: imported {stored} revisions in {elapsed:.0f} s", flush=True)
        a_proc, a_port = _serve(env_a)
        relay = Relay(a_port).start()
        upstream = f"http://127.0.0.1:{relay.port}"
        a_idle = max(_rss(pid) for pid in [a_proc.pid, *_tree(a_proc.pid)])

        done, seconds, peaks = _sync(env_b, upstream, a_proc.pid)
        revisions = done["NewRevisions"] + done["UpdatedRevisions"]
        print(f"first sync from empty: {revisions} revisions ({done['HeldRevisions']} held on the way, "
              f"{done['ReleasedRevisions']} released, {done['FailedRevisions']} failed) in {seconds:.1f} s = "
              f"{revisions / seconds:.0f} revisions/s "
              f"(the run itself {done['DurationSeconds']:.1f} s; {done['Requests']} requests)", flush=True)
        print(f"  peak RSS: A {_a_peak(peaks)} (idle {a_idle / MIB:.1f} MiB), B {peaks.peaks['B'] / MIB:.1f} MiB "
              f"(target <= 300 MiB each)", flush=True)

        more, elapsed = _import(catalog, args.more, stored)
        print(f"A: imported {more} more revisions in {elapsed:.1f} s", flush=True)
        done, seconds, peaks = _sync(env_b, upstream, a_proc.pid)
        print(f"incremental sync after {more} new revisions: {done['NewRevisions']} new, "
              f"{done['UpdatedRevisions']} updated in {seconds:.1f} s (target <= 10 s; the run itself "
              f"{done['DurationSeconds']:.1f} s); peak RSS A {_a_peak(peaks)}, B {peaks.peaks['B'] / MIB:.1f} MiB",
              flush=True)

        # content: a phone image imported on A, pulled by B with one drop, against curl
        image = root / "CPE.nbt"
        _write_image(image, args.file_mib)
        (root / "CPE.cat").write_bytes(os.urandom(2048))
        started = time.perf_counter()
        _cli(env_a, "pack", str(root / "big.cab"), str(image), str(root / "CPE.cat"), "--brand", "Polycom",
             "--model", "CX600", "--version", "4.0.1.2")
        _cli(env_a, "import", str(root / "big.cab"))
        (root / "big.cab").unlink()
        sha1 = hashlib.sha1(image.read_bytes()).hexdigest().upper()
        image.unlink()
        size = args.file_mib * MIB
        print(f"A: packed and imported a {args.file_mib} MiB image in {time.perf_counter() - started:.0f} s",
              flush=True)
        path = f"/Content/{sha1[-2:]}/{sha1}.nbt"
        out = str(home_b / "curl.part")
        curl_relay_before = _curl(upstream + path, out)  # also warms A's page cache
        relay.drop_path, relay.drop_after = path, size // 3
        done, seconds, peaks = _sync(env_b, upstream, a_proc.pid)
        files = done["Files"]
        requests = list(relay.seen)
        curl_relay = _curl(upstream + path, out)
        curl_direct = _curl(f"http://127.0.0.1:{a_port}" + path, out)
        os.unlink(out)
        if not requests or files["Resumed"] != 1 or not relay.dropped:
            raise SystemExit(f"the drop was not resumed: {files}, requests {requests}")
        wire = float(requests[-1]["end"]) - float(requests[0]["start"])  # type: ignore[arg-type]
        best_curl = min(curl_relay_before, curl_relay)
        print(f"content: {files['Fetched']} files, {files['Bytes']} bytes, {files['Resumed']} resumed; "
              f"requests for the image: {[r['range'] or 'whole' for r in requests]}", flush=True)
        print(f"  B: first GET to last byte {wire:.1f} s = {size / wire / MIB:.0f} MiB/s; the whole run "
              f"(verify SHA-1 + SHA-256, store, phone rule) {seconds:.1f} s = {size / seconds / MIB:.0f} MiB/s; "
              f"peak RSS A {_a_peak(peaks)}, B {peaks.peaks['B'] / MIB:.1f} MiB", flush=True)
        print(f"  curl through the relay (to a file): {curl_relay_before:.1f} s, {curl_relay:.1f} s = "
              f"{size / best_curl / MIB:.0f} MiB/s at best; curl from A directly {curl_direct:.1f} s", flush=True)
        print(f"  B over curl (same URL, same run): wire {best_curl / wire:.2f}x, whole run {best_curl / seconds:.2f}x "
              f"(target >= 0.8x); wire vs curl from A directly {curl_direct / wire:.2f}x", flush=True)
    finally:
        if a_proc is not None:
            os.killpg(a_proc.pid, signal.SIGTERM)
            a_proc.wait(timeout=30)
        if relay is not None:
            relay.listener.close()
        db.database.close()
        if args.keep:
            print(f"data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
