"""The command line's manners, run as real processes: usage errors are one line in the project's
style with exit status 2, a closed pipe ends the output quietly, a rule needs at least four
characters of its GUID, and a rollback that would withdraw the approved update needs --yes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers.cabs import make_package, make_update

V1, V2 = "4.0.7577.4366", "4.0.7577.4372"


@pytest.mark.parametrize("args, line", [
    (["--bogus"], "no such option '--bogus' (see 'devupdate --help')"),
    (["rules", "approve"], "give a RULE, or choose rules with --brand, --model or --locale (e.g. devupdate rules "
                           "approve --brand Polycom --model 'CX*' --dry-run) (see 'devupdate rules approve --help')"),
    (["rules", "frob"], "no such command 'frob' (see 'devupdate rules --help')"),
    (["audit", "list", "--limit", "0"],
     "invalid value for '--limit': 0 is not in the range 1<=x<=1000 (see 'devupdate audit list --help')"),
    (["audit", "list", "--jsn"], "no such option '--jsn'. (Did you mean one of: '--csv', '--json', '--since'?) "
                                 "(see 'devupdate audit list --help')"),
    (["test-devices", "add", "lab", "--mac"], "option '--mac' requires an argument "
                                              "(see 'devupdate test-devices add --help')"),
])
def test_usage_errors_are_one_line_with_exit_2(install, args, line):
    proc = install.cli(*args, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"devupdate: error: {line}\n")


def test_help_is_still_help(install):
    proc = install.cli("rules", "--help")
    assert proc.stdout.startswith("Usage: devupdate rules [OPTIONS] COMMAND [ARGS]...")
    bare = install.cli("rules", check=False)  # a group without its command: its help, as click does
    assert bare.returncode == 2 and "Commands:" in bare.stderr + bare.stdout


def test_a_closed_pipe_ends_the_listing_quietly(install, database):
    from devupdate.devices.inventory import Device

    Device.insert_many([{"device_id": f"0004F2{n:06X}", "mac": f"0004F2{n:06X}", "device_type": "UCPhone",
                         "brand": "Polycom", "model": "CX600", "revision": "A", "locale": "ENU",
                         "versions": '{"CPE.nbt": "4.0.7577.4363"}', "network": "internal"}
                        for n in range(3000)]).execute()
    database.close()
    for args in (["devices", "list"], ["devices", "list", "--json"]):
        proc = subprocess.Popen([sys.executable, "-m", "devupdate", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=install.environ(), cwd=install.home.parent)
        first = [proc.stdout.readline() for _ in range(2)]  # what `| head -n 2` reads, then it exits
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        proc.wait(timeout=60)
        assert first[0].strip() and first[1].strip(), (args, first, stderr)
        assert (args, stderr) == (args, "")
        if "--json" not in args:  # one write per row: the next one finds the pipe closed
            assert proc.returncode == 141  # as for a program killed by SIGPIPE


@pytest.fixture
def rule(install, tmp_path):
    """A rule with V1 approved, then V2 approved: restore version V1."""
    install.cli("db", "upgrade")
    for version in (V1, V2):
        (tmp_path / version).mkdir()
        update = make_update(version=version)
        install.cli("import", str(make_package(tmp_path / version, [update])))
        install.cli("rules", "approve", update.id)
    return update.id


def state(install, rule_id: str) -> tuple:
    shown = json.loads(install.cli("rules", "show", rule_id, "--json").stdout)
    return shown["ApprovedVersion"], shown["PendingVersion"], shown["RestoreVersion"]


@pytest.mark.parametrize("verb", ["restore", "rollback"])
def test_restore_twice_needs_yes_to_withdraw(install, rule, verb):
    first = install.cli("rules", verb, rule)  # back to V1: no question asked
    assert first.stdout == f"restored rule {rule}: approved={V1} pending=- restore=-\n"
    again = install.cli("rules", verb, rule, check=False)
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr == (
        f"devupdate: error: rule {rule}: restoring would withdraw {V1} and nobody would be offered anything "
        f"for this rule (there is no earlier version to return to); to do that, run 'devupdate rules {verb} "
        f"{rule} --yes'\n")
    assert state(install, rule) == (V1, None, None)  # nothing changed
    done = install.cli("rules", verb, rule, "--yes")
    assert done.stdout == f"restored rule {rule}: approved=- pending=- restore=-\n"
    assert state(install, rule) == (None, None, None)
    refused = install.cli("rules", verb, rule, "--yes", check=False)
    assert refused.stderr == f"devupdate: error: rule {rule} has no approved version to roll back\n"


@pytest.mark.parametrize("prefix, message", [
    ("a", "'a' is too short a GUID prefix: give at least 4 characters"),
    ("{ab}", "'{ab}' is too short a GUID prefix: give at least 4 characters"),
    ("abc", "'abc' is too short a GUID prefix: give at least 4 characters"),
])
def test_guid_prefixes_need_four_characters(install, rule, prefix, message):
    proc = install.cli("rules", "show", prefix, check=False)
    assert (proc.returncode, proc.stderr) == (1, f"devupdate: error: {message}\n")
    assert install.cli("rules", "show", rule[:4], "--json").stdout.count(rule) >= 1
