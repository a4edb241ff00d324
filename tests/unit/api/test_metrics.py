"""`/metrics` parses as Prometheus text, every name starts with pgha_, and it says what
the node is, and whether its synchronous replication runs degraded."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgha.api.metrics import render_metrics
from tests.unit.api.reports import TERM, cluster_snapshot, report


def samples(node: Any) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(render_metrics(node).decode()):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            found.setdefault(sample.name, {})[labels] = sample.value
    return found


def value(found: dict[str, Any], name: str, **labels: str) -> float:
    result: float = found[name][tuple(sorted(labels.items()))]
    return result


def test_a_primary() -> None:
    found = samples(report("primary"))
    assert all(name.startswith("pgha_") for name in found)
    assert value(found, "pgha_role", role="primary") == 1
    assert value(found, "pgha_role", role="replica") == 0
    assert value(found, "pgha_leader") == 1
    assert value(found, "pgha_primary") == 1
    assert value(found, "pgha_term") == TERM
    assert value(found, "pgha_timeline") == 3
    assert value(found, "pgha_wal_lsn_bytes", position="write") == 0x5000000
    assert value(found, "pgha_seconds_since_last_renewal") == 1
    assert value(found, "pgha_fencing_deadline_margin_seconds") == 5
    assert round(value(found, "pgha_cycle_duration_seconds"), 3) == 0.2
    assert value(found, "pgha_paused") == 0
    assert value(found, "pgha_node", node="pg1", cluster="main") == 1
    assert "pgha_replication_lag_bytes" not in found


def test_a_replica() -> None:
    found = samples(report("replica"))
    assert value(found, "pgha_role", role="replica") == 1
    assert value(found, "pgha_leader") == 0
    assert value(found, "pgha_replication_lag_bytes") == 0x10000
    assert value(found, "pgha_replication_lag_seconds") == 0
    assert value(found, "pgha_wal_lsn_bytes", position="replay") == 0x4FF0000
    assert "pgha_fencing_deadline_margin_seconds" not in found


def test_a_node_that_has_run_no_cycle_yet() -> None:
    found = samples(report("stopped", last=None, snapshot=None, snapshot_at=None))
    assert value(found, "pgha_postgres_up") == 0
    assert "pgha_timeline" not in found
    assert "pgha_paused" not in found


def synchronous(role: str, mode: str, sync: dict[str, Any] | None) -> dict[str, Any]:
    keys: dict[str, Any] = {"config": {"synchronous_mode": mode}}
    if sync is not None:
        keys["sync"] = sync
    return samples(report(role, snapshot=cluster_snapshot(**keys)))


OWN = {"leader": "pg1", "term": TERM}


@pytest.mark.parametrize(
    ("role", "mode", "sync", "degraded"),
    [
        ("primary", "on", {**OWN, "standbys": []}, 1),
        ("primary", "on", {**OWN, "standbys": ["pg2"]}, 0),
        ("primary", "on", {"leader": "pg3", "term": TERM - 1, "standbys": ["pg1"]}, 1),
        ("primary", "on", None, 1),
        ("primary", "strict", {**OWN, "standbys": []}, 0),
        ("primary", "off", None, 0),
        ("replica", "on", {**OWN, "standbys": []}, 0),
    ],
    ids=[
        "on without a sync standby",
        "on with one",
        "on, the sync key still the previous leader's",
        "on, no sync key yet",
        "strict blocks instead",
        "off",
        "a replica",
    ],
)
def test_synchronous_degraded_only_on_a_primary_in_on_mode_without_standby(
    role: str, mode: str, sync: dict[str, Any] | None, degraded: int
) -> None:
    found = synchronous(role, mode, sync)
    assert value(found, "pgha_synchronous_degraded") == degraded
    assert value(found, "pgha_synchronous_mode", mode=mode) == 1
    assert sum(found["pgha_synchronous_mode"].values()) == 1


def test_no_synchronous_metrics_before_etcd_was_read() -> None:
    found = samples(report("primary", snapshot=None, snapshot_at=None))
    assert "pgha_synchronous_degraded" not in found
    assert "pgha_synchronous_mode" not in found
