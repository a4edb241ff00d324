"""The lag limits against real agents.

maximum_lag_seconds_on_failover: a replica whose replay is paused keeps receiving WAL (so
its byte lag stays small) but falls behind in heartbeat seconds; after a host crash of the
primary it is not promoted, says why, and `pgha failover --allow-data-loss` promotes it
(pg_promote ends the replay pause, PG 13+).

maximum_lag_on_failover: a replica cut off from the primary's WAL stays a replica after
the crash, says why, and is promoted only by `pgha failover --allow-data-loss`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from pgha.core.model import parse_lsn
from tests.fixtures.cluster import Cluster
from tests.fixtures.ops import pgha
from tests.fixtures.replication import replica_cut_off

pytestmark = pytest.mark.integration

AgentCluster = Callable[..., Cluster]
LIMIT = 3


def status_member(cluster: Cluster, name: str) -> dict[str, Any]:
    shown = pgha(cluster, "status", "--json")
    members = json.loads(shown.stdout)["members"]
    found: dict[str, Any] = next(m for m in members if m["name"] == name)
    return found


def decision_reason(cluster: Cluster, name: str) -> str:
    record = cluster.etcd_get(f"members/{name}") or {}
    return str(record.get("decision", {}).get("reason", ""))


@pytest.mark.timeout(300)
def test_a_replica_behind_in_seconds_is_not_promoted_until_the_operator_says_so(
    agent_cluster: AgentCluster,
) -> None:
    cluster = agent_cluster(2)
    primary = cluster.wait_healthy()
    (replica,) = [node for node in cluster.nodes if node is not primary]
    done = pgha(cluster, "config", "set", f"maximum_lag_seconds_on_failover={LIMIT}")
    cluster.check(done.returncode == 0, done.stderr)
    cluster.wait_until(
        lambda: (cluster.etcd_get("status") or {}).get("heartbeat_at"),
        what="the leader publishes its heartbeat",
    )
    cluster.wait_until(
        lambda: status_member(cluster, replica.name)["lag_seconds"] is not None,
        what="the replica's heartbeat lag is known",
    )

    cluster.sql(replica, "SELECT pg_wal_replay_pause()")
    cluster.sql(primary, "CREATE TABLE t (v int)")
    started = time.monotonic()
    while time.monotonic() - started < LIMIT + 3:
        cluster.sql(primary, "INSERT INTO t VALUES (1)")
        time.sleep(0.2)
    cluster.wait_until(
        lambda: status_member(cluster, replica.name)["lag_seconds"] > LIMIT,
        what=f"pgha status shows the replica more than {LIMIT} s behind",
    )

    primary.kill_host()
    cluster.wait_until(
        lambda: "maximum_lag_seconds_on_failover" in decision_reason(cluster, replica.name),
        what="the replica says why it does not take over",
        timeout=60,
    )
    time.sleep(3)  # a few more cycles: still not promoted
    cluster.check(not cluster.is_primary(replica), "the lagging replica was promoted")
    cluster.check(cluster.leader() is None, "someone took the key")

    forced = pgha(cluster, "failover", "--candidate", replica.name, "--allow-data-loss", "--yes")
    cluster.check(forced.returncode == 0, forced.stdout + forced.stderr)
    cluster.wait_until(lambda: cluster.is_primary(replica), what="the replica is promoted")
    rows = cluster.sql(replica, "SELECT count(*) FROM t")
    cluster.check(rows[0][0] > 0, "promotion replayed the WAL received while paused")


@pytest.mark.timeout(300)
def test_a_replica_cut_off_beyond_the_byte_limit_is_not_promoted_until_the_operator_says_so(
    agent_cluster: AgentCluster,
) -> None:
    """Its walreceiver frozen and the primary's walsender ended, the replica receives
    nothing more; the primary then writes (and publishes) more than
    maximum_lag_on_failover bytes past it and crashes."""
    cluster = agent_cluster(2)
    primary = cluster.wait_healthy()
    (replica,) = [node for node in cluster.nodes if node is not primary]
    limit = 1024 * 1024
    done = pgha(cluster, "config", "set", f"maximum_lag_on_failover={limit}")
    cluster.check(done.returncode == 0, done.stderr)
    [[before]] = cluster.sql(primary, "SELECT pg_current_wal_lsn()::text")

    with replica_cut_off(cluster, primary, replica):
        cluster.sql(
            primary, "CREATE TABLE big AS SELECT repeat('x', 1000) FROM generate_series(1, 4000)"
        )
        [[after]] = cluster.sql(primary, "SELECT pg_current_wal_lsn()::text")
        cluster.check(parse_lsn(after) - parse_lsn(before) > 2 * limit, f"{before} -> {after}")
        cluster.wait_until(
            lambda: (
                parse_lsn((cluster.etcd_get("status") or {}).get("position") or "0/0")
                > parse_lsn(before) + limit
            ),
            what="the leader publishes its position past the limit",
        )
        primary.kill_host()

    cluster.wait_until(
        lambda: (
            "behind" in decision_reason(cluster, replica.name)
            or "lag" in decision_reason(cluster, replica.name)
        ),
        what="the replica says why it does not take over",
        timeout=60,
    )
    reason = decision_reason(cluster, replica.name)
    time.sleep(3)  # a few more cycles: still not promoted
    cluster.check(not cluster.is_primary(replica), f"the lagging replica was promoted: {reason}")
    cluster.check(cluster.leader() is None, "someone took the key")

    forced = pgha(cluster, "failover", "--candidate", replica.name, "--allow-data-loss", "--yes")
    cluster.check(forced.returncode == 0, forced.stdout + forced.stderr)
    cluster.wait_until(lambda: cluster.is_primary(replica), what="the replica is promoted")
    [[exists]] = cluster.sql(replica, "SELECT to_regclass('big') IS NOT NULL")
    cluster.check(not exists, "the replica had the table it never received")
