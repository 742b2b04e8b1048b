"""Importing packages end to end (update-packages.md §3): cabs built by ``devupdate pack`` and by
the real ``gcab``, idempotency, dedupe, every refusal leaving store and database unchanged."""

from __future__ import annotations

import json
import random

import pytest
from helpers.cabs import make_package, make_update, raw_cab, realistic_updates
from helpers.tools import require_tool

from devupdate.audit.models import AuditEvent
from devupdate.content.models import StoredObject
from devupdate.errors import DevupdateError
from devupdate.imports.models import ImportJournal, ImportRecord
from devupdate.imports.service import import_cab
from devupdate.packages import describe_updates
from devupdate.rules import lifecycle
from devupdate.rules.models import Generation, Rule, RuleVersion, TestDevice, VersionFile

CONTENT_TABLES = (Rule, StoredObject, RuleVersion, VersionFile, TestDevice, Generation, ImportJournal)


def snapshot_state(rt) -> dict:
    """Everything a refused import must leave untouched: rows and stored objects."""
    state = {model.__name__: sorted(map(str, model.select().tuples())) for model in CONTENT_TABLES}
    state["objects"] = sorted(rt.store.objects("images"))
    state["usage"] = rt.store.usage("images").used_bytes
    return state


def do_import(rt, cab, **settings):
    return import_cab(rt.store, rt.settings if not settings else rt.settings.__class__(**{
        **rt.settings.__dict__, **settings}), cab, actor="test:admin")


@pytest.mark.parametrize("tool", ["pack", "gcab"])
def test_realistic_cab_imports_every_rule_as_pending(rt, tmp_path, tool):
    if tool == "gcab":
        require_tool("gcab")
    updates = realistic_updates("4.0.7577.4372")
    cab = make_package(tmp_path, updates, image_sizes=20_000, tool=tool)
    result = do_import(rt, cab)
    assert result.outcome == "imported"
    assert sorted(r["Id"] for r in result.rules) == sorted(u.id for u in updates)
    assert {r["Change"] for r in result.rules} == {"created"}
    assert result.findings == []
    for update in updates:
        rule = Rule.get_by_id(update.id)
        assert (rule.brand, rule.model, rule.pending_version, rule.approved_version) == (
            update.brand, update.model, "4.0.7577.4372", None)
        version = RuleVersion.get(RuleVersion.rule_id == update.id)
        assert version.path_prefix == f"UCPhone/{update.brand}/{update.model}/A/ENU/4.0.7577.4372"
        files = {f.file_name: f.role for f in version.files}
        assert files == {update.files[0].name: "image", update.files[0].catalog: "catalog"}
    # 9 images + 9 catalogs, each stored once and re-hashing clean
    assert len(list(rt.store.objects("images"))) == 18 == StoredObject.select().count()
    assert rt.store.verify() == []
    record = ImportRecord.get()
    assert (record.outcome, record.file_name, record.size, record.actor) == (
        "imported", cab.name, cab.stat().st_size, "test:admin")
    event = AuditEvent.get(AuditEvent.action == "import")
    detail = json.loads(event.detail)
    assert (detail["Outcome"], detail["SHA256"], len(detail["Rules"])) == ("imported", result.sha256, 9)


@pytest.mark.parametrize("tool", ["pack", "gcab"])
def test_authenticode_signed_cab_imports_like_the_unsigned_one(rt, tmp_path, tool):
    """Vendors sign their cabs (the signature lives in the header's reserved area and after the
    data): a cab signed by the real ``osslsigncode`` imports with exactly the unsigned one's members."""
    import subprocess

    osslsigncode, openssl = require_tool("osslsigncode"), require_tool("openssl")
    if tool == "gcab":
        require_tool("gcab")
    plain = make_package(tmp_path, realistic_updates()[:3], image_sizes=70_000, tool=tool)
    key, cert, signed = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "signed" / "UCUpdates.cab"
    signed.parent.mkdir()
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "30", "-subj", "/CN=Contoso Phones Code Signing"], check=True, capture_output=True)
    subprocess.run([osslsigncode, "sign", "-certs", str(cert), "-key", str(key), "-n", "UC phone updates",
                    "-in", str(plain), "-out", str(signed)], check=True, capture_output=True)
    header = signed.read_bytes()[:36]
    assert header[:4] == b"MSCF" and int.from_bytes(header[30:32], "little") & 0x0004  # FLAG_RESERVE_PRESENT
    assert "Signature verification: ok" in subprocess.run(
        [osslsigncode, "verify", "-CAfile", str(cert), "-in", str(signed)], capture_output=True, text=True).stdout

    result = do_import(rt, signed)
    assert result.outcome == "imported" and result.findings == []
    signed_objects = sorted(rt.store.objects("images"))
    assert len(signed_objects) == 6 and rt.store.verify() == []
    assert do_import(rt, plain).outcome == "nothing-new"  # same members, same versions: nothing to add
    assert sorted(rt.store.objects("images")) == signed_objects


