"""Member replication slots on a real three-node cluster (issue 5 item 3, traps 16).

Every node keeps a physical slot for every other member; the replicas stream through
theirs; a promoted replica already has the slots the survivors then stream through; the
slots of a member removed for good go once its record is gone and member_slots_ttl passed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest

from tests.fixtures.agent_node import AgentNode
from tests.fixtures.cluster import Cluster
from tests.fixtures.ops import pgha

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
            lambda node=node: has_slots_for_the_others(cluster, node, everyone),
            what=f"{node.name} has a slot for each other member",
        )
    for replica in replicas:
        cluster.wait_until(
            lambda replica=replica: streams_through_its_slot(cluster, replica, old),
            what=f"{replica.name} streams from {old.name} through its slot",
        )
    # On the replicas the slots follow the leader's published position.
    cluster.sql(old, "CREATE TABLE IF NOT EXISTS slot_probe AS SELECT 1 AS x")
    cluster.sql(old, "SELECT pg_switch_wal()")
    moved_to = cluster.sql(old, "SELECT pg_current_wal_lsn()::text")[0][0]
    for replica in replicas:
        cluster.wait_until(
            lambda replica=replica: cluster.sql(
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
            lambda node=node: has_slots_for_the_others(cluster, node, [new, follower]),
            what=f"{node.name} dropped the slot of the removed {old.name}",
            timeout=30,
        )
    cluster.wait_for_log(new, f"replication slot {old.name} dropped", "the drop is logged")
    cluster.check(
        streams_through_its_slot(cluster, follower, new), f"{follower.name} stopped streaming"
    )
