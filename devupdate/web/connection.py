"""State that lives exactly as long as one client connection.

Connection-oriented authentication (NTLM, Negotiate) carries a security context from one request
to the next on the same kept-alive connection. The worker of ``devupdate serve`` gives every
request of a connection the same :class:`Connection` under ``environ[CONNECTION]``; a request on
another connection — or in another worker process — sees another object, so nothing stored here
can be reached from elsewhere. When the connection closes, its close callbacks run and its state
is dropped. Servers that do not hand one out (the test client, other WSGI servers) leave the key
unset, and features that need it are simply not offered there.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable

CONNECTION = "devupdate.connection"

_serials = itertools.count(1)


class Connection:
    """One client connection: a process-unique ``id``, ``open`` until the server closes it."""

    __slots__ = ("_callbacks", "_lock", "id", "open")

    def __init__(self) -> None:
        self.id = f"{os.getpid()}-{next(_serials)}"
        self.open = True
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once when the connection closes (at once if it already has)."""
        with self._lock:
            if self.open:
                self._callbacks.append(callback)
                return
        callback()

    def close(self) -> None:
        with self._lock:
            self.open, callbacks, self._callbacks = False, self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001, S110 - a feature's cleanup must not stop the server's
                pass


def of(environ) -> Connection | None:
    """The request's connection, or ``None`` when the server does not track connections."""
    found = environ.get(CONNECTION)
    return found if isinstance(found, Connection) else None
