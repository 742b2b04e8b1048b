"""docs/monitoring/: the alert rules pass ``promtool check rules`` and their own ``promtool test rules``,
and every metric the rules and the Grafana dashboard name is in a real /metrics scrape of a running
server; build info, process metrics, compliance gauges, log-upload and sign-in-failure counters there."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from apikit import cab_for
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "docs" / "monitoring"
sys.path.insert(0, str(REPO / "tools"))

import phonesim  # noqa: E402

V0, V1, V2 = "4.0.7577.4363", "4.0.7577.4372", "4.0.7577.4380"
FAMILY = ("UCPhone", "Polycom", "CX600", "A", "ENU")
#: names in PromQL that are functions, keywords or Prometheus' own series, not ours
_PROMQL_WORDS = {"up", "time", "rate", "increase", "sum", "max", "min", "by", "without", "on", "unless", "and",
                 "or", "ignoring", "clamp_min", "histogram_quantile", "le", "label_values"}


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus; .ci/run installs it)")
    return tool


def test_the_alert_rules_pass_promtool_check_and_their_unit_tests():
    tool = _promtool()
    checked = subprocess.run([tool, "check", "rules", str(MONITORING / "alerts.yml")], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout
    tested = subprocess.run([tool, "test", "rules", "alerts.test.yml"], capture_output=True, text=True,
                            timeout=120, cwd=MONITORING)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _alert_exprs() -> dict[str, str]:
    text = (MONITORING / "alerts.yml").read_text()
    try:
        import yaml
    except ImportError:  # without PyYAML: the expr lines (folded ones carry on, indented, below)
        exprs, name = {}, ""
        for block in re.split(r"\n\s*- alert: ", text)[1:]:
            name, _, rest = block.partition("\n")
            expr = re.search(r"expr: (?:>-\n)?(.*?)\n\s+(?:for|labels):", rest, re.S)
            assert expr, name
            exprs[name] = expr.group(1)
        return exprs
    return {rule["alert"]: rule["expr"] for group in yaml.safe_load(text)["groups"] for rule in group["rules"]}


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r"label_values\(([^,]+),[^)]*\)", r"\1", expr)  # a dashboard variable's query
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers (label names)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping label lists
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)) - _PROMQL_WORDS
    return {name for name in names if not name.startswith("$") and not re.fullmatch(r"\d.*", name)}


def test_the_rules_and_the_dashboard_name_only_what_a_real_scrape_has(install, live_server, tmp_path):
    names = {name for expr in [*_alert_exprs().values(), *_dashboard_exprs()] for name in _metric_names(expr)}
    assert {"devupdate_database_up", "devupdate_rule_devices", "devupdate_sign_in_failures_total",
            "devupdate_worker_resident_memory_bytes", "process_cpu_seconds_total"} <= names
    assert len(_alert_exprs()) == 8 and len(_dashboard_exprs()) >= 15

    install.cli("import", str(cab_for(tmp_path / "v1", V1)))
    rule = json.loads(install.cli("rules", "list", "--json").stdout)[0]["Id"]
    install.cli("rules", "approve", rule)
    install.cli("import", str(cab_for(tmp_path / "v2", V2)))  # pending
    install.cli("users", "add", "phones", "--password-stdin", input="correct horse\n")
    install.runtime()  # the database in this process: a sync run that failed, as the history keeps it
    from devupdate.db import utcnow
    from devupdate.wsus.downstream.models import SyncRun

    SyncRun.create(upstream="https://wsus.contoso.test:8531", mode="autonomous", trigger="schedule",
                   finished_at=utcnow(), outcome="failed", error="connection refused")
    from devupdate import db

    db.database.close()
    server = live_server(workers=2, DEVUPDATE_PUBLIC_INTERNAL_URL="http://updates.test",
                         DEVUPDATE_EXTERNAL_AUTH_FAILURE_LIMIT="1")
    client = phonesim.Client(server.url, url_map={"http://updates.test": server.url})
    phones = phonesim.make_fleet(3, families=[FAMILY], installed={"CX600_A_ENU_CPE.nbt": V0}, seed=5)
    phones[0].modules["CX600_A_ENU_CPE.nbt"] = V1
    results = [client.check(phone) for phone in phones]
    assert all(r.status == 200 for r in results)
    assert client.download(results[1].files[0])
    wrong = phonesim.Client(server.url, user="phones", password="wrong")
    assert wrong.check(phones[1], path="/RequestHandlerExt/ucdevice.upx").status == 401
    assert wrong.check(phones[1], path="/RequestHandlerExt/ucdevice.upx").status == 429  # the limit: 1 failure
    upload = urllib.request.Request(server.url + "/RequestHandler/Files?type=Watson&mac=0004f2aabbcc&name=a.txt",
                                    data=b"log line\n", method="POST", headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(upload, timeout=10) as response:
        assert response.status == 201

    deadline, samples = time.monotonic() + 20, {}
    while time.monotonic() < deadline:
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
            text = response.read().decode()
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples}
        if any(name == "devupdate_rule_devices" for name, _ in samples):  # the inventory flushed
            break
        time.sleep(0.2)
    scraped = {name for name, _ in samples}
    assert names <= scraped, f"named by docs/monitoring but not in /metrics: {sorted(names - scraped)}"

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    label = "Polycom CX600 ENU"
    assert value("devupdate_rule_devices", rule_id=rule, rule=label, version=V1, status="current") == 1
    assert value("devupdate_rule_devices", rule_id=rule, rule=label, version=V0, status="outdated") == 2
    assert value("devupdate_devices_by_status", status="outdated") == 2
    assert value("devupdate_devices_by_status", status="current") == 1
    assert 0 < time.time() - value("devupdate_rule_pending_since_timestamp_seconds", rule_id=rule, rule=label,
                                   version=V2) < 300
    assert value("devupdate_sign_in_failures_total", surface="device", reason="bad-credentials") == 1
    assert value("devupdate_log_uploads_total", side="Int", status="201") == 1
    assert value("devupdate_log_upload_bytes_total", side="Int") == len(b"log line\n")
    assert 0 < time.time() - value("devupdate_wsus_sync_last_finished_timestamp_seconds",
                                   upstream="https://wsus.contoso.test:8531", outcome="failed") < 300
    build = [dict(labels) for name, labels in samples if name == "devupdate_build_info"]
    assert len(build) == 1 and build[0]["version"] and build[0]["python"].startswith("3.")
    assert value("process_resident_memory_bytes") > 10_000_000
    workers = {dict(labels)["pid"]: v for (name, labels), v in samples.items()
               if name == "devupdate_worker_resident_memory_bytes"}
    assert 1 <= len(workers) <= 2 and all(v > 10_000_000 for v in workers.values()), workers
    assert all(int(pid) != server.proc.pid for pid in workers)  # the workers, not the arbiter


def test_request_logs_carry_level_request_id_and_the_checks_outcome(install, live_server):
    server = live_server(workers=1, DEVUPDATE_JSON_LOGS="true")
    client = phonesim.Client(server.url)
    phone = phonesim.make_fleet(1, families=[FAMILY], seed=1)[0]
    assert client.check(phone).status == 200
    broken = urllib.request.Request(server.url + "/RequestHandler/ucdevice.upx", data=b"<Request><broken",
                                    method="POST", headers={"X-Request-Id": "nginx-4f2a", "Content-Type": "text/xml"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(broken, timeout=10)
    assert refused.value.code == 400 and refused.value.headers["X-Request-Id"] == "nginx-4f2a"

    def entries() -> list[dict]:
        return [json.loads(line) for line in server.output().splitlines()
                if line.startswith("{") and '"/RequestHandler/ucdevice.upx"' in line]

    deadline = time.monotonic() + 10
    while len(entries()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    current, invalid = entries()
    assert (current["level"], current["status"], current["outcome"]) == ("info", 200, "current")
    assert (invalid["level"], invalid["status"], invalid["outcome"], invalid["request_id"]) == (
        "warning", 400, "invalid", "nginx-4f2a")
    assert re.fullmatch(r"[0-9a-f]{32}", current["request_id"])
