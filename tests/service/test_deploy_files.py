"""docs/deploy/: the systemd units pass ``systemd-analyze verify`` and start devupdate commands that
exist with the options they give; the Containerfile copies what the repository has."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "docs" / "deploy"
BINARY = "/opt/devupdate/bin/devupdate"


def _exec_start(unit: Path) -> list[str]:
    line = next(line for line in unit.read_text().splitlines() if line.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.mark.parametrize("unit", ["devupdate.service", "devupdate-dns.service"])
def test_the_units_start_real_commands(unit, install):
    command = _exec_start(DEPLOY / unit)
    assert command[0] == BINARY
    result = install.cli(*command[1:], "--help")  # click parses every option before --help
    assert result.stdout.startswith("Usage: ")


def test_the_backup_unit_runs_backup_create(install, tmp_path):
    command = _exec_start(DEPLOY / "devupdate-backup.service")
    script = command[-1]
    assert re.search(rf'exec {BINARY} backup create "/var/backups/devupdate/\$\(date -u \+%%Y', script)


def test_the_units_pass_systemd_analyze(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    devupdate = Path(sys.executable).with_name("devupdate")
    for unit in sorted(DEPLOY.glob("devupdate*.*")):
        text = unit.read_text().replace(BINARY, str(devupdate))
        (tmp_path / unit.name).write_text(text)
    units = sorted(str(p) for p in tmp_path.iterdir())
    result = subprocess.run([tool, "verify", "--man=no", *units], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if line.strip() and "Failed to connect" not in line and "/opt/devupdate/docs" not in line]
    assert result.returncode == 0 and not problems, problems


def test_the_containerfile_copies_what_the_repository_has():
    text = (DEPLOY / "Containerfile").read_text()
    copies = [line.split()[1:-1] for line in text.splitlines() if line.startswith("COPY ")]
    sources = [source for sources in copies for source in sources]
    assert {"setup.cfg", "devupdate", "filestore"} <= set(sources)
    assert all((REPO / source).exists() for source in sources), sources
    assert 'ENTRYPOINT ["devupdate"]' in text and 'CMD ["serve"]' in text
