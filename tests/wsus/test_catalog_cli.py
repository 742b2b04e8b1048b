"""``devupdate wsus``: import, listings, show, decline, categories, products — exact outputs, ``--json``
parsed, refusals as one line with nothing written."""

from __future__ import annotations

import json

from catalogkit import BUNDLE, COMPANY, DEFENDER, DEFINITIONS, LEAF, SMALL, category, docs_dir, software
from helpers.tools import require_tool

A = "aaaaaaaa-0000-4000-8000-000000000001"


def seed(install, tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "product.xml").write_text(category(DEFENDER, "Microsoft Defender Antivirus", "Product", parent=COMPANY))
    (extra / "classification.xml").write_text(category(DEFINITIONS, "Definition Updates", "UpdateClassification"))
    result = install.cli("wsus", "import", str(docs_dir()), str(extra), "--json")
    return json.loads(result.stdout)


def test_import_then_reimport_counts_and_json(install, tmp_path):
    summary = seed(install, tmp_path)
    assert summary == {"new": 6, "updated": 0, "unchanged": 0, "refused": 0, "refusals": []}
    again = install.cli("wsus", "import", str(docs_dir()))
    assert again.stdout == "0 new, 0 updated, 4 unchanged, 0 refused\n"
    assert again.stderr == ""


def test_import_of_the_lzx_cabinets_finds_the_same_revisions(install, tmp_path, samples):
    require_tool("cabextract")
    seed(install, tmp_path)
    cabs = sorted(str(p) for p in samples.glob("wsus-xmlblob-*.cab"))
    assert len(cabs) == 3
    result = install.cli("wsus", "import", *cabs, "--json")
    assert json.loads(result.stdout)["unchanged"] == 3


