"""Tags against real agents: failover_priority decides between replicas at the same position,
a nofailover replica is never promoted, and noloadbalance takes a replica out of /replica;
changed tags apply on SIGHUP, without restarting the agent or Postgres."""

from __future__ import annotations

import http.client
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.fixtures.agent_node import AgentNode
from tests.fixtures.cluster import TIMERS, Cluster
from tests.fixtures.ops import lead_with

pytestmark = pytest.mark.integration

AgentCluster = Callable[..., Cluster]


def api_status(node: AgentNode, path: str) -> int:
    connection = http.client.HTTPConnection(node.host, node.api_port, timeout=3)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def member_record(cluster: Cluster, name: str) -> dict[str, Any]:
    record: dict[str, Any] = cluster.etcd_get(f"members/{name}") or {}
    return record


@pytest.mark.timeout(420)
def test_priority_and_nofailover_decide_failovers_and_noloadbalance_leaves_the_pool(
    agent_cluster: AgentCluster,
) -> None:
    # n2 sorts before n3 by name, so only its priority makes n3 win a tie.
    cluster = agent_cluster(
        3,
        node_settings={
            "n2": {"tags": {"noloadbalance": True}},
            "n3": {"tags": {"failover_priority": 2}},
        },
    )
    n1, n2, n3 = cluster.nodes
    lead_with(cluster, n1)

    # noloadbalance: a streaming replica out of the /replica pool, still /read-only.
    # After the setup switchover both replicas must stream from n1 again first.
    cluster.wait_healthy(timeout=60)
    cluster.wait_until(
        lambda: api_status(n3, "/replica") == 200 or None,
        what="n3, an ordinary streaming replica, answers 200 on /replica",
    )
    cluster.check(api_status(n2, "/read-only") == 200, "/read-only ignores noloadbalance")
    cluster.check(api_status(n2, "/replica") == 503, "n2 is tagged noloadbalance")
    cluster.check(member_record(cluster, "n2")["tags"]["noloadbalance"] is True, "published")

    # failover_priority: no writes, so n2 and n3 stand at the same position.
    n1.kill_host()
    winner = cluster.wait_healthy([n2, n3], timeout=90)
    cluster.check(winner is n3, f"{winner.name} was promoted; n3 has failover_priority 2")

    # nofailover: n1 rejoins tagged so; n1 sorts first by name, yet n2 must win.
    n1.write_config(cluster.etcd.endpoint, {**TIMERS, "tags": {"nofailover": True}})
    n1.start()
    cluster.wait_healthy(timeout=120)
    cluster.wait_until(
        lambda: member_record(cluster, "n1").get("tags", {}).get("nofailover"),
        what="n1 publishes its nofailover tag",
    )
    n3.kill_host()
    winner = cluster.wait_healthy([n1, n2], timeout=90)
    cluster.check(winner is n2, f"{winner.name} was promoted; n1 is tagged nofailover")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        cluster.check(not cluster.is_primary(n1), "the nofailover member became a primary")
        time.sleep(0.5)


def rewrite_config(node: AgentNode, **changes: Any) -> None:
    config = yaml.safe_load(node.config_path.read_text())
    node.config_path.write_text(yaml.safe_dump({**config, **changes}, sort_keys=False))


@pytest.mark.timeout(300)
def test_changed_tags_apply_on_sighup_without_a_restart(agent_cluster: AgentCluster) -> None:
    cluster = agent_cluster(2)
    primary = cluster.wait_healthy()
    (replica,) = [node for node in cluster.nodes if node is not primary]
    postmasters = {node.name: node.postmaster_pid() for node in cluster.nodes}
    cluster.wait_until(
        lambda: api_status(replica, "/replica") == 200 or None,
        what=f"{replica.name} answers 200 on /replica",
    )

    # A replica: nofailover and noloadbalance now; loop_wait must wait for a restart.
    rewrite_config(replica, tags={"nofailover": True, "noloadbalance": True}, loop_wait=2)
    os.kill(replica.agent_pid, signal.SIGHUP)
    cluster.wait_until(
        lambda: member_record(cluster, replica.name).get("tags", {}).get("nofailover") is True,
        what=f"{replica.name} publishes nofailover",
    )
    cluster.wait_until(
        lambda: api_status(replica, "/replica") == 503 or None,
        what=f"{replica.name} leaves the /replica pool",
    )
    log = replica.log()
    cluster.check("reload: tags nofailover=False" in log, "no log line for the new tags")
    cluster.check(
        "changed loop_wait; that takes effect when the agent restarts" in log,
        "the change to loop_wait was not reported as waiting for a restart",
    )

    # The leader: a new failover_priority, and it stays leader (no restart, no handoff).
    rewrite_config(primary, tags={"failover_priority": 5})
    os.kill(primary.agent_pid, signal.SIGHUP)
    cluster.wait_until(
        lambda: member_record(cluster, primary.name).get("tags", {}).get("failover_priority") == 5,
        what=f"{primary.name} publishes failover_priority 5",
    )
    cluster.check(cluster.leader() == primary.name, f"{primary.name} no longer leads")
    after = {node.name: node.postmaster_pid() for node in cluster.nodes}
    cluster.check(after == postmasters, f"Postgres restarted: {postmasters} -> {after}")
    cluster.check(all(node.agent_alive() for node in cluster.nodes), "an agent exited on SIGHUP")

    # The replica's new nofailover decides the next failover: nobody takes over.
    primary.kill_host()
    cluster.wait_until(
        lambda: (
            "nofailover"
            in member_record(cluster, replica.name).get("decision", {}).get("reason", "")
        ),
        what=f"{replica.name} says it is tagged nofailover",
        timeout=60,
    )
    cluster.check(cluster.leader() is None, "someone took the key")
    cluster.check(not cluster.is_primary(replica), f"{replica.name} was promoted")
