"""Anchors in Windows' format ([wsus] §5.2): ``"<change_seq>,<yyyy-MM-dd HH:mm:ss.fff>"`` (UTC).

Real WSUS downstream servers require this form; devupdate reads only the sequence part, so "changed
after anchor A" is the indexed range ``change_seq > seq(A)``. Pure: the standard library only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_ANCHOR = re.compile(r"([0-9]{1,18}),([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]{1,7})?")


def format_anchor(seq: int, moment: datetime | None = None) -> str:
    """The anchor of ``seq`` minted at ``moment`` (now): ``9438,2026-10-04 16:33:26.670``."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return f"{seq},{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


def parse_anchor(text: str | None, *, highest: int) -> int | None:
    """The sequence of an anchor (``None`` when absent or empty: the first sync). ValueError when it
    is not in Windows' format, names an impossible time, or lies beyond ``highest`` (an anchor this
    server never minted: another server's, or a database restored from an older backup)."""
    if text is None or not text.strip():
        return None
    match = _ANCHOR.fullmatch(text.strip())
    if match is None:
        raise ValueError("not an anchor")
    try:
        datetime.strptime(match.group(2), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise ValueError("not an anchor") from None
    seq = int(match.group(1))
    if seq > highest:
        raise ValueError("an anchor from the future")
    return seq
