#!/usr/bin/env python3
"""Soak: a long boot storm against a real ``devupdate serve``, with an approval and a rollback.

A fleet of distinct phones (default 100,000, half of them on a rule that changes, half on one
that does not; every 50th reports only a serial number) checks continuously over 64 keep-alive
connections (``tools/phonesim.py``'s client and request form) for ``--minutes`` (default 10).
At one third of the run the rule's pending version is approved with ``devupdate rules approve``,
at two thirds it is rolled back with ``devupdate rules restore``. Reports, and fails unless:

- errors: 0 (any non-200, connection error, malformed answer, or an answer for the wrong files);
- every check sent 2 s or more after a change's command returned was offered the right version,
  and how many of the phones checked in each phase (all of them, when the storm is fast enough
  to go round the fleet in a phase); when the old version was last offered after each change;
- RSS of every worker, sampled over time: flat within ±10 % after warm-up (the first pass over
  the fleet, at least a sixth of the run), when there are enough samples to tell;
- audit rows = answered checks (the audit log is counted after a clean shutdown).

    python tools/soak.py [--minutes 10] [--devices 100000] [--connections 64] [--workers N]
                         [--database-url postgresql://…] [--json] [--keep]

The tool keeps no per-request state: phones are built from their index when they check, and
each answer becomes a few counters and one byte per phone and phase.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import itertools
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

import phonesim  # noqa: E402
from procs import free_port, stop, wait_ready  # noqa: E402

CHANGING = ("UCPhone", "Polycom", "CX600", "A", "ENU")  # approved V1, then V2 approved, then rolled back
STEADY = ("UCPhone", "Aastra", "6725ip", "A", "DEU")  # V1 approved and installed throughout: offered nothing
V0, V1, V2 = "4.0.7577.4363", "4.0.7577.4366", "4.0.7577.4372"
PHASE_VERSION = (V1, V2, V1)  # what a CHANGING phone is offered before, between and after the changes
WINDOW = 2.0  # seconds a change may take to reach every worker
RSS_TOLERANCE = 0.10
IMAGE_SIZE = 20_000


# --- the installation --------------------------------------------------------------------------------

def rule_id(family: tuple[str, ...]) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "soak:" + "/".join(family)))


def build_cab(path: Path, version: str, families: list[tuple[str, ...]]) -> dict[str, bytes]:
    """A vendor cab with one CPE update per family at ``version``; returns the image bytes by name."""
    from devupdate.packages import FileRef, UpdateDescription, build_package

    updates, images, catalogs = [], {}, {}
    for family in families:
        device_type, brand, model, revision, locale = family
        stem = f"{model}_{revision}_{locale}_CPE"
        images[f"{stem}.nbt"] = f"NBT1 {stem} {version}\n".encode() + random.Random(stem + version).randbytes(
            IMAGE_SIZE)
        catalogs[f"{stem}.cat"] = f"catalog of {stem} {version}".encode()
        updates.append(UpdateDescription(id=rule_id(family), device_type=device_type, brand=brand, model=model,
                                         revision=revision, locale=locale, update_type="CPE", version=version,
                                         files=(FileRef(f"{stem}.nbt", f"{stem}.cat"),)))
    build_package(path, updates, images, catalogs, mtime=dt.datetime(2026, 7, 21, 12, 0))
    return {**images, **catalogs}


class Installation:
    def __init__(self, home: Path, env: dict[str, str]):
        self.home, self.env = home, env

    def cli(self, *args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "devupdate", *args], env=self.env, cwd=self.home,
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise SystemExit(f"devupdate {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    def prepare(self) -> dict[str, dict[str, bytes]]:
        """V1 of both rules imported and approved, V2 of the changing rule imported (pending)."""
        self.cli("db", "upgrade")
        files = {V1: build_cab(self.home / "v1.cab", V1, [CHANGING, STEADY]),
                 V2: build_cab(self.home / "v2.cab", V2, [CHANGING])}
        self.cli("import", str(self.home / "v1.cab"), "--json")
        for family in (CHANGING, STEADY):
            self.cli("rules", "approve", rule_id(family))
        self.cli("import", str(self.home / "v2.cab"), "--json")
        return files


# --- the fleet ---------------------------------------------------------------------------------------

class Fleet:
    """``count`` distinct phones, each built from its index when it checks (nothing kept per phone
    but a 4-byte number)."""

    def __init__(self, count: int, seed: int = 1):
        self.count = count
        self.numbers = array("L", random.Random(seed).sample(range(1, 0xFFFFFF), count))

    @staticmethod
    def family(index: int) -> tuple[str, ...]:
        return CHANGING if index % 2 == 0 else STEADY

    def phone(self, index: int) -> phonesim.Phone:
        n = self.numbers[index]
        family = self.family(index)
        mac = "" if index % 50 == 49 else f"00-04-F2-{n >> 16 & 0xFF:02X}-{n >> 8 & 0xFF:02X}-{n & 0xFF:02X}"
        device_type, vendor, model, revision, locale = family
        return phonesim.Phone(mac=mac, serial=f"{model}-{n:08d}", device_type=device_type, vendor=vendor, model=model,
                              revision=revision, locale=locale,
                              modules={"CPE.nbt": V0 if family is CHANGING else V1}, user_id=f"user{index}@contoso.com")


# --- what each answer must be ------------------------------------------------------------------------

@dataclass
class Change:
    name: str
    start: float  # monotonic, when the command was started
    end: float | None = None  # when it returned


class Schedule:
    """The changes made so far; which phases a check sent at a given moment may see."""

    def __init__(self):
        self.changes: list[Change] = []

    def acceptable(self, sent: float) -> tuple[int, ...]:
        phase = 0
        for i, change in enumerate(list(self.changes)):
            if sent < change.start:
                break
            if change.end is None or sent < change.end + WINDOW:
                return (i, i + 1)  # while a change is made and reaches the workers: old or new
            phase = i + 1
        return (phase,)


def expected_answers(files: dict[str, dict[str, bytes]]) -> dict[int, tuple[tuple[str, str, str], ...]]:
    """Phase → the (FileName, Version, SHA256) a CHANGING phone must be offered, in order."""
    import hashlib

    stem = f"{CHANGING[2]}_{CHANGING[3]}_{CHANGING[4]}_CPE"
    out = {}
    for phase, version in enumerate(PHASE_VERSION):
        out[phase] = tuple((name, version, hashlib.sha256(files[version][name]).hexdigest())
                           for name in (f"{stem}.nbt", f"{stem}.cat"))
    return out


@dataclass
class Tally:
    """One load thread's counters (merged at the end; no per-request records)."""

    checks: int = 0
    status: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    latency_ms: Counter = field(default_factory=Counter)  # bucketed: 0.5 ms below 20 ms, then 5 ms
    phase_checks: Counter = field(default_factory=Counter)  # "phase k" / "window k" → checks
    last_old: dict[int, float] = field(default_factory=dict)  # change → latest send time offered the old version
    first_new: dict[int, float] = field(default_factory=dict)  # change → earliest send time offered the new one

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{kind}: {detail}"[:300])


