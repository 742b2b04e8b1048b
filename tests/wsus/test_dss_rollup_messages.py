"""The downstream side of the rollup operations without a network ([MS-WSUSSS] §3.2.4.5, spec/wsus.md
§5.1, §7): the answers read leniently and bounded (batch sizes outside [1, §7's size] clamped, odd
items skipped), and ``RollupComputerStatus`` answered ``false`` (busy) waited out a minute, at most
three times. The whole sequence against a real upstream is in ``test_dss_hierarchy.py``."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from devupdate.wsus.downstream import messages, rollup

SD = "http://www.microsoft.com/SoftwareDistribution"


def _answer(operation: str, inner: str) -> bytes:
    return (f'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
            f'<{operation}Response xmlns="{SD}"><{operation}Result>{inner}</{operation}Result>'
            f"</{operation}Response></soap:Body></soap:Envelope>").encode()


def _result(operation: str, inner: str):
    return messages.result(_answer(operation, inner), operation)


@pytest.mark.parametrize(("given", "expected"), [
    (("5000", "1500", "20000", "500"), (5000, 1500, 20000, 500)),
    (("0", "-3", "999999999", "abc"), (1, 1, 20000, 500)),
    (("7", "8", "9", "10"), (7, 8, 9, 10)),
])
def test_rollup_configuration_batch_sizes_are_bounded(given, expected):
    names = ("RollupDownstreamServersMaxBatchSize", "RollupComputersMaxBatchSize",
             "GetOutOfSyncComputersMaxBatchSize", "RollupComputerStatusMaxBatchSize")
    inner = ("<DoDetailedRollup>false</DoDetailedRollup><ServerId>{AB5C26C0-0000-4000-8000-00000000000A}</ServerId>"
             + "".join(f"<{name}>{value}</{name}>" for name, value in zip(names, given, strict=True)))
    config = messages.rollup_config(_result("GetRollupConfiguration", inner))
    assert (config.servers_batch, config.computers_batch, config.out_of_sync_batch, config.status_batch) == expected
    assert config.detailed is False and config.server_id == "ab5c26c0-0000-4000-8000-00000000000a"


def test_answers_are_read_leniently():
    changed = _result("RollupComputers", '<ChangedComputer ComputerId="PC-1" Change="NewParent"/>'
                                         '<ChangedComputer Change="Deleted"/><ChangedComputer ComputerId="pc-2" '
                                         'Change="Deleted"/><Other ComputerId="pc-3"/>')
    assert messages.changed_computers(changed) == {"pc-1": "NewParent", "pc-2": "Deleted"}
    stale = _result("GetOutOfSyncComputers", "<string>PC-1</string><string> </string><string>pc-9</string>")
    assert messages.out_of_sync(stale) == ["pc-1", "pc-9"]
    assert messages.out_of_sync(_result("GetOutOfSyncComputers", "")) == []
    assert messages.accepted(_result("RollupComputerStatus", "true")) is True
    assert messages.accepted(_result("RollupComputerStatus", "false")) is False


def test_a_fault_from_a_rollup_operation_is_an_upstream_fault():
    body = (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Client'
            b"</faultcode><faultstring>Fault occurred</faultstring><detail><ErrorCode>InvalidParameters</ErrorCode>"
            b"<Message>computers</Message></detail></s:Fault></s:Body></s:Envelope>")
    with pytest.raises(messages.UpstreamFault) as fault:
        messages.result(body, "RollupComputers")
    assert (fault.value.error_code, fault.value.message) == ("InvalidParameters", "computers")


@dataclass
class _Upstream:
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@dataclass
class _Options:
    upstream: str = "http://upstream.invalid"
    mode: str = "autonomous"


class _Run:
    """Stands in for a run: each RollupComputerStatus is answered with the next of ``answers``."""

    def __init__(self, *answers: str):
        self.answers, self.sent = list(answers), []
        self.upstream, self.options = _Upstream(), _Options()

    def call(self, operation, body, path=None, namespace=None):
        self.sent.append((operation, body))
        return _result(operation, self.answers.pop(0))


def test_a_busy_status_rollup_is_waited_out_then_sent_again(rt):
    run = _Run("false", "true")
    rollup._send_status(run, "ab5c26c0-0000-4000-8000-00000000000a", ["pc-1"], {"pc-1": 7})
    assert [op for op, _ in run.sent] == ["RollupComputerStatus"] * 2
    assert run.upstream.sleeps == [rollup.BUSY_WAIT] and rollup.BUSY_WAIT >= 60
    body = run.sent[0][1]
    assert b"<ComputerId>pc-1</ComputerId>" in body and b"<RollupNumber>7</RollupNumber>" in body
    assert b"<IsFullRollup>true</IsFullRollup>" in body and b"<Expiration>9999-12-31T23:59:59.9999999" in body


def test_a_status_rollup_busy_three_times_stops_the_rollup(rt):
    run = _Run("false", "false", "false")
    with pytest.raises(RuntimeError, match="busy 3 times"):
        rollup._send_status(run, "ab5c26c0-0000-4000-8000-00000000000a", ["pc-1"], {"pc-1": 7})
    assert run.upstream.sleeps == [rollup.BUSY_WAIT] * 2
