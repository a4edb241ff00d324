"""`EtcdStore`: the cluster store (`pgha.adapters.store.ClusterStore`) on etcd v3.

Every write that decides or depends on leadership is one etcd transaction whose compares
carry the facts it was decided on (traps 1, 7, 8, 13):
- acquire: create_revision(leader) = 0; the term is the revision in the txn's answer header,
  which is the create_revision of the key it wrote;
- renew: a keepalive that counts only with a positive TTL, then a compare of value,
  create_revision and lease on `leader`;
- release and every leader-only write: value = name AND create_revision = term AND
  lease = our lease, in the same txn as the write.
The snapshot is one linearizable range over the prefix; its revision is the answer header's.

This module builds requests and reads answers; `etcd_client` moves them (endpoints,
timeouts, TLS, auth, error translation) and `etcd_watch` streams the leader key. It makes no
decision: a lost compare is returned as False or None for the caller to act on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pgha.adapters.etcd_answers import GRPC_NOT_FOUND, EtcdRequestError
from pgha.adapters.etcd_client import EtcdTransport, b64, prefix_range_end, unb64
from pgha.adapters.etcd_watch import LeaderWatch
from pgha.adapters.store import (
    ENDPOINT,
    HANDOFF,
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
from pgha.errors import StoreError
from pgha.settings import Settings

WATCH_PROGRESS_INTERVAL_SECONDS = 10.0
"""How often etcd is expected to send watch progress notifications; run etcd with
`--experimental-watch-progress-notify-interval=10s` (3.4; the default is 10 min). A watch
silent for twice this long is re-created, which costs one early wake-up of the loop."""

Json = dict[str, Any]


class EtcdStore:
    """The cluster store of one cluster (one key prefix) on etcd, through its JSON gateway."""

    def __init__(
        self,
        endpoints: list[str],
        prefix: str,
        *,
        timeout: float = 2.0,
        username: str | None = None,
        password: str | None = None,
        ca_cert: Path | None = None,
        cert: Path | None = None,
        key: Path | None = None,
    ) -> None:
        if not (prefix.startswith("/") and prefix.endswith("/") and len(prefix) > 1):
            raise ValueError(f"the key prefix must look like /namespace/cluster/, got {prefix!r}")
        self.prefix = prefix
        self.watch_progress_interval_seconds = WATCH_PROGRESS_INTERVAL_SECONDS
        self._transport = EtcdTransport(
            endpoints,
            timeout=timeout,
            username=username,
            password=password,
            ca_cert=ca_cert,
            cert=cert,
            key=key,
        )
        self._watches: list[LeaderWatch] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> EtcdStore:
        etcd = settings.etcd
        return cls(
            list(etcd.endpoints),
            settings.prefix,
            timeout=etcd.timeout,
            username=etcd.username,
            password=etcd.secret(),
            ca_cert=etcd.ca_cert,
            cert=etcd.cert,
            key=etcd.key,
        )

    # Leases ------------------------------------------------------------------------------

    def grant_lease(self, ttl_seconds: int) -> Lease:
        answer = self._call("/lease/grant", {"TTL": ttl_seconds}, f"grant a {ttl_seconds} s lease")
        lease_id, ttl = _int(answer.get("ID")), _int(answer.get("TTL"))
        if lease_id == NO_LEASE or ttl <= 0:
            raise StoreError(f"grant a {ttl_seconds} s lease: etcd answered {answer!r}")
        # etcd raises a TTL below its minimum (1.5 x election timeout); fencing must use
        # what was granted, never what was asked (traps 1c).
        return Lease(lease_id, ttl)

    def keep_alive(self, lease: Lease) -> int:
        what = f"keep lease {lease.id:x} alive"
        answer = self._call("/lease/keepalive", {"ID": str(lease.id)}, what, idempotent=True)
        result = answer.get("result")
        if not isinstance(result, dict):
            raise StoreError(f"{what}: etcd answered {answer!r}")
        # An expired lease answers without a TTL (etcd sends 0, the gateway omits it). That
        # is a lost lease, never a renewal (traps 1a).
        return max(_int(result.get("TTL")), 0)

    def revoke_lease(self, lease: Lease) -> None:
        what = f"revoke lease {lease.id:x}"
        try:
            self._call("/lease/revoke", {"ID": str(lease.id)}, what, idempotent=True)
        except EtcdRequestError as exc:
            if exc.grpc_code != GRPC_NOT_FOUND:
                raise  # only "already gone" is fine

    # Reading -----------------------------------------------------------------------------

    def read_cluster(self) -> ClusterSnapshot:
        body = {"key": b64(self.prefix), "range_end": prefix_range_end(self.prefix)}
        # Linearizable (no "serializable"): a snapshot must never predate a write we made.
        answer = self._call("/kv/range", body, f"read {self.prefix}*", idempotent=True)
        revision = _revision(answer)
        entries = [self._raw_entry(kv) for kv in answer.get("kvs", [])]
        return parse_snapshot(revision, entries)

    def _raw_entry(self, kv: Json) -> RawEntry:
        key = unb64(kv["key"]).removeprefix(self.prefix)
        return RawEntry(
            key=key,
            value=unb64(kv.get("value", "")),
            create_revision=_int(kv.get("create_revision")),
            mod_revision=_int(kv.get("mod_revision")),
            lease_id=_int(kv.get("lease")),
        )

    # Leadership --------------------------------------------------------------------------

    def acquire_leader(self, name: str, lease: Lease) -> LeaderClaim | None:
        leader = self._key(LEADER)
        answer = self._txn(
            [_compare(leader, "CREATE", 0)],
            [_put(leader, name, lease.id)],
            f"acquire {self.prefix}{LEADER} for {name}",
        )
        if not answer.get("succeeded"):
            return None
        # One put in the txn: the header revision is the key's create_revision.
        return LeaderClaim(name, _revision(answer), lease.id)

    def rebind_leader(self, name: str, seen: LeaderKey, lease: Lease) -> LeaderClaim | None:
        leader = self._key(LEADER)
        answer = self._txn(
            [_compare(leader, "VALUE", name), _compare(leader, "MOD", seen.mod_revision)],
            [_put(leader, name, lease.id), {"request_range": {"key": leader}}],
            f"re-bind {self.prefix}{LEADER} of {name} to lease {lease.id:x}",
        )
        if not answer.get("succeeded"):
            return None
        kvs = answer["responses"][1]["response_range"].get("kvs", [])
        return LeaderClaim(name, _int(kvs[0].get("create_revision")), lease.id)

    def renew_leader(self, claim: LeaderClaim, lease: Lease, *, confirm: bool = True) -> bool:
        # Renew before anything slow: the keepalive's send time is what fencing counts from.
        if self.keep_alive(lease) <= 0 or lease.id != claim.lease_id:
            return False
        if not confirm:
            return True
        answer = self._txn(
            self._claim_compares(claim),
            [],
            f"confirm {self.prefix}{LEADER} is held by {claim.name} (term {claim.term})",
            idempotent=True,  # compares only: nothing to apply twice
        )
        return bool(answer.get("succeeded"))

    def release_leader(
        self, claim: LeaderClaim, handoff: Any | None = None, handoff_lease: Lease | None = None
    ) -> bool:
        operations: list[Json] = [
            {"request_delete_range": {"key": self._key(LEADER)}},
            {"request_delete_range": {"key": self._key(ENDPOINT)}},
        ]
        if handoff is not None:
            if handoff_lease is None:
                # A handoff without a lease would block every election for good (traps 8).
                raise ValueError("a handoff must be bound to a lease that ends its window")
            operations.append(_put(self._key(HANDOFF), encode(handoff), handoff_lease.id))
        answer = self._txn(
            self._claim_compares(claim),
            operations,
            f"release {self.prefix}{LEADER} held by {claim.name} (term {claim.term})",
        )
        return bool(answer.get("succeeded"))

    def claim_initialize(self, name: str, lease: Lease) -> LeaderClaim | None:
        leader, initialize = self._key(LEADER), self._key(INITIALIZE)
        claim = encode({"state": "bootstrapping", "node": name})
        answer = self._txn(
            [_compare(initialize, "CREATE", 0), _compare(leader, "CREATE", 0)],
            [_put(initialize, claim, lease.id), _put(leader, name, lease.id)],
            f"claim {self.prefix}{INITIALIZE} for {name}",
        )
        if not answer.get("succeeded"):
            return None
        return LeaderClaim(name, _revision(answer), lease.id)

    def finish_initialize(self, claim: LeaderClaim, sysid: str) -> bool:
        # No lease: from now on the cluster's identity outlives any node (traps 13).
        answer = self._txn(
            self._claim_compares(claim),
            [_put(self._key(INITIALIZE), encode({"sysid": sysid}), NO_LEASE)],
            f"record system identifier {sysid} in {self.prefix}{INITIALIZE}",
        )
        return bool(answer.get("succeeded"))

    # Other keys --------------------------------------------------------------------------

    def publish_member(self, name: str, data: Any, lease: Lease) -> None:
        key = MEMBERS + name
        body = _put(self._key(key), encode(data), lease.id)["request_put"]
        self._call("/kv/put", body, f"publish {self.prefix}{key}")

    def put(
        self,
        key: str,
        data: Any,
        *,
        expected_mod_revision: int | None = None,
        as_leader: LeaderClaim | None = None,
        lease: Lease | None = None,
    ) -> bool:
        full = self._key(key)
        answer = self._txn(
            self._write_compares(full, expected_mod_revision, as_leader),
            [_put(full, encode(data), lease.id if lease is not None else NO_LEASE)],
            f"write {self.prefix}{key}",
        )
        return bool(answer.get("succeeded"))

    def delete(
        self,
        key: str,
        *,
        expected_mod_revision: int | None = None,
        as_leader: LeaderClaim | None = None,
    ) -> bool:
        full = self._key(key)
        answer = self._txn(
            self._write_compares(full, expected_mod_revision, as_leader),
            [{"request_delete_range": {"key": full}}],
            f"delete {self.prefix}{key}",
        )
        return bool(answer.get("succeeded"))

    # Watch and lifecycle -----------------------------------------------------------------

    def watch_leader(self, on_change: Callable[[], None]) -> LeaderWatch:
        watch = LeaderWatch(
            self._transport,
            self.prefix + LEADER,
            on_change,
            progress_interval_seconds=self.watch_progress_interval_seconds,
        )
        # Wait (bounded) for etcd to confirm the watch, so that a change made right after
        # this returns is reported; if it is not confirmed in time, the first confirmation
        # calls on_change once instead.
        watch.start(wait_seconds=self._transport.timeout)
        self._watches = [w for w in self._watches if w.running] + [watch]
        return watch

    def close(self) -> None:
        for watch in self._watches:
            watch.stop()
        self._watches = []
        self._transport.close()

    # Helpers -----------------------------------------------------------------------------

    def _key(self, relative: str) -> str:
        if not relative or relative.startswith("/"):
            raise ValueError(f"keys are relative to {self.prefix}, got {relative!r}")
        return b64(self.prefix + relative)

    def _claim_compares(self, claim: LeaderClaim) -> list[Json]:
        """value = name AND create_revision = term AND lease = our lease: ownership (traps 1b)."""
        leader = self._key(LEADER)
        return [
            _compare(leader, "VALUE", claim.name),
            _compare(leader, "CREATE", claim.term),
            _compare(leader, "LEASE", claim.lease_id),
        ]

    def _write_compares(
        self, key: str, expected_mod_revision: int | None, as_leader: LeaderClaim | None
    ) -> list[Json]:
        compares = []
        if expected_mod_revision is not None:
            compares.append(_compare(key, "MOD", expected_mod_revision))
        if as_leader is not None:
            compares.extend(self._claim_compares(as_leader))
        return compares

    def _txn(
        self, compares: list[Json], success: list[Json], what: str, *, idempotent: bool = False
    ) -> Json:
        body = {"compare": compares, "success": success}
        return self._call("/kv/txn", body, what, idempotent=idempotent)

    def _call(self, path: str, body: Json, what: str, *, idempotent: bool = False) -> Json:
        answer = self._transport.call(path, body, idempotent=idempotent, what=what)
        if not isinstance(answer, dict):
            raise StoreError(f"{what}: etcd answered {answer!r}, expected a JSON object")
        return answer

    def __repr__(self) -> str:
        return f"EtcdStore({self._transport.endpoints!r}, {self.prefix!r})"


_COMPARE_FIELDS = {
    "CREATE": "create_revision",
    "MOD": "mod_revision",
    "VALUE": "value",
    "LEASE": "lease",
}


def _compare(key: str, target: str, expected: int | str) -> Json:
    field = _COMPARE_FIELDS[target]
    value = b64(expected) if target == "VALUE" and isinstance(expected, str) else str(expected)
    return {"key": key, "target": target, "result": "EQUAL", field: value}


def _put(key: str, value: str, lease_id: int) -> Json:
    request: Json = {"key": key, "value": b64(value)}
    if lease_id != NO_LEASE:
        request["lease"] = str(lease_id)
    return {"request_put": request}


def _int(value: Any) -> int:
    """The gateway sends int64 fields as strings and omits zeros."""
    return int(value) if value is not None else 0


def _revision(answer: Json) -> int:
    revision = _int(answer.get("header", {}).get("revision"))
    if revision <= 0:
        raise StoreError(f"etcd answered without a revision: {answer!r}")
    return revision