def test_hostile_files_refused_one_line_each_nothing_written(install, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    good = software(A)
    (bad / "1-dtd.xml").write_text('<!DOCTYPE x [<!ENTITY e "x">]>' + good)
    (bad / "2-guid.xml").write_text(good.replace(A, "{not-a-guid}"))
    (bad / "3-deep.xml").write_text(good.replace("</upd:Update>", "<a>" * 300 + "</a>" * 300 + "</upd:Update>"))
    (bad / "4-big.xml").write_bytes(b" " * (16 << 20) + good.encode())
    (bad / "5-norev.xml").write_text(good.replace(' RevisionNumber="100"', ""))
    result = install.cli("wsus", "import", str(bad), check=False)
    assert result.returncode == 1
    assert result.stdout == "0 new, 0 updated, 0 unchanged, 5 refused\n"
    assert result.stderr.splitlines() == [
        f"devupdate: refused: {bad}/1-dtd.xml: document has a DTD (<!DOCTYPE …>); update documents never do",
        f"devupdate: refused: {bad}/2-guid.xml: UpdateIdentity: UpdateID '{{not-a-guid}}' is not a GUID",
        f"devupdate: refused: {bad}/3-deep.xml: document nests deeper than 128 elements",
        f"devupdate: refused: {bad}/4-big.xml: document is {(16 << 20) + len(good)} bytes, above the 16 MiB limit",
        f"devupdate: refused: {bad}/5-norev.xml: UpdateIdentity {A}: RevisionNumber is missing",
    ]
    listed = install.cli("wsus", "updates", "list", "--json")
    assert json.loads(listed.stdout) == []
    assert install.cli("wsus", "categories", "list").stdout == "(none)\n"


def test_updates_list_filters_and_table(install, tmp_path):
    seed(install, tmp_path)
    rows = json.loads(install.invoke("wsus", "updates", "list", "--json").output)
    assert [r["UpdateID"] for r in rows] == [SMALL, BUNDLE, LEAF]  # newest RevisionID first
    bundle = rows[1]
    assert bundle == {"UpdateID": BUNDLE, "RevisionID": 3, "RevisionNumber": 200, "Type": "Software",
                      "Title": "Security Intelligence Update for Microsoft Defender Antivirus - KB2267602 "
                               "(Version 1.459.547.0) - Current Channel (Broad)",
                      "KB": "2267602", "State": "published", "IsLeaf": True,
                      "Products": [{"UpdateID": DEFENDER, "Title": "Microsoft Defender Antivirus"}],
                      "Classifications": [{"UpdateID": DEFINITIONS, "Title": "Definition Updates"}]}
    by_title = install.invoke("wsus", "updates", "list", "--product", "Microsoft Defender Antivirus",
                              "--classification", "definition updates", "--json")
    assert len(json.loads(by_title.output)) == 3
    table = install.invoke("wsus", "updates", "list", "--state", "published").output.splitlines()
    assert table[0].split() == ["UpdateID", "RevisionNumber", "State", "KB", "Products", "Classifications", "Title"]
    assert table[2].startswith(f"{BUNDLE}  200             published  2267602  Microsoft Defender Antivirus  "
                               "Definition Updates  Security Intelligence Update")
    unknown = install.cli("wsus", "updates", "list", "--product", "Office", check=False)
    assert unknown.returncode == 1
    assert unknown.stderr == ("devupdate: error: no product 'Office' in the catalog "
                              "(see 'devupdate wsus categories list')\n")


def test_decline_undecline_and_states(install, tmp_path):
    seed(install, tmp_path)
    assert install.cli("wsus", "updates", "decline", BUNDLE.upper()).stdout == f"{BUNDLE}: declined\n"
    assert install.cli("wsus", "updates", "decline", BUNDLE).stdout == f"{BUNDLE}: declined (already)\n"
    declined = json.loads(install.invoke("wsus", "updates", "list", "--state", "declined", "--json").output)
    assert [r["UpdateID"] for r in declined] == [BUNDLE]
    assert install.cli("wsus", "updates", "undecline", BUNDLE).stdout == f"{BUNDLE}: not declined\n"
    assert json.loads(install.invoke("wsus", "updates", "list", "--state", "declined", "--json").output) == []
    missing = install.cli("wsus", "updates", "decline", A, check=False)
    assert (missing.returncode, missing.stderr) == (
        1, f"devupdate: error: no update {A} in the catalog (see 'devupdate wsus updates list')\n")


def test_superseded_state(install, tmp_path):
    newer = tmp_path / "newer.xml"
    newer.write_text(software(A, title="replaces the small one", supersedes=(SMALL,)))
    seed(install, tmp_path)
    install.cli("wsus", "import", str(newer))
    superseded = json.loads(install.invoke("wsus", "updates", "list", "--state", "superseded", "--json").output)
    assert [r["UpdateID"] for r in superseded] == [SMALL]
    shown = json.loads(install.invoke("wsus", "updates", "show", SMALL, "--json").output)
    assert shown["SupersededBy"] == [A] and shown["State"] == "superseded"
    install.cli("wsus", "updates", "decline", A)  # a declined superseder supersedes nothing
    shown = json.loads(install.invoke("wsus", "updates", "show", SMALL, "--json").output)
    assert shown["State"] == "published"


def test_updates_show(install, tmp_path):
    seed(install, tmp_path)
    shown = json.loads(install.invoke("wsus", "updates", "show", LEAF, "--json").output)
    assert {k: shown[k] for k in ("UpdateID", "Type", "KB", "State", "IsLeaf", "RevisionID", "BundledIn",
                                  "SupersededBy")} == {
        "UpdateID": LEAF, "Type": "Software", "KB": None, "State": "published", "IsLeaf": True, "RevisionID": 1,
        "BundledIn": [BUNDLE], "SupersededBy": []}
    assert shown["Products"] == [{"UpdateID": DEFENDER, "Title": "Microsoft Defender Antivirus"}]
    assert shown["Revisions"] == [{"RevisionID": 1, "RevisionNumber": 200, "Current": True,
                                   "PublicationState": "Published", "CreationDate": "2026-10-04T12:00:58.287Z"}]
    assert shown["Files"] == [{"FileName": "AM_Delta.exe", "SHA1": "87f5bd0469585006aa5d3a77d1c662fd2895ddcd",
                               "SHA256": "026b74ab29b2e4ab113a2c085e6e1020857be49bb8afe0a5dbc3e0f2068b5d40",
                               "Size": 11606440, "PatchingType": None, "MUUrl": None, "Present": False}]
    assert shown["Prerequisites"][0] == {"IsCategory": False, "AnyOf": ["be4048db-157c-4532-9582-7f05099590c9"]}
    text = install.invoke("wsus", "updates", "show", LEAF).output
    assert f"UpdateID         : {LEAF}\n" in text and "IsLeaf           : True\n" in text
    bad = install.cli("wsus", "updates", "show", "nope", check=False)
    assert bad.stderr == ("devupdate: error: UpdateID 'nope' is not a GUID "
                          "(e.g. 56309036-4c77-4dd9-951a-99ee9c246a94)\n")


def test_categories_and_product_selection(install, tmp_path):
    seed(install, tmp_path)
    rows = json.loads(install.invoke("wsus", "categories", "list", "--json").output)
    assert rows == [
        {"UpdateID": COMPANY, "Type": "Company", "Title": "Microsoft", "Parents": [], "Selected": False},
        {"UpdateID": DEFENDER, "Type": "Product", "Title": "Microsoft Defender Antivirus", "Parents": [COMPANY],
         "Selected": False},
        {"UpdateID": DEFINITIONS, "Type": "UpdateClassification", "Title": "Definition Updates", "Parents": [],
         "Selected": False}]
    assert install.cli("wsus", "products", "select", DEFENDER).stdout == (
        f"{DEFENDER} (Microsoft Defender Antivirus): selected\n")
    table = install.invoke("wsus", "categories", "list").output.splitlines()
    assert table[2] == f"{DEFENDER}  Product               yes       Microsoft Defender Antivirus"
    refused = install.cli("wsus", "products", "select", DEFINITIONS, check=False)
    assert refused.stderr == (f"devupdate: error: {DEFINITIONS} (Definition Updates) is a UpdateClassification, "
                              "not a product: select one of type Company, ProductFamily, Product\n")
    assert install.cli("wsus", "products", "unselect", DEFENDER).stdout == (
        f"{DEFENDER} (Microsoft Defender Antivirus): not selected\n")
    assert not any(r["Selected"] for r in json.loads(install.invoke("wsus", "categories", "list", "--json").output))


def test_two_imports_at_once_allocate_each_revision_id_once(install, tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(300):
        (folder / f"{i:03}.xml").write_text(software(f"aaaaaaaa-0000-4000-8000-{i:012}", 100 + i % 3))
    install.cli("db", "upgrade")
    procs = [subprocess.Popen([sys.executable, "-m", "devupdate", "wsus", "import", str(folder), "--json"],
                              env=install.environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert sum(r["new"] for r in results) == 300
    assert sum(r["unchanged"] for r in results) == 300
    rows = json.loads(install.cli("wsus", "updates", "list", "--json").stdout)
    assert sorted(r["RevisionID"] for r in rows) == list(range(1, 301))
