"""``devupdate migrate lync`` on hand-made PowerShell exports (``#TYPE`` line, every value quoted,
CRLF; UTF-16, ``;`` and no ``#TYPE`` too) and real cabs: rules come back with their approved, pending
and restore versions, test devices and configuration with their sites, in one transaction; the dry
run prints the plan and changes nothing; what cannot be mapped is refused one line each."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers.cabs import make_package, make_update, rule_guid

from devupdate.migrate import lyncexport

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import phonesim  # noqa: E402

V0, V1, V2 = "4.0.7577.4363", "4.0.7577.4372", "4.0.7577.4380"
CX600, CX500, CX3000 = (rule_guid("UCPhone", "Polycom", m, "A", "ENU", "CPE") for m in ("CX600", "CX500", "CX3000"))
AASTRA = rule_guid("UCPhone", "Aastra", "6721ip", "A", "ENU", "CPE")
POOL = "service:WebServer:pool1.contoso.com"
RULE_TYPE = "#TYPE Microsoft.Rtc.Management.WritableConfig.Policy.DeviceUpdate.Rule"
RULE_HEADER = ('"Identity","Id","DeviceType","Brand","Model","Revision","Locale","UpdateType","ApprovedVersion",'
               '"PendingVersion","RestoreVersion","Element"')


def _csv(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _rule(guid: str, model: str, approved: str, pending: str, restore: str, *, brand: str = "Polycom",
          locale: str = "ENU", element: str = "") -> str:
    return (f'"{POOL}/{guid}","{guid}","UCPhone","{brand}","{model}","A","{locale}","CPE","{approved}",'
            f'"{pending}","{restore}","{element}"')


RULES = _csv(RULE_TYPE, RULE_HEADER,
             _rule(CX600, "CX600", V1, V2, V0, element='<DeviceUpdateRule Name=""CX600""\nLocale=""ENU"" />'),
             _rule(CX500, "CX500", V1, "", ""),
             _rule(CX3000, "CX3000", "", V1, ""))
DEVICES = _csv("#TYPE Microsoft.Rtc.Management.WritableConfig.Policy.DeviceUpdate.TestDevice",
               '"Identity","Name","IdentifierType","Identifier"',
               '"Global/LabPhone","LabPhone","MACAddress","00-04-F2-AA-BB-CC"',
               '"site:Berlin/Lab ""A"", desk 2","Lab ""A"", desk 2","SerialNumber","SN-1234"')
CONFIG = _csv("#TYPE Microsoft.Rtc.Management.WritableConfig.Policy.DeviceUpdate.DeviceUpdateConfiguration",
              '"Identity","ValidLogFileTypes","ValidLogFileExtensions","MaxLogFileSize","MaxLogCacheLimit",'
              '"LogCleanUpInterval","LogFlushInterval","LogCleanUpTimeOfDay"',
              '"Global","Watson, Config","dmp, clg, txt","2048000","512000","5.00:00:00","00:10:00","02:30:00"',
              '"Site:Berlin","Watson, Config, DiagLog","dmp txt","1024000","256000","30.00:00:00","01:00:00",""')


def _cabs(tmp_path: Path) -> list[Path]:
    made = []
    for version, models in ((V0, ("CX600",)), (V1, ("CX600", "CX500", "CX3000", "CX700")), (V2, ("CX600",))):
        directory = tmp_path / f"cab-{version}"
        directory.mkdir()
        made.append(make_package(directory, [make_update("Polycom", m, version) for m in models], image_sizes=4096,
                                 name=f"UCUpdates-{version.rsplit('.', 1)[-1]}.cab"))
    return made


def _files(tmp_path: Path, rules: bytes = RULES, devices: bytes = DEVICES, config: bytes = CONFIG) -> list[str]:
    args = []
    for option, name, data in (("--rules", "rules.csv", rules), ("--test-devices", "td.csv", devices),
                               ("--configuration", "cfg.csv", config)):
        (tmp_path / name).write_bytes(data)
        args += [option, str(tmp_path / name)]
    return args


def _json(install, *args: str):
    """A listing's JSON, from the CLI run in-process (the migrations themselves run as real processes)."""
    from click.testing import CliRunner

    from devupdate import db
    from devupdate.cli import main

    result = CliRunner().invoke(main, [*args, "--json"], env=install.environ(), catch_exceptions=False)
    if db.database.obj is not None and not db.database.is_closed():
        db.database.close()
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_dry_run_prints_the_plan_and_the_migration_recreates_everything(install, live_server, tmp_path):
    cabs = [str(c) for c in _cabs(tmp_path)]
    args = ["migrate", "lync", *_files(tmp_path), *cabs]
    dry = install.cli(*args, "--dry-run")
    lines = dry.stdout.splitlines()
    assert lines[:3] == ["import UCUpdates-4363.cab: 1 update(s), version " + V0,
                         "import UCUpdates-4372.cab: 4 update(s), version " + V1,
                         "import UCUpdates-4380.cab: 1 update(s), version " + V2]
    assert f"rule {CX600} Polycom CX600 ENU (UCPhone A CPE): approved {V1}, pending {V2}, restore {V0}" in lines
    assert f"rule {CX500} Polycom CX500 ENU (UCPhone A CPE): approved {V1}, pending -, restore -" in lines
    assert f"rule {CX3000} Polycom CX3000 ENU (UCPhone A CPE): approved -, pending {V1}, restore -" in lines
    assert any(line.endswith("Polycom CX700 ENU: in the cabs but not in the Lync rules: not kept") for line in lines)
    assert "test device global/LabPhone: MACAddress 0004F2AABBCC" in lines
    assert 'test device site:Berlin/Lab "A", desk 2: SerialNumber SN-1234' in lines
    assert "config global: LogCleanUpInterval = 5" in lines and "config global: LogFlushInterval = 10" in lines
    assert "config global: ValidLogFileExtensions = .dmp .clg .txt" in lines
    assert "config global: LogCleanUpTimeOfDay = 02:30" in lines
    assert "config site:Berlin: LogCleanUpTimeOfDay = none" not in lines  # an empty value is left alone
    assert lines[-1] == "dry run: nothing changed"
    assert _json(install, "rules", "list") == [] and _json(install, "test-devices", "list") == []

    done = install.cli(*args)
    assert done.stdout.splitlines()[-1] == "migrated: 3 rule(s), 2 test device(s), 13 setting(s) from 3 cab(s)"
    rules = {r["Id"]: (r["ApprovedVersion"], r["PendingVersion"], r["RestoreVersion"])
             for r in _json(install, "rules", "list")}
    assert rules == {CX600: (V1, V2, V0), CX500: (V1, None, None), CX3000: (None, V1, None)}
    devices = {(d["Scope"], d["Name"]): (d["IdentifierType"], d["Identifier"])
               for d in _json(install, "test-devices", "list")}
    assert devices == {("global", "LabPhone"): ("MACAddress", "0004F2AABBCC"),
                       ("site:Berlin", 'Lab "A", desk 2'): ("SerialNumber", "SN-1234")}
    assert _json(install, "config", "show") == {
        "Scope": "global", "MaxLogFileSize": 2048000, "MaxLogCacheLimit": 512000, "LogFlushInterval": 10,
        "LogCleanUpInterval": 5, "LogCleanUpTimeOfDay": "02:30", "ValidLogFileTypes": ["Watson", "Config"],
        "ValidLogFileExtensions": [".dmp", ".clg", ".txt"]}
    assert _json(install, "config", "show", "--site", "Berlin") == {
        "Scope": "site:Berlin", "MaxLogFileSize": 1024000, "MaxLogCacheLimit": 256000, "LogFlushInterval": 60,
        "LogCleanUpInterval": 30, "LogCleanUpTimeOfDay": "02:30",  # empty in the export: the global one holds
        "ValidLogFileTypes": ["Watson", "Config", "DiagLog"], "ValidLogFileExtensions": [".dmp", ".txt"]}
    actions = [entry["Action"] for entry in _json(install, "audit", "list")]
    assert "migrate.lync" in actions and actions.count("rule.adopt") == 3 and "rule.remove" in actions

    server = live_server(workers=1, DEVUPDATE_PUBLIC_INTERNAL_URL="http://updates.test")
    client = phonesim.Client(server.url, url_map={"http://updates.test": server.url})
    fleet = phonesim.make_fleet(2, families=[("UCPhone", "Polycom", "CX600", "A", "ENU")],
                                installed={"CX600_A_ENU_CPE.nbt": V0}, seed=2)
    fleet[1].mac = "00-04-F2-AA-BB-CC"
    offered = [{f.version for f in client.check(phone).files} for phone in fleet]
    assert offered == [{V1}, {V2}]  # the fleet gets the approved version, the test device the pending one


