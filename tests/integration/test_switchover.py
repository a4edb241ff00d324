"""Planned switchovers on a real three-node cluster: `pgha switchover` writes the request,
the leader hands over, the candidate takes over, the old primary follows it; a writer on
the multi-host DSN loses no acknowledged write, and the phases are printed as they happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures.cluster import Cluster
from tests.fixtures.ops import pgha
from tests.fixtures.traffic import assert_no_split_brain, assert_nothing_lost, traffic

pytestmark = pytest.mark.integration

AgentCluster = Callable[..., Cluster]
PHASES = ("handing over to", "writes stopped on", "was promoted, term", "follows", "done")


def test_switchover_to_a_named_candidate_then_to_the_best(agent_cluster: AgentCluster) -> None:
    cluster = agent_cluster(3)
    old = cluster.wait_healthy()
    candidate = next(node for node in cluster.nodes if node is not old)

    refused = pgha(cluster, "switchover", "--candidate", "nope", "--yes")
    cluster.check(refused.returncode == 1, "a switchover to an unknown member must fail")
    cluster.check("no member named nope" in refused.stderr, refused.stderr)
    refused = pgha(cluster, "switchover", "--candidate", old.name, "--yes")
    cluster.check("already the leader" in refused.stderr, refused.stderr)
    refused = pgha(cluster, "switchover", "--yes", cluster_name="nothere")
    cluster.check(refused.returncode == 1, "a switchover without a leader must fail")
    cluster.check("no leader" in refused.stderr, refused.stderr)

    with traffic(cluster, old) as running:
        running.wait_for_writes(20)
        started = time.monotonic()
        done = pgha(cluster, "switchover", "--candidate", candidate.name, "--yes")
        cluster.check(done.returncode == 0, f"switchover failed:\n{done.stdout}{done.stderr}")
        new = cluster.wait_healthy()
        running.wait_for_writes(20, since=started)
        report = running.report(f"switchover {old.name} -> {candidate.name}", new)

    cluster.check(new is candidate, f"{new.name} is primary, not the candidate")
    cluster.check(cluster.streams_from(old, new), f"{old.name} does not stream from {new.name}")
    positions = [done.stdout.find(phase) for phase in PHASES]
    cluster.check(
        all(at >= 0 for at in positions) and positions == sorted(positions),
        f"phases missing or out of order in:\n{done.stdout}",
    )
    assert_no_split_brain(cluster, report)
    assert_nothing_lost(cluster, report)

    best = pgha(cluster, "switchover", "--yes")
    cluster.check(best.returncode == 0, f"switchover to the best failed:\n{best.stdout}")
    third = cluster.wait_healthy()
    cluster.check(third is not candidate, "the leader did not change")
    history = cluster.etcd_get("history")
    cluster.check(len(history) >= 2, f"history lacks the switchovers: {history}")


def test_a_scheduled_switchover_runs_at_its_time_and_a_cancelled_one_never(
    agent_cluster: AgentCluster,
) -> None:
    cluster = agent_cluster(3)
    old = cluster.wait_healthy()

    soon = (datetime.now(UTC) + timedelta(seconds=4)).isoformat()
    scheduled = pgha(cluster, "switchover", "--at", soon, "--yes")
    cluster.check(scheduled.returncode == 0, scheduled.stdout + scheduled.stderr)
    cluster.check("scheduled for" in scheduled.stdout, scheduled.stdout)
    again = pgha(cluster, "switchover", "--yes")
    cluster.check("already pending" in again.stderr, again.stderr)
    cancelled = pgha(cluster, "switchover", "--cancel")
    cluster.check(cancelled.returncode == 0, cancelled.stdout + cancelled.stderr)
    time.sleep(7)
    cluster.check(cluster.leader() == old.name, "a cancelled switchover ran")
    cluster.check(cluster.etcd_get("switchover") is None, "the cancelled request is still there")

    bad = pgha(cluster, "switchover", "--at", "tomorrow", "--yes")
    cluster.check(bad.returncode == 1 and "ISO 8601" in bad.stderr, bad.stderr)

    soon = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    scheduled = pgha(cluster, "switchover", "--at", soon, "--yes")
    cluster.check(scheduled.returncode == 0, scheduled.stdout + scheduled.stderr)
    cluster.wait_until(
        lambda: cluster.leader() not in (None, old.name), what="the scheduled switchover ran"
    )
    new = cluster.wait_healthy()
    cluster.check(cluster.streams_from(old, new), f"{old.name} does not follow {new.name}")
    cluster.wait_until(
        lambda: (cluster.etcd_get("switchover") or {}).get("state") == "done",
        what=f"the new leader closes the request: {cluster.etcd_get('switchover')}",
        timeout=15,
    )
