"""``tools/soak.py``: a short run end to end, and its judge of answers on fabricated ones."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fleet import REPO

sys.path.insert(0, str(REPO / "tools"))
import phonesim  # noqa: E402
import soak  # noqa: E402


@pytest.mark.timeout(300)
def test_a_half_minute_soak_passes_and_reports_every_figure():
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "soak.py"), "--minutes", "0.5", "--devices", "3000",
                           "--connections", "16", "--progress", "1000", "--json"],
                          capture_output=True, text=True, timeout=280)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"], proc.stdout + proc.stderr
    assert report["errors"] == 0 and report["status"] == {"200": report["checks"]}
    assert report["checks"] > 3000 and report["inventory_devices"] == 3000  # the fleet went round at least once
    assert [c["change"] for c in report["changes"]] == ["approve", "rollback"]
    assert report["propagated_within_2s"]
    assert [p["offered"] for p in report["phases"]] == [soak.V1, soak.V2, soak.V1]
    assert all(p["checks"] > 0 and 0 < p["phones_checked"] <= 1500 for p in report["phases"])
    assert report["audit_rows"] == report["answered_checks"] == report["checks"]
    assert report["audit_results"] == {"200 OK": report["checks"]}
    assert len(report["rss"]["workers"]) == 2 and report["rss"]["flat"] in (True, None)
    assert all(w["samples"] >= 10 for w in report["rss"]["workers"].values())
    assert report["server_exit"] == 0 and report["server_tracebacks"] == 0


def offer(version: str) -> phonesim.CheckResult:
    stem = "CX600_A_ENU_CPE"
    files = [phonesim.OfferedFile(f"{stem}.{ext}", None, version, "", "", 1, f"sha-{ext}-{version}")
             for ext in ("nbt", "cat")]
    return phonesim.CheckResult(200, files)


def test_the_judge_accepts_only_the_right_version_outside_a_change_window():
    schedule = soak.Schedule()
    answers = {phase: tuple((f"CX600_A_ENU_CPE.{ext}", version, f"sha-{ext}-{version}") for ext in ("nbt", "cat"))
               for phase, version in enumerate(soak.PHASE_VERSION)}
    fleet = soak.Fleet(10)
    storm = soak.Storm("http://unused", fleet, schedule, answers, 1, 0.0, 0.0)
    tally = storm.tallies[0]
    changing, steady = fleet.phone(0), fleet.phone(1)

    storm._judge(tally, 0, changing, 1.0, offer(soak.V1))  # before any change: V1
    storm._judge(tally, 1, steady, 1.0, phonesim.CheckResult(200, []))
    schedule.changes.append(soak.Change("approve", 10.0, 11.0))
    storm._judge(tally, 0, changing, 12.0, offer(soak.V1))  # in the window: the old version is still fine
    storm._judge(tally, 0, changing, 12.5, offer(soak.V2))
    storm._judge(tally, 0, changing, 13.5, offer(soak.V2))  # after it: only the new one
    assert (sum(tally.errors.values()), storm.covered[0][0], storm.covered[1][0]) == (0, 1, 1)
    assert (tally.last_old, tally.first_new) == ({0: 12.0}, {0: 12.5})

    storm._judge(tally, 0, changing, 13.5, offer(soak.V1))  # 2.5 s after the command returned: stale
    storm._judge(tally, 1, steady, 13.5, offer(soak.V1))  # the unchanged rule offered something
    assert tally.errors == {"wrong offer": 2}
    assert "wanted 4.0.7577.4372, offered" in tally.examples[0]
