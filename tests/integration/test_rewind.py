"""pg_rewind against real agents: an old primary whose WAL ran past the fork point is
refused by the rewind preflight while its rewind user cannot work (it says why, and its
state is `diverged`), rewinds once that is fixed, and the WAL it discarded is in
`pgha history`; a replica that received WAL the node promoted in its place never had is
rewound too."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from pgha.adapters.postgres_state import parse_lsn
from tests.fixtures.agent_node import AgentNode
from tests.fixtures.cluster import Cluster
from tests.fixtures.ops import lead_with, pgha
from tests.fixtures.replication import replica_cut_off

pytestmark = pytest.mark.integration

AgentCluster = Callable[..., Cluster]


def member(cluster: Cluster, node: AgentNode) -> dict[str, Any]:
    record = cluster.etcd_get(f"members/{node.name}")
    return record if isinstance(record, dict) else {}


@pytest.mark.timeout(300)
def test_rewind_preflight_refuses_then_rewinds_and_history_shows_the_discarded_wal(
    agent_cluster: AgentCluster,
) -> None:
    cluster = agent_cluster(2)
    old = cluster.wait_healthy()
    [new] = [node for node in cluster.nodes if node is not old]
    cluster.sql(old, "CREATE TABLE kept (id int)")
    cluster.wait_until(
        lambda: cluster.try_sql(new, "SELECT to_regclass('kept') IS NOT NULL") == [(True,)],
        what=f"{new.name} replayed the table",
    )

    # With the replica cut off, the primary's next commits exist on the primary alone:
    # after the crash its WAL runs past the fork point.
    with replica_cut_off(cluster, old, new):
        cluster.sql(old, "INSERT INTO kept SELECT generate_series(1, 100)")
        [[old_end]] = cluster.sql(old, "SELECT pg_current_wal_lsn()::text")
        old.kill_host()
    cluster.wait_until(lambda: cluster.is_primary(new), what=f"{new.name} promoted", timeout=90)

    # A rewind user pg_rewind cannot work with: its statement_timeout would cut it short.
    cluster.sql(new, "ALTER ROLE rewinder SET statement_timeout = '5s'")
    old.restart()
    refused = cluster.wait_until(
        lambda: (
            (record := member(cluster, old)).get("state") == "diverged"
            and record.get("decision", {}).get("code") == "rewind_preflight_failed"
            and record
        ),
        what=f"{old.name} reports the refused rewind",
        timeout=90,
    )
    reason = refused["decision"]["reason"]
    cluster.check("statement_timeout" in reason, f"the reason names the cause: {reason}")
    cluster.check(not cluster.is_primary(old), f"{old.name} is read-write while diverged")
    status = pgha(cluster, "status")
    cluster.check(
        any(old.name in line and "diverged" in line for line in status.stdout.splitlines()),
        f"`pgha status` shows {old.name} diverged",
    )

    cluster.sql(new, "ALTER ROLE rewinder RESET statement_timeout")
    cluster.wait_for_log(old, "code=rewind_to_follow", f"{old.name} rewinds", timeout=60)
    cluster.wait_until(
        lambda: cluster.streams_from(old, new), what=f"{old.name} streams from {new.name}"
    )

    def recorded() -> list[dict[str, Any]] | None:
        history = cluster.etcd_get("history")
        entries = history if isinstance(history, list) else []
        found = [d for entry in entries for d in entry.get("diverged", [])]
        return found or None

    [divergence] = cluster.wait_until(recorded, what="the leader records the divergence")
    cluster.check(divergence["node"] == old.name, f"divergence of {divergence}")
    cluster.check(divergence["timeline"] == 1, f"the old timeline: {divergence}")
    cluster.check(
        parse_lsn(divergence["from"]) < parse_lsn(old_end),
        f"the discarded range begins before {old.name}'s last commit at {old_end}",
    )
    shown = pgha(cluster, "history").stdout
    cluster.check(
        f"pg_rewind discarded {old.name}'s WAL on timeline 1 from {divergence['from']}" in shown,
        f"`pgha history` shows the discarded range:\n{shown}",
    )
    as_json = json.loads(pgha(cluster, "history", "--json").stdout)
    cluster.check(any(entry.get("diverged") for entry in as_json), "`pgha history --json` keeps it")
    # The commits only the old primary had are gone, as the recorded range says.
    [[rows]] = cluster.sql(new, "SELECT count(*) FROM kept")
    cluster.check(rows == 0, f"{new.name} has {rows} rows the old primary wrote alone")


@pytest.mark.timeout(180)
def test_a_leader_creates_a_missing_rewind_user_when_its_agent_starts(
    agent_cluster: AgentCluster,
) -> None:
    """As after an upgrade that added postgres.rewind: the user is missing on a running
    primary, whose agent restarts and keeps the lead without a promotion."""
    cluster = agent_cluster(2)
    leader = cluster.wait_healthy()
    cluster.sql(leader, "DROP OWNED BY rewinder")
    cluster.sql(leader, "DROP ROLE rewinder")
    leader.kill_agent()
    leader.restart()
    cluster.wait_until(
        lambda: (
            cluster.try_sql(leader, "SELECT count(*) FROM pg_roles WHERE rolname = 'rewinder'")
            == [(1,)]
        ),
        what="the restarted leader creates the rewind user again",
    )
    cluster.check(cluster.leader() == leader.name, "the leader changed")
    [[may_read]] = cluster.sql(
        leader,
        "SELECT has_function_privilege('rewinder', 'pg_read_binary_file(text)', 'EXECUTE')",
    )
    cluster.check(may_read, "the recreated rewind user lacks pg_rewind's functions")


@pytest.mark.timeout(300)
def test_a_replica_ahead_of_the_one_promoted_is_rewound_and_follows_it(
    agent_cluster: AgentCluster,
) -> None:
    """`ahead` (nofailover) replays rows that `behind`, cut off, never receives; the primary
    dies and `behind` is promoted. `ahead` is past the fork of the new timeline: Postgres
    will not switch it (its walreceiver fetches the new timeline's history all the same), so
    it must report its old timeline, be rewound, and stream from `behind`."""
    cluster = agent_cluster(3, node_settings={"n3": {"tags": {"nofailover": True}}})
    old, behind, ahead = cluster.nodes
    lead_with(cluster, old)
    cluster.wait_healthy(timeout=60)
    cluster.sql(old, "CREATE TABLE t (v int)")
    cluster.wait_until(
        lambda: all(
            cluster.try_sql(node, "SELECT to_regclass('t') IS NOT NULL") == [(True,)]
            for node in (behind, ahead)
        ),
        what="both replicas replayed the table",
    )
    with replica_cut_off(cluster, old, behind):
        cluster.sql(old, "INSERT INTO t SELECT generate_series(1, 100)")
        cluster.wait_until(
            lambda: cluster.try_sql(ahead, "SELECT count(*) FROM t") == [(100,)],
            what=f"{ahead.name} replayed the rows {behind.name} never received",
        )
        old.kill_host()

    cluster.wait_until(
        lambda: cluster.is_primary(behind),
        what=f"{behind.name} is promoted ({ahead.name} is tagged nofailover)",
        timeout=90,
    )
    # Its cycle logs the rewind once Postgres runs again, maybe after it already streams.
    cluster.wait_until(
        lambda: "code=rewind_to_follow" in ahead.log(),
        what=f"{ahead.name} is rewound",
        timeout=120,
    )
    cluster.wait_healthy([behind, ahead], timeout=120)
    cluster.check(
        cluster.sql(ahead, "SELECT count(*) FROM t") == [(0,)],
        f"{ahead.name} still has the rows past the fork",
    )