def bucket(ms: float) -> float:
    return round(ms * 2) / 2 if ms < 20 else round(ms / 5) * 5


# --- the storm ---------------------------------------------------------------------------------------

class Storm:
    def __init__(self, url: str, fleet: Fleet, schedule: Schedule, answers, connections: int, zero: float,
                 deadline: float):
        self.url, self.fleet, self.schedule, self.answers = url, fleet, schedule, answers
        self.connections, self.zero, self.deadline = connections, zero, deadline
        self.counter = itertools.count()
        self.tallies = [Tally() for _ in range(connections)]
        # one byte per phone and phase: 1 = checked there, outside any change window, and answered right
        self.covered = [bytearray(fleet.count) for _ in PHASE_VERSION]
        self.first_pass_done: float | None = None
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in self.tallies]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()

    @property
    def sent(self) -> int:
        return sum(t.checks for t in self.tallies)

    def _run(self, tally: Tally) -> None:
        client = phonesim.Client(self.url, timeout=30)
        count = self.fleet.count
        while time.monotonic() < self.deadline:
            n = next(self.counter)
            index = n % count
            if n == count and self.first_pass_done is None:
                self.first_pass_done = time.monotonic()
            phone = self.fleet.phone(index)
            sent = time.monotonic()
            try:
                result = client.check(phone)
            except (OSError, http.client.HTTPException) as exc:
                tally.checks += 1
                tally.error("connection", f"{phone.device_id}: {type(exc).__name__}: {exc}")
                client = phonesim.Client(self.url, timeout=30)  # a fresh connection
                continue
            except (phonesim.ProtocolError, ValueError, SyntaxError) as exc:  # ET.ParseError is a SyntaxError
                tally.checks += 1
                tally.status["200"] += 1
                tally.error("malformed", f"{phone.device_id}: {exc}")
                continue
            tally.checks += 1
            tally.status[str(result.status)] += 1
            tally.latency_ms[bucket(result.seconds * 1000)] += 1
            if result.status != 200:
                tally.error(f"HTTP {result.status}", f"{phone.device_id}: {result.code} {result.body[:200]!r}")
                continue
            self._judge(tally, index, phone, sent, result)

    def _judge(self, tally: Tally, index: int, phone: phonesim.Phone, sent: float, result) -> None:
        offered = tuple((f.file_name, f.version, f.sha256) for f in result.files)
        if self.fleet.family(index) is STEADY:
            if offered:
                tally.error("wrong offer", f"{phone.device_id} (unchanged rule) offered {offered}")
            return
        acceptable = self.schedule.acceptable(sent)
        got = next((p for p in acceptable if self.answers[p] == offered), None)
        if got is None:
            wanted = " or ".join(PHASE_VERSION[p] for p in acceptable)
            tally.error("wrong offer", f"{phone.device_id} sent at +{sent - self.zero:.2f}s wanted {wanted}, "
                                       f"offered {[(f, v) for f, v, _ in offered]}")
            return
        if len(acceptable) == 1:
            tally.phase_checks[f"phase {got}"] += 1
            self.covered[got][index] = 1
            return
        change = acceptable[0]  # the window of change `change` (phase change → change + 1)
        tally.phase_checks[f"window {change}"] += 1
        if got == change:
            tally.last_old[change] = max(tally.last_old.get(change, sent), sent)
        else:
            tally.first_new[change] = min(tally.first_new.get(change, sent), sent)


