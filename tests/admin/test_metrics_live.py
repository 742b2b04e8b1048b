"""/metrics of a real ``devupdate serve`` with two gunicorn workers: update checks, offered files,
downloads and the check latency counted in whichever worker answered, reported whole by every
worker (prometheus multiprocess mode); JSON request logs on demand."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

from apikit import cab_for
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import phonesim  # noqa: E402

V0, V1 = "4.0.7577.4363", "4.0.7577.4372"
FAMILY = ("UCPhone", "Polycom", "CX600", "A", "ENU")


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def json_lines(output: str) -> list[dict]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{") and '"method"' in line:
            lines.append(json.loads(line))
    return lines


def test_every_worker_reports_the_whole_server(install, live_server, tmp_path):
    install.cli("import", str(cab_for(tmp_path, V1)))
    install.cli("rules", "approve", json.loads(install.cli("rules", "list", "--json").stdout)[0]["Id"])
    server = live_server(workers=2, DEVUPDATE_JSON_LOGS="true", DEVUPDATE_PUBLIC_INTERNAL_URL="http://updates.test")
    client = phonesim.Client(server.url, url_map={"http://updates.test": server.url})

    phones = phonesim.make_fleet(12, families=[FAMILY], installed={"CX600_A_ENU_CPE.nbt": V0}, seed=3)
    for phone in phones[:4]:
        phone.modules["CX600_A_ENU_CPE.nbt"] = V1  # current: nothing to offer
    results = [client.check(phone) for phone in phones]
    assert all(r.status == 200 for r in results)
    offered = [f for r in results for f in r.files]
    assert len(offered) == 8 * 2  # image and catalog for each outdated phone
    downloaded = sum(len(client.download(f)) for f in offered[:2])
    refused = client.request("POST", server.url + "/RequestHandler/ucdevice.upx", b"<Request><broken")
    assert refused[0] == 400

    deadline = time.monotonic() + 15
    pids, last = set(), None
    while time.monotonic() < deadline:
        samples = scrape(server.url)
        totals = (value(samples, "devupdate_update_checks_total", side="Int", outcome="offered"),
                  value(samples, "devupdate_update_checks_total", side="Int", outcome="current"),
                  value(samples, "devupdate_update_checks_total", side="Int", outcome="invalid"),
                  value(samples, "devupdate_offered_files_total", side="Int"),
                  value(samples, "devupdate_update_check_seconds_count", side="Int"),
                  value(samples, "devupdate_download_bytes_total", side="Int"),
                  value(samples, "devupdate_downloads_total", side="Int", status="200"))
        assert totals == (8, 4, 1, 16, 13, downloaded, 2), totals  # the same whole-server view from any worker
        last = samples
        pids = {e["pid"] for e in json_lines(server.output()) if e["path"] == "/metrics"}
        if len(pids) >= 2 and value(samples, "devupdate_devices_known") == 12:
            break
        time.sleep(0.2)
    assert len(pids) >= 2, "every scrape was answered by the same worker"
    assert value(last, "devupdate_devices_known") == 12  # the inventory flushed (batched, every few s)
    assert value(last, "devupdate_devices_seen", window="1h") == 12
    assert value(last, "devupdate_update_check_seconds_bucket", side="Int", le="+Inf") == 13
    assert value(last, "devupdate_imports_total", outcome="imported") == 1
    assert value(last, "devupdate_filestore_used_bytes", area="images") > 20_000

    entries = json_lines(server.output())
    checks = [e for e in entries if e["path"] == "/RequestHandler/ucdevice.upx"]
    assert len(checks) == 13 and {e["status"] for e in checks} == {200, 400}
    assert all(e["client"] == "127.0.0.1" and e["duration_ms"] >= 0 and e["method"] == "POST" for e in checks)
    assert len({e["pid"] for e in entries}) == 2
