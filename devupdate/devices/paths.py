"""Case-insensitive device paths (device-protocol.md §2).

The original service ran on IIS, where paths are case-insensitive; phones and proxies send
``/requesthandler/UCDevice.upx`` and the like. This WSGI middleware rewrites the known device
prefixes to their canonical spelling before Flask routes the request, so every view is
registered once, with one spelling. The rest of a download path (``<DeviceType>/…/<FileName>``)
is left as sent: the download view matches it case-insensitively itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

#: exact paths (a trailing slash is tolerated)
EXACT = ("/RequestHandler/ucdevice.upx", "/RequestHandlerExt/ucdevice.upx",
         "/RequestHandler/Files", "/RequestHandlerExt/Files")
#: prefixes followed by a file path
PREFIXES = ("/DeviceUpdateFiles_Int/", "/DeviceUpdateFiles_Ext/")

_EXACT = {path.lower(): path for path in EXACT}
_EXACT.update({path.lower() + "/": path for path in EXACT})
_PREFIXES = tuple((prefix.lower(), prefix) for prefix in PREFIXES)
_FIRST = ("/r", "/d", "/R", "/D")


def canonical_path(path: str) -> str:
    """The canonical spelling of a device path; any other path unchanged."""
    if not path.startswith(_FIRST):
        return path
    lowered = path.lower()
    exact = _EXACT.get(lowered)
    if exact is not None:
        return exact
    for low, canonical in _PREFIXES:
        if lowered.startswith(low):
            return canonical + path[len(low):]
    return path


class DevicePathMiddleware:
    """Wraps a WSGI app; rewrites ``PATH_INFO`` with :func:`canonical_path`."""

    def __init__(self, app: Callable[[dict, Callable], Iterable[bytes]]):
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        canonical = canonical_path(path)
        if canonical is not path:
            environ["PATH_INFO"] = canonical
        return self.app(environ, start_response)
