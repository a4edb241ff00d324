"""Member replication slots on a real three-node cluster (issue 5 item 3, traps 16).

Every node keeps a physical slot for every other member; the replicas stream through
theirs; a promoted replica already has the slots the survivors then stream through; the
slots of a member removed for good go once its record is gone and member_slots_ttl passed.
A replica whose slot Postgres marked lost (max_slot_wal_keep_size) is re-cloned once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Callable
from functools import partial

import pytest

from tests.fixtures.agent_node import AgentNode
from tests.fixtures.cluster import Cluster
from tests.fixtures.ops import pgha
from tests.fixtures.traffic import Monitor

pytestmark = pytest.mark.integration

AgentCluster = Callable[..., Cluster]


def slots(cluster: Cluster, node: AgentNode) -> dict[str, bool] | None:
    """Permanent physical slots of `node` and whether each is in use."""
    rows = cluster.try_sql(
        node,
        "SELECT slot_name, active FROM pg_replication_slots "
        "WHERE slot_type = 'physical' AND NOT temporary",
    )
    return None if rows is None else dict(rows)


def has_slots_for_the_others(cluster: Cluster, node: AgentNode, members: list[AgentNode]) -> bool:
    found = slots(cluster, node)
    wanted = {other.name for other in members if other is not node}
    return found is not None and set(found) == wanted


def streams_through_its_slot(cluster: Cluster, replica: AgentNode, primary: AgentNode) -> bool:
    receiver = cluster.try_sql(replica, "SELECT status, slot_name FROM pg_stat_wal_receiver")
    on_primary = slots(cluster, primary) or {}
    return receiver == [("streaming", replica.name)] and on_primary.get(replica.name) is True


def test_member_slots_survive_a_failover_and_go_with_their_member(
    agent_cluster: AgentCluster,
) -> None:
    cluster = agent_cluster(3)
    old = cluster.wait_healthy()
    everyone = list(cluster.nodes)
    replicas = [node for node in everyone if node is not old]

    for node in everyone:
        cluster.wait_until(
            partial(has_slots_for_the_others, cluster, node, everyone),
            what=f"{node.name} has a slot for each other member",
        )
    for replica in replicas:
        cluster.wait_until(
            partial(streams_through_its_slot, cluster, replica, old),
            what=f"{replica.name} streams from {old.name} through its slot",
        )
    # On the replicas the slots follow the leader's published position.
    cluster.sql(old, "CREATE TABLE IF NOT EXISTS slot_probe AS SELECT 1 AS x")
    cluster.sql(old, "SELECT pg_switch_wal()")
    moved_to = cluster.sql(old, "SELECT pg_current_wal_lsn()::text")[0][0]
    for replica in replicas:
        cluster.wait_until(
            partial(
                cluster.sql,
                replica,
                "SELECT slot_name FROM pg_replication_slots "
                "WHERE slot_name = %s AND restart_lsn >= %s::pg_lsn",
                (old.name, moved_to),
            ),
            what=f"{replica.name} advanced its slot for {old.name} to {moved_to}",
        )

    old.kill_host()
    new = cluster.wait_healthy(replicas)
    follower = next(node for node in replicas if node is not new)
    cluster.check(
        has_slots_for_the_others(cluster, new, everyone),
        f"{new.name} should already hold slots for {old.name} and {follower.name}: "
        f"{slots(cluster, new)}",
    )
    cluster.wait_until(
        lambda: streams_through_its_slot(cluster, follower, new),
        what=f"{follower.name} streams from the new primary {new.name} through its slot",
    )

    # Remove the crashed member for good; its record goes with its lease.
    shutil.rmtree(old.data_dir, ignore_errors=True)
    done = pgha(cluster, "config", "set", "member_slots_ttl=5")
    cluster.check(done.returncode == 0, done.stderr)
    cluster.wait_until(
        lambda: cluster.etcd_get(f"members/{old.name}") is None,
        what=f"the member record of {old.name} expired",
        timeout=30,
    )
    for node in (new, follower):
        cluster.wait_until(
            partial(has_slots_for_the_others, cluster, node, [new, follower]),
            what=f"{node.name} dropped the slot of the removed {old.name}",
            timeout=30,
        )
    cluster.wait_for_log(new, f"replication slot {old.name} dropped", "the drop is logged")
    cluster.check(
        streams_through_its_slot(cluster, follower, new), f"{follower.name} stopped streaming"
    )


def lose_the_slot(cluster: Cluster, primary: AgentNode, replica: AgentNode) -> None:
    """Stop `replica`'s walreceiver (its agent and the rest of its Postgres run on) and
    write WAL on `primary` until a checkpoint marks the replica's slot lost.

    The checkpoint comes only once the walsender gave up on the silent receiver
    (wal_sender_timeout): a checkpoint that invalidates the slot of a live walsender waits
    for it to exit, and a walsender told to exit blocks sending its goodbye to a stopped
    peer."""
    # A small cap, and no wal_keep_size above it, so that a few segments are enough.
    cluster.sql(primary, "ALTER SYSTEM SET max_slot_wal_keep_size = '32MB'")
    cluster.sql(primary, "ALTER SYSTEM SET wal_keep_size = 0")
    cluster.sql(primary, "SELECT pg_reload_conf()")
    cluster.sql(primary, "CREATE TABLE lost_probe (v int)")
    receiver = cluster.wait_until(
        lambda: cluster.try_sql(replica, "SELECT pid FROM pg_stat_wal_receiver"),
        what=f"{replica.name} has a walreceiver",
    )
    pid = int(receiver[0][0])
    os.kill(pid, signal.SIGSTOP)
    written = 0

    def write_segments() -> None:
        nonlocal written
        for _ in range(4):
            written += 1
            cluster.sql(primary, "INSERT INTO lost_probe VALUES (%s)", (written,))
            cluster.sql(primary, "SELECT pg_switch_wal()")

    def lost() -> bool:
        write_segments()
        cluster.sql(primary, "CHECKPOINT")
        status = cluster.sql(
            primary,
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s",
            (replica.name,),
        )
        # The leader's agent may have recreated it already: its log says so.
        return status == [("lost",)] or f"replication slot {replica.name} was lost" in (
            primary.log()
        )

    try:
        write_segments()
        cluster.wait_until(
            lambda: cluster.sql(
                primary,
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND NOT active",
                (replica.name,),
            ),
            what=f"the walsender of {replica.name} gave up on its stopped walreceiver",
        )
        cluster.wait_until(lost, what=f"the slot of {replica.name} on {primary.name} is lost")
    finally:
        # Before its agent serves the reinit request: a stopped walreceiver would keep
        # its Postgres from shutting down.
        os.kill(pid, signal.SIGCONT)


def test_a_replica_whose_slot_was_lost_is_recloned_once(agent_cluster: AgentCluster) -> None:
    cluster = agent_cluster(2)
    leader = cluster.wait_healthy()
    replica = next(node for node in cluster.nodes if node is not leader)
    cluster.wait_until(
        lambda: streams_through_its_slot(cluster, replica, leader),
        what=f"{replica.name} streams from {leader.name} through its slot",
    )
    monitor = Monitor(cluster)
    monitor.start()
    try:
        lose_the_slot(cluster, leader, replica)
        asked = f"{replica.name} is asked to re-clone"
        cluster.wait_for_log(leader, asked, "the leader asks the replica to re-clone")
        cluster.wait_until(
            lambda: (cluster.etcd_get(f"members/{replica.name}") or {}).get("request"),
            what=f"{replica.name} answers the reinit request",
            timeout=120,
        )
        cluster.wait_until(
            lambda: streams_through_its_slot(cluster, replica, leader),
            what=f"the re-cloned {replica.name} streams through its recreated slot",
            timeout=120,
        )
    finally:
        monitor.stop()

    answer = (cluster.etcd_get(f"members/{replica.name}") or {}).get("request") or {}
    cluster.check(
        answer.get("action") == "reinit" and answer.get("outcome") == "done",
        f"the member record does not show a finished reinit: {answer}",
    )
    status = pgha(cluster, "status", "--json")
    shown = {m["name"]: m["request"] for m in json.loads(status.stdout or "{}").get("members", [])}
    cluster.check(
        (shown.get(replica.name) or {}).get("outcome") == "done",
        f"pgha status does not show the re-clone: {shown}",
    )
    moved = [p for p in replica.root.iterdir() if p.name.startswith("data.moved-")]
    cluster.check(len(moved) == 1, f"the old data directory was not kept aside: {moved}")
    cluster.check(cluster.etcd_get(f"requests/{replica.name}") is None, "request left behind")
    written = cluster.sql(leader, "SELECT count(*) FROM lost_probe")
    cluster.wait_until(
        lambda: cluster.try_sql(replica, "SELECT count(*) FROM lost_probe") == written,
        what=f"{replica.name} holds every row written while it was stuck",
    )
    cluster.check(
        leader.log().count(asked) == 1,
        f"one loss should make one request; the leader asked {leader.log().count(asked)} times",
    )
    cluster.check(not monitor.split_brain(), f"two primaries: {monitor.split_brain()[:1]}")
