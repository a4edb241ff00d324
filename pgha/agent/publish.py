"""What an agent tells the cluster about itself: its member record and, as leader, status.

Member records are rewritten only when something an operator or a peer decides on has
changed (role, state, timeline, tags, upstream, decision code, leaderless revision), or
when the position moved by more than POSITION_PUBLISH_BYTES or the record is older than
POSITION_PUBLISH_SECONDS (traps 20): an idle cluster writes almost nothing to etcd.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pgha.adapters.postgres_state import PostgresState
from pgha.adapters.store import (
    STATUS,
    ClusterSnapshot,
    ClusterStore,
    LeaderClaim,
    Lease,
    Record,
    Value,
    encode,
)
from pgha.agent.runtime import Runtime
from pgha.core.decision import Decision
from pgha.core.model import LocalPostgres, PgRunState, format_lsn
from pgha.settings import Settings
from pgha.settings_base import split_address

POSITION_PUBLISH_BYTES = 1024 * 1024
POSITION_PUBLISH_SECONDS = 60.0

StatusTuple = tuple[int, int | None, int | None, float | None]
"""What the `status` key last said: term, timeline, position, heartbeat stamp."""


def member_record(
    settings: Settings,
    local: LocalPostgres,
    runtime: Runtime,
    decision: Decision,
    *,
    probed: PostgresState | None = None,
    now: float = 0.0,
) -> dict[str, Any]:
    host, port = split_address(settings.postgres.connect_address)
    if local.run_state is PgRunState.NO_DATA:
        role = "uninitialized"
    elif local.running and not local.in_recovery:
        role = "primary"
    else:
        role = "replica"
    return {
        "host": host,
        "port": port,
        "api_url": settings.api.url,
        "role": role,
        "state": _state(local, runtime, decision),
        "running": local.run_state is PgRunState.RUNNING,
        "in_recovery": local.in_recovery,
        "timeline": local.timeline,
        "position": format_lsn(local.position) if local.position is not None else None,
        "upstream": local.upstream,
        "streaming": local.upstream is not None,
        "tags": asdict(settings.tags),
        "no_leader_revision": runtime.no_leader_revision,
        "checkpoint_after_promote": runtime.checkpoint_after_promote,
        "sysid": local.system_identifier,
        "term": runtime.claim.term if runtime.claim is not None else None,
        "decision": {"code": decision.code, "reason": decision.reason},
        "sits_out": runtime.sits_out(now),
        "request": runtime.last_request,
        "diverged": runtime.divergence,
        **_replication(probed),
    }


DIVERGED_CODES = frozenset(
    {"wait_for_leader_checkpoint", "rewind_preflight_failed", "rewind_failed"}
)
"""Decisions that leave this node's data forked off the leader's timeline, not yet repaired."""


def _state(local: LocalPostgres, runtime: Runtime, decision: Decision) -> str:
    """What Postgres is doing, or the repair under way (rewinding, cloning) or needed
    (diverged): `pgha status` shows them apart."""
    if runtime.busy_with is not None:
        return runtime.busy_with
    if decision.code in DIVERGED_CODES:
        return "diverged"
    return local.run_state.value


def _replication(probed: PostgresState | None) -> dict[str, Any]:
    """What only the probe knows: the walreceiver's status and the replay lag in seconds
    (for `pgha status`; the lag changes every cycle, so it never triggers a write)."""
    receiver = probed.wal_receiver if probed is not None else None
    lag = probed.replay_lag_seconds if probed is not None else None
    heartbeat = probed.heartbeat_at if probed is not None else None
    return {
        "receiver": receiver.status if receiver is not None else None,
        "replay_lag_seconds": round(lag, 3) if lag is not None else None,
        "heartbeat_replayed_at": heartbeat,
    }


def _significant(record: dict[str, Any]) -> dict[str, Any]:
    # The heartbeat stamp moves every cycle: alone it never triggers a write (traps 20).
    ignored = ("position", "decision", "replay_lag_seconds", "heartbeat_replayed_at")
    shown = {k: v for k, v in record.items() if k not in ignored}
    shown["code"] = record["decision"]["code"]
    return shown


@dataclass
class Publisher:
    store: ClusterStore
    name: str
    last_record: dict[str, Any] | None = None
    last_position: int | None = None
    last_at: float = 0.0
    last_status: StatusTuple | None = None
    status_at: float = 0.0

    def publish_member(
        self, record: dict[str, Any], position: int | None, lease: Lease, now: float
    ) -> bool:
        """Write the member record if it changed enough; True if it was written."""
        if not self._due(record, position, now):
            return False
        self.store.publish_member(self.name, record, lease)
        self.last_record, self.last_position, self.last_at = record, position, now
        return True

    def _due(self, record: dict[str, Any], position: int | None, now: float) -> bool:
        if self.last_record is None or _significant(record) != _significant(self.last_record):
            return True
        if now - self.last_at >= POSITION_PUBLISH_SECONDS:
            return True
        if position is None or self.last_position is None:
            return position != self.last_position
        return abs(position - self.last_position) >= POSITION_PUBLISH_BYTES

    def forget(self) -> None:
        """Write the next record whatever it holds (after a new lease, or on request)."""
        self.last_record = None

    def notice(self, snapshot: ClusterSnapshot) -> None:
        """Forget what the snapshot shows overwritten (by garbage, say): the next publish
        rewrites it at once instead of when something changes."""
        if self.last_record is not None and not _shows(
            snapshot.members.get(self.name), self.last_record
        ):
            self.last_record = None
        if self.last_status is not None and not _shows(
            snapshot.get(STATUS), _status_record(*self.last_status)
        ):
            self.last_status = None

    def publish_status(
        self,
        claim: LeaderClaim,
        timeline: int | None,
        position: int | None,
        now: float,
        *,
        heartbeat_at: float | None = None,
        heartbeat_every_seconds: float = 0.0,
    ) -> bool:
        """As leader: the primary's position and newest heartbeat stamp, the bases of every
        replica's lag limits. Rewritten when term or timeline change, the position moved
        POSITION_PUBLISH_BYTES, POSITION_PUBLISH_SECONDS passed, or (when
        `heartbeat_every_seconds` > 0, i.e. a lag limit in seconds is set) the heartbeat
        moved that far: so the published stamp is never older than that plus one cycle.
        Without a new `heartbeat_at` (the write failed) the last published one stands."""
        last = self.last_status
        if heartbeat_at is None and last is not None and last[0] == claim.term:
            heartbeat_at = last[3]
        current: StatusTuple = (claim.term, timeline, position, heartbeat_at)
        recent = now - self.status_at < POSITION_PUBLISH_SECONDS
        if last is not None and last[:2] == current[:2] and recent:
            moved = abs((position or 0) - (last[2] or 0))
            beat = (
                heartbeat_every_seconds > 0
                and heartbeat_at is not None
                and (last[3] is None or heartbeat_at - last[3] >= heartbeat_every_seconds)
            )
            if moved < POSITION_PUBLISH_BYTES and not beat:
                return False
        status = _status_record(*current)
        if not self.store.put(STATUS, status, as_leader=claim):
            return False
        self.last_status, self.status_at = current, now
        return True


def _status_record(
    term: int, timeline: int | None, position: int | None, heartbeat_at: float | None
) -> dict[str, Any]:
    return {
        "term": term,
        "timeline": timeline,
        "position": format_lsn(position) if position is not None else None,
        "heartbeat_at": heartbeat_at,
    }


def _shows(value: Value | None, written: dict[str, Any]) -> bool:
    return isinstance(value, Record) and encode(value.data) == encode(written)
