"""Geometry and colours for the dashboard's server-side SVG: plain data in, plain data out.

The templates draw each bar as an SVG whose ``viewBox`` is 100 units wide, so every ``x`` and
``width`` here is a percentage and the bar stretches to whatever width the screen has.
"""

from __future__ import annotations

from typing import Any

APPROVED = "#1f8a4c"
UNKNOWN = "#9aa5b1"
OTHERS = ["#d97706", "#2563eb", "#9333ea", "#0d9488", "#db2777", "#65a30d", "#b45309", "#4f46e5"]


def _segments(parts: list[tuple[str, int, str, bool]]) -> list[dict[str, Any]]:
    total = sum(count for _, count, _, _ in parts) or 1
    x, segments = 0.0, []
    for label, count, colour, approved in parts:
        width = 100.0 * count / total
        segments.append({"Label": label, "Count": count, "Colour": colour, "Approved": approved,
                         "X": round(x, 3), "Width": round(width, 3), "Percent": round(width)})
        x += width
    return segments


def distribution_bars(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One stacked bar per model and update type (``fleet.version_distribution`` rows).

    Approved versions are green, unreported ones grey, every other version gets its own colour,
    the same colour for the same version across bars so one release reads the same everywhere.
    """
    colours: dict[str, str] = {}
    bars = []
    for row in rows:
        parts = []
        for entry in row["Versions"]:
            version = entry["Version"]
            if entry["Approved"]:
                colour = APPROVED
            elif version == "unknown":
                colour = UNKNOWN
            else:
                colour = colours.setdefault(version, OTHERS[len(colours) % len(OTHERS)])
            parts.append((version, entry["Devices"], colour, entry["Approved"]))
        current = sum(entry["Devices"] for entry in row["Versions"] if entry["Approved"])
        bars.append({"Label": f"{row['Brand']} {row['Model']}", "UpdateType": row["UpdateType"],
                     "Devices": row["Devices"], "Current": current, "Managed": bool(row["ApprovedVersions"]),
                     "Segments": _segments(parts)})
    return bars


def usage_bars(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Filestore areas (``content.usage.usage_rows``) with the filled share of their quota and a state."""
    bars = []
    for row in rows:
        quota, used = row["QuotaBytes"], row["UsedBytes"]
        share = 0.0 if not quota else min(100.0, 100.0 * used / quota)
        state = "full" if row["Full"] else "warning" if row["Warning"] else "ok"
        bars.append({**row, "Share": round(share, 2), "State": state})
    return bars


def human_bytes(count: int | None) -> str:
    if count is None:
        return "unlimited"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


#: the WSUS compliance columns and their colours, in the order the bars stack them
COMPLIANCE_PARTS = (("Installed", "Installed", APPROVED), ("Needed", "Needed", "#d97706"),
                    ("Failed", "Failed", "#dc2626"), ("NotApplicable", "Not applicable", "#cbd5e1"),
                    ("Unknown", "Unknown", UNKNOWN))


def compliance_bars(rows: list[dict[str, Any]], label: str, key: str) -> list[dict[str, Any]]:
    """One stacked bar per row of a compliance report (``devupdate.wsus.compliance.reports``: per update
    the computers in each state, per group the (computer, update) pairs): installed, needed, failed,
    not applicable and, where the row has it, unknown."""
    bars = []
    for row in rows:
        parts = [(name, int(row[key]), colour, key == "Installed") for key, name, colour in COMPLIANCE_PARTS
                 if key in row]
        bars.append({"Label": row.get(label) or row.get("UpdateID") or "", "Row": row, "Id": str(row[key]),
                     "Total": sum(count for _, count, _, _ in parts), "Segments": _segments(parts)})
    return bars


#: the activity charts' colours: internal and external checks, downloads
INTERNAL, EXTERNAL, DOWNLOADS = "#2563eb", "#d97706", "#0d9488"
HEIGHT = 40.0  # the activity charts' viewBox is 100 × 40


def daily_columns(days: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """One column per day (``fleet.activity_days`` rows) for ``key`` (``Checks`` or ``Downloads``),
    internal below external, scaled to the busiest day; ``Max`` labels the axis."""
    peak = max((day[key] for day in days), default=0) or 1
    width = 100.0 / max(1, len(days))
    columns = []
    for n, day in enumerate(days):
        internal, external = day[f"{key}Internal"], day[f"{key}External"]
        low = HEIGHT * internal / peak
        high = HEIGHT * external / peak
        columns.append({"Date": day["Date"], "Total": day[key], "Internal": internal, "External": external,
                        "X": round(n * width + width * 0.1, 3), "Width": round(width * 0.8, 3),
                        "InternalY": round(HEIGHT - low, 3), "InternalHeight": round(low, 3),
                        "ExternalY": round(HEIGHT - low - high, 3), "ExternalHeight": round(high, 3)})
    return {"Key": key, "Max": max((day[key] for day in days), default=0), "Total": sum(day[key] for day in days),
            "Columns": columns, "First": days[0]["Date"] if days else "", "Last": days[-1]["Date"] if days else ""}


def curve_lines(curve: list[dict[str, Any]]) -> dict[str, Any]:
    """The rollout curve (``fleet.adoption``'s ``Curve``) as two SVG polylines in a 100 × 40 box: the
    rule's devices (grey) and those on the approved version (green), on one scale."""
    peak = max((point["Devices"] for point in curve), default=0) or 1
    count = len(curve)

    def line(key: str) -> str:
        if count == 1:
            y = round(HEIGHT - HEIGHT * curve[0][key] / peak, 3)
            return f"0,{y} 100,{y}"
        return " ".join(f"{round(100.0 * n / (count - 1), 3)},{round(HEIGHT - HEIGHT * point[key] / peak, 3)}"
                        for n, point in enumerate(curve))

    return {"Approved": line("Approved") if count else "", "Devices": line("Devices") if count else "",
            "Max": max((point["Devices"] for point in curve), default=0), "Points": count,
            "First": curve[0]["Time"] if curve else None, "Last": curve[-1]["Time"] if curve else None,
            "ApprovedColour": APPROVED, "DevicesColour": UNKNOWN}
