"""Builders of NodeReports for the API tests: a primary, a replica or a stopped node in a few
words, with any field overridden."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from pgha.adapters.postgres_state import PostgresState, WalReceiver
from pgha.adapters.store import LEADER, ClusterSnapshot, RawEntry, parse_snapshot
from pgha.agent.cycle_record import CycleRecord
from pgha.api.node_report import NodeReport
from pgha.core.decision import Decision

NOW = 1000.0
TERM = 42


def cluster_snapshot(
    leader: str | None = "pg1", primary_position: str = "0/5000000", **keys: Any
) -> ClusterSnapshot:
    entries = []
    if leader is not None:
        entries.append(RawEntry(LEADER, leader, TERM, TERM, 99))
    keys.setdefault("status", {"term": TERM, "timeline": 3, "position": primary_position})
    for revision, (key, value) in enumerate(sorted(keys.items()), start=100):
        entries.append(RawEntry(key, json.dumps(value), revision, revision, 0))
    return parse_snapshot(200, entries)


def primary_state(**changes: Any) -> PostgresState:
    state = PostgresState(
        Path("/data"),
        initialized=True,
        running=True,
        postmaster_pid=100,
        postmaster_status="ready",
        accepting_connections=True,
        in_recovery=False,
        timeline=3,
        wal_lsn=0x5000000,
    )
    return replace(state, **changes)


def replica_state(position: int = 0x4FF0000, **changes: Any) -> PostgresState:
    receiver = WalReceiver("streaming", "10.0.0.1", 5432, None, 3, position)
    state = replace(
        primary_state(),
        in_recovery=True,
        wal_lsn=None,
        receive_lsn=position,
        replay_lsn=position,
        wal_receiver=receiver,
    )
    return replace(state, **changes)


def report(role: str = "primary", state: PostgresState | None = None, **changes: Any) -> NodeReport:
    """A node as its API would see it; `role` is primary, replica or stopped."""
    leading = role == "primary"
    if state is None:
        state = {
            "primary": primary_state(),
            "replica": replica_state(),
            "stopped": replace(primary_state(), running=False, accepting_connections=False),
        }[role]
    claim_term = TERM if leading else None
    decision = Decision("keep_leading" if leading else "follow_leader", "all is well")
    base = NodeReport(
        node="pg1" if leading else "pg2",
        cluster="main",
        now=NOW,
        claim_term=claim_term,
        fencing_deadline=NOW + 5 if leading else None,
        renewed_at=NOW - 1 if leading else None,
        last=CycleRecord(NOW - 1.2, NOW - 1, state, claim_term, decision),
        running_since=None,
        snapshot=cluster_snapshot(),
        snapshot_at=NOW - 1.1,
        postmaster_status=None if role == "stopped" else "ready",
        postmaster_alive=role != "stopped",
        loop_wait_seconds=1,
        ttl_seconds=10,
    )
    return replace(base, **changes)
