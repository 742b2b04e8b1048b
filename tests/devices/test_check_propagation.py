"""Rule changes made by the CLI reach every worker within 2 s, with no database query per check."""

from __future__ import annotations

import http.client
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fleet import CX600, V0, V1, V2, fleet, import_release, phonesim, server_env

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("site")]


def burst(server, phone, count: int, concurrency: int = 48) -> list[int]:
    """``count`` checks, each on a new connection (so the kernel spreads them over the workers);
    returns NumOfFiles of each answer."""
    host = server.url.split("//")[1]
    body = phone.request_xml()

    def one(_):
        conn = http.client.HTTPConnection(host, timeout=10)
        try:
            conn.request("POST", "/RequestHandler/ucdevice.upx", body=body, headers={"Connection": "close"})
            response = conn.getresponse()
            data = response.read()
            assert response.status == 200, (data, server.output()[-4000:])  # the server's traceback, if any
            return len(phonesim.parse_response(data))
        finally:
            conn.close()

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(count)))


def visible_after(server, phone, started: float, want: int) -> float:
    """Seconds from ``started`` until a whole burst answers ``want`` files."""
    while True:
        answers = burst(server, phone, 96)
        if all(n == want for n in answers):
            return time.monotonic() - started
        assert time.monotonic() - started < 5, f"still {answers.count(want)}/{len(answers)} after 5 s"
        time.sleep(0.05)


def test_changes_reach_every_worker_within_two_seconds(install, live_server, tmp_path):
    release = import_release(install, tmp_path, V1)[CX600]
    server = live_server(workers=3, **server_env())
    phone = fleet(1, installed=V0)[0]
    assert set(burst(server, phone, 150)) == {0}  # every worker has loaded its snapshot: nothing approved

    timings = {}
    for action, want in (("approve", 2), ("restore", 0)):
        install.cli("rules", action, release.rule_id, *(("--yes",) if action == "restore" else ()))
        started = time.monotonic()
        timings[action] = visible_after(server, phone, started, want)
        time.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
        assert set(burst(server, phone, 300)) == {want}, action
    assert max(timings.values()) < 2.0, timings

    # test devices too: registering one is a change every worker sees
    import_release(install, tmp_path, V2)
    install.cli("test-devices", "add", "lab", "--mac", phone.mac)
    started = time.monotonic()
    assert visible_after(server, phone, started, 2) < 2.0
