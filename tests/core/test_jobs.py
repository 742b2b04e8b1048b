"""devupdate.jobs: backoff that logs once per outage, periodic jobs that survive failures, and the
installation-wide lock (flock here; the advisory lock is driven by the multi-node test)."""

from __future__ import annotations

import logging
import threading

from helpers.tools import wait_for

from devupdate.jobs import NodeLock, PeriodicJob, Retry


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_retry_backs_off_and_logs_once_per_outage(caplog):
    clock = Clock()
    retry = Retry("snapshot refresh", first=0.1, maximum=1.0, logger=logging.getLogger("t.retry"), clock=clock)
    with caplog.at_level(logging.WARNING, "t.retry"):
        delays = []
        for _ in range(40):  # 40 failed attempts, about a minute of outage
            delays.append(retry.failed(ConnectionError("connection refused\nmore detail")))
            clock.now += delays[-1]
        assert delays[:6] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0] and max(delays) == 1.0
        assert retry.outage_seconds > 30
        retry.succeeded()
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == ("snapshot refresh failed: ConnectionError: connection refused; retrying every 1 s at most "
                           "until it works")
    assert messages[1].startswith("snapshot refresh works again after ") and "(40 failed attempt(s))" in messages[1]
    assert len(messages) == 2
    retry.succeeded()  # nothing to report when nothing failed
    assert len(caplog.records) == 2


def test_retry_reminds_every_five_minutes_of_a_long_outage(caplog):
    clock = Clock()
    retry = Retry("inventory", first=15, maximum=15, logger=logging.getLogger("t.remind"), clock=clock)
    with caplog.at_level(logging.WARNING, "t.remind"):
        for _ in range(61):  # 15 minutes
            clock.now += retry.failed(OSError("down"))
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "inventory failed: OSError: down; retrying every 15 s at most until it works",
        "inventory still failing after 300 s", "inventory still failing after 600 s",
        "inventory still failing after 900 s"]


def test_periodic_job_keeps_running_through_failures():
    calls, ok = [], threading.Event()

    def step():
        calls.append(1)
        if len(calls) <= 3:
            raise RuntimeError("database away")
        ok.set()

    job = PeriodicJob("test-job", step, 0.01, retry=Retry("test job", first=0.01, maximum=0.02))
    job.start()
    try:
        assert ok.wait(10) and job.running
        assert wait_for(lambda: job.last_success is not None, 5)
        assert job.retry.failures == 0
    finally:
        job.stop(wait=5)
    assert not job.running


def test_periodic_job_refuses_a_step_that_returns_a_count():
    job = PeriodicJob("count-job", lambda: True, 2.0, retry=Retry("count job", first=0.5, maximum=0.5))
    assert job.run_once() == 0.5  # a bool is not a delay: counted as a failure, not a 1 s (or 0 s) loop
    assert job.retry.failures == 1


def test_node_lock_has_one_holder(tmp_path, monkeypatch):
    monkeypatch.setattr(NodeLock, "_postgres", staticmethod(lambda: False))  # the SQLite kind, whatever is bound
    first, second = NodeLock("log-cleanup", tmp_path / "x.lock"), NodeLock("log-cleanup", tmp_path / "x.lock")
    assert first.acquire() and first.acquire()  # held, and still held
    assert not second.acquire()
    first.release()
    assert second.acquire() and not first.acquire()
    second.release()


def test_every_run_is_counted_in_the_metrics():
    import prometheus_client

    from devupdate import metrics

    metrics.families()
    outcomes = iter([None, RuntimeError("database away"), None])

    def step():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome

    def sample(name, **labels):
        return prometheus_client.REGISTRY.get_sample_value(name, {"job": "counted-job", **labels}) or 0

    job = PeriodicJob("counted-job", step, 60)
    for _ in range(3):
        job.run_once()
    assert sample("devupdate_job_runs_total", outcome="ok") == 2
    assert sample("devupdate_job_runs_total", outcome="failed") == 1
    assert sample("devupdate_job_seconds_count") == 3
    assert sample("devupdate_job_last_success_timestamp_seconds") > 1.7e9


def test_wake_runs_the_step_before_its_delay_and_stop_ends_a_long_wait():
    calls = []
    job = PeriodicJob("woken", lambda: calls.append(1), 3600, first_delay=3600)
    job.start()
    try:
        job.wake()
        wait_for(lambda: len(calls) == 1, timeout=5)
        job.wake()
        wait_for(lambda: len(calls) == 2, timeout=5)
    finally:
        job.stop(wait=5)
    assert not job.running  # stop did not wait out the hour-long delay
    assert len(calls) == 2
