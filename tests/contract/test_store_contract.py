"""The store contract: MemoryStore and EtcdStore must behave alike on every point here.

Each test runs twice, against a real etcd started by the fixture and against the memory
store on a virtual clock. What the agent relies on for safety is spelled out here:
exactly one winner per race, leases that expire and take their keys with them, ownership
proven by name + term + lease, compare-and-set that loses cleanly, one consistent snapshot.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pgha.adapters.store import (
    CONFIG,
    ENDPOINT,
    HANDOFF,
    INITIALIZE,
    ClusterStore,
    LeaderClaim,
    Record,
    Unparsable,
)
from pgha.errors import StoreError
from tests.contract.harness import EtcdHarness, MemoryHarness, StoreHarness, wait_until


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.integration)])
def harness(request: pytest.FixtureRequest) -> Iterator[StoreHarness]:
    made: StoreHarness
    if request.param == "memory":
        made = MemoryHarness()
    else:
        server = request.getfixturevalue("etcd_server")
        made = EtcdHarness(server.endpoint)
    yield made
    made.close()


def race(stores: list[ClusterStore], attempt: Any) -> list[Any]:
    """Run `attempt(store)` on every store at the same instant, from one thread each."""
    results: list[Any] = [None] * len(stores)
    barrier = threading.Barrier(len(stores))

    def run(index: int) -> None:
        barrier.wait()
        results[index] = attempt(stores[index])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_two_contenders_race_for_the_leader_key_and_exactly_one_wins(
    harness: StoreHarness,
) -> None:
    stores = [harness.make_store() for _ in range(3)]
    leases = [store.grant_lease(10) for store in stores]
    names = ["pg1", "pg2", "pg3"]

    claims = race(
        stores, lambda s: s.acquire_leader(names[stores.index(s)], leases[stores.index(s)])
    )

    winners = [claim for claim in claims if claim is not None]
    assert len(winners) == 1
    leader = stores[0].read_cluster().leader
    assert leader is not None
    assert leader.is_held_by(winners[0])
    assert leader.term == winners[0].term


def test_the_leader_key_vanishes_about_ttl_after_keepalives_stop_and_a_watcher_sees_it(
    harness: StoreHarness,
) -> None:
    holder, observer = harness.make_store(), harness.make_store()
    lease = holder.grant_lease(2)
    assert lease.ttl_seconds >= 2
    claim = holder.acquire_leader("pg1", lease)
    assert claim is not None
    woken = threading.Event()
    watch = observer.watch_leader(woken.set)
    try:
        # Keepalives hold the key for longer than one TTL.
        for _ in range(4):
            harness.sleep(lease.ttl_seconds / 2)
            assert holder.renew_leader(claim, lease)
        assert observer.read_cluster().leader is not None

        # Then they stop: the key goes about one TTL later, and the watcher is told.
        gone = wait_until(
            harness, lambda: observer.read_cluster().leader is None, 3 * lease.ttl_seconds
        )
        assert gone
        assert wait_until(harness, woken.is_set, 5)
        assert holder.keep_alive(lease) == 0
        assert not holder.renew_leader(claim, lease)
    finally:
        watch.stop()


def test_keep_alive_reports_the_granted_ttl_and_zero_once_the_lease_is_gone(
    harness: StoreHarness,
) -> None:
    store = harness.make_store()
    lease = store.grant_lease(5)
    assert store.keep_alive(lease) == lease.ttl_seconds
    store.revoke_lease(lease)
    assert store.keep_alive(lease) == 0
    store.revoke_lease(lease)  # revoking twice is harmless


def test_renew_and_release_fail_for_a_non_holder(harness: StoreHarness) -> None:
    store, other = harness.make_store(), harness.make_store()
    lease, other_lease = store.grant_lease(10), other.grant_lease(10)
    claim = store.acquire_leader("pg1", lease)
    assert claim is not None
    assert other.acquire_leader("pg2", other_lease) is None

    impostors = [
        LeaderClaim("pg2", claim.term, other_lease.id),
        LeaderClaim("pg1", claim.term + 1000, claim.lease_id),
        LeaderClaim("pg1", claim.term, other_lease.id),
    ]
    for impostor in impostors:
        assert not other.renew_leader(impostor, other_lease)
        assert not other.release_leader(impostor)
        assert not other.put("sync", {"x": 1}, as_leader=impostor)
    assert store.read_cluster().leader is not None

    assert store.renew_leader(claim, lease)
    assert store.put("sync", {"standbys": []}, as_leader=claim)
    assert store.release_leader(claim)
    assert store.read_cluster().leader is None


def test_a_renewal_without_confirmation_is_the_keepalive_alone(harness: StoreHarness) -> None:
    """For a holder whose snapshot just showed the key: it keeps the lease alive and fails
    once the lease is gone, but no longer looks at the key itself."""
    store = harness.make_store()
    lease = store.grant_lease(10)
    claim = store.acquire_leader("pg1", lease)
    assert claim is not None
    assert store.renew_leader(claim, lease, confirm=False)
    assert store.release_leader(claim)
    assert store.renew_leader(claim, lease, confirm=False)  # the lease itself still lives
    assert not store.renew_leader(claim, lease)
    other_lease = store.grant_lease(10)
    assert not store.renew_leader(claim, other_lease, confirm=False)  # not the claim's lease
    store.revoke_lease(lease)
    assert not store.renew_leader(claim, lease, confirm=False)
    assert not store.release_leader(claim)


def test_a_restarted_agent_rebinds_its_name_to_its_new_lease_and_keeps_the_term(
    harness: StoreHarness,
) -> None:
    before, after = harness.make_store(), harness.make_store()
    old_lease = before.grant_lease(10)
    old_claim = before.acquire_leader("pg1", old_lease)
    assert old_claim is not None

    new_lease = after.grant_lease(10)
    seen = after.read_cluster().leader
    assert seen is not None
    assert seen.holder == "pg1"
    # The name matches, but the key is bound to the dead process's lease: not ours yet.
    assert not after.renew_leader(LeaderClaim("pg1", seen.term, new_lease.id), new_lease)

    claim = after.rebind_leader("pg1", seen, new_lease)
    assert claim == LeaderClaim("pg1", old_claim.term, new_lease.id)
    assert after.renew_leader(claim, new_lease)
    # The old lease no longer carries the key; a second rebind on the stale view loses.
    before.revoke_lease(old_lease)
    leader = after.read_cluster().leader
    assert leader is not None
    assert leader.is_held_by(claim)
    assert after.rebind_leader("pg1", seen, new_lease) is None
    assert not before.renew_leader(old_claim, old_lease)


def test_initialize_is_won_once_with_the_leader_key_and_a_dead_winner_leaves_nothing(
    harness: StoreHarness,
) -> None:
    stores = [harness.make_store() for _ in range(3)]
    leases = [store.grant_lease(2) for store in stores]
    claims = race(
        stores, lambda s: s.claim_initialize(f"pg{stores.index(s)}", leases[stores.index(s)])
    )
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1
    winner = winners[0]
    snapshot = stores[0].read_cluster()
    init = snapshot.get(INITIALIZE)
    assert isinstance(init, Record)
    assert init.data == {"state": "bootstrapping", "node": winner.name}
    assert snapshot.leader is not None
    assert snapshot.leader.is_held_by(winner)

    # The winner dies mid-bootstrap: its lease takes both keys with it.
    assert wait_until(harness, lambda: stores[0].read_cluster().get(INITIALIZE) is None, 8)
    assert stores[0].read_cluster().leader is None

    # The next winner finishes: initialize becomes permanent and outlives its lease.
    lease = stores[1].grant_lease(10)
    claim = stores[1].claim_initialize("pg1", lease)
    assert claim is not None
    assert not stores[2].finish_initialize(LeaderClaim("pg2", claim.term, lease.id), "7")
    assert stores[1].finish_initialize(claim, "7301")
    stores[1].revoke_lease(lease)
    done = stores[2].read_cluster()
    assert done.leader is None
    init = done.get(INITIALIZE)
    assert isinstance(init, Record)
    assert init.data == {"sysid": "7301"}
    assert stores[2].claim_initialize("pg2", stores[2].grant_lease(10)) is None


def test_compare_and_set_lets_exactly_one_of_two_writers_win(harness: StoreHarness) -> None:
    first, second = harness.make_store(), harness.make_store()
    assert first.put(CONFIG, {"ttl": 30}, expected_mod_revision=0)
    assert not second.put(CONFIG, {"ttl": 99}, expected_mod_revision=0)
    seen = first.read_cluster().get(CONFIG)
    assert isinstance(seen, Record)

    results = race(
        [first, second],
        lambda s: s.put(CONFIG, {"by": id(s)}, expected_mod_revision=seen.mod_revision),
    )
    assert sorted(results) == [False, True]
    assert not first.delete(CONFIG, expected_mod_revision=seen.mod_revision)
    now = first.read_cluster().get(CONFIG)
    assert isinstance(now, Record)
    assert first.delete(CONFIG, expected_mod_revision=now.mod_revision)
    assert first.read_cluster().get(CONFIG) is None


def test_release_with_a_handoff_deletes_the_key_and_writes_the_handoff_in_one_step(
    harness: StoreHarness,
) -> None:
    store, watcher = harness.make_store(), harness.make_store()
    lease = store.grant_lease(10)
    claim = store.acquire_leader("pg1", lease)
    assert claim is not None
    handoff_lease = store.grant_lease(2)
    handoff = {"from": "pg1", "to": "pg2", "term": claim.term, "final_lsn": "0/3000028"}
    assert store.release_leader(claim, handoff=handoff, handoff_lease=handoff_lease)

    snapshot = watcher.read_cluster()
    assert snapshot.leader is None
    record = snapshot.get(HANDOFF)
    assert isinstance(record, Record)
    assert record.data == handoff
    assert record.lease_id == handoff_lease.id
    # etcd ends the grace window: the handoff lapses with its lease.
    assert wait_until(harness, lambda: watcher.read_cluster().get(HANDOFF) is None, 8)


def test_release_deletes_the_published_endpoint_with_the_key(harness: StoreHarness) -> None:
    store, watcher = harness.make_store(), harness.make_store()
    lease = store.grant_lease(10)
    claim = store.acquire_leader("pg1", lease)
    assert claim is not None
    endpoint = {"name": "pg1", "host": "10.0.0.1", "port": 5432, "term": claim.term}
    assert store.put(ENDPOINT, endpoint, as_leader=claim, lease=lease)
    published = watcher.read_cluster().get(ENDPOINT)
    assert isinstance(published, Record)
    assert published.lease_id == lease.id

    assert store.release_leader(claim)
    snapshot = watcher.read_cluster()
    assert snapshot.leader is None
    assert snapshot.get(ENDPOINT) is None


def test_member_records_live_on_their_member_lease(harness: StoreHarness) -> None:
    store, reader = harness.make_store(), harness.make_store()
    lease = store.grant_lease(10)
    store.publish_member("pg1", {"role": "replica", "timeline": 1}, lease)
    member = reader.read_cluster().members["pg1"]
    assert isinstance(member, Record)
    assert member.data == {"role": "replica", "timeline": 1}
    store.revoke_lease(lease)
    assert "pg1" not in reader.read_cluster().members


def test_garbage_in_keys_is_reported_not_raised(harness: StoreHarness) -> None:
    store = harness.make_store()
    harness.write_raw("members/pg9", "{not json")
    harness.write_raw(CONFIG, "42")
    store.publish_member("pg1", {"role": "replica"}, store.grant_lease(10))

    snapshot = store.read_cluster()
    assert isinstance(snapshot.members["pg9"], Unparsable)
    assert isinstance(snapshot.members["pg1"], Record)
    assert isinstance(snapshot.get(CONFIG), Unparsable)
    assert any("members/pg9" in problem for problem in snapshot.problems)
    assert any("config" in problem for problem in snapshot.problems)


def test_a_leader_key_without_a_lease_is_reported_and_blocks_acquiring(
    harness: StoreHarness,
) -> None:
    store = harness.make_store()
    harness.write_raw("leader", "ghost")
    snapshot = store.read_cluster()
    assert snapshot.leader is not None
    assert snapshot.leader.holder == "ghost"
    assert any("no lease" in problem for problem in snapshot.problems)
    assert store.acquire_leader("pg1", store.grant_lease(10)) is None


def test_the_snapshot_is_one_consistent_read(harness: StoreHarness) -> None:
    """A writer bumps `a` then `b` to the same counter; one snapshot never sees b ahead of a."""
    writer, reader = harness.make_store(), harness.make_store()
    stop = threading.Event()

    def write() -> None:
        counter = 0
        while not stop.is_set() and counter < 200:
            counter += 1
            writer.put("switchover", {"n": counter})
            writer.put("failover", {"n": counter})

    thread = threading.Thread(target=write)
    thread.start()
    try:
        for _ in range(60):
            snapshot = reader.read_cluster()
            first, second = snapshot.get("switchover"), snapshot.get("failover")
            if isinstance(first, Record) and isinstance(second, Record):
                assert second.data["n"] <= first.data["n"]
                assert snapshot.revision >= max(first.mod_revision, second.mod_revision)
    finally:
        stop.set()
        thread.join(timeout=30)


def test_acquiring_on_an_expired_lease_is_refused_loudly(harness: StoreHarness) -> None:
    store = harness.make_store()
    lease = store.grant_lease(10)
    store.revoke_lease(lease)
    with pytest.raises(StoreError, match="lease"):
        store.acquire_leader("pg1", lease)
    assert store.read_cluster().leader is None


def test_keys_outside_pghas_layout_are_left_alone(harness: StoreHarness) -> None:
    store = harness.make_store()
    harness.write_raw("operator-notes/today", "not json at all")
    snapshot = store.read_cluster()
    assert snapshot.problems == ()
