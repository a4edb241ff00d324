"""The primary cut off from etcd, on a cluster whose hosts live in network namespaces.

tooling.md Q9: etcd, every node and the test's client each get a namespace and an address in
127.0.1.0/24 on one bridge; the cut is a pair of iptables DROP rules inside the primary's
namespace, so clients and replicas still reach it. It cannot hear from etcd that it lost the
key, so it must stop taking writes on its own before its lease can expire; a replica takes
over, and once the cut heals the old primary rejoins as a replica.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.fixtures.cluster import Cluster
from tests.fixtures.traffic import (
    assert_fenced_before_lease_expired,
    assert_no_split_brain,
    assert_nothing_lost,
    traffic,
)

pytestmark = [pytest.mark.integration, pytest.mark.root]


def test_primary_cut_off_from_etcd_fences_itself_and_rejoins(
    agent_cluster: Callable[..., Cluster],
) -> None:
    cluster = agent_cluster(3, netns=True)
    old = cluster.wait_healthy()
    survivors = [node for node in cluster.nodes if node is not old]

    with traffic(cluster, old) as running:
        running.wait_for_writes(20)
        cut_at = time.monotonic()
        cluster.cut_from_etcd(old)
        new = cluster.wait_healthy(survivors)
        running.wait_for_writes(10, since=cut_at)
        cluster.check(not cluster.is_primary(old), f"the cut-off {old.name} still takes writes")
        cluster.heal(old)
        cluster.check(cluster.wait_healthy() is new, f"{new.name} lost its role after the heal")
        report = running.report("primary cut off from etcd", new)
        assert_fenced_before_lease_expired(cluster, running, old, cut_at)
        by_guard = "fencing deadline of term" in old.guard_log_path.read_text()
        running.note(f"    {old.name} was fenced by {'its guard' if by_guard else 'its agent'}")

    cluster.check(new is not old, "the cut-off node is primary again")
    assert_no_split_brain(cluster, report)
    assert_nothing_lost(cluster, report)
