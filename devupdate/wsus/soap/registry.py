"""Which code answers which (service, operation). Later issues add their operations here with
:func:`operation`; an operation of the WSDLs that nobody registered is answered like an unknown
one (``InvalidParameters``, ``Message=SOAPAction``): that is what a WSUS without it would say,
and it tells a client or a downstream server not to retry unchanged.

Each operation has a *weight*, the admission class it is counted in (S8, spec/wsus.md §9):
``light`` for what answers from memory in a few milliseconds (GetConfig, Ping), ``heavy`` for
what reads the catalog or writes (SyncUpdates, GetExtendedUpdateInfo, reporting …). An operation
registered without one is ``heavy``: an unknown cost is counted as a large one. An operation
nobody registered is ``light``: its answer is an immediate fault."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devupdate.wsus.soap.envelope import El, Envelope
from devupdate.wsus.soap.services import SERVICES, Service


@dataclass(frozen=True)
class Call:
    """One SOAP request as an operation sees it; nothing of the web framework."""

    service: Service
    operation: str
    envelope: Envelope
    settings: Any  # devupdate.settings.Settings (duck-typed, so operations stay testable)
    https: bool
    content_type: str
    client_address: str
    database_ok: Callable[[], bool]
    authorization: str = ""  # the request's Authorization header (server-sync access, S6)
    client_verified: bool = False  # a trusted TLS proxy verified the client's certificate (S6)

    @property
    def body(self):
        return self.envelope.operation


Handler = Callable[[Call], El]
_HANDLERS: dict[tuple[str, str], Handler] = {}
LIGHT, HEAVY = "light", "heavy"
WEIGHTS = (LIGHT, HEAVY)
_WEIGHTS: dict[tuple[str, str], str] = {}


def operation(name: str, *service_keys: str, weight: str = HEAVY) -> Callable[[Handler], Handler]:
    """Register the decorated function as ``name`` on the services ``service_keys`` (all when none),
    counted in the admission class ``weight`` (``light`` or ``heavy``)."""
    keys = service_keys or tuple(service.key for service in SERVICES)
    if weight not in WEIGHTS:
        raise ValueError(f"{weight!r} is no operation weight ({', '.join(WEIGHTS)})")

    def register(handler: Handler) -> Handler:
        for key in keys:
            service = next(s for s in SERVICES if s.key == key)
            if name not in service.operations:
                raise ValueError(f"{name} is no operation of {key} ({service.wsdl})")
            _HANDLERS[(key, name)] = handler
            _WEIGHTS[(key, name)] = weight
        return handler

    return register


def handler_for(service: Service, name: str) -> Handler | None:
    return _HANDLERS.get((service.key, name))


def weight_of(service: Service, name: str) -> str:
    """The admission class of ``name`` on ``service`` (``light`` when nobody registered it)."""
    return _WEIGHTS.get((service.key, name), HEAVY) if (service.key, name) in _HANDLERS else LIGHT


def implemented() -> list[tuple[str, str]]:
    return sorted(_HANDLERS)
