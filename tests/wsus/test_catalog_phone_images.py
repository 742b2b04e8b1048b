"""Phone images are catalog updates (spec/wsus.md §1a C10): a vendor cab imported with the real CLI
shows up in ``devupdate wsus updates list --product 'UC devices'`` with the UpdateID of the C10
formula (computed here on its own), title, description, the cab's real .nbt/.cat digests, the three
generated categories and supersedence of earlier versions; the generated document goes through the
same reader; a refused import leaves neither rules nor catalog rows; removing a rule declines its
updates; re-importing changes no RevisionID; /Content serves the image by its SHA-1; the rule state →
deployment mapping follows import, approve, reset, restore and remove."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

import pytest
from catalogkit import category
from helpers.cabs import cabextract_tree, make_package, make_update
from helpers.curl import Curl
from helpers.tools import require_tool

# C10, written out independently of the implementation
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:devupdate")
PRODUCT = "5f3aaaad-af2b-572a-a8bc-99155ce81a09"
COMPANY = "165148cc-c294-5411-bc2e-b1a184c498dd"
UPDATES = "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83"
V1, V2, V3 = "4.0.7577.4366", "4.0.7577.4372", "4.0.7577.4387"
CMD = "http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/CommandLineInstallation"


def image_id(rule_id: str, version: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"image/{rule_id.lower().strip('{}')}/{version}"))


def cab(tmp_path, name: str, *updates, **kwargs):
    folder = tmp_path / name
    folder.mkdir()
    return make_package(folder, list(updates), **kwargs)


def members(tmp_path, path) -> dict[str, bytes]:
    """What is really inside the cab (extracted with the real cabextract)."""
    require_tool("cabextract")
    into = tmp_path / f"x-{path.parent.name}"
    into.mkdir()
    return cabextract_tree(path, into)


def cli_json(install, *args: str, **env: str):
    return json.loads(install.cli(*args, "--json", **env).stdout)


def updates(install, *args: str) -> list[dict]:
    return cli_json(install, "wsus", "updates", "list", "--product", "UC devices", *args)


def show(install, update_id: str) -> dict:
    return cli_json(install, "wsus", "updates", "show", update_id)


def test_namespace_and_category_ids_are_the_c10_values():
    assert str(NAMESPACE) == "a3df0b13-16c4-54e7-9720-c60d3b21ef0f"
    from devupdate.wsus.catalog import images

    assert (images.COMPANY_ID, images.PRODUCT_ID, images.UPDATES_CLASSIFICATION_ID) == (COMPANY, PRODUCT, UPDATES)
    assert images.image_update_id("{5A1D0000-0000-4000-8000-00000000ABCD}", V1) == image_id(
        "5a1d0000-0000-4000-8000-00000000abcd", V1)


def test_imported_version_is_a_catalog_update_with_the_cabs_files(install, tmp_path):
    update = make_update("Polycom", "CX600", V1)
    path = cab(tmp_path, "v1", update)
    inside = members(tmp_path, path)
    install.cli("import", str(path))
    uid = image_id(update.id, V1)
    [listed] = updates(install)
    assert listed == {"UpdateID": uid, "RevisionID": listed["RevisionID"], "RevisionNumber": 1, "Type": "Software",
                      "Title": f"Polycom CX600 A ENU CPE {V1}", "KB": None, "State": "published", "IsLeaf": True,
                      "Products": [{"UpdateID": PRODUCT, "Title": "UC devices"}],
                      "Classifications": [{"UpdateID": UPDATES, "Title": "Updates"}]}
    assert updates(install, "--classification", "Updates") == [listed]
    shown = show(install, uid)
    nbt, cat = inside["CX600_A_ENU_CPE.nbt"], inside["CX600_A_ENU_CPE.cat"]
    assert shown["Files"] == [
        {"FileName": "CX600_A_ENU_CPE.nbt", "SHA1": hashlib.sha1(nbt).hexdigest(),
         "SHA256": hashlib.sha256(nbt).hexdigest(), "Size": len(nbt), "PatchingType": None, "MUUrl": None,
         "Present": True},
        {"FileName": "CX600_A_ENU_CPE.cat", "SHA1": hashlib.sha1(cat).hexdigest(),
         "SHA256": hashlib.sha256(cat).hexdigest(), "Size": len(cat), "PatchingType": None, "MUUrl": None,
         "Present": True}]
    assert shown["Prerequisites"] == [{"IsCategory": True, "AnyOf": [UPDATES]},
                                      {"IsCategory": True, "AnyOf": [PRODUCT]}]
    assert (shown["Supersedes"], shown["SupersededBy"], shown["Declined"], shown["PublicationState"]) == (
        [], [], False, "Published")
    assert [(r["RevisionNumber"], r["Current"]) for r in shown["Revisions"]] == [(1, True)]
    generated = {c["UpdateID"]: (c["Type"], c["Title"], c["Parents"])
                 for c in cli_json(install, "wsus", "categories", "list")}
    assert generated == {COMPANY: ("Company", "devupdate", []), PRODUCT: ("Product", "UC devices", [COMPANY]),
                         UPDATES: ("UpdateClassification", "Updates", [])}


def test_second_version_supersedes_the_first_and_reimport_changes_nothing(install, tmp_path):
    first = cab(tmp_path, "v1", make_update("Aastra", "6725ip", V1))
    second = cab(tmp_path, "v2", make_update("Aastra", "6725ip", V2))
    rule = make_update("Aastra", "6725ip", V1).id
    old, new = image_id(rule, V1), image_id(rule, V2)
    install.cli("import", str(first))
    [before] = updates(install)
    install.cli("import", str(second))
    listed = {row["UpdateID"]: row for row in updates(install)}
    assert set(listed) == {old, new}
    assert listed[old] == {**before, "State": "superseded"}  # same revision, same RevisionID
    assert (listed[new]["State"], listed[new]["RevisionNumber"]) == ("published", 1)
    assert show(install, new)["Supersedes"] == [old]
    assert show(install, old)["SupersededBy"] == [new]
    nbt = members(tmp_path, second)["6725ip_A_ENU_CPE.nbt"]
    assert show(install, new)["Files"][0]["SHA1"] == hashlib.sha1(nbt).hexdigest()
    shown = {uid: show(install, uid) for uid in (old, new)}
    for path in (first, second, first):
        install.cli("import", str(path))
    assert {row["UpdateID"]: row for row in updates(install)} == listed
    assert {uid: show(install, uid) for uid in (old, new)} == shown  # RevisionIDs, revisions, ChangeSeq


def test_an_older_version_imported_later_raises_the_newer_ones_revision(install, tmp_path):
    """Supersedence is part of the metadata: when an earlier version arrives after a later one, the
    later one's document gains it, as RevisionNumber 2; its RevisionNumber 1 keeps its RevisionID."""
    rule = make_update("HP", "4110", V1).id
    install.cli("import", str(cab(tmp_path, "v2", make_update("HP", "4110", V2))))
    first_rid = show(install, image_id(rule, V2))["RevisionID"]
    install.cli("import", str(cab(tmp_path, "v1", make_update("HP", "4110", V1))))
    shown = show(install, image_id(rule, V2))
    assert [(r["RevisionNumber"], r["Current"]) for r in shown["Revisions"]] == [(2, True), (1, False)]
    assert shown["Revisions"][1]["RevisionID"] == first_rid != shown["RevisionID"]
    assert shown["Supersedes"] == [image_id(rule, V1)]
    assert show(install, image_id(rule, V1))["Supersedes"] == []


