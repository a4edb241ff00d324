"""Gray failures on a real three-node cluster (issue 5 item 5, DESIGN rule 7).

A primary whose postmaster and backends are frozen (SIGSTOP) still has a live agent that
renews the key, so nothing expires on its own. Its agent must notice that Postgres no longer
answers or commits, kill it (a frozen postmaster ignores pg_ctl stop) and only then release
the key, within primary_unhealthy_timeout plus ttl, with never two nodes read-write.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from tests.fixtures.agent_node import alive, send
from tests.fixtures.cluster import TIMERS, Cluster
from tests.fixtures.traffic import assert_no_split_brain, traffic

pytestmark = pytest.mark.integration

AgentCluster = Callable[..., Cluster]
UNHEALTHY_TIMEOUT = 5.0


def test_a_frozen_postmaster_is_killed_then_failed_over(agent_cluster: AgentCluster) -> None:
    cluster = agent_cluster(3, primary_unhealthy_timeout=UNHEALTHY_TIMEOUT)
    old = cluster.wait_healthy()
    survivors = [node for node in cluster.nodes if node is not old]
    agent_pid = old.agent_pid

    with traffic(cluster, old) as running:
        running.wait_for_writes(20)
        frozen_at = time.monotonic()
        frozen = old.freeze_postgres()
        try:
            new = cluster.wait_healthy(survivors, timeout=60)
            cluster.wait_until(
                lambda: not any(alive(pid) for pid in frozen),
                what=f"every frozen process of {old.name} is killed by its agent",
                timeout=30,
            )
        finally:
            send([pid for pid in frozen if alive(pid)], signal.SIGCONT)
        running.wait_for_writes(10, since=frozen_at)
        gone_at = running.monitor.leader_gone_at(old.name, since=frozen_at)
        # The old node rejoins on its own (rewind or plain restart as a replica).
        cluster.check(cluster.wait_healthy(timeout=90) is new, f"{new.name} lost its role")
        report = running.report("frozen postmaster and backends on the primary", new)

    cluster.check(new is not old, "the frozen node is primary again")
    assert_no_split_brain(cluster, report)
    cluster.check(gone_at is not None, f"the leader key of {old.name} never went away")
    assert gone_at is not None
    within = UNHEALTHY_TIMEOUT + TIMERS["ttl"]
    running.note(
        f"    {old.name}'s leader key gone {gone_at - frozen_at:.2f} s after the freeze "
        f"(bound: primary_unhealthy_timeout + ttl = {within:g} s)"
    )
    log = old.log()
    # Normally the unhealthy-primary rule releases the key; on a starved host the fencing
    # deadline may pass first (the probe's timeouts delay renewals): both stop writing.
    released = any(
        text in log
        for text in (
            "code=release_unhealthy_primary",
            "code=fence_past_deadline",
            "fencing deadline passed",
        )
    )
    cluster.check(released, "the agent neither released the key nor fenced itself")
    cluster.check("code=renew_while_primary_unhealthy" in log, "no grace before the release")
    cluster.check(old.agent_alive() and old.agent_pid == agent_pid, "the old agent died")
