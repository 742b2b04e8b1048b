"""The update check never escapes to the HTTP server's own 500 page: whatever fails, the device
gets the protocol's XML error and the log says why. (On PostgreSQL CI once saw gunicorn's HTML
'Internal Server Error' on the first burst after start: two request threads created the metric
families at once and the second registration raised outside the check's handlers.)"""

from __future__ import annotations

import logging
import threading
import time

import prometheus_client
from werkzeug.test import EnvironBuilder

from devupdate import metrics


def test_metric_families_created_once_when_first_checks_race(monkeypatch):
    registry = prometheus_client.CollectorRegistry()

    def slow(kind):
        def make(*args, **kwargs):
            time.sleep(0.05)  # widen the window a first burst hits by chance
            return kind(*args, registry=registry, **kwargs)
        return make

    monkeypatch.setattr(prometheus_client, "Counter", slow(prometheus_client.Counter))
    monkeypatch.setattr(prometheus_client, "Histogram", slow(prometheus_client.Histogram))
    monkeypatch.setattr(prometheus_client, "Gauge", slow(prometheus_client.Gauge))
    monkeypatch.setattr(metrics, "_families", None)
    monkeypatch.setattr(metrics, "_children", {})
    start, errors = threading.Barrier(8), []

    def first_check():
        start.wait()
        try:
            metrics.check_answered("Int", "current", 0, 0.001)
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            errors.append(exc)

    threads = [threading.Thread(target=first_check) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert registry.get_sample_value("devupdate_update_checks_total", {"side": "Int", "outcome": "current"}) == 8


def test_a_failure_outside_the_handlers_is_the_xml_error(rt, monkeypatch, caplog):
    from devupdate.app import create_app
    from devupdate.devices.check import EXTENSION, answer

    app = create_app(rt, background=False)
    service = app.extensions[EXTENSION]

    def broken(*args, **kwargs):
        raise RuntimeError("metrics backend gone")

    monkeypatch.setattr(metrics, "check_answered", broken)
    environ = EnvironBuilder(method="GET", path="/RequestHandler/ucdevice.upx",
                             query_string="DeviceType=UCPhone&MACAddress=00-04-F2-00-00-01&Vendor=Polycom"
                                          "&Model=CX600&Revision=A&Locale=ENU",
                             environ_base={"REMOTE_ADDR": "10.0.0.7"}).get_environ()
    with caplog.at_level(logging.ERROR, "devupdate.check"):
        result = answer(service, "Int", environ)
    assert result.status == 500
    assert result.body.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<Error>')
    assert b"<Code>InternalError</Code>" in result.body
    assert "metrics backend gone" in caplog.text
