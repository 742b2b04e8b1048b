"""The JSON schemas of ``/api/v1``: the shapes the service functions return (``rule_dict``,
``ImportResult.as_dict``, ``device_dict``, ``configuration.show``, ``device_status``, ``event_dict``,
``LogFile.as_dict``, ``usage_rows``, the WSUS catalog's ``list_updates``, ``show_update``,
``list_categories``, ``decline``, ``delete``, ``select_product``) and the values the routes take. The OpenAPI document
(``openapi.py``) publishes them and the request checks (``routing.py``, ``validation.py``) enforce
them, so both read them from here, below both.
"""

from __future__ import annotations

from typing import Any

from devupdate.configuration import OPTIONS as CONFIG_OPTIONS
from devupdate.rules.lifecycle import PATTERN_SCHEMA as RULE_PATTERN
from devupdate.wsus.catalog import STATES as WSUS_STATES

# Text the service stores or compares: no NUL (databases refuse it). Lengths are in characters and
# keep the longest valid request line (every character percent-encoded as 4 UTF-8 bytes) within
# the 4 KiB the HTTP server reads.
NO_NUL = r"^[^\x00]*$"
SITE_SCHEMA = {"type": "string", "maxLength": 100, "pattern": r"^[A-Za-z0-9_.-]{1,100}$",
               "description": "letters, digits, '.', '_' or '-' (1–100)"}
TEST_DEVICE_NAME = {"type": "string", "maxLength": 200, "pattern": r"^[^\x00-\x1f/]{1,200}$",
                    "description": "1–200 characters, no control characters, no '/'"}
#: the names the account services take (admin/tokens.py, console/auth.py, devices/users.py)
TOKEN_NAME = {"type": "string", "maxLength": 100, "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$",
              "description": "1–100 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"}
ACCOUNT_NAME = {"type": "string", "maxLength": 128, "pattern": r"^[A-Za-z0-9_.@+-]{1,128}$",
                "description": "1–128 letters, digits, '.', '_', '@', '+' or '-'"}
ROLE = {"enum": ["admin", "operator"], "description": "admin may change; operator may only read"}


def password(minimum: int) -> dict[str, Any]:
    return {"type": "string", "minLength": minimum, "maxLength": 1024, "pattern": NO_NUL,
            "description": f"at least {minimum} characters (never stored in clear, never shown again)"}

#: what ``POST /imports`` takes as the cab's Content-Type (none at all is taken too)
CAB_MEDIA_TYPES = ("application/vnd.ms-cab-compressed", "application/octet-stream")

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
NULLABLE_STRING = {"type": ["string", "null"]}
BOOLEAN = {"type": "boolean"}
#: a WSUS UpdateID: a GUID, braces allowed, any case
UPDATE_ID = {"type": "string", "maxLength": 38,
             "pattern": r"^\{?[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}?$",
             "description": "an UpdateID: a GUID such as 56309036-4c77-4dd9-951a-99ee9c246a94 (braces allowed)",
             "examples": ["a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe"]}
ANY: dict[str, Any] = {}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required}


