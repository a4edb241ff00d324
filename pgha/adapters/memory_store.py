"""The cluster store in memory, on an injected clock: a faithful stand-in for etcd in tests.

`MemoryEtcd` plays the etcd server: one revision counter, keys with create/mod revisions,
leases that expire on the injected clock and delete their keys, watchers. `MemoryStore` is
one node's client of it and implements `ClusterStore` with the same semantics as
`EtcdStore`; the contract suite in tests/contract holds the two to each other.

Expiry is evaluated whenever the server is touched and on `MemoryEtcd.tick()`, which a
simulation calls after advancing its virtual clock. A client can be cut off
(`reachable = False`) to simulate a partition: every call then raises `StoreUnavailable`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pgha.adapters.store import (
    ENDPOINT,
    INITIALIZE,
    LEADER,
    MEMBERS,
    NO_LEASE,
    ClusterSnapshot,
    LeaderClaim,
    LeaderKey,
    Lease,
    RawEntry,
    encode,
    parse_snapshot,
)
from pgha.errors import StoreError, StoreUnavailable

MIN_TTL_SECONDS = 2
"""etcd raises a requested TTL to 1.5 x its election timeout (1 s by default), rounded up."""


@dataclass
class _Entry:
    value: str
    create_revision: int
    mod_revision: int
    lease_id: int


@dataclass
class _Lease:
    ttl_seconds: int
    expires_at: float
    keys: set[str] = field(default_factory=set)


class MemoryEtcd:
    """The shared server: every MemoryStore of one test talks to the same instance."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._data: dict[str, _Entry] = {}
        self._leases: dict[int, _Lease] = {}
        self._revision = 1
        self._next_lease_id = 0x1000
        self._watchers: list[tuple[str, Callable[[], None]]] = []

    # --- what a test or a simulation drives ---------------------------------------------------

    def tick(self) -> None:
        """Expire the leases whose time has come (call after advancing the clock)."""
        with self._lock:
            self._expire()

    def put_raw(self, key: str, value: str, lease_id: int = NO_LEASE) -> int:
        """Write any text under an absolute key, as an operator with etcdctl could."""
        with self._lock:
            self._expire()
            return self._put(key, value, lease_id)

    @property
    def revision(self) -> int:
        return self._revision

    # --- server primitives (the lock is held by the caller) ---------------------------------

    def _expire(self) -> None:
        now = self._clock()
        for lease_id in [i for i, lease in self._leases.items() if lease.expires_at <= now]:
            self._drop_lease(lease_id)

    def _drop_lease(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            return
        for key in sorted(lease.keys):
            entry = self._data.get(key)
            if entry is not None and entry.lease_id == lease_id:
                self._delete(key)

    def _put(self, key: str, value: str, lease_id: int) -> int:
        if lease_id != NO_LEASE and lease_id not in self._leases:
            raise StoreUnavailable(f"lease {lease_id:x} not found; cannot write {key}")
        self._revision += 1
        old = self._data.get(key)
        if old is not None and old.lease_id in self._leases:
            self._leases[old.lease_id].keys.discard(key)
        create = old.create_revision if old is not None else self._revision
        self._data[key] = _Entry(value, create, self._revision, lease_id)
        if lease_id != NO_LEASE:
            self._leases[lease_id].keys.add(key)
        self._notify(key)
        return self._revision

    def _delete(self, key: str) -> bool:
        entry = self._data.pop(key, None)
        if entry is None:
            return False
        self._revision += 1
        if entry.lease_id in self._leases:
            self._leases[entry.lease_id].keys.discard(key)
        self._notify(key)
        return True

    def _notify(self, key: str) -> None:
        for watched, callback in list(self._watchers):
            if watched == key:
                callback()

    def _mod_revision(self, key: str) -> int:
        entry = self._data.get(key)
        return entry.mod_revision if entry is not None else 0


class _MemoryWatch:
    def __init__(self, server: MemoryEtcd, registration: tuple[str, Callable[[], None]]) -> None:
        self._server = server
        self._registration = registration

    def stop(self) -> None:
        with self._server._lock:
            if self._registration in self._server._watchers:
                self._server._watchers.remove(self._registration)


class MemoryStore:
    """One node's view of a MemoryEtcd; implements ClusterStore."""

    def __init__(self, server: MemoryEtcd, prefix: str) -> None:
        self._server = server
        self._prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.reachable = True

    # --- leases ------------------------------------------------------------------------------

    def grant_lease(self, ttl_seconds: int) -> Lease:
        with self._call() as server:
            ttl = max(MIN_TTL_SECONDS, math.ceil(ttl_seconds))
            server._next_lease_id += 1
            lease_id = server._next_lease_id
            server._leases[lease_id] = _Lease(ttl, server._clock() + ttl)
            return Lease(lease_id, ttl)

    def keep_alive(self, lease: Lease) -> int:
        with self._call() as server:
            known = server._leases.get(lease.id)
            if known is None:
                return 0
            known.expires_at = server._clock() + known.ttl_seconds
            return known.ttl_seconds

    def revoke_lease(self, lease: Lease) -> None:
        with self._call() as server:
            server._drop_lease(lease.id)

    # --- reads -------------------------------------------------------------------------------

    def read_cluster(self) -> ClusterSnapshot:
        with self._call() as server:
            entries = [
                RawEntry(
                    key.removeprefix(self._prefix),
                    entry.value,
                    entry.create_revision,
                    entry.mod_revision,
                    entry.lease_id,
                )
                for key, entry in sorted(server._data.items())
                if key.startswith(self._prefix)
            ]
            return parse_snapshot(server._revision, entries)

    # --- leadership --------------------------------------------------------------------------

    def acquire_leader(self, name: str, lease: Lease) -> LeaderClaim | None:
        with self._call() as server:
            _require_lease(server, lease)
            if self._key(LEADER) in server._data:
                return None
            term = server._put(self._key(LEADER), name, lease.id)
            return LeaderClaim(name, term, lease.id)

    def rebind_leader(self, name: str, seen: LeaderKey, lease: Lease) -> LeaderClaim | None:
        with self._call() as server:
            entry = server._data.get(self._key(LEADER))
            if entry is None or entry.value != name or entry.mod_revision != seen.mod_revision:
                return None
            if lease.id not in server._leases:
                return None
            server._put(self._key(LEADER), name, lease.id)
            return LeaderClaim(name, entry.create_revision, lease.id)

    def renew_leader(self, claim: LeaderClaim, lease: Lease, *, confirm: bool = True) -> bool:
        with self._call() as server:
            known = server._leases.get(lease.id)
            if known is None or lease.id != claim.lease_id:
                return False
            known.expires_at = server._clock() + known.ttl_seconds
            return self._holds(claim) if confirm else True

    def release_leader(
        self, claim: LeaderClaim, handoff: Any | None = None, handoff_lease: Lease | None = None
    ) -> bool:
        with self._call() as server:
            if not self._holds(claim):
                return False
            if handoff is not None and handoff_lease is not None:
                if handoff_lease.id not in server._leases:
                    return False
                server._put(self._key("handoff"), encode(handoff), handoff_lease.id)
            server._delete(self._key(LEADER))
            server._delete(self._key(ENDPOINT))
            return True

    def claim_initialize(self, name: str, lease: Lease) -> LeaderClaim | None:
        with self._call() as server:
            _require_lease(server, lease)
            if self._key(INITIALIZE) in server._data or self._key(LEADER) in server._data:
                return None
            state = {"state": "bootstrapping", "node": name}
            server._put(self._key(INITIALIZE), encode(state), lease.id)
            term = server._put(self._key(LEADER), name, lease.id)
            return LeaderClaim(name, term, lease.id)

    def finish_initialize(self, claim: LeaderClaim, sysid: str) -> bool:
        with self._call() as server:
            if not self._holds(claim):
                return False
            server._put(self._key(INITIALIZE), encode({"sysid": sysid}), NO_LEASE)
            return True

    # --- other keys --------------------------------------------------------------------------

    def publish_member(self, name: str, data: Any, lease: Lease) -> None:
        with self._call() as server:
            server._put(self._key(MEMBERS + name), encode(data), lease.id)

    def put(
        self,
        key: str,
        data: Any,
        *,
        expected_mod_revision: int | None = None,
        as_leader: LeaderClaim | None = None,
        lease: Lease | None = None,
    ) -> bool:
        with self._call() as server:
            if not self._compares_hold(key, expected_mod_revision, as_leader):
                return False
            lease_id = lease.id if lease is not None else NO_LEASE
            if lease_id != NO_LEASE and lease_id not in server._leases:
                return False
            server._put(self._key(key), encode(data), lease_id)
            return True

    def delete(
        self,
        key: str,
        *,
        expected_mod_revision: int | None = None,
        as_leader: LeaderClaim | None = None,
    ) -> bool:
        with self._call() as server:
            if not self._compares_hold(key, expected_mod_revision, as_leader):
                return False
            server._delete(self._key(key))
            return True

    def watch_leader(self, on_change: Callable[[], None]) -> _MemoryWatch:
        with self._call() as server:
            registration = (self._key(LEADER), on_change)
            server._watchers.append(registration)
            return _MemoryWatch(server, registration)

    def close(self) -> None:
        """Nothing to release: the server outlives its clients."""

    # --- helpers (the server lock is held) ---------------------------------------------------

    def _key(self, relative: str) -> str:
        return self._prefix + relative

    def _holds(self, claim: LeaderClaim) -> bool:
        entry = self._server._data.get(self._key(LEADER))
        if entry is None:
            return False
        return (entry.value, entry.create_revision, entry.lease_id) == (
            claim.name,
            claim.term,
            claim.lease_id,
        )

    def _compares_hold(
        self, key: str, expected_mod_revision: int | None, as_leader: LeaderClaim | None
    ) -> bool:
        if as_leader is not None and not self._holds(as_leader):
            return False
        if expected_mod_revision is None:
            return True
        return self._server._mod_revision(self._key(key)) == expected_mod_revision

    def _call(self) -> _ServerCall:
        return _ServerCall(self)


def _require_lease(server: MemoryEtcd, lease: Lease) -> None:
    if lease.id not in server._leases:
        # As etcd answers: a write bound to a missing lease is refused, not lost.
        raise StoreError(f"lease {lease.id:x} not found; grant a new lease")


class _ServerCall:
    """Holds the server lock for one call, after checking reachability and expiring leases."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def __enter__(self) -> MemoryEtcd:
        if not self._store.reachable:
            raise StoreUnavailable("memory etcd: this node is cut off from the store")
        server = self._store._server
        server._lock.acquire()
        server._expire()
        return server

    def __exit__(self, *exc_info: object) -> None:
        self._store._server._lock.release()
