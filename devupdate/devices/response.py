"""Rendering update-check answers (device-protocol.md §5) — always exactly this form. (The error
body is the web kit's ``render_error``: the server refuses in it too, before the app is reached.)"""

from __future__ import annotations

from urllib.parse import quote
from xml.sax.saxutils import escape

from devupdate.selection import OfferedFile

NOTHING = (b'<?xml version="1.0" encoding="utf-8"?>\n'
           b"<Response><NumOfFiles>0</NumOfFiles><Files/></Response>\n")


def file_url(base_url: str, side: str, path: str) -> str:
    """``<base>/DeviceUpdateFiles_Int|_Ext/<path>``; ``side`` is 'Int' or 'Ext'."""
    return f"{base_url.rstrip('/')}/DeviceUpdateFiles_{side}/{quote(path, safe='/')}"


def render(files: list[OfferedFile], base_url: str, side: str) -> bytes:
    if not files:
        return NOTHING
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n<Response>\n',
             f"  <NumOfFiles>{len(files)}</NumOfFiles>\n  <Files>\n"]
    for item in files:
        parts.append("    <File>\n")
        parts.append(f"      <FileName>{escape(item.file_name)}</FileName>\n")
        if item.signature_file_name:
            parts.append(f"      <SignatureFileName>{escape(item.signature_file_name)}</SignatureFileName>\n")
        parts.append(f"      <Version>{escape(item.version)}</Version>\n"
                     f"      <TimeStamp>{item.timestamp}</TimeStamp>\n"
                     f"      <Url>{escape(file_url(base_url, side, item.path))}</Url>\n"
                     f"      <Size>{item.size}</Size>\n"
                     f"      <SHA256>{item.sha256}</SHA256>\n"
                     "    </File>\n")
    parts.append("  </Files>\n</Response>\n")
    return "".join(parts).encode()