def test_same_cab_twice_is_nothing_new(rt, tmp_path):
    cab = make_package(tmp_path, [make_update()])
    do_import(rt, cab)
    before = snapshot_state(rt)
    second = do_import(rt, cab)
    assert second.outcome == "nothing-new"
    assert [r["Change"] for r in second.rules] == ["unchanged"]
    assert snapshot_state(rt) == before
    assert [r.outcome for r in ImportRecord.select().order_by(ImportRecord.id)] == ["imported", "nothing-new"]


def test_importing_the_approved_version_changes_nothing(rt, tmp_path):
    update = make_update(version="4.0.7577.4372")
    cab = make_package(tmp_path, [update])
    do_import(rt, cab)
    lifecycle.approve(update.id, "test")
    again = do_import(rt, cab)
    assert (again.outcome, again.rules[0]["Change"]) == ("nothing-new", "unchanged")
    assert lifecycle.resolve(update.id).pending_version is None


def test_new_version_becomes_pending_and_identical_content_is_stored_once(rt, tmp_path):
    first = make_update(version="4.0.7577.4366")
    do_import(rt, make_package(tmp_path, [first]))
    lifecycle.approve(first.id, "test")
    (tmp_path / "b").mkdir()
    # a second model shipping byte-identical files under the same names dedupes to the same objects
    newer = make_update(version="4.0.7577.4372")
    result = do_import(rt, make_package(tmp_path / "b", [newer]))
    assert result.rules == [{"Id": first.id, "Version": "4.0.7577.4372", "Change": "new-version"}]
    rule = Rule.get_by_id(first.id)
    assert (rule.approved_version, rule.pending_version) == ("4.0.7577.4366", "4.0.7577.4372")
    (tmp_path / "c").mkdir()
    objects = len(list(rt.store.objects("images")))
    same_bytes = make_update(model="CX600", version="4.0.7577.4372", locale="DEU",
                             files=newer.files)
    do_import(rt, make_package(tmp_path / "c", [same_bytes]))
    assert len(list(rt.store.objects("images"))) == objects  # image and catalog already stored


def test_reused_version_with_different_bytes_is_refused(rt, tmp_path):
    update = make_update(version="4.0.7577.4372")
    do_import(rt, make_package(tmp_path, [update], image_sizes=1000))
    (tmp_path / "b").mkdir()
    before = snapshot_state(rt)
    with pytest.raises(DevupdateError, match="imported before with different files") as refused:
        do_import(rt, make_package(tmp_path / "b", [update], image_sizes=2000))
    assert refused.value.code == "version-conflict"
    assert snapshot_state(rt) == before


def _package_with(tmp_path, members: dict[str, bytes]):
    path = tmp_path / "bad.cab"
    path.write_bytes(raw_cab(list(members.items())))
    return path


def _description(**kwargs) -> bytes:
    return describe_updates([make_update(**kwargs)])


