"""ReportEventBatch bodies for the compliance tests: the captured native ones, and events built in
their shape (the element names, order and namespaces of ``cap:wsus-m0-native/flow/000016``)."""

from __future__ import annotations

import uuid
from xml.sax.saxutils import escape

from wsus.catalogkit import NATIVE

SD = "http://www.microsoft.com/SoftwareDistribution"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
ACTION = f'"{SD}/ReportEventBatch"'
PATH = "/ReportingWebService/ReportingWebService.asmx"
CLIENT = "e1da06a3-5601-43c9-bac3-52d5db701494"  # the captured client's SusClientId
KB = "a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe"
REDACTED_COOKIE = ("<cookie><Expiration>2026-10-04T16:03:35.9967236Z</Expiration><EncryptedData>"
                   + "A" * 20 + "=</EncryptedData></cookie>")


def captured(number: str, name: str = "request.body") -> bytes:
    return (NATIVE / "flow" / number / name).read_bytes()


def event(event_id: int, *, update: str | None = None, time: str = "2026-10-04T15:20:47.68Z",
          target: str = CLIENT, instance: str | None = None, hresult: int = 0, namespace: int = 1,
          misc: tuple[str, ...] = (), app_name: str = "OOBE ZDP", replacement: tuple[str, ...] = ()) -> str:
    update_xml = (f"<UpdateID><UpdateID>{update or '00000000-0000-0000-0000-000000000000'}</UpdateID>"
                  f"<RevisionNumber>{200 if update else 0}</RevisionNumber></UpdateID>")
    strings = "".join(f"<string>{escape(s)}</string>" for s in replacement)
    miscs = "".join(f"<string>{escape(s)}</string>" for s in misc)
    return ("<ReportingEvent><BasicData>"
            f"<TargetID><Sid>{target}</Sid></TargetID><SequenceNumber>0</SequenceNumber>"
            f"<TimeAtTarget>{time}</TimeAtTarget><EventInstanceID>{instance or uuid.uuid4()}</EventInstanceID>"
            f"<NamespaceID>{namespace}</NamespaceID><EventID>{event_id}</EventID><SourceID>101</SourceID>"
            f"{update_xml}<Win32HResult>{hresult}</Win32HResult><AppName>{escape(app_name)}</AppName></BasicData>"
            f"<ExtendedData><ReplacementStrings>{strings}</ReplacementStrings><MiscData>{miscs}</MiscData>"
            "<ComputerBrand>QEMU</ComputerBrand><ComputerModel>Standard PC (Q35 + ICH9, 2009)</ComputerModel>"
            "<BiosRevision>unknown</BiosRevision><ProcessorArchitecture>Amd64Compatible</ProcessorArchitecture>"
            "<OSVersion><Major>10</Major><Minor>0</Minor><Build>26200</Build><Revision>65792</Revision>"
            "<ServicePackMajor>0</ServicePackMajor><ServicePackMinor>0</ServicePackMinor></OSVersion>"
            "<OSLocaleID>1033</OSLocaleID></ExtendedData><PrivateData/></ReportingEvent>")


def batch(*events: str, cookie: str = REDACTED_COOKIE, client_time: str = "2026-10-04T15:20:47.68Z") -> bytes:
    return (f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><ReportEventBatch xmlns="{SD}">{cookie}'
            f"<clientTime>{client_time}</clientTime><eventBatch>{''.join(events)}</eventBatch>"
            "</ReportEventBatch></s:Body></s:Envelope>").encode()


def with_cookie(body: bytes, cookie: str) -> bytes:
    """``body`` with its (redacted) ``<cookie>…</cookie>`` replaced."""
    start, end = body.index(b"<cookie>"), body.index(b"</cookie>") + len(b"</cookie>")
    return body[:start] + cookie.encode() + body[end:]