def test_generated_document_goes_through_the_same_reader(install, tmp_path):
    update = make_update("Polycom", "CX500", V1, locale="DEU")
    path = cab(tmp_path, "v1", update)
    inside = members(tmp_path, path)
    install.cli("import", str(path))
    uid = image_id(update.id, V1)
    rid = show(install, uid)["RevisionID"]
    install.runtime()
    from devupdate.wsus.catalog import store
    from devupdate.wsus.catalog.document import parse_update
    from devupdate.wsus.catalog.models import LocalizedFragment, Revision

    text = store.document_text(rid)
    doc = parse_update(text.encode("utf-8"), expected=(uid, 1))
    revision = Revision.get_by_id(rid)
    assert (revision.core, revision.extended) == (doc.core, doc.extended)  # derived once, at the store
    assert doc.core == (
        f'<UpdateIdentity UpdateID="{uid}" RevisionNumber="1" /><Properties UpdateType="Software" />'
        f'<Relationships><Prerequisites><AtLeastOne IsCategory="true"><UpdateIdentity UpdateID="{UPDATES}" />'
        f'</AtLeastOne><AtLeastOne IsCategory="true"><UpdateIdentity UpdateID="{PRODUCT}" /></AtLeastOne>'
        f'</Prerequisites></Relationships><ApplicabilityRules><IsInstalled><False /></IsInstalled>'
        f'<IsInstallable><False /></IsInstallable></ApplicabilityRules>')
    nbt, cat = inside["CX500_A_DEU_CPE.nbt"], inside["CX500_A_DEU_CPE.cat"]

    def b64(data: bytes, algorithm) -> str:
        return base64.b64encode(algorithm(data).digest()).decode()

    assert doc.extended.startswith(f'<ExtendedProperties DefaultPropertiesLanguage="en" Handler="{CMD}" '
                                   f'MaxDownloadSize="{len(nbt) + len(cat)}" MinDownloadSize="0" /><Files>'
                                   f'<File Digest="{b64(nbt, hashlib.sha1)}" DigestAlgorithm="SHA1" '
                                   f'FileName="CX500_A_DEU_CPE.nbt" Size="{len(nbt)}" Modified="')
    assert f'<AdditionalDigest Algorithm="SHA256">{b64(nbt, hashlib.sha256)}</AdditionalDigest>' in doc.extended
    assert doc.extended.endswith('</Files><HandlerSpecificData type="cmd:CommandLineInstallation" />')
    assert doc.update_type == "Software" and doc.publication_state == "Published"
    description = (f"DeviceType=UCPhone;Brand=Polycom;Model=CX500;Revision=A;Locale=DEU;UpdateType=CPE;Version={V1}"
                   f";RuleId={update.id.lower()}")
    assert [(item.language, item.title, item.description) for item in doc.localized] == [
        ("en", f"Polycom CX500 A DEU CPE {V1}", description)]
    assert LocalizedFragment.get(LocalizedFragment.revision == rid).fragment == (
        f"<LocalizedProperties><Language>en</Language><Title>Polycom CX500 A DEU CPE {V1}</Title>"
        f"<Description>{description}</Description></LocalizedProperties>")
    company = parse_update(store.document_text(show(install, COMPANY)["RevisionID"]))
    product = parse_update(store.document_text(show(install, PRODUCT)["RevisionID"]))
    assert (company.category_type, company.title, company.prerequisites) == ("Company", "devupdate", [])
    assert (product.category_type, product.title) == ("Product", "UC devices")
    assert [(c.update_ids, c.is_category) for c in product.prerequisites] == [((COMPANY,), True)]


