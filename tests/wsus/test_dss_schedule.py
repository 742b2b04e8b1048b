"""The schedule and the one-run-at-a-time rule of D1: the next run comes the interval ±10 % after the
last one started (on any node); a second request while a run goes on joins it instead of starting
another; a run that died is shown interrupted."""

from __future__ import annotations

import datetime as dt
import random
import threading

from catalogkit import docs_dir
from fakeupstream import FakeUpstream

from devupdate.db import utcnow
from devupdate.wsus.downstream import service
from devupdate.wsus.downstream.models import SyncRun


def test_next_run_is_the_interval_with_jitter_after_the_last_start(rt):
    settings = rt.settings
    assert service.next_delay(settings) == 0.0  # never synced: now
    SyncRun.create(upstream="https://up.example", mode="autonomous", trigger="schedule",
                   started_at=utcnow() - dt.timedelta(hours=1), outcome="ok")
    delays = [service.next_delay(settings, rng=random.Random(seed)) for seed in range(50)]
    assert all(7200 * 0.9 - 3600 - 5 <= d <= 7200 * 1.1 - 3600 + 5 for d in delays)
    assert max(delays) - min(delays) > 600  # jittered, not fixed


def test_a_second_request_joins_the_running_sync(rt):
    docs_dir()
    fake = FakeUpstream(updates=[], busy={"GetConfigData": 1}).start()
    waiting, release = threading.Event(), threading.Event()

    def held_back(_seconds: float) -> None:  # the first run backs off once (ServerBusy) until released
        waiting.set()
        release.wait(30)

    first: dict = {}
    runner = threading.Thread(target=lambda: first.update(service.sync(rt.settings, rt.store, upstream=fake.url,
                                                                       sleep=held_back)))
    runner.start()
    try:
        assert waiting.wait(30)
        threading.Timer(0.5, release.set).start()
        joined = service.sync(rt.settings, rt.store, upstream=fake.url, attach_timeout=30)
        runner.join(30)
    finally:
        release.set()
        fake.stop()
    assert joined["Attached"] is True and joined["RunId"] == first["RunId"] and joined["Outcome"] == "ok"
    assert SyncRun.select().count() == 1
    assert fake.operations().count("GetAuthConfig") == 1