def bad_packages(tmp_path):
    """Every refusal of update-packages.md §1, built for the importer."""
    update = make_update()
    image, catalog = update.files[0].name, update.files[0].catalog
    good = {image: b"firmware", catalog: b"catalog", "UCUpdates.xml": describe_updates([update])}
    cab_bytes = raw_cab(list(good.items()), compression=1)
    cases = {
        "not-a-cabinet": b"PK\x03\x04 this is a zip, not a cabinet" * 10,
        "corrupt": cab_bytes[: len(cab_bytes) // 2],
        "multi-cabinet": raw_cab(list(good.items()), flags=2),
        "unsafe-name": raw_cab([("../../etc/passwd", b"x"), *good.items()]),
        "duplicate-name": raw_cab([*good.items(), (image.upper(), b"again")]),
        "decompression-bomb": raw_cab([(image, bytes(64 * 1024**2)), (catalog, b"c"),
                                       ("UCUpdates.xml", describe_updates([update]))], compression=1),
        "no-description": raw_cab([(image, b"firmware"), (catalog, b"catalog")]),
        "missing-file": raw_cab([(catalog, b"catalog"), ("UCUpdates.xml", describe_updates([update]))]),
        "missing-catalog": raw_cab([(image, b"firmware"), ("UCUpdates.xml", describe_updates([update]))]),
        "bad-description": raw_cab([(image, b"f"), (catalog, b"c"), ("UCUpdates.xml",
                                   b'<!DOCTYPE x [<!ENTITY a "aaaa">]><DeviceUpdate>&a;</DeviceUpdate>')]),
    }
    for code, blob in cases.items():
        path = tmp_path / f"{code}.cab"
        path.write_bytes(blob)
        yield code, path


def test_every_bad_package_is_refused_with_its_own_code_and_nothing_changes(rt, tmp_path):
    do_import(rt, make_package(tmp_path, [make_update(model="CX500")]))  # a store that is not empty
    before = snapshot_state(rt)
    seen = set()
    for code, path in bad_packages(tmp_path):
        with pytest.raises(DevupdateError) as refused:
            do_import(rt, path)
        assert refused.value.code == code, (code, refused.value.message)
        seen.add(refused.value.message)
        assert snapshot_state(rt) == before, code
        assert not list((rt.settings.filestore_root / "images").rglob(".tmp-*")), code
    assert len(seen) == 10  # ten different messages
    refusals = list(ImportRecord.select().where(ImportRecord.outcome == "refused"))
    assert sorted(r.code for r in refusals) == sorted(code for code, _ in bad_packages(tmp_path))
    assert AuditEvent.select().where((AuditEvent.action == "import") & (AuditEvent.outcome == "refused")).count() == 10


def test_cab_above_size_limit_is_refused_before_reading(rt, tmp_path):
    cab = make_package(tmp_path, [make_update()], image_sizes=50_000)
    before = snapshot_state(rt)
    with pytest.raises(DevupdateError, match="raise DEVUPDATE_MAX_CAB_SIZE") as refused:
        do_import(rt, cab, max_cab_size=10_000)
    assert (refused.value.code, refused.value.status) == ("cab-too-large", 413)
    assert snapshot_state(rt) == before


def test_quota_exceeded_mid_import_leaves_nothing(install, tmp_path):
    rt = install.runtime(quota_images=300_000)
    do_import(rt, make_package(tmp_path, [make_update(model="CX500")], image_sizes=100_000))
    before = snapshot_state(rt)
    (tmp_path / "b").mkdir()
    big = make_package(tmp_path / "b", [make_update(model="CX600"), make_update(model="CX700")],
                       image_sizes=150_000)
    with pytest.raises(DevupdateError, match="DEVUPDATE_QUOTA_IMAGES") as refused:
        do_import(rt, big)
    assert (refused.value.code, refused.value.status) == ("quota-exceeded", 507)
    assert snapshot_state(rt) == before
    assert not list((rt.settings.filestore_root / "images").rglob(".tmp-*"))


def test_catalog_policy_enforce_refuses_an_image_missing_from_its_catalog(rt, tmp_path):
    from helpers.cabs import make_catalog

    update = make_update()
    image, catalog = update.files[0].name, update.files[0].catalog
    path = tmp_path / "unlisted.cab"
    path.write_bytes(raw_cab([(image, b"firmware"), (catalog, make_catalog({"other.nbt": b"other"})),
                              ("UCUpdates.xml", describe_updates([update]))]))
    warned = do_import(rt, path)
    assert any("not listed" in finding for finding in warned.findings), warned.findings
    lifecycle.remove(update.id, "test")
    anchors = tmp_path / "anchors.pem"
    from helpers.cabs import trust_anchor_pem

    anchors.write_bytes(trust_anchor_pem())
    (tmp_path / "b").mkdir()
    path2 = tmp_path / "b" / "unlisted2.cab"
    other = make_update(model="CX700")
    path2.write_bytes(raw_cab([(other.files[0].name, b"fw2"), (other.files[0].catalog,
                                                               make_catalog({"other.nbt": b"other"})),
                               ("UCUpdates.xml", describe_updates([other]))]))
    with pytest.raises(DevupdateError, match="catalog verification failed") as refused:
        do_import(rt, path2, catalog_policy="enforce", trust_anchors=str(anchors))
    assert refused.value.code == "catalog-check-failed"
    assert Rule.get_or_none(Rule.id == other.id) is None


def test_enforce_with_signed_listed_catalog_imports(rt, tmp_path):
    from helpers.cabs import trust_anchor_pem

    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(trust_anchor_pem())
    result = do_import(rt, make_package(tmp_path, [make_update()]), catalog_policy="enforce",
                       trust_anchors=str(anchors))
    assert (result.outcome, result.findings) == ("imported", [])


def test_lzx_sample_without_description_is_refused_for_that(rt, samples):
    require_tool("cabextract")
    with pytest.raises(DevupdateError) as refused:
        do_import(rt, samples / "normal_2files_2folders.cab")
    assert refused.value.code == "no-description"


def test_random_garbage_never_escapes_as_another_exception(rt, tmp_path):
    rng = random.Random(7)
    good = raw_cab([("a.txt", b"hello" * 100)], compression=1)
    for i in range(40):
        blob = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            blob[rng.randrange(len(blob))] = rng.randrange(256)
        path = tmp_path / f"fuzz{i}.cab"
        path.write_bytes(bytes(blob))
        with pytest.raises(DevupdateError):
            do_import(rt, path)


def test_unreadable_trust_anchors_are_a_settings_refusal_naming_the_variable(rt, tmp_path):
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    update = make_update()
    with pytest.raises(DevupdateError) as refused:
        do_import(rt, make_package(tmp_path, [update]), catalog_policy="enforce", trust_anchors=str(anchors))
    assert refused.value.code == "bad-settings"
    assert refused.value.message.startswith(f"DEVUPDATE_TRUST_ANCHORS={anchors}: not a PEM or DER certificate")
    assert refused.value.message.endswith("give a PEM file of CA certificates")
    assert Rule.get_or_none(Rule.id == update.id) is None
