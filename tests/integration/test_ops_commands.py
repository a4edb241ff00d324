"""Operator commands against a real cluster: config show/set, pause/resume, history."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.fixtures.cluster import Cluster
from tests.fixtures.ops import pgha

pytestmark = pytest.mark.integration

AgentCluster = Callable[..., Cluster]


def test_config_set_pause_resume_and_history(agent_cluster: AgentCluster) -> None:
    cluster = agent_cluster(3)
    old = cluster.wait_healthy()

    bad = pgha(cluster, "config", "set", "ttl=abc")
    cluster.check(bad.returncode == 1 and "ttl='abc'" in bad.stderr, bad.stderr)
    unsafe = pgha(cluster, "config", "set", "loop_wait=9")
    cluster.check(unsafe.returncode == 1 and "no room to fence" in unsafe.stderr, unsafe.stderr)
    unknown = pgha(cluster, "config", "set", "tll=20")
    cluster.check("unknown key 'tll'" in unknown.stderr, unknown.stderr)
    good = pgha(cluster, "config", "set", "maximum_lag_on_failover=2097152")
    cluster.check(good.returncode == 0, good.stderr)
    cluster.check("maximum_lag_on_failover: 1048576 -> 2097152" in good.stdout, good.stdout)
    shown = pgha(cluster, "config", "show")
    cluster.check('"maximum_lag_on_failover": 2097152' in shown.stdout, shown.stdout)

    refused = pgha(cluster, "failover", "--candidate", old.name, "--yes")
    cluster.check(refused.returncode == 1 and "switchover" in refused.stderr, refused.stderr)

    paused = pgha(cluster, "pause")
    cluster.check(paused.returncode == 0, paused.stderr)
    cluster.wait_until(
        lambda: all(
            (cluster.etcd_get(f"members/{node.name}") or {}).get("decision", {}).get("code")
            == "paused"
            for node in cluster.nodes
        ),
        what="every agent reports the pause",
    )
    old.kill_host()
    survivors = [node for node in cluster.nodes if node is not old]
    cluster.wait_until(lambda: cluster.leader() is None, what="the old leader key expires")
    time.sleep(3)  # a few more cycles of every survivor
    primaries = [node.name for node in survivors if cluster.is_primary(node)]
    cluster.check(not primaries, f"{primaries} promoted while the cluster was paused")

    # The tie-break by name would pick the first survivor: ask for the last one instead.
    named = max(survivors, key=lambda node: node.name)
    unknown = pgha(cluster, "failover", "--candidate", "nope", "--yes")
    cluster.check("no member named nope" in unknown.stderr, unknown.stderr)
    waiting = pgha(cluster, "failover", "--candidate", named.name, "--yes", "--timeout", "2")
    cluster.check("has not taken the key" in waiting.stderr, "a paused cluster failed over")

    resumed = pgha(cluster, "resume")
    cluster.check(resumed.returncode == 0, resumed.stderr)
    new = cluster.wait_healthy(survivors)
    cluster.check(new is named, f"{new.name} took over, not the requested {named.name}")
    cluster.wait_until(
        lambda: cluster.etcd_get("failover") is None, what="the new leader clears the request"
    )

    shown = pgha(cluster, "history")
    cluster.check(shown.returncode == 0 and new.name in shown.stdout, shown.stdout)
    cluster.check(f"term {cluster.etcd_get('history')[-1]['term']}" in shown.stdout, shown.stdout)
