"""Hot-path discipline, measured in-process: after the first check, an update check runs no
database query and opens no file — answered or refused."""

from __future__ import annotations

import builtins
import io
import os
import re

from devupdate import db
from devupdate.app import create_app, shutdown
from devupdate.devices.check import EXTENSION

GOOD = (b"<Request><DeviceType>UCPhone</DeviceType><MACAddress>00-04-F2-AA-BB-%02X</MACAddress>"
        b"<Vendor>Polycom</Vendor><Model>CX600</Model><Revision>A</Revision><Locale>ENU</Locale>"
        b"<Modules><Module><FileName>CPE.nbt</FileName><Version>1.0</Version></Module></Modules></Request>")


def test_no_query_and_no_file_open_per_check(rt, monkeypatch):
    app = create_app(rt, background=False)
    client = app.test_client()
    assert client.post("/RequestHandler/ucdevice.upx", data=GOOD % 0).status_code == 200  # loads the snapshot

    counts = {"queries": 0, "opens": 0}
    real_execute, real_os_open, real_open, real_io_open = db.database.obj.execute_sql, os.open, builtins.open, io.open

    def count(kind, real):
        def wrapper(*args, **kwargs):
            counts[kind] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(db.database.obj, "execute_sql", count("queries", real_execute))
    monkeypatch.setattr(os, "open", count("opens", real_os_open))
    monkeypatch.setattr(builtins, "open", count("opens", real_open))
    monkeypatch.setattr(io, "open", count("opens", real_io_open))
    statuses = []
    for n in range(200):
        statuses.append(client.post("/RequestHandler/ucdevice.upx", data=GOOD % (n % 256)).status_code)
        statuses.append(client.post("/requesthandler/UCDEVICE.upx", data=b"not xml").status_code)
        statuses.append(client.get("/RequestHandler/ucdevice.upx?MACAddress=0004F2AABBCC&DeviceType=UCPhone"
                                   "&Vendor=Polycom&Model=CX600&Locale=XYZ").status_code)
        statuses.append(client.post("/RequestHandlerExt/ucdevice.upx", data=GOOD % 1).status_code)
    monkeypatch.undo()
    assert counts == {"queries": 0, "opens": 0}
    assert statuses == [200, 400, 400, 401] * 200
    service = app.extensions[EXTENSION]
    assert service.audit.rows == 801
    assert service.inventory.pending == 200
    shutdown(app)
    assert service.inventory.pending == 0


def test_fast_path_and_blueprint_answer_alike(install):
    """With JSON request logs on, checks go through Flask (its hooks see them); the answers are the same."""
    from devupdate.devices.check import CheckFastPath

    fast_app = create_app(install.runtime(), background=False)
    flask_app = create_app(install.runtime(json_logs=True), background=False)
    def layers(app) -> list:
        """The WSGI middlewares in front of Flask, outermost first."""
        found, layer = [], app.wsgi_app
        while hasattr(layer, "app"):
            found.append(layer)
            layer = layer.app
        return found

    assert any(isinstance(layer, CheckFastPath) for layer in layers(fast_app))
    assert not any(isinstance(layer, CheckFastPath) for layer in layers(flask_app))
    query = "?MACAddress=0004F2AABBCC&DeviceType=UCPhone&Vendor=Polycom&Model=CX600&Locale=ENU&Module=CPE.nbt;1.0"
    calls = [("post", "/RequestHandler/ucdevice.upx", {"data": GOOD % 7}),
             ("post", "/requestHandler/ucdevice.upx", {"data": b"<Request/>"}),
             ("get", "/RequestHandler/ucdevice.upx" + query, {}),
             ("get", "/RequestHandler/ucdevice.upx?Locale=XYZ&" + query[1:], {}),
             ("post", "/RequestHandlerExt/ucdevice.upx", {"data": GOOD % 7}),
             ("post", "/RequestHandlerExt/ucdevice.upx", {"data": GOOD % 7, "headers": {"Authorization": "Basic x"}}),
             ("head", "/RequestHandler/ucdevice.upx" + query, {})]
    for method, path, kwargs in calls:
        answers = []
        for app in (fast_app, flask_app):
            response = getattr(app.test_client(), method)(path, **kwargs)
            answers.append((response.status_code, response.get_data(),
                            sorted((k, v) for k, v in response.headers.items() if k not in ("Date", "X-Request-Id"))))
            if app is flask_app:  # the JSON request log names each request; the fast path runs without the log
                assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"]), response.headers
        assert answers[0] == answers[1], (method, path)
        assert answers[0][0] in (200, 400, 401)
    assert fast_app.test_client().put("/RequestHandler/ucdevice.upx").status_code == 405
    for app in (fast_app, flask_app):
        shutdown(app)
