"""A real HAProxy with the shipped config/haproxy.cfg routes clients by the agents' health
checks: writes to the primary, reads to a replica, and after a failover to the new ones."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.agent_node import AgentNode
from tests.fixtures.cluster import Cluster
from tests.fixtures.haproxy import Haproxy, running_haproxy
from tests.fixtures.postgres import LOOPBACK, SUPERUSER_PASSWORD

pytestmark = pytest.mark.integration

AgentCluster = Callable[..., Cluster]


def through(port: int) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host=LOOPBACK,
        port=port,
        user="postgres",
        password=SUPERUSER_PASSWORD,
        dbname="postgres",
        connect_timeout=2,
        autocommit=True,
    )


def served_by(cluster: Cluster, port: int) -> tuple[AgentNode, bool] | None:
    """The node a new session through HAProxy's `port` lands on, and whether it is in
    recovery; None when HAProxy has no server for it right now."""
    try:
        with through(port) as session:
            row = session.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone()
    except psycopg.Error:
        return None
    assert row is not None
    node = next(node for node in cluster.nodes if node.port == row[0])
    return node, bool(row[1])


def lands_on(
    cluster: Cluster, proxy: Haproxy, port: int, nodes: Sequence[AgentNode], replica: bool
) -> None:
    """Wait until every new session through `port` lands on one of `nodes`: HAProxy starts
    with all servers up and needs a check or two to take the others out, and it balances
    sessions between whatever is still up, so one session proves nothing about the next."""
    wanted = [(node, replica) for node in nodes]

    def check() -> bool:
        # More sessions in a row than there are servers: balancing would show any other.
        return all(served_by(cluster, port) in wanted for _ in range(len(cluster.nodes) + 1))

    kind = "read-only" if replica else "read-write"
    names = " or ".join(node.name for node in nodes)
    cluster.wait_until(check, what=f"HAProxy's {kind} port leads to {names}", timeout=60)


@pytest.mark.timeout(300)
def test_haproxy_routes_to_the_primary_and_after_a_failover_to_the_new_one(
    agent_cluster: AgentCluster, tmp_path: Path
) -> None:
    cluster = agent_cluster(3)
    old = cluster.wait_healthy()
    survivors = [node for node in cluster.nodes if node is not old]

    with running_haproxy(cluster, tmp_path / "haproxy") as proxy:
        lands_on(cluster, proxy, proxy.read_write_port, [old], replica=False)
        lands_on(cluster, proxy, proxy.read_only_port, survivors, replica=True)
        session = through(proxy.read_write_port)
        session.execute("CREATE TABLE routed (id int)")

        old.kill_host()
        new = cluster.wait_healthy(survivors)
        with pytest.raises(psycopg.OperationalError):
            session.execute("INSERT INTO routed VALUES (1)")
        session.close()

        lands_on(cluster, proxy, proxy.read_write_port, [new], replica=False)
        with through(proxy.read_write_port) as writer:
            writer.execute("INSERT INTO routed VALUES (2)")
        follower = next(node for node in survivors if node is not new)
        lands_on(cluster, proxy, proxy.read_only_port, [follower], replica=True)
        cluster.check("Server postgres_read_write/" in proxy.log(), "HAProxy logged no checks")