def test_what_cannot_be_mapped_is_refused_one_line_each_and_nothing_changes(install, tmp_path):
    cabs = [str(c) for c in _cabs(tmp_path)]
    rules = _csv(RULE_TYPE, RULE_HEADER,
                 _rule(CX600, "CX600", V1, "4.0.7577.9999", V0),
                 _rule(AASTRA, "6721ip", "2.6.0.2019", "", "", brand="Aastra"),
                 _rule("not-a-guid", "CX500", V1, "", ""),
                 _rule(CX3000, "CX3000", "4.0", "", ""),
                 _rule(CX500, "CX500", V1, "", "", locale="DEU"))
    devices = _csv('"Identity","Name","IdentifierType","Identifier"',
                   '"Global/Broken","Broken","MACAddress","00-04-F2"',
                   '"Service:WebServer:pool1/X","X","MACAddress","00-04-F2-AA-BB-CD"')
    config = _csv('"Identity","MaxLogFileSize","ValidLogFileExtensions"',
                  '"Global","12",".dmp"',
                  '"Site:Berlin","2048000","Microsoft.Rtc.Management.WritableConfig.MultiValuedProperty`1[System.String]"',
                  '"Service:WebServer:pool1.contoso.com","2048000",""')
    result = install.cli("migrate", "lync", *_files(tmp_path, rules, devices, config), *cabs, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("devupdate: error: cannot migrate: ") and lines[-1].endswith("nothing changed")
    problems = [line.removeprefix("cannot map: ") for line in lines[:-1]]
    assert all(line.startswith("cannot map: ") for line in lines[:-1]), lines
    # the export files are read first: their own problems come without the cabs' checks
    assert problems[0].startswith("td.csv line 3: Identity 'Service:WebServer:pool1/X' is neither")

    result = install.cli("migrate", "lync", *_files(tmp_path, rules, DEVICES, CONFIG), *cabs, check=False)
    problems = [line.removeprefix("cannot map: ") for line in result.stderr.strip().splitlines()[:-1]]
    assert problems == [
        f"rules.csv line 3 (Polycom CX600 ENU): PendingVersion 4.0.7577.9999 is in none of the cabs (they have "
        f"{V0}, {V1}, {V2} for this rule): add the cab with 4.0.7577.9999",
        f"rules.csv line 4 (Aastra 6721ip ENU): rule {AASTRA} is in none of the cabs (no cab given has any Aastra "
        "update: add the vendor's cab)",
        "rules.csv line 5 (Polycom CX500 ENU): Id 'not-a-guid' is not a GUID",
        "rules.csv line 6 (Polycom CX3000 ENU) ApprovedVersion: '4.0' is not a version a.b.c.d",
        f"rules.csv line 7 (Polycom CX500 DEU): Locale 'DEU' but the cab's rule {CX500} says 'ENU'",
    ]
    config_only = install.cli("migrate", "lync", *_files(tmp_path, RULES, DEVICES, config), *cabs, check=False)
    problems = [line.removeprefix("cannot map: ") for line in config_only.stderr.strip().splitlines()[:-1]]
    assert len(problems) == 2
    assert problems[0].startswith("cfg.csv line 3 (Site:Berlin) ValidLogFileExtensions is 'Microsoft.Rtc.")
    assert problems[1].startswith("cfg.csv line 4: Identity 'Service:WebServer:pool1.contoso.com': devupdate keeps")
    values = install.cli("migrate", "lync", *_files(tmp_path, RULES, _csv(
        '"Identity","Name","IdentifierType","Identifier"', '"Global/Broken","Broken","MACAddress","00-04-F2"'),
        _csv('"Identity","MaxLogFileSize"', '"Global","12"')), *cabs, check=False)
    problems = [line.removeprefix("cannot map: ") for line in values.stderr.strip().splitlines()[:-1]]
    assert problems[0].startswith("td.csv line 2 (Broken): ") and "00-04-F2" in problems[0]
    assert problems[1].startswith("cfg.csv line 2 (Global): MaxLogFileSize='12' refused: out of range")
    assert _json(install, "rules", "list") == [] and _json(install, "test-devices", "list") == []
    assert not [e for e in _json(install, "audit", "list") if e["Action"] in ("import", "migrate.lync")]


def test_a_refusal_while_applying_keeps_nothing(install, tmp_path):
    """The plan holds, but a service refuses in the middle (the MAC is already another test device's):
    the imports, rule states and earlier steps are rolled back, and the stored image files removed."""
    install.cli("test-devices", "add", "old-name", "--mac", "00-04-F2-AA-BB-CC")
    cabs = [str(c) for c in _cabs(tmp_path)]
    result = install.cli("migrate", "lync", *_files(tmp_path), *cabs, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("devupdate: error: MACAddress 0004F2AABBCC is already test device "
                                            "'old-name' in global")
    assert _json(install, "rules", "list") == []
    assert [d["Name"] for d in _json(install, "test-devices", "list")] == ["old-name"]
    images = install.home / "filestore" / "images"
    assert not [p for p in images.rglob("*") if p.is_file()] if images.exists() else True


def test_the_reader_takes_what_powershell_writes():
    # PowerShell 7 (no #TYPE), ';' with -UseCulture, UTF-16 with BOM from Out-File, values over two lines
    text = ('"Identity";"Id";"Brand";"Model";"ApprovedVersion";"PendingVersion";"RestoreVersion"\r\n'
            f'"{POOL}/{CX600}";"";"Polycom";"CX600";"{V1}";"";""\r\n')
    (rule,) = lyncexport.rules(text.encode("utf-16"), "r.csv")
    assert (rule.id, rule.brand, rule.approved, rule.pending, rule.restore) == (CX600, "Polycom", V1, None, None)
    (rule,) = lyncexport.rules(b"\xef\xbb\xbf" + RULES.split(b"\r\n", 2)[0] + b"\r\n" + RULES.split(b"\r\n")[1]
                               + b"\r\n" + _rule(CX600, "CX600", V1, "", "").encode() + b"\r\n", "r.csv")
    assert rule.line == 3 and rule.identity == f"{POOL}/{CX600}"
    with pytest.raises(lyncexport.ExportError) as refused:
        lyncexport.rules(_csv('"Identity","Name"', '"x","y"'), "r.csv")
    assert refused.value.lines == ["r.csv: no column Brand, Model, ApprovedVersion, PendingVersion, RestoreVersion "
                                   "(the header has identity, name); export the objects whole: "
                                   "'… | Export-Csv -Path FILE'"]
    with pytest.raises(lyncexport.ExportError) as refused:
        lyncexport.rules(_csv(RULE_HEADER, '"a","b"'), "r.csv")
    assert refused.value.lines == ["r.csv line 2: 2 fields, the header has 12"]
    (config,) = lyncexport.configuration(_csv('"Identity","LogCleanUpInterval","LogFlushInterval","MaxLogFileSize"',
                                              '"Global","1.12:00:00","00:00:30","1,024,000"'))
    assert config.values == {"LogCleanUpInterval": "129600s", "LogFlushInterval": "30s", "MaxLogFileSize": "1024000"}
    assert lyncexport.decode("Größe".encode("cp1252"), "x") == "Größe"


@pytest.mark.parametrize(("data", "line"), [
    (b"\xef\xbb\xbf\"Identity\"\r\n\xff\xfe\xfd",
     "rules.csv: marked as Unicode but not valid (invalid start byte at byte 15); export it again with Export-Csv"),
    ("\"Identity\"\r\n".encode("utf-16") + b"\x00", "rules.csv: marked as Unicode but not valid (truncated data at "
                                                     "byte 26); export it again with Export-Csv"),
], ids=["utf8-bom-then-invalid", "utf16-odd-length"])
def test_a_damaged_export_is_refused_with_one_line(install, tmp_path, data, line):
    """An export that says it is Unicode and is not: one line naming the file, no traceback."""
    (tmp_path / "rules.csv").write_bytes(data)
    result = install.cli("migrate", "lync", "--rules", str(tmp_path / "rules.csv"), "--dry-run", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"cannot map: {line}",
                                                  "devupdate: error: cannot migrate: 1 problem(s), nothing changed"]


def test_timespans_are_read_in_ascii_digits_of_sane_length():
    """``١٠:00`` is not ten hours (only 0-9 are digits), and a day count of 5,000 digits is not a number
    to convert: both are passed on as text, for the setting's own parser to refuse by name."""
    (config,) = lyncexport.configuration(_csv('"Identity","LogCleanUpInterval","LogFlushInterval"',
                                              f'"Global","{"9" * 5000}.00:00:00","١٠:00"'))
    assert config.values == {"LogCleanUpInterval": f"{'9' * 5000}.00:00:00", "LogFlushInterval": "١٠:00"}
