"""The leader's renewal: a keepalive alone when this cycle's snapshot showed the key bound
to the claim, the keepalive and a confirmation of the key otherwise (traps 1)."""

from __future__ import annotations

from typing import cast

from pgha.adapters.memory_store import MemoryEtcd, MemoryStore
from pgha.adapters.postgres import PostgresControl
from pgha.adapters.postgres_probe import PostgresProbe
from pgha.agent.cluster_view import parse_cluster
from pgha.agent.execute import Executor
from pgha.agent.runtime import Runtime
from pgha.core.actions import RenewLeader
from pgha.core.decision import Decision
from pgha.core.model import ClusterView, Policy

NOW = 1000.0
RENEW = Decision("renew_leader", "holds the key", (RenewLeader(),))


def leading(store: MemoryStore) -> Executor:
    runtime = Runtime(name="pg1", safety_margin_seconds=5)
    runtime.lease = store.grant_lease(10)
    runtime.claim = store.acquire_leader("pg1", runtime.lease)
    assert runtime.claim is not None
    return Executor(
        store=store,
        # Renewing touches neither Postgres nor its probe.
        control=cast(PostgresControl, None),
        probe=cast(PostgresProbe, None),
        runtime=runtime,
        dynamic_config_seed={},
        clock=lambda: NOW,
    )


def snapshot(store: MemoryStore) -> ClusterView:
    return parse_cluster(store.read_cluster(), Policy()).view


def renewed(executor: Executor, view: ClusterView | None) -> bool:
    [outcome] = executor.run(RENEW, view)
    return outcome.ok


def test_a_renewal_the_snapshot_vouches_for_moves_the_fencing_deadline() -> None:
    store = MemoryStore(MemoryEtcd(clock=lambda: NOW), "/pgha/main/")
    executor = leading(store)
    assert renewed(executor, snapshot(store))
    assert executor.runtime.fencing_deadline == NOW + 10 - 5


def test_without_a_snapshot_showing_the_key_the_renewal_confirms_it() -> None:
    store = MemoryStore(MemoryEtcd(clock=lambda: NOW), "/pgha/main/")
    executor = leading(store)
    seen = snapshot(store)
    assert executor.runtime.claim is not None
    assert store.release_leader(executor.runtime.claim)  # gone, the lease still alive
    assert not renewed(executor, None)  # etcd could not be read this cycle
    assert not renewed(executor, snapshot(store))  # the snapshot shows no key
    # Only the snapshot of this same cycle vouches for the key, and it showed it.
    assert renewed(executor, seen)


def test_a_dead_lease_fails_the_renewal_even_with_the_snapshots_word() -> None:
    store = MemoryStore(MemoryEtcd(clock=lambda: NOW), "/pgha/main/")
    executor = leading(store)
    seen = snapshot(store)
    assert executor.runtime.lease is not None
    store.revoke_lease(executor.runtime.lease)
    assert not renewed(executor, seen)
