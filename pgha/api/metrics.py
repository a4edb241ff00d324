"""`GET /metrics`: the node's state in the Prometheus text format, every name prefixed `pgha_`.

Built per scrape from one NodeReport in a registry of its own (no process or platform
collectors, nothing global), so a scrape costs nothing between scrapes. The server imports
this module on the first scrape only: an agent nobody scrapes never loads prometheus_client.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import CollectorRegistry

from pgha.adapters.store import SYNC, Record
from pgha.api.node_report import NodeReport
from pgha.dynamic_config import SYNCHRONOUS_MODES
from pgha.status import cluster_paused, synchronous_state

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
ROLES = ("primary", "replica", "demoting", "stopped", "uninitialized", "unknown")


def render_metrics(report: NodeReport) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ReportCollector(report))
    return generate_latest(registry)


class _ReportCollector:
    def __init__(self, report: NodeReport) -> None:
        self.report = report

    def collect(self) -> Iterable[Metric]:
        return metric_families(self.report)


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily | None:
    return None if value is None else GaugeMetricFamily(name, documentation, value=value)


def metric_families(report: NodeReport) -> list[Metric]:
    """Every metric of one report; one that does not apply (a replica's renewal age, a
    primary's lag) is left out rather than reported as 0."""
    info = GaugeMetricFamily("pgha_node", "This node and its cluster.", labels=["node", "cluster"])
    info.add_metric([report.node, report.cluster], 1)
    role = GaugeMetricFamily("pgha_role", "1 for this node's current role.", labels=["role"])
    for name in ROLES:
        role.add_metric([name], 1 if report.role == name else 0)
    families: list[Metric | None] = [
        info,
        role,
        _gauge("pgha_leader", "1 while this node holds the leader key.", report.holds_key),
        _gauge("pgha_primary", "1 when GET /primary answers 200 here.", report.is_primary),
        _gauge("pgha_postgres_up", "1 when the local Postgres is up.", report.postgres_up),
        _gauge("pgha_term", "The current term (0 when unknown).", report.term),
        *_postgres(report),
        _gauge(
            "pgha_replication_lag_bytes",
            "A replica's distance behind the last published primary position.",
            report.lag_bytes,
        ),
        _gauge("pgha_replication_lag_seconds", "A replica's replay delay.", report.lag_seconds),
        *_leadership(report),
        *_synchronous(report),
        *_cycle(report),
    ]
    return [family for family in families if family is not None]


def _postgres(report: NodeReport) -> list[GaugeMetricFamily | None]:
    state = report.last.state if report.last is not None else None
    if state is None:
        return []
    lsn = GaugeMetricFamily(
        "pgha_wal_lsn_bytes", "WAL positions as byte offsets.", labels=["position"]
    )
    for kind, value in (
        ("write", state.wal_lsn),
        ("receive", state.receive_lsn),
        ("replay", state.replay_lsn),
    ):
        if value is not None:
            lsn.add_metric([kind], value)
    return [
        _gauge("pgha_timeline", "The local Postgres's timeline.", state.timeline),
        lsn if lsn.samples else None,
    ]


def _leadership(report: NodeReport) -> list[GaugeMetricFamily | None]:
    if report.claim_term is None:
        return []
    renewed = report.now - report.renewed_at if report.renewed_at is not None else None
    return [
        _gauge(
            "pgha_seconds_since_last_renewal",
            "Seconds since the last lease renewal etcd confirmed was sent.",
            renewed,
        ),
        _gauge(
            "pgha_fencing_deadline_margin_seconds",
            "Seconds before this leader must fence itself (negative once past).",
            report.fencing_margin_seconds,
        ),
    ]


def _synchronous(report: NodeReport) -> list[GaugeMetricFamily | None]:
    """The cluster's synchronous_mode, and whether this primary runs degraded: mode `on`
    and no standby named in its own `sync` record (a record left by an earlier leader or
    term names no standby of this one), so commits wait for nobody."""
    snapshot = report.snapshot
    if snapshot is None:
        return []
    state = synchronous_state(snapshot)
    mode = GaugeMetricFamily(
        "pgha_synchronous_mode", "1 for the cluster's synchronous_mode.", labels=["mode"]
    )
    for name in SYNCHRONOUS_MODES:
        mode.add_metric([name], 1 if state["mode"] == name else 0)
    value = snapshot.get(SYNC)
    record = value.data if isinstance(value, Record) else None
    own = isinstance(record, dict) and (record.get("leader"), record.get("term")) == (
        report.node,
        report.claim_term,
    )
    degraded = report.is_primary and state["mode"] == "on" and (state["degraded"] or not own)
    return [
        mode,
        _gauge(
            "pgha_synchronous_degraded",
            "1 while this node is the primary in synchronous_mode on with no sync standby "
            "(commits wait for no standby); 0 otherwise.",
            1 if degraded else 0,
        ),
    ]


def _cycle(report: NodeReport) -> list[GaugeMetricFamily | None]:
    last = report.last
    snapshot_age = report.now - report.snapshot_at if report.snapshot_at is not None else None
    paused = cluster_paused(report.snapshot) if report.snapshot is not None else None
    return [
        _gauge(
            "pgha_cycle_duration_seconds",
            "How long the last HA cycle took.",
            last.duration_seconds if last is not None else None,
        ),
        _gauge(
            "pgha_seconds_since_last_cycle",
            "Seconds since the last HA cycle finished.",
            report.now - last.finished_at if last is not None else None,
        ),
        _gauge("pgha_cluster_snapshot_age_seconds", "Age of the last etcd read.", snapshot_age),
        _gauge("pgha_paused", "1 while the cluster is paused (maintenance mode).", paused),
    ]
