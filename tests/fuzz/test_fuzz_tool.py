"""``tools/fuzz.py`` runs the suite's properties with the example budget it is given."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "fuzz.py"


def test_fuzz_runs_the_properties_with_the_given_budget():
    proc = subprocess.run([sys.executable, str(TOOL), "--fuzz", "--examples", "7", "-k", "log_names and device_id"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("fuzz: 7 examples per property, seed random\n")
    assert "test_the_device_id_is_a_mac_or_a_serial_or_refused" in proc.stdout
    assert "Stopped because settings.max_examples=7" in proc.stdout
    assert "fuzz: 1 properties held, 0 falsified, " in proc.stdout and proc.stdout.endswith(" s (pytest exit 0)\n")


def test_fuzz_refuses_an_empty_budget():
    proc = subprocess.run([sys.executable, str(TOOL), "--examples", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--examples must be at least 1" in proc.stderr
