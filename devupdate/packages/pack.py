"""`devupdate pack`: build a vendor-style cab from image files, their catalogs and rule fields."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from devupdate.packages.description import FileRef, UpdateDescription, parse_description
from devupdate.packages.errors import PackageError
from devupdate.packages.package import validate_package
from devupdate.packages.writer import DESCRIPTION_NAME, build_package, write_cab


def pack_files(out: Path, files: list[Path], *, description: Path | None = None, rule_id: str | None = None,
               device_type: str = "UCPhone", brand: str | None = None, model: str | None = None,
               revision: str = "A", locale: str = "ENU", update_type: str | None = None,
               version: str | None = None) -> dict[str, Any]:
    """Write ``out`` from ``files`` and either a description XML or the rule fields.

    Without a description: one update per image (.nbt), UpdateType = its stem, each with the
    .cat of the same stem; with ``update_type`` given, one update holding every image.
    ``rule_id`` (a GUID) needs exactly one update; otherwise new GUIDs are made.
    Returns {"Size", "Members", "Updates"} for the command's report.
    """
    members: dict[str, Path | bytes] = {}
    for path in files:
        if path.name.lower() in {name.lower() for name in members}:
            raise PackageError("duplicate-name", f"two files are called {path.name} (names ignore case)")
        members[path.name] = path
    if description is not None:
        given = [flag for flag, value in (("--id", rule_id), ("--brand", brand), ("--model", model),
                                          ("--update-type", update_type), ("--version", version)) if value]
        if given:
            raise PackageError("bad-description", f"--description replaces {', '.join(given)}; "
                               "put those fields in the description file")
        data = description.read_bytes()
        updates = parse_description(data, description.name)
        if updates is None:
            raise PackageError("bad-description", f"{description.name}: the root element is not DeviceUpdate")
        if description.name.lower() in {name.lower() for name in members}:
            raise PackageError("duplicate-name", f"{description.name} is both the description and a file")
        updates = validate_package(list(members), updates)
        size = write_cab(out, {**members, description.name: data})
        names = [*members, description.name]
    else:
        updates = _updates_from_fields(members, rule_id=rule_id, device_type=device_type, brand=brand, model=model,
                                       revision=revision, locale=locale, update_type=update_type, version=version)
        updates = build_package(out, updates, members)
        size = Path(out).stat().st_size
        names = [*members, DESCRIPTION_NAME]
    return {"Size": size, "Members": sorted(names),
            "Updates": [{"Id": u.id, "Model": u.model, "Locale": u.locale, "UpdateType": u.update_type,
                         "Version": u.version, "Files": [f.name for f in u.files]} for u in updates]}


def _updates_from_fields(members: dict[str, Path | bytes], *, rule_id: str | None, device_type: str,
                         brand: str | None, model: str | None, revision: str, locale: str,
                         update_type: str | None, version: str | None) -> list[UpdateDescription]:
    missing = [flag for flag, value in (("--brand", brand), ("--model", model), ("--version", version)) if not value]
    if missing:
        raise PackageError("bad-description", f"give {', '.join(missing)} (or --description FILE)")
    images = [name for name in members if name.lower().endswith(".nbt")]
    if not images:
        raise PackageError("missing-file", "no image (.nbt) among the files")
    lower = {name.lower(): name for name in members}

    def ref(image: str) -> FileRef:
        return FileRef(image, lower.get(image.rsplit(".", 1)[0].lower() + ".cat"))

    groups = [(update_type, images)] if update_type else [(image.rsplit(".", 1)[0], [image]) for image in images]
    if rule_id and len(groups) > 1:
        raise PackageError("bad-description", f"--id names one rule, but {len(groups)} images make "
                           f"{len(groups)} updates; give --update-type to put them in one")
    return [UpdateDescription(id=rule_id or str(uuid.uuid4()), device_type=device_type, brand=brand or "",
                              model=model or "", revision=revision, locale=locale, update_type=kind,
                              version=version or "", files=tuple(ref(image) for image in group))
            for kind, group in groups]
