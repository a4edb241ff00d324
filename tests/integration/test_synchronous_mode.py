"""Synchronous mode against real agents: no acknowledged write lost through repeated host
crashes, only sync standbys promoted; `on` degrades without its standby, `strict` blocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.agent_node import AgentNode
from tests.fixtures.cluster import Cluster
from tests.fixtures.operator import api_get
from tests.fixtures.ops import pgha
from tests.fixtures.traffic import assert_no_split_brain, assert_nothing_lost, traffic

pytestmark = pytest.mark.integration

AgentCluster = Callable[..., Cluster]
CRASHES = 5


def sync_record(cluster: Cluster) -> dict[str, Any]:
    return cluster.etcd_get("sync") or {}


def wait_for_sync_standby(cluster: Cluster, leader: AgentNode) -> str:
    """The standby the leader named in `sync` once it caught up."""

    def named() -> str | None:
        record = sync_record(cluster)
        standbys = record.get("standbys") or []
        return standbys[0] if record.get("leader") == leader.name and standbys else None

    return cluster.wait_until(named, what=f"{leader.name} names a sync standby", timeout=60)


def degraded_metric(node: AgentNode) -> float | None:
    """pgha_synchronous_degraded from the node's /metrics; None when it does not answer."""
    reply = api_get(node, "/metrics")
    if reply is None or reply.status != 200:
        return None
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            if sample.name == "pgha_synchronous_degraded":
                return sample.value
    return None


DEGRADED_LINE = "commits no longer wait for any standby"
RESTORED_LINE = "synchronous replication restored"


def set_mode(cluster: Cluster, mode: str) -> None:
    done = pgha(cluster, "config", "set", f"synchronous_mode={mode}")
    cluster.check(done.returncode == 0, done.stderr)


def test_host_crashes_in_synchronous_mode_lose_no_acknowledged_write(
    agent_cluster: AgentCluster,
) -> None:
    cluster = agent_cluster(3)
    leader = cluster.wait_healthy()
    set_mode(cluster, "on")
    for crash in range(CRASHES):
        standby = wait_for_sync_standby(cluster, leader)
        survivors = [node for node in cluster.nodes if node is not leader]
        with traffic(cluster, leader) as running:
            running.wait_for_writes(30)
            crashed_at = time.monotonic()
            leader.kill_host()
            new = cluster.wait_healthy(survivors, timeout=90)
            running.wait_for_writes(10, since=crashed_at)
            report = running.report(f"synchronous_mode on, host crash #{crash + 1}", new)
        cluster.check(
            new.name == standby,
            f"crash #{crash + 1}: {new.name} was promoted, but the sync standby was {standby}",
        )
        assert_no_split_brain(cluster, report)
        assert_nothing_lost(cluster, report)
        leader.start()  # the old primary rejoins as a replica (rewound if it must)
        cluster.wait_healthy(timeout=120)
        leader = new


def test_on_degrades_without_its_standby_and_strict_blocks_until_it_returns(
    agent_cluster: AgentCluster,
) -> None:
    cluster = agent_cluster(2)
    leader = cluster.wait_healthy()
    standby_node = next(node for node in cluster.nodes if node is not leader)
    set_mode(cluster, "on")
    wait_for_sync_standby(cluster, leader)
    cluster.sql(leader, "CREATE TABLE t (v int)")

    standby_node.stop()
    cluster.wait_until(
        lambda: sync_record(cluster).get("standbys") == [],
        what="the leader takes the stopped standby out of sync",
    )
    cluster.wait_until(
        lambda: cluster.try_sql(leader, "INSERT INTO t VALUES (1) RETURNING v") is not None,
        what="writes go on, degraded to asynchronous",
    )
    status = pgha(cluster, "status", "--json")
    cluster.check("degraded" in status.stdout, f"status does not say degraded:\n{status.stdout}")
    cluster.wait_until(lambda: degraded_metric(leader) == 1, what="/metrics says degraded")

    standby_node.start()
    wait_for_sync_standby(cluster, leader)
    cluster.wait_until(lambda: degraded_metric(leader) == 0, what="/metrics says restored")
    cluster.check(degraded_metric(standby_node) == 0, "a replica reports degraded")
    # Once per change, not every cycle: degraded when `on` began and when the standby
    # stopped, restored each time it caught up.
    cluster.wait_until(
        lambda: leader.log().count(RESTORED_LINE) == 2, what="the leader logs each recovery"
    )
    counts = (leader.log().count(DEGRADED_LINE), leader.log().count(RESTORED_LINE))
    cluster.check(counts == (2, 2), f"(degraded, restored) lines logged: {counts}")
    set_mode(cluster, "strict")
    standby_node.stop()
    time.sleep(3)  # a few leader cycles: strict keeps the departed standby listed
    cluster.check(
        sync_record(cluster).get("standbys") == [standby_node.name],
        f"strict mode dropped its only sync standby: {sync_record(cluster)}",
    )
    done = threading.Event()

    def blocked_insert() -> None:
        cluster.sql(leader, "INSERT INTO t VALUES (2)")
        done.set()

    writer = threading.Thread(target=blocked_insert, daemon=True)
    writer.start()
    time.sleep(3)
    cluster.check(not done.is_set(), "a commit was acknowledged in strict mode with no standby")
    standby_node.start()
    cluster.wait_until(done.is_set, what="the blocked commit completes once the standby is back")
    rows = cluster.sql(standby_node, "SELECT v FROM t ORDER BY v")
    cluster.check(rows == [(1,), (2,)], f"the standby holds {rows}")