def _array(item: str | dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": ref(item) if isinstance(item, str) else item}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def page(item: str) -> dict[str, Any]:
    """A page of a listing (``paging.py``): the rows, the page size, the count where cheap, the next page."""
    return _object({"Items": _array(item), "Limit": INTEGER, "Total": {"type": ["integer", "null"]},
                    "Next": {"type": ["string", "null"],
                             "description": "path and query of the next page (also a Link rel=next header); "
                                            "null on the last page"}})


#: the compliance report's columns (devupdate.wsus.compliance.reports.COLUMNS)
_COMPLIANCE_COUNTS = {name: INTEGER for name in ("Needed", "Installed", "Failed", "NotApplicable")}
_WSUS_COMPUTER_REPORT = {
    "ComputerId": STRING, "TargetId": {"type": ["integer", "null"]}, "DnsName": NULLABLE_STRING,
    **_COMPLIANCE_COUNTS, "PendingReboot": INTEGER, "LastSyncTime": NULLABLE_STRING,
    "LastStatusTime": NULLABLE_STRING, "LastScanTime": NULLABLE_STRING,
    "LastScanError": {"type": ["string", "null"], "description": "the Win32HResult of the last failed scan, "
                      "as Windows shows it (0x80240438)"},
    "LastScanErrorTime": NULLABLE_STRING, "EventsDropped": INTEGER,
    "ReportedBy": {"type": ["string", "null"], "description": "the downstream server that rolled the computer "
                   "up (its name and ServerId); null for this server's own clients"}}
_VERSIONS = ("Approved", "Pending", "Restore")
_RULE = {
    "Id": STRING, "Identity": STRING, "DeviceType": STRING, "Brand": STRING, "Model": STRING,
    "Revision": STRING, "Locale": STRING, "UpdateType": STRING,
    **{f"{state}Version": NULLABLE_STRING for state in _VERSIONS},
    **{f"{state}{what}": NULLABLE_STRING for state in _VERSIONS for what in ("Time", "By")},
}
_USAGE = {"Area": STRING, "UsedBytes": INTEGER, "QuotaBytes": {"type": ["integer", "null"]},
          "UsedPercent": {"type": ["number", "null"]}, "Objects": INTEGER, "Warning": {"type": "boolean"},
          "Full": {"type": "boolean"}}
# The formats the service accepts (rules/test_devices.py): separators anywhere in a MAC, blanks around.
# maxLength comes first: it is checked before the pattern.
MAC = {"type": "string", "maxLength": 300,
       "pattern": r"^[ \t]*([-:.]*[0-9A-Fa-f][-:.]*[0-9A-Fa-f]){6,50}[-:.]*[ \t]*$",
       "description": "a MAC address: 6 to 50 pairs of hex digits, separated by '-', ':', '.' or not",
       "examples": ["00-04-F2-AA-BB-CC"]}
SERIAL = {"type": "string", "maxLength": 300, "pattern": r"^[ \t]*[A-Za-z0-9_-]{1,100}[ \t]*$",
          "description": "a serial number: 1–100 letters, digits, '-' or '_'", "examples": ["64167F2A8B31"]}


_CATEGORY_REF = _object({"UpdateID": STRING, "Title": STRING})
_WSUS_UPDATE = {"UpdateID": STRING, "RevisionID": INTEGER, "RevisionNumber": INTEGER, "Type": STRING, "Title": STRING,
                "KB": NULLABLE_STRING, "State": {"enum": list(WSUS_STATES)}, "IsLeaf": BOOLEAN,
                "Products": _array(_CATEGORY_REF), "Classifications": _array(_CATEGORY_REF)}
_WSUS_DETAIL = {
    **_WSUS_UPDATE, "Declined": BOOLEAN, "Deleted": BOOLEAN, "PublicationState": STRING,
    "CategoryType": NULLABLE_STRING, "ChangeSeq": INTEGER,
    "Revisions": _array(_object({"RevisionID": INTEGER, "RevisionNumber": INTEGER, "Current": BOOLEAN,
                                 "PublicationState": STRING, "CreationDate": NULLABLE_STRING})),
    "Files": _array(_object({"FileName": STRING, "SHA1": STRING, "SHA256": NULLABLE_STRING, "Size": INTEGER,
                             "PatchingType": NULLABLE_STRING, "MUUrl": NULLABLE_STRING, "Present": BOOLEAN})),
    "Prerequisites": _array(_object({"IsCategory": BOOLEAN, "AnyOf": _array(STRING)})),
    "BundledUpdates": _array(_object({"UpdateID": STRING, "RevisionNumber": INTEGER})),
    "BundledIn": _array(STRING), "Supersedes": _array(STRING), "SupersededBy": _array(STRING),
}
_WSUS_DETAIL.pop("RevisionNumber")  # the detail lists every revision's


def setting_body(value: dict[str, Any]) -> dict[str, Any]:
    """The body that sets one setting: ``{"Value": …}`` with ``value`` its schema, nothing else."""
    return {**_object({"Value": value}), "additionalProperties": False}


def _one_identifier(extra: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """Exactly one of MACAddress / SerialNumber, nothing else."""
    return {"type": "object", "properties": {**extra, "MACAddress": MAC, "SerialNumber": SERIAL},
            "required": required, "additionalProperties": False,
            "oneOf": [{"required": ["MACAddress"]}, {"required": ["SerialNumber"]}],
            "description": "exactly one of MACAddress or SerialNumber"}


_PERCENT = {"type": "string", "maxLength": 6,
            "pattern": r"^(100|[1-9][0-9]?|[1-9][0-9]?\.[0-9]?[1-9]|0\.[0-9]?[1-9])%?$",
            "description": "a percentage from 0.01% to 100%", "examples": ["5%"]}
_DURATION = {"type": "string", "maxLength": 6,
             "pattern": r"^([1-9][0-9]{0,4}[sm]|[1-9][0-9]{0,2}h|([1-9][0-9]?|[12][0-9]{2}|3[0-5][0-9]|36[0-5])d)$",
             "description": "seconds, minutes, hours or days: 30m, 24h, 2d (at most 365d)", "examples": ["24h"]}
_ROLLOUT = {
    "RuleId": STRING, "Version": STRING, "PreviousVersion": NULLABLE_STRING,
    "State": {"enum": ["running", "halted", "completed"]}, "Stage": INTEGER, "Stages": _array(STRING),
    "Share": STRING, "Every": STRING, "HaltAt": STRING, "FailAfterChecks": INTEGER, "FailAfter": STRING,
    "StageStartedAt": NULLABLE_STRING, "NextStageAt": NULLABLE_STRING, "StartedAt": NULLABLE_STRING,
    "StartedBy": STRING, "HaltedAt": NULLABLE_STRING, "Reason": NULLABLE_STRING, "Offered": INTEGER,
    "Updated": INTEGER, "Failed": INTEGER, "AcknowledgedFailures": INTEGER, "EvaluatedAt": NULLABLE_STRING,
}

SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": _object({"code": STRING, "message": STRING})}),
    "Rollout": _object(_ROLLOUT),
    "RolloutList": _array("Rollout"),
    "RuleWithRollout": _object({**_RULE, "Rollout": {"anyOf": [{"type": "null"}, ref("Rollout")]}}),
    "RolloutPlan": {**_object({
        "Stages": {"type": "array", "items": _PERCENT, "minItems": 1, "maxItems": 19,
                   "description": "the shares of the fleet, in any order: sorted, and 100% added when missing",
                   "examples": [["5%", "25%", "100%"]]},
        "Every": _DURATION, "HaltAt": _PERCENT,
        "FailAfterChecks": {"type": "integer", "minimum": 1, "maximum": 1000},
        "FailAfter": _DURATION}, ["Stages"]), "additionalProperties": False},
    "BulkSelection": {**_object({
        **{key: {**RULE_PATTERN, "description": f"{key.lower()} pattern: {RULE_PATTERN['description']}"}
           for key in ("Brand", "Model", "Locale")},
        "Rules": {"type": "array", "maxItems": 1000, "description": "rules chosen by GUID or unique prefix",
                  "items": {"type": "string", "maxLength": 38, "pattern": r"^\{?[0-9A-Fa-f-]{4,36}\}?$"}},
        "DryRun": BOOLEAN,
        "Expect": {"type": "string", "maxLength": 64, "pattern": "^[0-9a-f]*$",
                   "description": "a dry run's Expect: refused with 409 if the selection changed since"}}, []),
        "additionalProperties": False,
        "anyOf": [{"required": ["Brand"], "properties": {"Brand": {"minLength": 1}}},
                  {"required": ["Model"], "properties": {"Model": {"minLength": 1}}},
                  {"required": ["Locale"], "properties": {"Locale": {"minLength": 1}}},
                  {"required": ["Rules"], "properties": {"Rules": {"minItems": 1}}}],
        "description": "which rules: at least one pattern or rule ('*' matches every one)",
        "examples": [{"Brand": "Polycom", "Model": "CX*", "DryRun": True}]},
    "BulkResult": _object({
        "Action": {"enum": ["approve", "reset"]}, "DryRun": BOOLEAN, "Selection": STRING, "Expect": STRING,
        "Count": INTEGER, "Confirmation": _array(STRING),
        "Rules": _array(_object({
            "Id": STRING, "Name": STRING, "UpdateType": STRING, "Allowed": BOOLEAN, "Summary": STRING,
            "Details": _array(STRING), "Reason": NULLABLE_STRING,
            "Outcome": {"enum": ["would-approve", "would-reset", "approved", "reset", "refused", "skipped"]},
            "Error": {"anyOf": [{"type": "null"}, _object({"code": STRING, "message": STRING})]},
            **{f"{state}Version": NULLABLE_STRING for state in _VERSIONS}}))}),
    "Rule": _object(_RULE),
    "RulePage": page("Rule"),
    "RuleDetail": _object({**_RULE, "Versions": _array(_object({
        "Version": STRING, "ImportedTime": NULLABLE_STRING, "UnreferencedSince": NULLABLE_STRING,
        "Files": _array(_object({"FileName": STRING, "Role": STRING, "SHA256": STRING, "Size": INTEGER}))}))}),
    "ActivityDay": _object({"Date": {"type": "string", "format": "date"}, **{name: INTEGER for name in (
        "Checks", "ChecksInternal", "ChecksExternal", "Downloads", "DownloadsInternal", "DownloadsExternal",
        "DownloadBytes")}}),
    "ActivityDays": _array("ActivityDay"),
    "RuleAdoption": _object({
        "RuleId": STRING, "ApprovedVersion": NULLABLE_STRING, "ApprovedTime": NULLABLE_STRING, "Since": STRING,
        "Resolution": {"enum": ["hour", "day"]}, "Devices": INTEGER, "OnApproved": INTEGER,
        "Versions": _array(_object({"Version": NULLABLE_STRING, "Devices": INTEGER, "Internal": INTEGER,
                                    "External": INTEGER, "Approved": BOOLEAN})),
        "Curve": _array(_object({"Time": STRING, "Approved": INTEGER, "Devices": INTEGER})),
        "Checks": INTEGER, "Downloads": INTEGER, "DownloadBytes": INTEGER}),
    "RemovedRule": _object({"Id": STRING, "Key": STRING,
                            **{f"{state}Version": NULLABLE_STRING for state in _VERSIONS}}),
    "ImportResult": _object({
        "Outcome": {"enum": ["imported", "nothing-new"]}, "FileName": STRING, "Size": INTEGER, "SHA256": STRING,
        "Rules": _array(_object({"Id": STRING, "Version": STRING,
                                 "Change": {"enum": ["created", "new-version", "pending", "unchanged"]}})),
        "Findings": _array(STRING), "ImportId": {"type": ["integer", "null"]}}),
    "ImportLimits": _object({"MaxCabSize": INTEGER, "Areas": _array("AreaUsage")}),
    "AreaUsage": _object(_USAGE),
    "UsageList": _array("AreaUsage"),
    "TestDevice": _object({"Name": STRING, "Scope": STRING, "IdentifierType": {"enum": ["MACAddress", "SerialNumber"]},
                           "Identifier": STRING}),
    "TestDevicePage": page("TestDevice"),
    "TestDeviceNew": _one_identifier({"Name": TEST_DEVICE_NAME, "Site": SITE_SCHEMA}, ["Name"]),
    "TestDeviceIdentifier": _one_identifier({}, []),
    "Configuration": _object({
        "Scope": STRING, "MaxLogFileSize": INTEGER, "MaxLogCacheLimit": INTEGER, "LogFlushInterval": INTEGER,
        "LogCleanUpInterval": INTEGER, "LogCleanUpTimeOfDay": NULLABLE_STRING,
        "ValidLogFileTypes": _array(STRING), "ValidLogFileExtensions": _array(STRING)}),
    # what every setting's value can be; each setting's own is in the operation that sets it
    "ConfigValue": {**_object({"Value": {"description": "a string, a number, a list of strings, or null (none)",
                                         "anyOf": [STRING, {"type": "number"}, _array(STRING), {"type": "null"}]}}),
                    "additionalProperties": False},
    **{f"{key}Value": setting_body(option.value_schema)
       for key, option in CONFIG_OPTIONS.items()},  # an installation's own bounds: document(quotas)
    "ConfigChange": _object({"Scope": STRING, "Key": STRING, "Before": ANY, "After": ANY}),
    "Device": _object({
        "DeviceId": STRING, "MACAddress": NULLABLE_STRING, "SerialNumber": NULLABLE_STRING, "DeviceType": STRING,
        "Brand": STRING, "Model": STRING, "Revision": STRING, "Locale": STRING,
        "Versions": {"type": "object", "additionalProperties": STRING}, "UserID": NULLABLE_STRING,
        "Address": STRING, "Network": STRING, "TestDevice": {"type": "boolean"}, "FirstSeen": NULLABLE_STRING,
        "LastSeen": NULLABLE_STRING, "Checks": INTEGER, "Status": {"enum": ["Current", "Outdated", "Unmanaged"]},
        "Updates": _array(_object({"RuleId": STRING, "UpdateType": STRING, "InstalledVersion": NULLABLE_STRING,
                                   "ApprovedVersion": STRING, "Status": {"enum": ["Current", "Outdated"]},
                                   "LastReport": {"anyOf": [{"type": "null"}, _object({
                                       "Version": STRING, "State": {"enum": ["downloading", "downloaded",
                                                                             "installed", "failed"]},
                                       "Code": NULLABLE_STRING, "Message": NULLABLE_STRING,
                                       "Time": NULLABLE_STRING})]}}))}),
    "DevicePage": page("Device"),
    "DeviceDetail": {"allOf": [ref("Device"), _object({
        "History": _array(_object({"Package": STRING, "Version": STRING, "State": STRING, "RuleId": NULLABLE_STRING,
                                   "FirstReported": NULLABLE_STRING, "LastReported": NULLABLE_STRING,
                                   "Code": NULLABLE_STRING, "Message": NULLABLE_STRING})),
        "Logs": _array("LogFile"), "Audit": _array("AuditEvent")})]},
    "AuditEvent": _object({"Id": INTEGER, "Time": STRING, "Actor": STRING, "Action": STRING, "Target": STRING,
                           "TargetName": STRING,
                           "Outcome": STRING, "Before": ANY, "After": ANY, "Detail": ANY}),
    "AuditPage": page("AuditEvent"),
    "LogFile": _object({"Type": STRING, "DeviceId": STRING, "FileName": STRING, "Path": STRING, "Size": INTEGER,
                        "LastWriteTime": STRING}),
    "LogFilePage": page("LogFile"),
    # accounts: API tokens, console admins, external users (views_accounts)
    "Token": _object({"Name": STRING, "Role": {"enum": ["admin", "operator"]}, "Created": NULLABLE_STRING,
                      "CreatedBy": STRING, "LastUsed": NULLABLE_STRING, "Revoked": NULLABLE_STRING,
                      "RevokedBy": NULLABLE_STRING}),
    "TokenPage": page("Token"),
    "TokenNew": {**_object({"Name": TOKEN_NAME, "Role": ROLE}), "additionalProperties": False},
    "TokenCreated": {"allOf": [ref("Token"), _object({"Secret": STRING})]},
    "Admin": _object({"Name": STRING, "Role": {"enum": ["admin", "operator"]}, "Created": NULLABLE_STRING,
                      "LastSignIn": NULLABLE_STRING}),
    "AdminPage": page("Admin"),
    "AdminNew": {**_object({"Name": ACCOUNT_NAME, "Role": ROLE, "Password": password(10),
                            "Replace": BOOLEAN}, ["Name", "Role", "Password"]), "additionalProperties": False},
    "AdminRemoved": _object({"Name": STRING, "Role": STRING}),
    "User": _object({"Name": STRING, "NTLM": BOOLEAN}),
    "UserPage": page("User"),
    "UserNew": {**_object({"Name": ACCOUNT_NAME, "Password": password(8), "Replace": BOOLEAN}, ["Name", "Password"]),
                "additionalProperties": False},
    "UserChange": _object({"Name": STRING, "Replaced": BOOLEAN}),
    "UserRemoved": _object({"Name": STRING}),
    # maintenance (views_maintenance): what files cleanup, logs cleanup and filestore verify report
    "FileCleanup": _object({"VersionsRemoved": _array(STRING), "ObjectsRemoved": INTEGER, "BytesFreed": INTEGER,
                            "GraceSeconds": INTEGER, "OrphansRemoved": INTEGER}),
    "LogCleanup": _object({"DaysBack": INTEGER, "Cutoff": STRING, "FilesRemoved": INTEGER, "BytesFreed": INTEGER,
                           "Removed": _array(_object({"Area": STRING, "Path": STRING, "Size": INTEGER,
                                                      "LastWriteTime": STRING}))}),
    "LogCleanupRequest": {**_object({"DaysBack": {"type": "integer", "minimum": 0, "maximum": 36500,
                                                  "description": "default: LogCleanUpInterval"}}, []),
                          "additionalProperties": False},
    "FilestoreVerify": _object({"Ok": BOOLEAN, "Problems": _array(_object({"Area": STRING, "SHA256": STRING,
                                                                            "Problem": STRING}))}),
    "ConfigScope": _object({"Scope": STRING, "Values": {"type": "object",
                                                        "description": "the values this scope sets itself"}}),
    "ConfigScopePage": page("ConfigScope"),
    "ConfigRemoval": _object({"Scope": STRING, "Removed": {"type": "object",
                                                           "description": "the overrides removed, by setting"}}),
    "WsusUpdate": _object(_WSUS_UPDATE),
    "WsusUpdatePage": page("WsusUpdate"),
    "WsusUpdateDetail": _object(_WSUS_DETAIL),
    "WsusDecline": _object({"UpdateID": STRING, "Declined": BOOLEAN, "Changed": BOOLEAN}),
    "WsusDeletion": _object({"UpdateID": STRING, "Deleted": BOOLEAN, "Changed": BOOLEAN,
                             "RevisionIDs": _array(INTEGER)}),
    "WsusCategory": _object({"UpdateID": STRING, "Type": STRING, "Title": STRING, "Parents": _array(STRING),
                             "Selected": BOOLEAN}),
    "WsusCategoryList": _array("WsusCategory"),
    "WsusProductSelection": _object({"UpdateID": STRING, "Title": STRING, "Selected": BOOLEAN, "Changed": BOOLEAN}),
    "WsusComputerReport": _object(_WSUS_COMPUTER_REPORT),
    "WsusComputerCompliance": _object({**_WSUS_COMPUTER_REPORT, "UpdatesTotal": INTEGER, "Updates": _array(_object({
        "UpdateID": STRING, "Title": NULLABLE_STRING, "KB": NULLABLE_STRING,
        "State": {"enum": ["needed", "downloaded", "installed", "installed-pending-reboot", "failed",
                           "not-applicable"]},
        "RevisionNumber": {"type": ["integer", "null"]}, "HResult": NULLABLE_STRING,
        "Event": _object({"EventID": INTEGER, "Name": NULLABLE_STRING, "EventInstanceID": STRING,
                          "TimeAtTarget": STRING, "AppName": NULLABLE_STRING, "ReceivedTime": NULLABLE_STRING}),
        "ChangedTime": STRING}))}),
    "WsusComputerReportPage": page("WsusComputerReport"),
    "WsusUpdateReport": _object({"UpdateID": STRING, "Title": NULLABLE_STRING, "KB": NULLABLE_STRING,
                                 **_COMPLIANCE_COUNTS, "Unknown": INTEGER, "PendingReboot": INTEGER}),
    "WsusUpdateReportPage": page("WsusUpdateReport"),
    "WsusGroupReport": _object({"Id": STRING, "Name": STRING, "Path": STRING, "Depth": INTEGER,
                                "Computers": INTEGER, **_COMPLIANCE_COUNTS, "ComputersNeeding": INTEGER,
                                "ComputersFailed": INTEGER}),
    "WsusGroupReportList": _array("WsusGroupReport"),
    # the downstream sync (views_wsus_sync): what service.status, sync and needed.entry_dict return
    "WsusSyncRun": _object({"Id": INTEGER, "Upstream": STRING, "Mode": STRING, "Trigger": STRING, "Host": STRING,
                            "Started": NULLABLE_STRING, "Finished": NULLABLE_STRING,
                            "Outcome": {"enum": ["running", "ok", "failed", "interrupted"]}, "Error": STRING,
                            "Summary": {"type": "object", "description": "the run's summary (docs/wsus-sync.md)"}}),
    "WsusSyncRunPage": page("WsusSyncRun"),
    "RequestLogFile": _object({"Name": STRING, "Server": STRING, "Day": STRING, "Part": INTEGER, "Size": INTEGER}),
    "RequestLogFilePage": page("RequestLogFile"),
    "RequestLogRow": {"type": "object", "additionalProperties": STRING,
                      "description": "a row: the log's columns by name"},
    "RequestLogRowPage": page("RequestLogRow"),
    "WsusSyncStatus": _object({"Upstreams": _array(_object({
        "Upstream": STRING, "Mode": STRING, "ServerId": NULLABLE_STRING, "ConfigAnchor": NULLABLE_STRING,
        "SyncAnchor": NULLABLE_STRING, "DeploymentAnchor": NULLABLE_STRING, "Config": {"type": "object"},
        "Updated": NULLABLE_STRING})),
        "Runs": _array("WsusSyncRun"),
        "HeldRevisions": INTEGER,
        "MarkedFiles": _array(_object({"SHA1": STRING, "State": STRING, "Reason": STRING}))}),
    "WsusSyncStart": {**_object({"Mode": {"enum": ["autonomous", "replica", "fault-in"],
                                          "description": "default: DEVUPDATE_WSUS_SYNC_MODE"}}, []),
                      "additionalProperties": False},
    "WsusSyncStarted": _object({"Started": BOOLEAN, "Upstream": STRING, "Mode": STRING}),
    "WsusMarkedFile": _object({"SHA1": STRING, "State": {"enum": ["corrupt-upstream", "unavailable"]},
                               "Attempts": INTEGER, "Reason": STRING, "Changed": NULLABLE_STRING,
                               "FileName": NULLABLE_STRING}),
    "WsusMarkedFileList": _array("WsusMarkedFile"),
    "WsusMarkedFilePage": page("WsusMarkedFile"),
    "WsusMarkedFileRetry": {**_object({
        "SHA1": {"type": "array", "minItems": 1, "maxItems": 1000,
                 "items": {"type": "string", "pattern": "^[0-9A-Fa-f]{40}$", "maxLength": 40}},
        "All": {"const": True, "description": "every marked file (with State: every one in that state)"},
        "State": {"enum": ["corrupt-upstream", "unavailable"]}}, []),
        "oneOf": [{"required": ["SHA1"]}, {"required": ["All"]}], "additionalProperties": False},
    "WsusNeeded": _object({"UpdateID": STRING, "RevisionNumber": {"type": ["integer", "null"]}, "Source": STRING,
                           "Added": STRING, "Attempts": INTEGER, "LastError": STRING,
                           "State": {"enum": ["needed", "unavailable"]}}),
    "WsusNeededList": _array("WsusNeeded"),
    "WsusNeededNew": {**_object({"UpdateID": UPDATE_ID,
                                 "RevisionNumber": {"type": "integer", "minimum": 1, "maximum": 2147483647},
                                 "Source": {"type": "string", "maxLength": 200, "pattern": NO_NUL}}, ["UpdateID"]),
                      "additionalProperties": False},
}


def config_value_schema(key: str) -> dict[str, Any]:
    """The body ``PUT /configuration/<key>`` takes: ``{"Value": …}`` of that setting's type."""
    return SCHEMAS[f"{key}Value"]


# -- WSUS targeting (views_wsus_targeting): groups, computers, approvals, EULAs, auto-approval -----------

#: characters no name or reference holds: C0 and C1 controls (what the service refuses as control characters)
_CONTROL = r"\x00-\x1f\x7f-\x9f"


def _text(excluded: str) -> str:
    """Text of allowed characters with at least one that is not blank (the service strips blanks)."""
    allowed = f"[^{_CONTROL}{excluded}]"
    return f"^{allowed}*[^{_CONTROL}{excluded}\\s]{allowed}*$"


#: a target group in a path or body: its GUID or its name (case-insensitive; a name with '/' by GUID)
WSUS_GROUP = {"type": "string", "maxLength": 258, "pattern": _text("/;"),
              "description": "a target group: its GUID or its name (1–256 characters, case-insensitive)"}
WSUS_GROUP_NAME = {"type": "string", "maxLength": 256, "pattern": _text(";"),
                   "description": "1–256 characters, not all blank, no ';' (it separates client-side targeting "
                                  "names), no control characters; unique in any case"}
WSUS_COMPUTER = {"type": "string", "maxLength": 256, "pattern": _text("/"),
                 "description": "a computer: its TargetID, its ComputerID or its DNS name"}
WSUS_RULE = {"type": "string", "maxLength": 64, "pattern": _text("/"),
             "description": "an auto-approval rule: Test, All Computers or Definition Updates"}
_DATE = (r"20[0-9]{2}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
         r"|02-(?:0[1-9]|1[0-9]|2[0-8]))")
_TIME = r"T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
WSUS_DEADLINE = {"type": ["string", "null"], "maxLength": 40, "pattern": f"^{_DATE}(?:{_TIME})?$",
                 "description": "ISO 8601 date or time (years 2000–2099), UTC unless it has an offset, "
                                "e.g. 2026-12-24T18:00:00Z"}
_NULL_INT = {"type": ["integer", "null"]}
_GROUP_REF = _object({"Id": STRING, "Name": STRING})
_WSUS_GROUP = {"Id": STRING, "Name": STRING, "ParentId": NULLABLE_STRING, "BuiltIn": BOOLEAN,
               "CreatedTime": NULLABLE_STRING, "CreatedBy": STRING}
_WSUS_COMPUTER = {"TargetId": INTEGER, "ComputerId": STRING, "DnsName": STRING, "OSVersion": NULLABLE_STRING,
                  "OSDescription": NULLABLE_STRING, "Registered": BOOLEAN, "LastSyncTime": NULLABLE_STRING,
                  "CreatedTime": NULLABLE_STRING, "Groups": _array(_GROUP_REF), "ClientGroupNames": STRING}
_WSUS_COMPUTER_DETAIL = {
    **_WSUS_COMPUTER, "TargetingMode": {"enum": ["server", "client"]}, "ServerGroups": _array(_GROUP_REF),
    "ClientGroups": _array(_GROUP_REF),
    "MemberOf": _array(_object({"Id": STRING, "Name": STRING, "Distance": INTEGER})),
    "OS": _object({"Major": _NULL_INT, "Minor": _NULL_INT, "Build": _NULL_INT, "Revision": _NULL_INT,
                   "ServicePackMajor": _NULL_INT, "ServicePackMinor": _NULL_INT, "Locale": NULLABLE_STRING}),
    **{key: NULLABLE_STRING for key in ("Manufacturer", "Model", "BiosName", "BiosVersion", "BiosReleaseDate",
                                        "ProcessorArchitecture", "ClientVersion", "ProtocolVersion", "OEM",
                                        "DeviceType", "FirmwareVersion", "MobileOperator", "RegisteredTime",
                                        "LastStatusTime")}}
_WSUS_DEPLOYMENT = {"Id": INTEGER, "UpdateID": STRING, "GroupId": STRING, "Group": STRING,
                    "Action": {"enum": ["Install", "Uninstall", "OptionalInstall", "Block"]},
                    "Deadline": NULLABLE_STRING, "DownloadPriority": INTEGER, "IsAssigned": BOOLEAN,
                    "Source": {"enum": ["admin", "rule", "image"]}, "Actor": STRING, "CreatedTime": NULLABLE_STRING,
                    "ChangedTime": NULLABLE_STRING, "ChangeSeq": INTEGER}
_WSUS_EULA = {"EulaID": STRING, "AcceptedBy": STRING, "AcceptedTime": NULLABLE_STRING}
_WSUS_RULE = {"Name": STRING, "Group": STRING, "GroupId": STRING, "Action": STRING, "DeferDays": _NULL_INT,
              "Classification": NULLABLE_STRING, "Enabled": BOOLEAN, "Paused": BOOLEAN, "AcceptEulas": BOOLEAN,
              "Approved": INTEGER, "AwaitingEula": INTEGER, "ChangedTime": NULLABLE_STRING, "ChangedBy": STRING}

SCHEMAS.update({
    "WsusGroup": _object(_WSUS_GROUP),
    "WsusGroupList": _array(_object({**_WSUS_GROUP, "Computers": INTEGER, "Depth": INTEGER, "Path": STRING})),
    "WsusGroupNew": {**_object({"Name": WSUS_GROUP_NAME, "Parent": WSUS_GROUP}, ["Name"]),
                     "additionalProperties": False},
    "WsusGroupRename": {**_object({"Name": WSUS_GROUP_NAME}), "additionalProperties": False},
    "WsusComputer": _object(_WSUS_COMPUTER),
    "WsusComputerPage": page("WsusComputer"),
    "WsusComputerDetail": _object(_WSUS_COMPUTER_DETAIL),
    "WsusComputerGroups": {**_object({"Groups": {"type": "array", "maxItems": 64, "items": WSUS_GROUP}}),
                           "additionalProperties": False},
    "WsusDeployment": _object(_WSUS_DEPLOYMENT),
    "WsusDeploymentList": _array("WsusDeployment"),
    "WsusDeploymentPage": page("WsusDeployment"),
    "WsusApproval": _object({**_WSUS_DEPLOYMENT, "Changed": BOOLEAN}),
    "WsusUnapproval": _object({**_WSUS_DEPLOYMENT, "Revoked": BOOLEAN}),
    "WsusApprovalNew": {**_object({
        "Action": {"type": "string", "maxLength": 20, "enum": ["install", "uninstall", "optional", "block"]},
        "Deadline": WSUS_DEADLINE,
        "DownloadPriority": {"type": "integer", "minimum": 1, "maximum": 3, "description": "1 low, 2 normal, 3 high"},
    }, ["Action"]), "additionalProperties": False},
    "WsusEula": _object({**_WSUS_EULA, "Changed": BOOLEAN}),
    "WsusEulas": _object({"Accepted": _array(_object(_WSUS_EULA)), "AwaitingAcceptance": _array(_object({
        "Rule": STRING, "UpdateID": STRING, "EulaID": STRING, "Time": NULLABLE_STRING}))}),
    "WsusAutoApprovalRule": _object(_WSUS_RULE),
    "WsusAutoApprovalList": _array("WsusAutoApprovalRule"),
    "WsusAutoApprovalChange": _object({**_WSUS_RULE, "Changed": BOOLEAN}),
    "WsusAutoApprovalSettings": {**_object({
        "DeferDays": {"type": "integer", "minimum": 0, "maximum": 30}, "AcceptEulas": BOOLEAN, "Enabled": BOOLEAN,
        "Paused": BOOLEAN}, []), "additionalProperties": False},
    "WsusTargeting": _object({"Mode": {"enum": ["server", "client"]}}),
    "WsusTargetingChange": _object({"Mode": {"enum": ["server", "client"]}, "Changed": BOOLEAN}),
    "WsusTargetingMode": {**_object({"Mode": {"type": "string", "maxLength": 10, "enum": ["server", "client"]}}),
                          "additionalProperties": False},
})
