"""The health checks load balancers route by: each says why a node does not qualify, or None.

`/primary` (`/read-write`, `/leader`), `/replica` (optionally `?lag=16MB`), `/read-only`,
`/health` and `/liveness` answer 200 when the check passes and 503 otherwise, with the same
JSON body either way (Patroni's shape: role, state, term, timeline, lsn, ...) plus `reason`.
"""

from __future__ import annotations

import re
from typing import Any

from pgha.adapters.postgres_state import format_lsn
from pgha.api.node_report import NodeReport

UNITS = {"": 1, "b": 1, "kb": 1024, "kib": 1024, "mb": 1024**2, "mib": 1024**2}
UNITS |= {"gb": 1024**3, "gib": 1024**3, "tb": 1024**4, "tib": 1024**4}
_SIZE = re.compile(r"^\s*(\d{1,15})\s*([A-Za-z]{0,3})\s*$")


def parse_size(text: str) -> int:
    """'16MB' -> 16777216 (units are powers of 1024, as in postgresql.conf); '1000' -> 1000."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in UNITS:
        raise ValueError(f"expected a size like 1048576, 512kB or 16MB, got {text[:40]!r}")
    return int(match.group(1)) * UNITS[unit]


def primary_problem(report: NodeReport) -> str | None:
    if report.claim_term is None:
        leader = report.leader
        return f"{leader} holds the leader key" if leader else "this node does not hold the key"
    if not report.holds_key:
        return "the fencing deadline has passed: this node must assume it was replaced"
    if not report.postgres_up:
        return "Postgres is not up"
    if not report.is_primary:
        return "Postgres is not read-write"
    return None


def replica_problem(report: NodeReport, max_lag_bytes: int | None = None) -> str | None:
    """`/read-only` ignores noloadbalance, as in Patroni: the tag only takes the node out
    of the replica pool."""
    if report.noloadbalance:
        return "this node is tagged noloadbalance: it takes no load-balanced replica traffic"
    if not report.is_replica:
        return "Postgres is not up as a replica"
    if not report.is_streaming:
        return "the replica is not streaming from an upstream"
    return _lag_problem(report, max_lag_bytes)


def read_only_problem(report: NodeReport, max_lag_bytes: int | None = None) -> str | None:
    if report.is_primary:
        return None
    if not report.is_replica:
        return "Postgres is up neither as the primary nor as a replica"
    return _lag_problem(report, max_lag_bytes)


def health_problem(report: NodeReport) -> str | None:
    return None if report.postgres_up else "Postgres is not up"


def liveness_problem(report: NodeReport) -> str | None:
    return report.liveness_problem()


def _lag_problem(report: NodeReport, max_lag_bytes: int | None) -> str | None:
    if max_lag_bytes is None:
        return None
    lag = report.lag_bytes
    if lag is None:
        return "the replica's lag is unknown (no primary position published yet)"
    if lag > max_lag_bytes:
        return f"replication lag {lag} bytes exceeds the limit of {max_lag_bytes} bytes"
    return None


def health_body(report: NodeReport, reason: str | None) -> dict[str, Any]:
    """What every health check answers with, whatever its status code."""
    last = report.last
    state = last.state if last is not None else None
    position = state.position if state is not None else None
    receiver = state.wal_receiver if state is not None else None
    margin = report.fencing_margin_seconds
    return {
        "name": report.node,
        "cluster": report.cluster,
        "role": report.role,
        "state": _state_word(report),
        "holds_key": report.holds_key,
        "leader": report.leader,
        "term": report.term,
        "timeline": state.timeline if state is not None else None,
        "lsn": format_lsn(position) if position is not None else None,
        "upstream": receiver.sender_host if receiver is not None else None,
        "lag_bytes": report.lag_bytes,
        "lag_seconds": report.lag_seconds,
        "fencing_deadline_in_seconds": round(margin, 3) if margin is not None else None,
        "decision": {"code": last.decision.code, "reason": last.decision.reason}
        if last is not None
        else None,
        "reason": reason,
    }


def _state_word(report: NodeReport) -> str:
    if report.busy_with is not None:
        return report.busy_with
    if report.is_streaming:
        return "streaming"
    if report.postgres_up:
        return "running"
    if report.postmaster_status == "stopping":
        return "stopping"
    if report.postmaster_alive:
        return "starting"
    return "stopped"
