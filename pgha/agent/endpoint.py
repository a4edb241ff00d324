"""The published endpoint: where clients find the primary, written by the leader in etcd.

The `endpoint` key is bound to the leader's lease and written only under the leader's claim
(name, term and lease compared in the same txn, traps 7), so it can never outlive the
leadership: a crashed leader's lease takes it away, and a release deletes it in the release
txn. The leader rewrites it only when the snapshot it read shows something else (missing,
another term, another lease), so an idle cluster writes it once per term.
"""

from __future__ import annotations

from typing import Any

from pgha.adapters.store import ENDPOINT, ClusterSnapshot, ClusterStore, LeaderClaim, Lease, Record
from pgha.dsn import multi_host_dsn
from pgha.settings import Settings
from pgha.settings_base import split_address


def endpoint_record(settings: Settings, claim: LeaderClaim) -> dict[str, Any]:
    host, port = split_address(settings.postgres.connect_address)
    return {
        "name": settings.node,
        "host": host,
        "port": port,
        "term": claim.term,
        "dsn": multi_host_dsn([(host, port)], target="read-write"),
        "api_url": settings.api.url,
    }


def endpoint_is_current(
    snapshot: ClusterSnapshot | None, wanted: dict[str, Any], lease: Lease
) -> bool:
    """The snapshot already shows exactly this endpoint, bound to this lease."""
    published = snapshot.get(ENDPOINT) if snapshot is not None else None
    return (
        isinstance(published, Record)
        and published.data == wanted
        and published.lease_id == lease.id
    )


def publish_endpoint(
    store: ClusterStore,
    settings: Settings,
    claim: LeaderClaim,
    lease: Lease,
    snapshot: ClusterSnapshot | None,
) -> bool:
    """As leader with a read-write Postgres: write `endpoint` unless the snapshot read this
    cycle already shows it. True if a write was made and etcd accepted it."""
    wanted = endpoint_record(settings, claim)
    if endpoint_is_current(snapshot, wanted, lease):
        return False
    return store.put(ENDPOINT, wanted, as_leader=claim, lease=lease)
