"""The failed-login table: windows, sources (IPv6 per /64), a full table, and counts shared with
forked processes (what gunicorn's workers are)."""

from __future__ import annotations

import os

from devupdate.devices.failures import FailureLimiter, FailureTable, source_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limit_window_and_retry_after():
    clock = Clock()
    limiter = FailureLimiter(3, 60, FailureTable(64), clock=clock)
    for _ in range(3):
        assert limiter.retry_after("192.0.2.7") == 0
        limiter.failed("192.0.2.7")
        clock.now += 10
    assert limiter.retry_after("192.0.2.7") == 30  # the window began with the first failure
    assert limiter.retry_after("192.0.2.8") == 0
    clock.now += 29.5
    assert limiter.retry_after("192.0.2.7") == 1
    clock.now += 0.5
    assert limiter.retry_after("192.0.2.7") == 0
    limiter.failed("192.0.2.7")  # a new window
    assert limiter.retry_after("192.0.2.7") == 0
    assert FailureLimiter(0, 60, FailureTable(64)).retry_after("192.0.2.7") == 0


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4():
    limiter = FailureLimiter(2, 60, FailureTable(64), clock=Clock())
    limiter.failed("2001:db8:1:2::1")
    limiter.failed("2001:db8:1:2:ffff::9")
    assert limiter.retry_after("2001:db8:1:2::abcd") > 0
    assert limiter.retry_after("2001:db8:1:3::1") == 0
    limiter.failed("::ffff:192.0.2.1")
    limiter.failed("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") > 0


def test_a_full_table_evicts_the_oldest_window():
    clock = Clock()
    limiter = FailureLimiter(1, 600, FailureTable(4), clock=clock)
    for n in range(4):
        limiter.failed(f"198.51.100.{n}")
        clock.now += 1
    limiter.failed("198.51.100.99")
    assert limiter.retry_after("198.51.100.99") > 0
    assert sum(limiter.retry_after(f"198.51.100.{n}") > 0 for n in range(4)) == 3


def test_counts_are_shared_with_forked_processes():
    table = FailureTable(256)
    limiter = FailureLimiter(50, 600, table)
    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                for _ in range(10):
                    limiter.failed("203.0.113.5")
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        assert os.waitpid(pid, 0)[1] == 0
    assert table.update(source_key("203.0.113.5"), 600, limiter.clock(), 0)[1] == 40
    for _ in range(10):
        limiter.failed("203.0.113.5")
    assert limiter.retry_after("203.0.113.5") > 0