def test_microsofts_own_updates_classification_is_kept(install, tmp_path):
    theirs = tmp_path / "updates.xml"
    theirs.write_text(category(UPDATES, "Updates", "UpdateClassification", revision=105))
    install.cli("wsus", "import", str(theirs))
    install.cli("import", str(cab(tmp_path, "v1", make_update())))
    shown = show(install, UPDATES)
    assert [r["RevisionNumber"] for r in shown["Revisions"]] == [105]
    assert updates(install, "--classification", UPDATES)[0]["Classifications"] == [
        {"UpdateID": UPDATES, "Title": "Updates"}]


def _nothing_of(install, rule_ids: list[str]) -> None:
    rules = {r["Id"] for r in cli_json(install, "rules", "list")}
    assert not rules & set(rule_ids)
    listed = {row["UpdateID"] for row in cli_json(install, "wsus", "updates", "list")}
    for rule_id in rule_ids:
        assert not any(uid == image_id(rule_id, v) for uid in listed for v in (V1, V2, V3))


def test_quota_exceeded_mid_import_leaves_neither_rules_nor_catalog_rows(install, tmp_path):
    big = cab(tmp_path, "big", make_update(model="CX600"), make_update(model="CX700"), image_sizes=150_000)
    refused = install.cli("import", str(big), check=False, DEVUPDATE_QUOTA_IMAGES="200000")
    assert refused.returncode == 1 and "DEVUPDATE_QUOTA_IMAGES" in refused.stderr
    assert cli_json(install, "rules", "list") == []
    assert cli_json(install, "wsus", "updates", "list") == []
    assert cli_json(install, "wsus", "categories", "list") == []


