"""The status-report recorder's flush job waits its interval when nothing is pending (its step's
return is the job's next delay: a count of 0 written made it run again at once, for ever)."""

from devupdate.devices.reports import ReportRecorder


def test_idle_flush_job_waits_its_interval():
    recorder = ReportRecorder(flush_seconds=2.0)
    assert recorder.job.run_once() == 2.0
    assert recorder.job.run_once() == 2.0
