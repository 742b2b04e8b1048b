"""The WSUS SOAP services of spec/wsus.md §2.1 and the dispatch rule of §2.2, as plain data.

Each service has its paths (matched case-insensitively, aliases included), its operation
namespace, the WSDL it is described by, and the operations that WSDL lists. Which operation a
request asks for is decided by :func:`resolve` from the SOAPAction and the body's first element.
``Ping`` (``IMonitorable``) is answered on every service. A test keeps the operation lists equal
to the shipped WSDLs.
"""

from __future__ import annotations

from dataclasses import dataclass

from devupdate.wsus.soap.envelope import Envelope, invalid

SD = "http://www.microsoft.com/SoftwareDistribution"
CLIENT_NS = f"{SD}/Server/ClientWebService"
SIMPLE_AUTH_NS = f"{SD}/Server/SimpleAuthWebService"
DSS_AUTH_NS = f"{SD}/Server/DssAuthWebService"
MONITORABLE_NS = f"{SD}/Server/IMonitorable"
PING = "Ping"

#: body limit classes of §7 (the setting of each is ``wsus_max_body_<class>``)
CONFIG, CLIENT, SERVER_SYNC, ROLLUP = "config", "client", "server_sync", "rollup"


@dataclass(frozen=True)
class Service:
    """One ``.asmx``: ``key`` names it in logs and the operation registry."""

    key: str
    paths: tuple[str, ...]  # the first is canonical (the WSDL's soap:address points there)
    namespace: str
    wsdl: str
    operations: tuple[str, ...]
    body_class: str  # the limit of an operation not listed in ``body_classes``
    body_classes: tuple[tuple[str, str], ...] = ()
    client: bool = False  # an MS-WUSP client service: faults carry ``Method``
    #: faults carry ``Method`` although no client service (ServerSync: real WSUS writes it, exchanges/000017–19)
    method_in_faults: bool = False

    @property
    def faults_name_method(self) -> bool:
        return self.client or self.method_in_faults

    def operation_namespace(self, operation: str) -> str:
        return MONITORABLE_NS if operation == PING else self.namespace

    def action(self, operation: str) -> str:
        """The SOAPAction of ``operation`` (§2.1: the operation's namespace + ``/<Op>``)."""
        return f"{self.operation_namespace(operation)}/{operation}"

    def body_class_of(self, operation: str | None) -> str:
        if operation == PING:
            return CONFIG
        return dict(self.body_classes).get(operation or "", self.body_class)

    @property
    def body_classes_used(self) -> frozenset[str]:
        return frozenset([self.body_class, CONFIG, *(cls for _op, cls in self.body_classes)])


SERVICES: tuple[Service, ...] = (
    Service("client", ("/ClientWebService/Client.asmx",), CLIENT_NS, "ClientWebService.fixed.wsdl",
            ("GetConfig", "GetCookie", "RegisterComputer", "StartCategoryScan", "SyncUpdates", "RefreshCache",
             "GetExtendedUpdateInfo", "GetExtendedUpdateInfo2", "GetFileLocations", "SyncPrinterCatalog", PING),
            CLIENT, (("GetConfig", CONFIG), ("GetCookie", CONFIG)), client=True),
    Service("simpleauth", ("/SimpleAuthWebService/SimpleAuth.asmx",), SIMPLE_AUTH_NS, "SimpleAuthWebService.wsdl",
            ("GetAuthorizationCookie", PING), CONFIG, client=True),
    Service("reporting", ("/ReportingWebService/ReportingWebService.asmx", "/ReportingWebService/WebService.asmx"),
            SD, "ServerReportingWebService.wsdl",
            ("ReportEventBatch", "ReportEventBatch2", "GetRequiredInventoryType", "ReportInventory",
             "GetRollupConfiguration", "RollupDownstreamServers", "RollupComputers", "GetOutOfSyncComputers",
             "RollupComputerStatus", PING),
            CLIENT, (("GetRequiredInventoryType", CONFIG), ("GetRollupConfiguration", CONFIG),
                     ("RollupDownstreamServers", ROLLUP), ("RollupComputers", ROLLUP),
                     ("GetOutOfSyncComputers", ROLLUP), ("RollupComputerStatus", ROLLUP)), client=True),
    Service("serversync", ("/ServerSyncWebService/ServerSyncWebService.asmx",
                           "/ServerSyncWebService/ServerSyncProxy.asmx"), SD, "ServerSyncWebService.wsdl",
            ("GetAuthConfig", "GetConfigData", "GetCookie", "GetRevisionIdList", "GetUpdateDecryptionData",
             "GetUpdateData", "GetDeployments", "DownloadFiles", "GetRelatedRevisionsForUpdates", PING),
            SERVER_SYNC, (("GetAuthConfig", CONFIG), ("GetConfigData", CONFIG), ("GetCookie", CONFIG)),
            method_in_faults=True),
    Service("dssauth", ("/DssAuthWebService/DssAuthWebService.asmx",), DSS_AUTH_NS, "DssAuthWebService.wsdl",
            ("GetAuthorizationCookie", PING), CONFIG),
)

_BY_PATH = {path.lower(): service for service in SERVICES for path in service.paths}
BY_KEY = {service.key: service for service in SERVICES}


def service_for(path: str) -> Service | None:
    """The service at ``path`` (any case; a trailing slash is not the same path), or ``None``."""
    return _BY_PATH.get(path.lower())


def clean_action(value: str | None) -> str:
    """A SOAPAction as sent (WUA quotes it) → the bare URI; blanks and surrounding quotes stripped."""
    return (value or "").strip().strip('"').strip()


def action_of(soapaction: str | None, content_type: str) -> str:
    """The action of a request: the ``action`` parameter of a SOAP 1.2 ``Content-Type``, else the
    ``SOAPAction`` header."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "action" and clean_action(value):
            return clean_action(value)
    return clean_action(soapaction)


def operation_named(service: Service, action: str) -> str | None:
    """The operation ``action`` names on ``service``, or ``None`` (another namespace, unknown)."""
    head, _, operation = action.rpartition("/")
    if operation in service.operations and head == service.operation_namespace(operation):
        return operation
    return None


def resolve(service: Service, action: str, envelope: Envelope) -> str:
    """The operation to run (§2.2): the body's first element must be an operation of this service
    in its namespace, and a non-empty action must name the same one — except the SyncUpdates
    action with a SyncPrinterCatalog body. Otherwise ``InvalidParameters``, ``Message=SOAPAction``."""
    body_op = envelope.name
    if body_op not in service.operations or envelope.namespace != service.operation_namespace(body_op):
        raise invalid("SOAPAction")
    if not action:
        return body_op
    named = operation_named(service, action)
    if named == body_op:
        return body_op
    if service.key == "client" and named == "SyncUpdates" and body_op == "SyncPrinterCatalog":
        return body_op
    raise invalid("SOAPAction")