def test_refusal_inside_the_import_transaction_rolls_the_catalog_back(install, tmp_path):
    """The second update of the cab conflicts after the first was applied and published: both go."""
    install.cli("import", str(cab(tmp_path, "a", make_update(model="CX600", version=V1))))
    before = cli_json(install, "wsus", "updates", "list")
    new_rule = make_update(model="CX3000", version=V1)
    conflicting = make_update(model="CX600", version=V1)  # same version, other bytes
    refused = install.cli("import", str(cab(tmp_path, "b", new_rule, conflicting, image_sizes=5000)), check=False)
    assert refused.returncode == 1 and "vendors must not reuse a version number" in refused.stderr
    _nothing_of(install, [new_rule.id])
    assert cli_json(install, "wsus", "updates", "list") == before
    assert show(install, image_id(conflicting.id, V1))["Files"][0]["Size"] == 4096


def test_removing_a_rule_declines_its_updates_and_a_new_import_brings_them_back(install, tmp_path):
    rule = make_update("LG-Nortel", "IP8540", V1).id
    install.cli("import", str(cab(tmp_path, "v1", make_update("LG-Nortel", "IP8540", V1))))
    install.cli("import", str(cab(tmp_path, "v2", make_update("LG-Nortel", "IP8540", V2))))
    other = make_update("HP", "4120", V1)
    install.cli("import", str(cab(tmp_path, "o", other)))
    seq = show(install, image_id(rule, V2))["ChangeSeq"]
    install.cli("rules", "remove", rule)
    declined = {row["UpdateID"] for row in updates(install, "--state", "declined")}
    assert declined == {image_id(rule, V1), image_id(rule, V2)}
    assert show(install, image_id(rule, V2))["ChangeSeq"] > seq
    assert [row["UpdateID"] for row in updates(install, "--state", "published")] == [image_id(other.id, V1)]
    install.cli("import", str(cab(tmp_path, "v3", make_update("LG-Nortel", "IP8540", V3))))
    states = {row["UpdateID"]: row["State"] for row in updates(install)}
    assert states == {image_id(rule, V1): "superseded", image_id(rule, V2): "superseded",
                      image_id(rule, V3): "published", image_id(other.id, V1): "published"}
    assert show(install, image_id(rule, V3))["Supersedes"] == sorted([image_id(rule, V1), image_id(rule, V2)])


def test_content_serves_the_image_by_sha1_until_its_version_is_cleaned_up(install, tmp_path, live_server):
    update = make_update("Polycom", "CX700", V1)
    path = cab(tmp_path, "v1", update, image_sizes=70_000)
    nbt = members(tmp_path, path)["CX700_A_ENU_CPE.nbt"]
    install.cli("import", str(path))
    sha1 = hashlib.sha1(nbt).hexdigest()
    server = live_server(workers=1, DEVUPDATE_FILE_CLEANUP_GRACE="0")
    curl = Curl(tmp_path)
    url = f"{server.url}/Content/{sha1[-2:].upper()}/{sha1.upper()}.nbt"
    status, headers, body, _ = curl(url)
    assert (status, body, headers["etag"]) == (200, nbt, f'"{sha1}"')
    status, headers, body, _ = curl("-r", "100-199", url)
    assert (status, body, headers["content-range"]) == (206, nbt[100:200], f"bytes 100-199/{len(nbt)}")
    install.cli("rules", "remove", update.id)
    install.cli("files", "cleanup", DEVUPDATE_FILE_CLEANUP_GRACE="0")
    assert [f["Present"] for f in show(install, image_id(update.id, V1))["Files"]] == [False, False]
    assert curl(url)[0] == 404


