"""``devupdate wsus``: the update catalog offline (import, updates, categories, products).
Thin: the actions are in ``devupdate.wsus.catalog.service``. Registered in ``devupdate.cli``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from devupdate.clikit import actor, handle_errors, print_json, print_record, print_table, runtime
from devupdate.wsus.catalog import STATES


@click.group()
def group() -> None:
    """The WSUS update catalog: import update documents, list, show and decline updates, categories
    and the products that are synced and offered.

    \b
    devupdate wsus import updates/            (*.xml in UTF-8/UTF-16, *.cab = XmlUpdateBlobCompressed)
    devupdate wsus updates list --product "Microsoft Defender Antivirus" --state published
    devupdate wsus updates decline a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe
    devupdate wsus updates delete a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe   (restore gives it back, same RevisionIDs)
    """


@group.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@handle_errors
def import_(paths: tuple[Path, ...], as_json: bool) -> None:
    """Import update documents (FILE.xml, FILE.cab or DIR of them); a re-imported revision is unchanged.

    A refused file (a DTD, above 16 MiB, a malformed identity, …) is named on stderr, nothing of it
    is written, and the exit status is 1."""
    from devupdate.wsus.catalog.service import import_paths

    runtime()
    done = [0]

    def progress(_doc: object, _outcome: str) -> None:
        done[0] += 1
        if done[0] % 1000 == 0:
            click.echo(f"{done[0]} documents imported", err=True)

    counts = import_paths(list(paths), actor=actor(), on_document=progress,
                          on_refusal=lambda refusal: click.echo(f"devupdate: refused: {refusal.line()}", err=True))
    if counts.new or counts.updated:  # the auto-approval rules run after each import (W8)
        from devupdate.wsus.targeting.autoapproval import run_rules

        run_rules()
    if as_json:
        print_json(counts.as_dict())
    else:
        click.echo(f"{counts.new} new, {counts.updated} updated, {counts.unchanged} unchanged, "
                   f"{counts.refused} refused")
    if counts.refused:
        sys.exit(1)


@group.group()
def updates() -> None:
    """Software and driver updates: list, show, decline, undecline, delete, restore. ID is the UpdateID."""


@updates.command("list")
@click.option("--product", help="Only updates of this product (UpdateID or title).")
@click.option("--classification", help="Only updates of this classification (UpdateID or title).")
@click.option("--state", type=click.Choice(STATES), help="Only updates in this state (deleted ones are listed only "
              "with --state deleted).")
@click.option("--search", help="Title or KB contains this text, or the UpdateID starts with it.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def updates_list(product: str | None, classification: str | None, state: str | None, search: str | None,
                 as_json: bool) -> None:
    """Current revisions, newest first."""
    from devupdate.wsus.catalog.service import list_updates

    runtime()
    rows = list_updates(product=product, classification=classification, state=state, search=search)
    if as_json:
        print_json(rows)
        return
    print_table([{**row, "Products": ", ".join(p["Title"] for p in row["Products"]),
                  "Classifications": ", ".join(c["Title"] for c in row["Classifications"])} for row in rows],
                ["UpdateID", "RevisionNumber", "State", "KB", "Products", "Classifications", "Title"])


@updates.command("show")
@click.argument("update_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def updates_show(update_id: str, as_json: bool) -> None:
    """One update: title, KB, products, classifications, revisions, files, prerequisites, supersedence."""
    from devupdate.wsus.catalog.service import show_update

    runtime()
    data = show_update(update_id)
    print_json(data) if as_json else print_record(data)


def _decline(update_id: str, declined: bool, as_json: bool) -> None:
    from devupdate.wsus.catalog.service import decline

    runtime()
    result = decline(update_id, actor=actor(), declined=declined)
    if as_json:
        print_json(result)
        return
    word = "declined" if declined else "not declined"
    click.echo(f"{result['UpdateID']}: {word}" + ("" if result["Changed"] else " (already)"))


@updates.command("decline")
@click.argument("update_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def updates_decline(update_id: str, as_json: bool) -> None:
    """Never offer this update (the HiddenUpdates of downstream servers)."""
    _decline(update_id, True, as_json)


@updates.command("undecline")
@click.argument("update_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def updates_undecline(update_id: str, as_json: bool) -> None:
    """Offer a declined update again."""
    _decline(update_id, False, as_json)


def _delete(update_id: str, deleted: bool, as_json: bool) -> None:
    from devupdate.wsus.catalog.service import delete

    runtime()
    result = delete(update_id, actor=actor(), deleted=deleted)
    if as_json:
        print_json(result)
        return
    word = "deleted" if deleted else "restored"
    ids = ", ".join(map(str, result["RevisionIDs"]))
    click.echo(f"{result['UpdateID']}: {word}" + ("" if result["Changed"] else " (already)") + f" (RevisionIDs {ids})")


@updates.command("delete")
@click.argument("update_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def updates_delete(update_id: str, as_json: bool) -> None:
    """Hide this update from the catalog; its revisions are kept, so 'restore' (or importing it again)
    gives it back with the same RevisionIDs."""
    _delete(update_id, True, as_json)


@updates.command("restore")
@click.argument("update_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def updates_restore(update_id: str, as_json: bool) -> None:
    """Show a deleted update again, with the RevisionIDs it had."""
    _delete(update_id, False, as_json)


@group.group()
def categories() -> None:
    """Companies, product families, products and classifications of the catalog."""


@categories.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def categories_list(as_json: bool) -> None:
    """Every category, companies first; Selected = its updates are synced and offered."""
    from devupdate.wsus.catalog.service import list_categories

    runtime()
    rows = list_categories()
    if as_json:
        print_json(rows)
        return
    print_table([{**row, "Parents": ", ".join(row["Parents"]), "Selected": "yes" if row["Selected"] else ""}
                 for row in rows], ["UpdateID", "Type", "Selected", "Title"])


@group.group()
def products() -> None:
    """Which products are synced and offered."""


def _select(update_id: str, selected: bool, as_json: bool) -> None:
    from devupdate.wsus.catalog.service import select_product

    runtime()
    result = select_product(update_id, actor=actor(), selected=selected)
    if as_json:
        print_json(result)
        return
    word = "selected" if selected else "not selected"
    click.echo(f"{result['UpdateID']} ({result['Title']}): {word}" + ("" if result["Changed"] else " (already)"))


@products.command("select")
@click.argument("update_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def products_select(update_id: str, as_json: bool) -> None:
    """Sync and offer the updates of this product (see 'devupdate wsus categories list')."""
    _select(update_id, True, as_json)


@products.command("unselect")
@click.argument("update_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def products_unselect(update_id: str, as_json: bool) -> None:
    """Stop syncing and offering the updates of this product."""
    _select(update_id, False, as_json)


@group.command("rotate-cookie-key")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def rotate_cookie_key(as_json: bool) -> None:
    """Seal cookies with a new key from now on, on every node. The retired key still opens the
    cookies it sealed for one lifetime of their kind (client and auth 1 h, DSS 240 min by default);
    after that they get ServerChanged and clients authorize again. Keys retired longer ago are removed."""
    from devupdate.wsus.client.keys import rotate

    opened = runtime()
    result = rotate(opened.settings, actor=actor())
    if as_json:
        print_json(result)
        return
    click.echo(f"new cookie key {result['KeyId']}" + (f", retired {', '.join(result['Retired'])}"
                                                       if result["Retired"] else "")
               + (f", removed {', '.join(result['Removed'])}" if result["Removed"] else ""))
    print_table([{**key, "OpensUntil": (key["OpensUntil"] or {}).get("client", "")} for key in result["Keys"]],
                ["KeyId", "Created", "Retired", "OpensUntil"])


from devupdate.wsus.compliance.cli import report as _report  # noqa: E402 - the compliance reports

group.add_command(_report)
