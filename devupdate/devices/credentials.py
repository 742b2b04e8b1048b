"""The external side's credential sources and schemes, built from settings once per worker.

``external_user_sources`` names the sources in the order they are asked: ``database`` (the
built-in store, ``devupdate users …``; scrypt for Basic, NT hashes for NTLM) and ``directory``
(LDAP / Active Directory, Basic only; :mod:`devupdate.devices.directory`). Several behave as one
:class:`devupdate.devices.users.UserStore`.
"""

from __future__ import annotations

import logging

from devupdate.devices.access import Schemes
from devupdate.devices.ntlm import SCHEMES as CONNECTION_SCHEMES
from devupdate.devices.users import DatabaseUserStore, HashGate, UserStore

log = logging.getLogger("devupdate.credentials")


class ChainedUserStore:
    """Several sources as one: a password is right when one source says so (asked in order); the
    NT hash is the first source's that has one."""

    def __init__(self, sources: list[UserStore]):
        self.sources = sources

    def verify(self, name: str, password: str) -> bool:
        return any(source.verify(name, password) for source in self.sources)

    def nt_hash(self, name: str) -> bytes | None:
        for source in self.sources:
            found = source.nt_hash(name)
            if found is not None:
                return found
        return None


def ntlm_enabled(settings) -> bool:
    return any(scheme in settings.external_auth_schemes for scheme in CONNECTION_SCHEMES)


def nt_key(settings) -> bytes | None:
    return bytes.fromhex(settings.nt_hash_key) if settings.nt_hash_key else None


def database_store(settings, *, gate: HashGate | None = None) -> DatabaseUserStore:
    """The built-in store; it writes NT hashes only while NTLM or Negotiate is offered."""
    return DatabaseUserStore(gate=gate, nt_key=nt_key(settings), store_nt_hash=ntlm_enabled(settings))


def user_store(settings, *, gate: HashGate | None = None) -> UserStore:
    sources: list[UserStore] = []
    for name in settings.external_user_sources:
        if name == "database":
            sources.append(database_store(settings, gate=gate))
        else:
            from devupdate.devices.directory import DirectoryConfig, DirectoryUserStore

            sources.append(DirectoryUserStore(DirectoryConfig.from_settings(settings), threads=settings.threads))
    return sources[0] if len(sources) == 1 else ChainedUserStore(sources)


def schemes(settings, users: UserStore) -> Schemes:
    """What the external side offers; NTLM and Negotiate only with a source that holds NT hashes
    (the database) and a pyspnego this code can route credentials for."""
    from devupdate.devices import ntlm

    offered = settings.external_auth_schemes
    wants = ntlm_enabled(settings)
    if not wants:
        return Schemes(offered=offered)
    reason = ntlm.UNAVAILABLE or ("" if "database" in settings.external_user_sources else
                                  "only the database holds NT hashes, and it is not among external_user_sources")
    if reason:
        log.warning("NTLM and Negotiate are not offered: %s", reason)
        return Schemes(offered=tuple(s for s in offered if s not in CONNECTION_SCHEMES) or ("Basic",))
    handshakes = ntlm.Handshakes(users, ttl=settings.ntlm_handshake_timeout, max_pending=settings.ntlm_max_pending,
                                 domains=settings.ntlm_domains)
    return Schemes(offered=offered, handshakes=handshakes)
