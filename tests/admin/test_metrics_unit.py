"""/metrics in process: the scrape-time families, who may scrape, the JSON request log, and update
checks counted on the fast path (the cost of a counting call is measured by tools/bench_metrics.py)."""

from __future__ import annotations

import io
import json
import logging
import struct

import pytest
from apikit import API, cab_for, make_api
from prometheus_client import multiprocess
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from devupdate import metrics


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_scrape_reports_imports_usage_and_pending_rules(install, tmp_path):
    api_app = make_api(install, quota_images=10_000_000)
    api_app.upload(cab_for(tmp_path / "a", "4.0.7577.4366"))
    api_app.upload(cab_for(tmp_path / "a", "4.0.7577.4366"))
    junk = tmp_path / "junk.cab"
    junk.write_bytes(b"not a cab")
    api_app.upload(junk)
    install.cli("import", str(cab_for(tmp_path / "b", "4.0.7577.4366", models=(("HP", "4110"),))))

    response = api_app.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    values = samples(response.data.decode())
    assert values[("devupdate_imports_total", (("outcome", "imported"),))] == 2  # API and CLI alike
    assert values[("devupdate_imports_total", (("outcome", "nothing-new"),))] == 1
    assert values[("devupdate_imports_total", (("outcome", "refused"),))] == 1
    assert values[("devupdate_rules_pending", ())] == 2
    assert values[("devupdate_database_up", ())] == 1
    usage = {row["Area"]: row for row in api_app.get("/filestore/usage").json}
    for area in ("images", "logs/client", "logs/audit", "incoming"):
        assert values[("devupdate_filestore_used_bytes", (("area", area),))] == usage[area]["UsedBytes"]
        assert values[("devupdate_filestore_quota_bytes", (("area", area),))] == usage[area]["QuotaBytes"]
    assert values[("devupdate_filestore_quota_bytes", (("area", "images"),))] == 10_000_000
    assert values[("devupdate_filestore_used_bytes", (("area", "images"),))] > 20_000
    assert values[("devupdate_devices_known", ())] == 0
    assert ("devupdate_devices_seen", (("window", "24h"),)) in values
    for family in ("devupdate_update_checks", "devupdate_update_check_seconds", "devupdate_download_bytes",
                   "devupdate_offered_files"):
        assert f"# TYPE {family}" in response.data.decode()


def test_metrics_answer_internal_networks_or_a_token(install):
    api_app = make_api(install)
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    assert api_app.client.get("/metrics", environ_overrides=outside).status_code == 401
    bad = api_app.client.get("/metrics", environ_overrides=outside, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    good = api_app.client.get("/metrics", environ_overrides=outside, headers=api_app.auth("operator"))
    assert good.status_code == 200 and b"devupdate_filestore_used_bytes" in good.data


def test_json_request_log_one_line_per_request(install):
    from devupdate.admin import metrics_view

    stream = io.StringIO()
    logger = logging.getLogger("devupdate.requests")
    saved = logger.handlers[:]
    logger.handlers.clear()
    try:
        metrics_view.JsonRequestLog(stream)  # what install() sets up, writing into the test's stream
        api_app = make_api(install, json_logs=True)
        api_app.get("/rules?x=1")
        api_app.client.get(f"{API}/rules")
        api_app.client.get("/healthz", headers={"X-Forwarded-For": "198.51.100.4"})
    finally:
        logger.handlers[:] = saved
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["method"], e["path"], e["status"], e["user"]) for e in lines] == [
        ("GET", f"{API}/rules", 400, "token:ci-reader"), ("GET", f"{API}/rules", 401, None),
        ("GET", "/healthz", 200, None)]
    first = lines[0]
    assert set(first) == {"time", "level", "request_id", "method", "path", "status", "outcome", "duration_ms",
                          "client", "user", "bytes", "pid"}
    assert [e["level"] for e in lines] == ["warning", "warning", "info"] and first["outcome"] is None
    assert len({e["request_id"] for e in lines}) == 3
    assert first["time"].endswith("Z") and first["duration_ms"] >= 0 and first["client"] == "127.0.0.1"
    assert lines[2]["client"] == "127.0.0.1"  # X-Forwarded-For counts only from DEVUPDATE_TRUSTED_PROXIES


def test_no_request_log_unless_asked(install):
    api_app = make_api(install)
    assert not any(getattr(f, "__name__", "") == "_logged" for f in api_app.app.after_request_funcs.get(None, []))


def test_update_checks_are_counted_on_the_fast_path_too(install):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    import phonesim

    api_app = make_api(install)  # DEVUPDATE_JSON_LOGS off: checks bypass Flask (CheckFastPath)

    def count() -> float:
        values = samples(api_app.client.get("/metrics").data.decode())
        return sum(v for (name, labels), v in values.items()
                   if name == "devupdate_update_checks_total" and ("side", "Int") in labels)

    before = count()
    phone = phonesim.make_fleet(1)[0]
    for body in (phone.request_xml(), b"<broken"):
        api_app.client.post("/RequestHandler/ucdevice.upx", data=body, content_type="text/xml")
    assert count() == before + 2


def test_scrape_skips_a_worker_file_being_created(tmp_path):
    """A worker creates its counter file empty and sizes it a moment later; a scrape in between
    reported 500. It now reports every settled file and skips the one being created."""
    settled = MmapedDict(str(tmp_path / "counter_101.db"))
    key = mmap_key("devupdate_password_hashes_total", "devupdate_password_hashes_total", [], [],
                   "scrypt runs")
    settled.write_value(key, 6.0, 0.0)
    settled.close()
    (tmp_path / "counter_102.db").touch()  # the other worker, between open() and truncate()

    plain = multiprocess.MultiProcessCollector(None, path=str(tmp_path))
    with pytest.raises(struct.error):
        list(plain.collect())
    text = metrics._workers_families(str(tmp_path)).decode()
    assert "devupdate_password_hashes_total 6.0" in text.splitlines()