# --- RSS ---------------------------------------------------------------------------------------------

def worker_pids(master: int) -> list[int]:
    pids = []
    try:
        for task in Path(f"/proc/{master}/task").iterdir():
            pids += [int(p) for p in (task / "children").read_text().split()]
    except OSError:
        pass
    return sorted(pids)


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    def __init__(self, master: int, zero: float, interval: float):
        super().__init__(daemon=True)
        self.master, self.zero, self.interval = master, zero, interval
        self.samples: dict[int, list[tuple[float, int]]] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            now = time.monotonic() - self.zero
            for pid in worker_pids(self.master):
                kb = rss_kb(pid)
                if kb is not None:
                    self.samples.setdefault(pid, []).append((round(now, 1), kb))
            self.stopped.wait(self.interval)


def judge_rss(samples: dict[int, list[tuple[float, int]]], warm_up: float) -> dict:
    """Per worker: RSS at the end of warm-up, the extremes after it, and whether they stay within
    ±10 % of that baseline (judged with at least 5 samples after warm-up)."""
    workers = {}
    for pid, series in samples.items():
        after = [kb for t, kb in series if t >= warm_up]
        entry = {"first_mb": round(series[0][1] / 1024, 1), "last_mb": round(series[-1][1] / 1024, 1),
                 "samples": len(series)}
        if after:
            base = after[0]
            deviation = max(abs(kb - base) for kb in after) / base
            entry.update(baseline_mb=round(base / 1024, 1), min_mb=round(min(after) / 1024, 1),
                         max_mb=round(max(after) / 1024, 1), max_deviation=round(deviation, 3),
                         flat=deviation <= RSS_TOLERANCE if len(after) >= 5 else None)
        workers[str(pid)] = entry
    verdicts = [w.get("flat") for w in workers.values()]
    judged = [v for v in verdicts if v is not None]
    return {"warm_up_s": round(warm_up, 1), "tolerance": RSS_TOLERANCE, "workers": workers,
            "flat": (all(judged) if judged and len(judged) == len(verdicts) else None)}


