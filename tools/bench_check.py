#!/usr/bin/env python3
"""Update checks/s of ``devupdate serve`` against a bare Flask route on the same gunicorn settings.

(a) gunicorn with exactly the worker settings of ``devupdate serve`` (``DevupdateServer``) serving
    a bare Flask route that returns a fixed 100-byte XML answer;
(b) the real ``devupdate serve`` answering ``/RequestHandler/ucdevice.upx`` with 1,000 rules,
    100,000 known devices (inventory rows), 20 test devices, request audit log and inventory on.

Both are driven by the same ``wrk`` run shape (a Lua script rotating through a few thousand
distinct POST bodies of real devices — some current, some outdated, some test devices), at the
same connection count, one after the other, alternating (a b a b …). Prints checks/s of each,
the ratio b ÷ a, and p50/p99 latency. Targets (issue 3): ratio ≥ 0.7, p99 ≤ 50 ms at 64 connections.
(c) is the same server answering the device API's JSON check (``/api/device/v1/check``) for the
same devices; its ratio to (a) is printed beside (b)'s, from the same run.

    python tools/bench_check.py [--seconds 10] [--rounds 2] [--connections 64] [--workers N] [--server-threads N]
                                [--database-url postgresql://…] [--json]

Needs wrk (apt-get install wrk). Seeding uses direct inserts and real filestore objects.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.procs import cpu_seconds, free_port, stop, wait_ready  # noqa: E402,F401 - shared with the other benchmarks

RULES, DEVICES, TEST_DEVICES, BODIES = 1000, 100_000, 20, 5000
APPROVED, PENDING, OLD = "4.0.7577.4372", "4.0.7577.4387", "4.0.7577.4366"
JSON_PATH, JSON = "/api/device/v1/check", "application/json"
BARE_BODY = (b'<?xml version="1.0" encoding="utf-8"?>\n<Response><NumOfFiles>0</NumOfFiles><Files/>'
             b"</Response>\n<!-- pad -->")[:100]
LOCALES = ("ENU", "DEU", "FRA", "JPN")

LUA = r"""
local bodies = {}
local counter = 0
local path = "/"
local media = "text/xml; charset=utf-8"

