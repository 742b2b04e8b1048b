"""``devupdate import`` and friends as real processes: exit codes, one-line errors, --json,
``kill -9`` mid-import, crash recovery, and two admins racing on one rule."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers.cabs import make_package, make_update, realistic_updates


def test_import_approve_restore_through_the_cli(install, tmp_path):
    cab = make_package(tmp_path, realistic_updates("4.0.7577.4366"))
    out = install.cli("import", str(cab), "--json")
    result = json.loads(out.stdout)
    assert result["Outcome"] == "imported" and len(result["Rules"]) == 9
    again = install.cli("import", str(cab))
    assert again.stdout.startswith("UCUpdates.cab: nothing new")
    rules = json.loads(install.cli("rules", "list", "--json").stdout)
    assert len(rules) == 9
    cx600 = next(r for r in rules if r["Model"] == "CX600")
    assert set(cx600) >= {"Id", "Identity", "DeviceType", "Brand", "Model", "Revision", "Locale", "UpdateType",
                          "ApprovedVersion", "PendingVersion", "RestoreVersion"}
    assert cx600["Identity"] == f"service:WebServer:localhost/{cx600['Id']}"
    approved = install.cli("rules", "approve", cx600["Id"][:8])
    assert approved.stdout.strip() == (f"approved rule {cx600['Id']}: approved=4.0.7577.4366 pending=- restore=-")
    refused = install.cli("rules", "approve", cx600["Identity"], check=False)
    assert refused.returncode == 1
    assert refused.stderr == (f"devupdate: error: rule {cx600['Id']} has no pending version to approve; "
                              "import a package first\n")
    shown = json.loads(install.cli("rules", "show", cx600["Id"], "--json").stdout)
    assert shown["ApprovedVersion"] == "4.0.7577.4366" and shown["Versions"][0]["Version"] == "4.0.7577.4366"
    assert install.cli("rules", "rollback", cx600["Id"], "--yes").stdout.startswith(f"restored rule {cx600['Id']}")
    trail = json.loads(install.cli("audit", "list", "--json", "--action", "rule.").stdout)
    assert [(e["Action"], e["Outcome"], e["Actor"]) for e in trail] == [
        ("rule.restore", "ok", "test:admin"), ("rule.approve", "refused", "test:admin"),
        ("rule.approve", "ok", "test:admin")] + [("rule.pending", "ok", "test:admin")] * 9


@pytest.mark.parametrize("args, message", [
    (["rules", "approve", "ffff"], "no rule matches 'ffff'; list them with 'devupdate rules list'"),
    (["rules", "show", "not a guid"], "'not a guid' is not a rule GUID, GUID prefix or Identity"),
    (["test-devices", "add", "x", "--mac", "00-11"], "'00-11' is not a MAC address"),
    (["config", "set", "MaxLogFileSize", "12"], "MaxLogFileSize='12' refused: out of range 1 KiB–1 GiB"),
    (["import", "/nonexistent.cab"], None),
])
def test_failures_are_one_line_with_nonzero_exit(install, args, message):
    proc = install.cli(*args, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 if message else proc.returncode == 2  # click usage errors exit 2
    if message:
        assert lines[0].startswith(f"devupdate: error: {message}"), lines


def test_bad_settings_are_one_line(install):
    proc = install.cli("rules", "list", check=False, DEVUPDATE_DATABASE_URL="mysql://nope/x")
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("devupdate: error: DEVUPDATE_DATABASE_URL='mysql://nope/x': use sqlite:///PATH "
                                   "or postgresql://USER@HOST/DB")


def test_refused_cab_through_the_cli(install, tmp_path):
    bad = tmp_path / "bad.cab"
    bad.write_bytes(b"MSCF" + os.urandom(200))
    proc = install.cli("import", str(bad), check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("devupdate: error: ") and proc.stderr.count("\n") == 1
    assert json.loads(install.cli("rules", "list", "--json").stdout) == []


def _objects(install):
    images = install.home / "filestore" / "images"
    return sorted(p.name for p in images.rglob("*") if p.is_file() and len(p.name) == 64)


def test_kill_9_midway_then_next_start_is_clean_and_reimport_succeeds(install, tmp_path):
    small = make_package(tmp_path, [make_update(model="CX500")])
    install.cli("import", str(small))
    before = _objects(install)
    (tmp_path / "big").mkdir()
    big = make_package(tmp_path / "big", [make_update(model=m) for m in ("CX600", "CX700", "CX3000")],
                       image_sizes=40 * 1024**2, compress=False)
    proc = subprocess.Popen([sys.executable, "-m", "devupdate", "import", str(big)], env=install.environ(),
                            cwd=install.home.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    images = install.home / "filestore" / "images"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(images.rglob(".tmp-*")):
        time.sleep(0.005)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert any(images.rglob(".tmp-*"))  # it really died mid-write
    usage = json.loads(install.cli("filestore", "usage", "--json").stdout)  # the next start cleans up
    assert not any(images.rglob(".tmp-*"))
    assert _objects(install) == before
    assert next(a for a in usage if a["Area"] == "images")["UsedBytes"] == sum(
        (images / name[:2] / name).stat().st_size for name in before)
    assert len(json.loads(install.cli("rules", "list", "--json").stdout)) == 1
    result = json.loads(install.cli("import", str(big), "--json").stdout)
    assert result["Outcome"] == "imported" and len(result["Rules"]) == 3
    assert install.cli("filestore", "verify").stdout.strip() == "all objects match their hashes"


def test_crash_between_rename_and_commit_is_recovered(rt, tmp_path):
    """A journal left by a dead importer: its objects that no row references are removed."""
    import io
    import json as _json
    import socket

    from devupdate.imports.models import ImportJournal
    from devupdate.imports.service import recover_crashed_imports

    orphan = rt.store.put("images", io.BytesIO(b"orphaned image bytes"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ImportJournal.create(host=socket.gethostname(), pid=dead.pid, objects=_json.dumps([orphan.sha256]))
    alive = rt.store.put("images", io.BytesIO(b"an import still running"))
    ImportJournal.create(host=socket.gethostname(), pid=os.getppid(), objects=_json.dumps([alive.sha256]))
    assert recover_crashed_imports(rt.store) == [orphan.sha256]
    assert not rt.store.exists("images", orphan.sha256)
    assert rt.store.exists("images", alive.sha256)
    assert ImportJournal.select().count() == 1


RACE = r"""
import sys, time
from pathlib import Path
from devupdate.errors import DevupdateError
from devupdate.imports.service import import_cab
from devupdate.rules import lifecycle
from devupdate.runtime import open_runtime
from devupdate.settings import Settings
rt = open_runtime(Settings.load())
action, rule, rounds, start, cabs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:]
while time.time() < start:
    time.sleep(0.001)
