"""``devupdate serve``: gunicorn workers, /healthz, graceful SIGTERM."""

from __future__ import annotations

import json
import urllib.request


def test_serve_answers_healthz_and_stops_on_sigterm(install, live_server):
    server = live_server(workers=2)
    with urllib.request.urlopen(server.url + "/healthz", timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "ok" and body["schema"] >= 1
    assert server.output().count("Booting worker") == 2
    assert "Control socket" not in server.output()  # gunicorn's per-user socket would be shared by every instance
    assert server.stop() == 0
    assert "Shutting down: Master" in server.output()
