"""The rollout's image downloads per client: batched upserts that widen a row's time span and add its
count, flushes of several workers in any order; kept across a database failure. On SQLite and
PostgreSQL."""

from __future__ import annotations

from devupdate.devices.image_fetches import DownloadRecorder
from devupdate.rules.models import RolloutDownload


def rows() -> list[tuple]:
    return [(r.rule_id, r.version, r.address, r.user_id, r.first_at, r.last_at, r.count)
            for r in RolloutDownload.select().order_by(RolloutDownload.address, RolloutDownload.user_id)]


def test_downloads_per_client_add_up_in_any_order(database):
    clock = [1000.0]
    late = DownloadRecorder(clock=lambda: clock[0])
    late.observe("rule-1", "2.0", "10.0.0.7", "")
    clock[0] = 900.0
    early = DownloadRecorder(clock=lambda: clock[0])
    early.observe("rule-1", "2.0", "10.0.0.7", "")
    early.observe("rule-1", "2.0", "10.0.0.8", "alice")
    clock[0] = 950.0
    early.observe("rule-1", "2.0", "10.0.0.7", "")
    assert (late.flush(), early.flush()) == (1, 2)
    assert rows() == [("rule-1", "2.0", "10.0.0.7", "", 900.0, 1000.0, 3),
                      ("rule-1", "2.0", "10.0.0.8", "alice", 900.0, 900.0, 1)]
    assert late.flush() == 0


def test_downloads_are_kept_while_the_database_fails(database, monkeypatch):
    from devupdate.devices import image_fetches

    recorder = DownloadRecorder(clock=lambda: 5.0)
    recorder.observe("rule-1", "2.0", "10.0.0.7", "")

    def away(rows, batch=500):
        raise RuntimeError("database away")

    monkeypatch.setattr(image_fetches, "write", away)
    assert recorder.flush() == 0 and recorder.pending == 1
    monkeypatch.undo()
    recorder.observe("rule-1", "2.0", "10.0.0.7", "")
    assert recorder.flush() == 1
    assert rows() == [("rule-1", "2.0", "10.0.0.7", "", 5.0, 5.0, 2)]