ok = refused = 0
for i in range(rounds):
    try:
        if action == "import":
            import_cab(rt.store, rt.settings, Path(cabs[i % len(cabs)]), actor="racer:import")
        else:
            getattr(lifecycle, action)(rule, f"racer:{action}")
        ok += 1
    except DevupdateError:
        refused += 1
print(ok, refused)
"""


def test_concurrent_approve_restore_and_import_on_one_rule_serialize(install, tmp_path):
    """Three processes race on one rule; the audit trail must replay to the final state exactly."""
    update = make_update(version="4.0.7577.4363")
    install.cli("import", str(make_package(tmp_path, [update])))
    install.cli("rules", "approve", update.id)
    cabs = []
    for version in ("4.0.7577.4366", "4.0.7577.4372", "4.0.7577.4387"):
        (tmp_path / version).mkdir()
        cabs.append(str(make_package(tmp_path / version, [make_update(version=version)])))
        install.cli("import", cabs[-1])  # every version known, so racing imports only move PendingVersion
    initial = json.loads(install.cli("rules", "show", update.id, "--json").stdout)
    state = {k: initial[k] for k in ("ApprovedVersion", "PendingVersion", "RestoreVersion")}
    first_event = json.loads(install.cli("audit", "list", "--json", "--limit", "1").stdout)[0]["Id"]
    start = str(time.time() + 2)
    racers = [subprocess.Popen([sys.executable, "-c", RACE, action, update.id, "30", start, *cabs],
                               env=install.environ(), cwd=install.home.parent, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
              for action in ("approve", "restore", "import")]
    outputs = [racer.communicate(timeout=240) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), outputs
    counts = {action: tuple(map(int, out.split())) for action, (out, _) in zip(("approve", "restore", "import"),
                                                                                 outputs, strict=True)}
    trail = json.loads(install.cli("audit", "list", "--json", "--limit", "1000").stdout)
    events = [e for e in reversed(trail) if e["Id"] > first_event and e["Outcome"] == "ok"
              and e["Action"] in ("rule.approve", "rule.restore", "rule.pending")]
    assert sum(1 for e in events if e["Action"] == "rule.approve") == counts["approve"][0] >= 1
    assert sum(1 for e in events if e["Action"] == "rule.restore") == counts["restore"][0] >= 1
    # Replay: every event's "before" is exactly the state the previous events left — no lost update.
    for event in events:
        assert {k: state[k] for k in event["Before"]} == event["Before"], (state, event)
        if event["Action"] == "rule.approve":
            assert event["After"] == {"ApprovedVersion": state["PendingVersion"], "PendingVersion": None,
                                      "RestoreVersion": state["ApprovedVersion"] or state["RestoreVersion"]}
        elif event["Action"] == "rule.restore":
            assert event["After"] == {"ApprovedVersion": state["RestoreVersion"], "RestoreVersion": None,
                                      "PendingVersion": state["PendingVersion"]}
        state.update(event["After"])
    final = json.loads(install.cli("rules", "show", update.id, "--json").stdout)
    assert {k: final[k] for k in state} == state


def test_pack_refusal_is_one_line_naming_the_fix(install, tmp_path):
    """The package reader's refusals are plain exceptions; the CLI still reports them as one line."""
    image = tmp_path / "CPE.nbt"
    image.write_bytes(b"image")
    proc = install.cli("pack", str(tmp_path / "out.cab"), str(image), check=False)
    assert proc.returncode == 1, proc
    assert proc.stdout == ""
    assert proc.stderr.startswith("devupdate: error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out.cab").exists()