def timeline(samples: dict[int, list[tuple[float, int]]], points: int = 12) -> dict[str, list[tuple[float, float]]]:
    """A dozen (seconds, MB) points per worker, evenly spread, for the report."""
    out = {}
    for pid, series in samples.items():
        step = max(1, len(series) // points)
        picked = series[::step]
        if picked[-1] != series[-1]:
            picked.append(series[-1])
        out[str(pid)] = [(t, round(kb / 1024, 1)) for t, kb in picked]
    return out


# --- the run -----------------------------------------------------------------------------------------


def count_audit_rows(home: Path) -> tuple[int, Counter]:
    """Rows of every request audit log file, and how many of each Result."""
    from devupdate.audit import requestlog

    rows, results = 0, Counter()
    directory = home / "filestore" / "logs" / "audit" / requestlog.DIRECTORY
    for path in sorted(directory.glob("*.log")):
        with open(path, "rb") as handle:
            next(handle)  # the header
            for line in handle:
                rows += 1
                results[line.rstrip(b"\r\n").rsplit(b",", 1)[-1].decode()] += 1
    return rows, results


def count_devices(env: dict[str, str]) -> int:
    from devupdate import db
    from devupdate.devices.inventory import Device
    from devupdate.settings import Settings

    db.open_database(Settings.load(env).effective_database_url).connect(reuse_if_open=True)
    try:
        return Device.select().count()
    finally:
        db.database.close()


def seconds_between(start: float, end: float | None) -> float | None:
    return None if end is None else round(end - start, 3)


def percentile(latency: Counter, p: float) -> float:
    total = sum(latency.values())
    seen = 0
    for value in sorted(latency):
        seen += latency[value]
        if seen >= p * total:
            return value
    return 0.0


def run(args: argparse.Namespace) -> dict:
    from devupdate.settings import Settings

    duration = args.minutes * 60
    home = Path(tempfile.mkdtemp(prefix="soak-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVUPDATE_")}
    port = free_port()
    env.update({"DEVUPDATE_HOME": str(home), "DEVUPDATE_SERVER_NAME": "soak", "DEVUPDATE_HOST": "127.0.0.1",
                "DEVUPDATE_PORT": str(port), "DEVUPDATE_WORKERS": str(args.workers or Settings.workers),
                "DEVUPDATE_ACTOR": "soak",
                # every phone of the soak comes from one address: the per-source limit is not what is tested
                "DEVUPDATE_MAX_CONNECTIONS_PER_SOURCE": str(max(1024, args.connections * 4)),
                "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", "")})
    if args.database_url:
        env["DEVUPDATE_DATABASE_URL"] = args.database_url
    proc = None
    try:
        install = Installation(home, env)
        files = install.prepare()
        log = home / "serve.log"
        proc = subprocess.Popen([sys.executable, "-m", "devupdate", "serve"], env=env, cwd=home,
                                stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_ready(port, proc, log)

        fleet = Fleet(args.devices, args.seed)
        schedule = Schedule()
        zero = time.monotonic()
        storm = Storm(f"http://127.0.0.1:{port}", fleet, schedule, expected_answers(files), args.connections,
                      zero, zero + duration)
        sampler = RssSampler(proc.pid, zero, interval=max(1.0, min(5.0, duration / 60)))
        sampler.start()
        storm.start()
        plan = [("approve", ("rules", "approve", rule_id(CHANGING))),
                ("rollback", ("rules", "restore", rule_id(CHANGING)))]
        next_report = zero + args.progress
        for k, (name, command) in enumerate(plan, 1):
            at = zero + duration * k / 3
            while time.monotonic() < at:
                time.sleep(min(0.2, max(0.0, at - time.monotonic())))
                if time.monotonic() >= next_report:
                    progress(storm, zero, sampler)
                    next_report += args.progress
            change = Change(name, time.monotonic())
            schedule.changes.append(change)
            install.cli(*command)
            change.end = time.monotonic()
        while time.monotonic() < zero + duration:
            time.sleep(0.2)
            if time.monotonic() >= next_report:
                progress(storm, zero, sampler)
                next_report += args.progress
        storm.join()
        elapsed = time.monotonic() - zero
        sampler.stopped.set()
        sampler.join()
        server_rc = stop(proc)
        audit_rows, audit_results = count_audit_rows(home)
        devices_known = count_devices(env)
        output = log.read_text(errors="replace")

        total = Tally()
        for tally in storm.tallies:
            total.checks += tally.checks
            total.status.update(tally.status)
            total.errors.update(tally.errors)
            total.examples += tally.examples
            total.latency_ms.update(tally.latency_ms)
            total.phase_checks.update(tally.phase_checks)
            for k, t in tally.last_old.items():
                total.last_old[k] = max(total.last_old.get(k, t), t)
            for k, t in tally.first_new.items():
                total.first_new[k] = min(total.first_new.get(k, t), t)
        changing = sum(1 for i in range(fleet.count) if fleet.family(i) is CHANGING)
        changes = []
        for k, change in enumerate(schedule.changes):
            last_old, first_new = total.last_old.get(k), total.first_new.get(k)
            assert change.end is not None
            changes.append({
                "change": change.name, "at_s": round(change.start - zero, 2),
                "command_s": round(change.end - change.start, 2),
                "old_version_last_offered_s_after_command": seconds_between(change.end, last_old),
                "new_version_first_offered_s_after_start": seconds_between(change.start, first_new),
                "checks_in_window": total.phase_checks.get(f"window {k}", 0),
            })
        phases = []
        for phase, version in enumerate(PHASE_VERSION):
            covered = sum(storm.covered[phase])
            phases.append({"phase": phase, "offered": version, "checks": total.phase_checks.get(f"phase {phase}", 0),
                           "phones_checked": covered, "of_phones": changing, "every_phone": covered == changing})
        warm_up = max(duration / 6, (storm.first_pass_done - zero) if storm.first_pass_done else duration)
        rss = judge_rss(sampler.samples, warm_up)
        answered = sum(total.status.values())
        report = {
            "minutes": args.minutes, "seconds": round(elapsed, 1), "devices": fleet.count,
            "connections": args.connections, "workers": int(env["DEVUPDATE_WORKERS"]),
            "threads_per_worker": Settings.load(env).threads, "cpus": os.cpu_count(),
            "database": "postgresql" if args.database_url else "sqlite",
            "checks": total.checks, "checks_per_second": round(total.checks / elapsed, 1),
            "fleet_passes": round(total.checks / fleet.count, 2),
            "first_pass_s": round(storm.first_pass_done - zero, 1) if storm.first_pass_done else None,
            "p50_ms": percentile(total.latency_ms, 0.5), "p99_ms": percentile(total.latency_ms, 0.99),
            "max_ms": max(total.latency_ms, default=0.0),
            "status": dict(total.status), "errors": sum(total.errors.values()), "error_kinds": dict(total.errors),
            "error_examples": total.examples[:10],
            "changes": changes, "phases": phases,
            "rss": rss, "rss_timeline_mb": timeline(sampler.samples),
            "audit_rows": audit_rows, "audit_results": dict(audit_results), "answered_checks": answered,
            "audit_rows_match": audit_rows == answered and audit_results.get("200 OK", 0) == total.status.get("200", 0),
            "inventory_devices": devices_known,
            "server_exit": server_rc, "server_tracebacks": output.count("Traceback"),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "soak_tool_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        report["propagated_within_2s"] = all(
            c["old_version_last_offered_s_after_command"] is None or c["old_version_last_offered_s_after_command"]
            < WINDOW for c in changes) and not total.errors.get("wrong offer")
        report["ok"] = bool(report["errors"] == 0 and report["propagated_within_2s"] and report["audit_rows_match"]
                            and rss["flat"] is not False and server_rc == 0 and report["server_tracebacks"] == 0)
        return report
    finally:
        if proc is not None:
            stop(proc)
        if args.keep:
            print(f"data kept in {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)


def progress(storm: Storm, zero: float, sampler: RssSampler) -> None:
    now = time.monotonic() - zero
    errors = sum(sum(t.errors.values()) for t in storm.tallies)
    latest = {pid: series[-1][1] // 1024 for pid, series in sampler.samples.items() if series}
    print(f"soak +{now:5.0f}s  {storm.sent:8d} checks  {storm.sent / max(now, 1e-9):7.1f}/s  errors {errors}  "
          f"worker RSS MB {sorted(latest.values())}", file=sys.stderr, flush=True)


def print_report(report: dict) -> None:
    r = report
    print(f"soak: {r['minutes']} min ({r['seconds']} s), {r['devices']} phones, {r['connections']} connections, "
          f"{r['workers']} workers x {r['threads_per_worker']} threads, {r['cpus']} CPUs, {r['database']}")
    print(f"checks             {r['checks']} ({r['checks_per_second']}/s, {r['fleet_passes']} passes over the fleet, "
          f"first pass {r['first_pass_s']} s); p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms")
    print(f"errors             {r['errors']} {r['error_kinds'] or ''}")
    for example in r["error_examples"]:
        print(f"  {example}")
    for c in r["changes"]:
        print(f"{c['change']:18} at +{c['at_s']} s (command {c['command_s']} s); old version last offered "
              f"{c['old_version_last_offered_s_after_command']} s after it returned, new first offered "
              f"{c['new_version_first_offered_s_after_start']} s after it started; {c['checks_in_window']} checks "
              f"in its window")
    for p in r["phases"]:
        print(f"phase {p['phase']} ({p['offered']})  {p['checks']} judged checks, {p['phones_checked']} of "
              f"{p['of_phones']} changing-rule phones checked and offered {p['offered']}"
              f"{' (every phone)' if p['every_phone'] else ''}")
    print(f"propagated in 2 s  {'yes' if r['propagated_within_2s'] else 'NO'}")
    rss = r["rss"]
    print(f"worker RSS         flat within ±{rss['tolerance']:.0%} after {rss['warm_up_s']} s: "
          f"{ {None: 'not judged (too few samples)', True: 'yes', False: 'NO'}[rss['flat']] }")
    for pid, w in rss["workers"].items():
        print(f"  worker {pid}: {w['first_mb']} MB at start, {w.get('baseline_mb')} MB after warm-up, "
              f"{w.get('min_mb')}–{w.get('max_mb')} MB after (max deviation {w.get('max_deviation')}), "
              f"{w['last_mb']} MB at the end; {w['samples']} samples")
        print(f"    {' '.join(f'{t:.0f}s:{mb}' for t, mb in r['rss_timeline_mb'][pid])}")
    print(f"audit rows         {r['audit_rows']} for {r['answered_checks']} answered checks "
          f"({'equal' if r['audit_rows_match'] else 'NOT equal'}); results {r['audit_results']}")
    print(f"inventory          {r['inventory_devices']} devices known")
    print(f"server             exit {r['server_exit']}, {r['server_tracebacks']} tracebacks in its log; "
          f"load average {r['load_average']}; this tool's peak RSS {r['soak_tool_peak_rss_mb']} MB")
    print(f"result             {'PASS' if r['ok'] else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: devupdate's default).")
    parser.add_argument("--database-url", default="", help="Default: SQLite in a scratch data directory.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--progress", type=float, default=30.0, help="Seconds between progress lines (stderr).")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch data directory.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.devices < 2 or args.connections < 1:
        parser.error("--minutes must be positive, --devices at least 2, --connections at least 1")
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