init = function(args)
  path = args[2]
  if args[3] then media = args[3] end
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  counter = math.random(#bodies)
end

request = function()
  counter = counter % #bodies + 1
  return wrk.format("POST", path, {["Content-Type"] = media}, bodies[counter])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""


# --- (a) the bare route, on DevupdateServer's own gunicorn configuration ------------------------------

def serve_bare(port: int, workers: int) -> None:
    from flask import Flask, Response

    from devupdate.server import DevupdateServer
    from devupdate.settings import Settings

    class Bare(DevupdateServer):
        def load(self):
            app = Flask("bare")

            @app.post("/bare")
            def bare():
                return Response(BARE_BODY, content_type="text/xml; charset=utf-8")

            @app.get("/healthz")
            def healthz():
                return "ok"
            return app

    same = {name: os.environ[name] for name in ("DEVUPDATE_THREADS", "DEVUPDATE_MAX_CONNECTIONS_PER_SOURCE")
            if name in os.environ}  # as (b)'s
    Bare(Settings.load(same, host="127.0.0.1", port=port, workers=workers, home=tempfile.gettempdir())).run()


# --- seeding -------------------------------------------------------------------------------------------

def families() -> list[tuple[str, str, str, str, str]]:
    out = []
    for n in range(RULES // len(LOCALES)):
        brand = ("Polycom", "Aastra", "HP", "LG-Nortel")[n % 4]
        for locale in LOCALES:
            out.append(("UCPhone", brand, f"M{n:03d}", "A", locale))
    return out


def seed(settings, rng: random.Random) -> list[dict]:
    """1,000 rules (approved; a fifth with a pending version), their images in the filestore,
    100,000 inventory rows, 20 test devices. Returns the devices the load generator plays."""
    import uuid

    from devupdate import db
    from devupdate.content.models import StoredObject
    from devupdate.devices.inventory import upsert
    from devupdate.rules.lifecycle import bump_generation, rule_key
    from devupdate.rules.models import Rule, RuleVersion, TestDevice, VersionFile
    from devupdate.runtime import open_runtime

    rt = open_runtime(settings, upgrade=True)
    fams = families()
    blobs, rules, versions, files = {}, [], [], []
    for i, fam in enumerate(fams):
        rule_id = str(uuid.UUID(int=i + 1))
        pending = PENDING if i % 5 == 0 else None
        rules.append({"id": rule_id, "key": rule_key(*fam, "CPE"), "device_type": fam[0], "brand": fam[1],
                      "model": fam[2], "revision": fam[3], "locale": fam[4], "update_type": "CPE",
                      "approved_version": APPROVED, "pending_version": pending, "restore_version": OLD})
        for version in [APPROVED] + ([pending] if pending else []):
            stem = f"{fam[2]}_{fam[3]}_{fam[4]}_CPE"
            image = f"{stem}.nbt".encode() + version.encode() + rng.randbytes(2048)
            catalog = f"{stem}.cat".encode() + version.encode() + rng.randbytes(512)
            shas = []
            for data in (image, catalog):
                stored = rt.store.put("images", io.BytesIO(data), size=len(data))
                blobs[stored.sha256] = {"sha256": stored.sha256, "sha1": stored.sha1, "size": stored.size}
                shas.append(stored.sha256)
            versions.append({"rule_id": rule_id, "version": version, "path_prefix": "/".join((*fam, version)),
                             "_files": [(f"{stem}.nbt", f"{stem}.cat", "image", shas[0]),
                                        (f"{stem}.cat", None, "catalog", shas[1])]})
    with db.database.atomic():
        StoredObject.insert_many(list(blobs.values())).execute()
        for start in range(0, len(rules), 200):
            Rule.insert_many(rules[start:start + 200]).execute()
        for version in versions:
            version_id = RuleVersion.insert(**{k: v for k, v in version.items() if k != "_files"}).execute()
            for name, catalog, role, sha in version["_files"]:
                files.append({"rule_version": version_id, "file_name": name, "signature_file_name": catalog,
                              "role": role, "blob": sha})
        for start in range(0, len(files), 200):
            VersionFile.insert_many(files[start:start + 200]).execute()
        bump_generation()

    now = time.time()
    devices = []
    for n in range(DEVICES):
        fam = fams[n % len(fams)]
        installed = APPROVED if rng.random() < 0.5 else OLD
        devices.append({"mac": f"0004F2{n:06X}", "serial": f"{fam[2]}-{n:07d}", "family": fam,
                        "installed": installed})
    import datetime as dt

    seen = dt.datetime.fromtimestamp(now - 86400, dt.UTC).replace(tzinfo=None)
    rows = [{"device_id": d["mac"], "mac": d["mac"], "serial": d["serial"].upper(), "device_type": d["family"][0],
             "brand": d["family"][1], "model": d["family"][2], "revision": d["family"][3], "locale": d["family"][4],
             "versions": json.dumps({"CPE.nbt": d["installed"]}), "user_id": f"user{i}@contoso.com",
             "address": "10.1.2.3", "network": "internal", "first_seen": seen, "last_seen": seen, "checks": 1}
            for i, d in enumerate(devices)]
    upsert(rows, batch=2000 if db.is_sqlite() else 5000)
    playing = rng.sample(devices, BODIES)
    with db.database.atomic():
        for i, device in enumerate(playing[:TEST_DEVICES]):
            TestDevice.create(name=f"lab-{i}", scope="global" if i % 2 else "site:Berlin",
                              identifier_type="MACAddress", identifier=device["mac"])
        bump_generation()
    db.database.close()
    return playing


def body(device: dict) -> str:
    d = device
    mac = "-".join(d["mac"][i:i + 2] for i in range(0, 12, 2))
    return ('<?xml version="1.0" encoding="utf-8"?><Request>'
            f"<DeviceType>{d['family'][0]}</DeviceType><MACAddress>{mac}</MACAddress>"
            f"<SerialNumber>{d['serial']}</SerialNumber><Vendor>{d['family'][1]}</Vendor>"
            f"<Model>{d['family'][2]}</Model><Revision>{d['family'][3]}</Revision><Locale>{d['family'][4]}</Locale>"
            f"<UserID>{d['serial'].lower()}@contoso.com</UserID><Modules><Module><FileName>CPE.nbt</FileName>"
            f"<Version>{d['installed']}</Version><TimeStamp>2026-11-01T08:00:00Z</TimeStamp></Module>"
            "</Modules></Request>")


# --- running -------------------------------------------------------------------------------------------


def json_body(device: dict) -> str:
    """The same device as the device API's check (one line: wrk's script reads one body per line)."""
    d, f = device, device["family"]
    mac = "-".join(d["mac"][i:i + 2] for i in range(0, 12, 2))
    return json.dumps({"device": {"type": f[0], "brand": f[1], "model": f[2], "revision": f[3], "locale": f[4],
                                  "mac": mac, "serial": d["serial"], "user": f"{d['serial'].lower()}@contoso.com"},
                       "installed": [{"name": "CPE.nbt", "version": d["installed"]}]})


def run_wrk(url: str, path: str, script: Path, bodies: Path, seconds: int, connections: int, threads: int,
            media: str = "text/xml; charset=utf-8") -> dict:
    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    proc = subprocess.run([wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
                           "-s", str(script), url, "--", str(bodies), path, media],
                          capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk failed:\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(line[len("WRKJSON "):])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def verify(port: int, bodies: list[str], playing: list[dict]) -> dict:
    """The service answers every body correctly before it is timed (200, the right number of files)."""
    from xml.etree import ElementTree as ET

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    counts = {"files": 0, "none": 0, "test": 0}
    tests = {d["mac"] for d in playing[:TEST_DEVICES]}
    for device, text in list(zip(playing, bodies, strict=True))[:300]:
        conn.request("POST", "/RequestHandler/ucdevice.upx", body=text.encode(), headers={"Content-Type": "text/xml"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"check answered {response.status}: {data[:300]!r}")
        n = int(ET.fromstring(data).findtext("NumOfFiles"))
        has_pending = families().index(device["family"]) % 5 == 0
        target = PENDING if device["mac"] in tests and has_pending else APPROVED
        want = 0 if device["installed"] == target else 2
        if n != want:
            raise SystemExit(f"device {device['mac']}: {n} files offered, expected {want}")
        counts["files" if n else "none"] += 1
        counts["test"] += device["mac"] in tests
        conn.request("POST", JSON_PATH, body=json_body(device).encode(), headers={"Content-Type": JSON})
        response = conn.getresponse()
        answer = json.loads(response.read())
        if response.status != 200 or [p["version"] for p in answer["packages"] if not p["current"]] != (
                [target] if want else []):
            raise SystemExit(f"device API check of {device['mac']} answered {response.status}: {answer}")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="Timed seconds per round and server.")
    parser.add_argument("--rounds", type=int, default=2, help="Alternating rounds (a b a b …).")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads.")
    parser.add_argument("--workers", type=int, help="gunicorn workers for both (default: devupdate's default).")
    parser.add_argument("--server-threads", type=int, help="threads per worker for both (default: devupdate's).")
    parser.add_argument("--database-url", default="", help="Default: SQLite in a scratch data directory.")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch data directory.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from devupdate.settings import Settings

    workers = args.workers or Settings.workers
    if args.serve_bare:
        serve_bare(args.serve_bare, workers)
        return 0

    home = Path(tempfile.mkdtemp(prefix="bench-check-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVUPDATE_")}
    env.update({"DEVUPDATE_HOME": str(home), "DEVUPDATE_SERVER_NAME": "bench", "DEVUPDATE_WORKERS": str(workers),
                "DEVUPDATE_THREADS": str(args.server_threads or Settings.threads),
                # wrk's connections all come from 127.0.0.1: far under the per-source limit, for both servers
                "DEVUPDATE_MAX_CONNECTIONS_PER_SOURCE": str(max(4096, 4 * args.connections)),
                "DEVUPDATE_PUBLIC_INTERNAL_URL": "http://ucupdates-r2.contoso.com",
                "DEVUPDATE_PUBLIC_EXTERNAL_URL": "https://ucupdates.contoso.com",
                "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", "")})
    if args.database_url:
        env["DEVUPDATE_DATABASE_URL"] = args.database_url
    procs: list[subprocess.Popen] = []
    try:
        started = time.monotonic()
        settings = Settings.load(env)
        playing = seed(settings, random.Random(7))
        seeded = time.monotonic() - started
        bodies = [body(d) for d in playing]
        bodies_file, script = home / "bodies.txt", home / "rotate.lua"
        bodies_file.write_text("\n".join(bodies) + "\n")
        json_file = home / "bodies.json.txt"
        json_file.write_text("\n".join(json_body(d) for d in playing) + "\n")
        script.write_text(LUA)

        bare_port, check_port = free_port(), free_port()
        bare_log, check_log = home / "bare.log", home / "serve.log"
        procs.append(subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(bare_port),
                                       "--workers", str(workers)], env=env, cwd=home, stdout=open(bare_log, "wb"),
                                      stderr=subprocess.STDOUT, start_new_session=True))
        procs.append(subprocess.Popen([sys.executable, "-m", "devupdate", "serve", "--port", str(check_port)],
                                      env=env, cwd=home, stdout=open(check_log, "wb"), stderr=subprocess.STDOUT,
                                      start_new_session=True))
        wait_ready(bare_port, procs[0], bare_log)
        wait_ready(check_port, procs[1], check_log)
        checked = verify(check_port, bodies, playing)

        xml = "text/xml; charset=utf-8"
        targets = {"a": (f"http://127.0.0.1:{bare_port}", "/bare", bodies_file, xml),
                   "b": (f"http://127.0.0.1:{check_port}", "/RequestHandler/ucdevice.upx", bodies_file, xml),
                   "c": (f"http://127.0.0.1:{check_port}", JSON_PATH, json_file, JSON)}
        for url, path, source, media in targets.values():  # warm up: snapshot built, connections, caches
            run_wrk(url, path, script, source, 3, args.connections, args.threads, media)
        runs: dict[str, list[dict]] = {"a": [], "b": [], "c": []}
        masters = {"a": procs[0].pid, "b": procs[1].pid, "c": procs[1].pid}
        for _ in range(args.rounds):
            for name, (url, path, source, media) in targets.items():
                before = cpu_seconds(masters[name])
                result = run_wrk(url, path, script, source, args.seconds, args.connections, args.threads, media)
                result["cpu_seconds"] = cpu_seconds(masters[name]) - before
                runs[name].append(result)

        def combine(results: list[dict]) -> dict:
            requests = sum(r["requests"] for r in results)
            seconds = sum(r["duration_us"] for r in results) / 1e6
            errors = sum(r[k] for r in results for k in ("connect", "read", "write", "status", "timeout"))
            cpu = sum(r["cpu_seconds"] for r in results)
            return {"checks_per_second": round(requests / seconds, 1), "requests": requests, "errors": errors,
                    "server_cpu_us_per_request": round(cpu / requests * 1e6, 1),
                    "p50_ms": round(max(r["p50_us"] for r in results) / 1000, 2),
                    "p90_ms": round(max(r["p90_us"] for r in results) / 1000, 2),
                    "p99_ms": round(max(r["p99_us"] for r in results) / 1000, 2),
                    "rounds_per_second": [round(r["rps"], 1) for r in results]}

        a, b, c = combine(runs["a"]), combine(runs["b"]), combine(runs["c"])
        stop(procs[1])  # clean shutdown: audit log synced, inventory flushed
        from devupdate.audit import requestlog

        audit_dir = home / "filestore" / "logs" / "audit" / requestlog.DIRECTORY
        audit_rows = sum(p.read_bytes().count(b"\r\n") - 1 for p in audit_dir.glob("*.log"))
        report = {
            "cpus": os.cpu_count(), "workers": workers, "threads_per_worker": settings.threads,
            "connections": args.connections,
            "wrk_threads": args.threads, "seconds_per_round": args.seconds, "rounds": args.rounds,
            "database": "postgresql" if args.database_url else "sqlite", "seed_seconds": round(seeded, 1),
            "rules": RULES, "known_devices": DEVICES, "test_devices": TEST_DEVICES, "distinct_bodies": BODIES,
            "verified_answers": checked,
            "a_bare_flask": a, "b_update_check": b, "c_device_api_check": c,
            "ratio": round(b["checks_per_second"] / a["checks_per_second"], 3),
            "json_ratio": round(c["checks_per_second"] / a["checks_per_second"], 3),
            "json_to_xml_ratio": round(c["checks_per_second"] / b["checks_per_second"], 3),
            "cpu_ratio": round(a["server_cpu_us_per_request"] / b["server_cpu_us_per_request"], 3),
            "load_average": os.getloadavg(),
            "ratio_per_round": [round(rb["rps"] / ra["rps"], 3) for ra, rb in zip(runs["a"], runs["b"], strict=True)],
            "audit_rows": audit_rows, "audit_files": len(list(audit_dir.glob("*.log"))),
            "target": {"ratio": 0.7, "p99_ms": 50.0},
        }
        report["meets_ratio"] = report["ratio"] >= 0.7
        report["meets_p99"] = b["p99_ms"] <= 50.0
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(f"{report['cpus']} CPUs, {workers} workers × {settings.threads} threads, "
                  f"{args.connections} connections, {args.rounds} × {args.seconds} s each, {report['database']}")
            for label, r in (("(a) bare Flask route", a), ("(b) ucdevice.upx", b), ("(c) /api/device/v1/check", c)):
                print(f"{label:24} {r['checks_per_second']:9.1f} checks/s   p50 {r['p50_ms']:6.2f} ms   "
                      f"p90 {r['p90_ms']:6.2f} ms   p99 {r['p99_ms']:6.2f} ms   errors {r['errors']}   "
                      f"server CPU {r['server_cpu_us_per_request']:.0f} µs/request")
            print(f"ratio b ÷ a              {report['ratio']:.3f}   (target ≥ 0.7: "
                  f"{'met' if report['meets_ratio'] else 'NOT met'}; p99 ≤ 50 ms: "
                  f"{'met' if report['meets_p99'] else 'NOT met'})")
            print(f"ratio per round          {' '.join(f'{r:.3f}' for r in report['ratio_per_round'])}")
            print(f"ratio c ÷ a              {report['json_ratio']:.3f}   (the JSON check against the bare route; "
                  f"c ÷ b {report['json_to_xml_ratio']:.3f})")
            print(f"CPU-time ratio a ÷ b     {report['cpu_ratio']:.3f}   (server CPU per request; less sensitive to "
                  f"other load on the machine: load average {report['load_average'][0]:.2f})")
            print(f"audit rows written       {audit_rows} in {report['audit_files']} file(s)")
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