def test_supersedence_outlives_the_cleanup_of_an_earlier_version(install, tmp_path):
    """A cleaned-up version stays superseded (its files no longer present), later imports change no
    revision of the remaining versions, and a new version supersedes every earlier one."""
    rule = make_update("Polycom", "CX600", V1).id
    versions = (V1, V2, V3)
    for version in versions:
        install.cli("import", str(cab(tmp_path, version, make_update("Polycom", "CX600", version))))
        install.cli("rules", "approve", rule)  # V3 approved, V2 to restore: V1 is no longer referenced
    before = {v: show(install, image_id(rule, v)) for v in versions}
    assert before[V3]["Supersedes"] == sorted([image_id(rule, V1), image_id(rule, V2)])
    report = cli_json(install, "files", "cleanup", DEVUPDATE_FILE_CLEANUP_GRACE="0")
    assert report["VersionsRemoved"] == [f"{rule}/{V1}"]
    V4 = "4.0.7577.4400"
    install.cli("import", str(cab(tmp_path, V4, make_update("Polycom", "CX600", V4))))
    after = {v: show(install, image_id(rule, v)) for v in versions}
    assert [f["Present"] for f in after[V1]["Files"]] == [False, False]
    assert after[V1]["State"] == "superseded"
    for version in (V2, V3):
        assert after[version]["Revisions"] == before[version]["Revisions"]  # no new revision
        assert after[version]["Supersedes"] == before[version]["Supersedes"]
    assert show(install, image_id(rule, V4))["Supersedes"] == sorted(image_id(rule, v) for v in versions)


# -- deployments follow the rule state (C10) ---------------------------------------------------------------

def test_deployment_mapping_is_a_pure_function_of_the_rule_state():
    from devupdate.wsus.catalog.images import Deployment, deployment_changes, rule_deployments

    rule = "5a1d0000-0000-4000-8000-00000000abcd"

    def state(pending=None, approved=None, removed=False):
        return rule_deployments(rule, pending_version=pending, approved_version=approved, removed=removed)

    test = lambda v: Deployment("Test", image_id(rule, v))  # noqa: E731
    everyone = lambda v: Deployment("All Computers", image_id(rule, v))  # noqa: E731
    assert state() == frozenset()
    imported = state(pending=V1)
    assert imported == {test(V1)}
    approved = state(approved=V1)
    assert deployment_changes(imported, approved).added == (everyone(V1),)
    second = state(pending=V2, approved=V1)
    assert second == {test(V2), everyone(V1)}
    reset = state(approved=V1)
    changes = deployment_changes(second, reset)
    assert (changes.added, changes.removed) == ((), (test(V2),))
    upgraded = state(approved=V2)
    restored = state(approved=V1)
    changes = deployment_changes(upgraded, restored)
    assert (changes.added, changes.removed) == ((everyone(V1),), (everyone(V2),))
    removed = state(pending=V3, approved=V2, removed=True)
    assert removed == frozenset()
    changes = deployment_changes(second, removed)
    assert (changes.added, changes.removed) == ((), (everyone(V1), test(V2)))
    assert all(d.action == "Install" for d in second)


def test_deployments_follow_the_real_rule_lifecycle(install, tmp_path):
    from devupdate.wsus.catalog.images import Deployment

    update = make_update("Polycom", "CX3000", V1)
    rule = update.id

    def now():
        install.runtime()
        from devupdate.rules.catalog import deployments
        from devupdate.rules.models import Rule

        return deployments(Rule.get_or_none(Rule.id == rule), rule)

    test = lambda v: Deployment("Test", image_id(rule, v))  # noqa: E731
    everyone = lambda v: Deployment("All Computers", image_id(rule, v))  # noqa: E731
    install.cli("import", str(cab(tmp_path, "v1", update)))
    assert now() == {test(V1)}
    install.cli("rules", "approve", rule)
    assert now() == {everyone(V1)}
    install.cli("import", str(cab(tmp_path, "v2", make_update("Polycom", "CX3000", V2))))
    assert now() == {test(V2), everyone(V1)}
    install.cli("rules", "reset", rule)
    assert now() == {everyone(V1)}
    install.cli("import", str(cab(tmp_path, "v3", make_update("Polycom", "CX3000", V3))))
    install.cli("rules", "approve", rule)
    assert now() == {everyone(V3)}
    install.cli("rules", "restore", rule)
    assert now() == {everyone(V1)}
    install.cli("rules", "remove", rule)
    assert now() == frozenset()


