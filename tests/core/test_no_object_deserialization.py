"""S7 and spec/wsus.md §9 (CVE-2025-59287 was BinaryFormatter): nothing under devupdate/ may
deserialize into objects or evaluate text. The suite fails on any mention of pickle, marshal,
yaml.load, jsonpickle or eval( — a comment included, so a reviewer sees the exception argued."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "devupdate"
FORBIDDEN = re.compile(r"\bc?pickle\b|\bmarshal\b|\byaml\s*\.\s*(?:unsafe_)?load|\bjsonpickle\b|\beval\s*\(|"
                       r"\bshelve\b|\bdill\b", re.IGNORECASE)


def offences(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".py", ".pyi", ".html", ".js", ".cfg", ".toml") or not path.is_file():
            continue
        for number, line in enumerate(path.read_text("utf-8", errors="replace").splitlines(), 1):
            if FORBIDDEN.search(line):
                found.append(f"{path.relative_to(root.parent)}:{number}: {line.strip()[:100]}")
    return found


def test_no_object_deserialization_under_devupdate():
    assert offences(PACKAGE) == []


def test_the_check_catches_each_form(tmp_path):
    lines = ["import pickle", "from marshal import loads", "yaml.load(text)", "yaml.unsafe_load(x)",
             "import jsonpickle", "value = eval (text)", "import cPickle", "import shelve"]
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "bad.py").write_text("\n".join(lines + ["evaluate(x)", "medieval(x)", "yaml.safe_load(x)"]))
    assert len(offences(tmp_path / "pkg")) == len(lines)
