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


def test_a_port_in_use_is_one_clear_line(install):
    """Something already listens on the port: one ``devupdate: error:`` line naming the fix and exit 1
    at once — not gunicorn's five retries a second apart."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = install.cli("serve", "--port", str(port), check=False, DEVUPDATE_HOST="127.0.0.1")
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines == [f"devupdate: error: port {port} on 127.0.0.1 is already in use (another 'devupdate serve'?): "
                     "stop it, or choose another port with DEVUPDATE_PORT or --port"], lines
    assert "Retrying" not in result.stderr
