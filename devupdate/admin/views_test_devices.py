"""``/test-devices``: the phones that get a pending version before the fleet."""

from __future__ import annotations

from typing import Any

from flask import Response

from devupdate.admin import paging
from devupdate.admin.routing import (
    CHANGE,
    JSON_CHANGE,
    READ,
    SITE,
    Param,
    body_text,
    clean,
    json_body,
    json_response,
    only_keys,
    principal,
    query_text,
    route,
)
from devupdate.admin.schemas import TEST_DEVICE_NAME
from devupdate.rules import test_devices

TEST_DEVICE = Param("name", TEST_DEVICE_NAME, "Test device name", "path", True)


def _identifier(body: dict[str, Any]) -> dict[str, str | None]:
    return {"mac": body_text(body, "MACAddress"), "serial": body_text(body, "SerialNumber")}


@route("GET", "/test-devices", role="operator", summary="Registered test devices, by scope and name",
       params=(SITE, *paging.PARAMS), responses={200: "TestDevicePage", **READ})
def list_test_devices() -> Response:
    page = paging.page_request("test-devices", (paging.TEXT, paging.TEXT))
    return paging.in_memory(page, test_devices.list_devices(query_text("site")), lambda d: (d.scope, d.name),
                            test_devices.device_dict)


@route("POST", "/test-devices", role="admin", summary="Register a test device", body="TestDeviceNew",
       responses={201: "TestDevice", **JSON_CHANGE, 409: "Error"})
def add_test_device() -> Response:
    body = json_body()
    only_keys(body, "Name", "MACAddress", "SerialNumber", "Site")
    name = body_text(body, "Name", required=True)
    device = test_devices.add(name, **_identifier(body), site=body_text(body, "Site"), actor=principal().actor)
    return json_response(test_devices.device_dict(device), 201)


@route("PUT", "/test-devices/{name}", role="admin", summary="Change a test device's MAC address or serial",
       params=(TEST_DEVICE, SITE), body="TestDeviceIdentifier",
       responses={200: "TestDevice", **JSON_CHANGE, 404: "Error", 409: "Error"})
def set_test_device(name: str) -> Response:
    body = json_body()
    only_keys(body, "MACAddress", "SerialNumber")
    device = test_devices.set_identifier(clean(name, "name"), **_identifier(body), site=query_text("site"),
                                         actor=principal().actor)
    return json_response(test_devices.device_dict(device))


@route("DELETE", "/test-devices/{name}", role="admin", summary="Unregister a test device", params=(TEST_DEVICE, SITE),
       responses={200: "TestDevice", **CHANGE, 404: "Error"})
def remove_test_device(name: str) -> Response:
    return json_response(test_devices.remove(clean(name, "name"), site=query_text("site"), actor=principal().actor))