@pytest.mark.parametrize("value", ["a;b", "<x&y>"])
def test_title_and_description_keep_odd_characters(value):
    import datetime as dt

    from devupdate.wsus.catalog.document import parse_update
    from devupdate.wsus.catalog.images import ImageFile, PhoneImage, image_document

    image = PhoneImage("5a1d0000-0000-4000-8000-00000000abcd", "UCPhone", value, "M", "A", "ENU", "CPE", V1,
                       dt.datetime(2026, 7, 21, 12, 0, 0, 123456),
                       (ImageFile('a"b.nbt', "00" * 20, "11" * 32, 5),))
    doc = parse_update(image_document(image, 3))
    assert (doc.title, doc.localized[0].description) == (f"{value} M A ENU CPE {V1}", image.description)
    assert doc.files[0].file_name == 'a"b.nbt' and doc.creation_date == "2026-07-21T12:00:00.123Z"
    assert doc.revision_number == 3


def test_concurrent_imports_both_publish_and_the_categories_once(install, tmp_path):
    import subprocess
    import sys

    install.cli("db", "upgrade")
    models = ("CX500", "CX600", "CX700", "CX3000")
    paths = [cab(tmp_path, model, make_update("Polycom", model, V1)) for model in models]
    procs = [subprocess.Popen([sys.executable, "-m", "devupdate", "import", str(path)], env=install.environ(),
                              cwd=install.home.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for path in paths]
    results = [proc.communicate(timeout=120) + (proc.returncode,) for proc in procs]
    assert [code for _, _, code in results] == [0] * len(models), results
    assert {row["UpdateID"] for row in updates(install)} == {
        image_id(make_update("Polycom", model, V1).id, V1) for model in models}
    assert [len(show(install, uid)["Revisions"]) for uid in (COMPANY, PRODUCT, UPDATES)] == [1, 1, 1]


def _image(model: str):
    import datetime as dt

    from devupdate.wsus.catalog.images import ImageFile, PhoneImage

    return PhoneImage(make_update("Polycom", model, V1).id, "UCPhone", "Polycom", model, "A", "ENU", "CPE", V1,
                      dt.datetime(2026, 7, 21, 12, 0, 0), (ImageFile(f"{model}.nbt", "ab" * 20, "cd" * 32, 10),))


def test_a_publisher_waits_for_one_still_publishing_the_categories(database):
    """Two publishers at once: the second waits for the first to commit, the categories are stored
    once, and neither fails."""
    import threading

    from devupdate import db
    from devupdate.wsus.catalog import publish
    from devupdate.wsus.catalog.models import Revision

    first_in, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first():
        try:
            with db.write_transaction():
                publish.publish_images([_image("CX500")])
                first_in.set()
                assert release.wait(30)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            first_in.set()
            db.database.close()

    def second():
        try:
            with db.write_transaction():
                publish.publish_images([_image("CX600")])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            db.database.close()

    one = threading.Thread(target=first)
    one.start()
    assert first_in.wait(30)
    two = threading.Thread(target=second)
    two.start()
    two.join(0.5)
    assert two.is_alive()  # waiting for the first writer
    release.set()
    one.join(30)
    two.join(30)
    assert errors == []
    counts = {uid: Revision.select().where(Revision.update_id == uid).count() for uid in (COMPANY, PRODUCT, UPDATES)}
    assert counts == {COMPANY: 1, PRODUCT: 1, UPDATES: 1}
    assert {r.update_id for r in Revision.select().where(Revision.update_type == "Software")} == {
        image_id(make_update("Polycom", m, V1).id, V1) for m in ("CX500", "CX600")}


def test_upgrade_publishes_versions_imported_before_the_catalog(install, tmp_path):
    update = make_update("Aastra", "6721ip", V1)
    install.cli("import", str(cab(tmp_path, "v1", update)))
    install.cli("import", str(cab(tmp_path, "v2", make_update("Aastra", "6721ip", V2))))
    published = updates(install)
    install.runtime()
    from devupdate import schema
    from devupdate.wsus.catalog import store
    from devupdate.wsus.catalog.models import Update

    for uid in (image_id(update.id, V1), image_id(update.id, V2), PRODUCT, COMPANY, UPDATES):
        store.delete_update(uid)  # as a database whose versions were imported before the catalog
    schema.SchemaVersion.delete().execute()  # stamped at 5, as before this migration
    schema.SchemaVersion.create(version=5, name=schema.MIGRATIONS[4].name)
    assert Update.select().count() == 0
    upgraded = install.cli("db", "upgrade")
    assert "applied migration 6: phone images imported before the catalog published as its updates" in (
        upgraded.stdout + upgraded.stderr)
    assert updates(install) == published  # the same RevisionIDs, supersedence and files
