"""Three real agents bootstrap a cluster from nothing: one primary, two streaming replicas."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.fixtures.cluster import Cluster

pytestmark = pytest.mark.integration


def test_three_agents_bootstrap_one_primary_and_two_streaming_replicas(
    agent_cluster: Callable[..., Cluster],
) -> None:
    cluster = agent_cluster(3)
    primary = cluster.wait_healthy()

    sysid = cluster.sql(primary, "SELECT system_identifier::text FROM pg_control_system()")[0][0]
    initialize = cluster.etcd_get("initialize")
    cluster.check(initialize == {"sysid": sysid}, f"initialize holds {initialize!r}, not {sysid}")
    cluster.check(cluster.leader() == primary.name, f"the leader key does not name {primary.name}")
    for node in cluster.nodes:
        found = cluster.sql(node, "SELECT system_identifier::text FROM pg_control_system()")
        cluster.check(found == [(sysid,)], f"{node.name} has system identifier {found}")
    cluster.wait_for_log(primary, "InitDb: ok", "the primary ran initdb")
    initdb_runs = [node.name for node in cluster.nodes if "InitDb: ok" in node.log()]
    cluster.check(initdb_runs == [primary.name], f"initdb ran on {initdb_runs}")
    replicas = [node for node in cluster.nodes if node is not primary]
    for replica in replicas:
        cluster.wait_for_log(replica, f"Clone(from {primary.name}): ok", "cloned from the primary")
