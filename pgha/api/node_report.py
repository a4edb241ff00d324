"""One reading of the agent's state, taken per HTTP request: what every endpoint answers from.

How `/primary` decides, per request:
- the key: this node holds a claim and its fencing deadline has not passed *now*
  (CLOCK_BOOTTIME read for this request). The deadline moves only on a renewal etcd
  confirmed, and no other node can take the key before it passes, so while it holds no
  other node can be primary;
- read-write: the last cycle's probe saw Postgres accepting connections out of recovery,
  while holding this same term; and the postmaster is alive and not shutting down *now*
  (postmaster.pid and /proc, no SQL). A crash or a fence by the guard shows at once; a
  demotion is done by the cycle, which records the new state before it answers again.
No SQL runs per request: a load balancer checking every second cannot fork backends or tie
up threads on a hung Postgres, and a stale "read-write" can never outlive the deadline,
which is checked on every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgha.adapters.pg_process import live_postmaster
from pgha.adapters.store import ClusterSnapshot
from pgha.agent.cycle_record import CycleRecord
from pgha.agent.fencing_deadline import boottime
from pgha.errors import PghaError
from pgha.status import primary_position

if TYPE_CHECKING:
    from collections.abc import Callable

    from pgha.agent.cycle import Cycle
    from pgha.agent.runtime import Runtime
    from pgha.settings import Settings

LONGEST_CYCLE_SECONDS = 900.0
"""A cycle running a clone or a rewind (each bounded at 600 s) still counts as alive."""


@dataclass(frozen=True)
class NodeReport:
    node: str
    cluster: str
    now: float
    claim_term: int | None
    fencing_deadline: float | None
    renewed_at: float | None
    last: CycleRecord | None
    running_since: float | None
    snapshot: ClusterSnapshot | None
    snapshot_at: float | None
    postmaster_status: str | None
    """From postmaster.pid, read for this request; None when no postmaster is alive."""
    postmaster_alive: bool
    loop_wait_seconds: float
    ttl_seconds: float
    noloadbalance: bool = False
    """The node is tagged noloadbalance: `GET /replica` answers 503."""
    busy_with: str | None = None
    """"rewinding" or "cloning" while the cycle runs pg_rewind or pg_basebackup."""

    @property
    def term(self) -> int:
        """This node's term as leader, else the leader's term as last read, else 0."""
        if self.claim_term is not None:
            return self.claim_term
        leader = self.snapshot.leader if self.snapshot is not None else None
        return leader.term if leader is not None else 0

    @property
    def leader(self) -> str | None:
        leader = self.snapshot.leader if self.snapshot is not None else None
        return leader.holder if leader is not None else None

    @property
    def holds_key(self) -> bool:
        deadline = self.fencing_deadline
        return self.claim_term is not None and deadline is not None and self.now < deadline

    @property
    def postgres_up(self) -> bool:
        """Accepting connections at the last cycle, and its postmaster alive and not
        shutting down right now."""
        if self.last is None or not self.postmaster_alive or self.postmaster_status == "stopping":
            return False
        return self.last.state.accepting_connections

    @property
    def is_primary(self) -> bool:
        """Holds the key now, and Postgres is read-write (see the module docstring)."""
        last = self.last
        if last is None or not self.holds_key or not self.postgres_up:
            return False
        return last.state.is_primary and last.claim_term == self.claim_term

    @property
    def is_replica(self) -> bool:
        return self.postgres_up and self.last is not None and self.last.state.in_recovery is True

    @property
    def is_streaming(self) -> bool:
        receiver = self.last.state.wal_receiver if self.last is not None else None
        return self.is_replica and receiver is not None and receiver.status == "streaming"

    @property
    def role(self) -> str:
        if self.is_primary:
            return "primary"
        if self.is_replica:
            return "replica"
        state = self.last.state if self.last is not None else None
        if state is not None and not state.initialized:
            return "uninitialized"
        if self.postgres_up and state is not None and state.is_primary:
            return "demoting"  # read-write without a valid key: the agent fences it
        if not self.postmaster_alive:
            return "stopped"
        return "unknown"

    @property
    def lag_bytes(self) -> int | None:
        """A replica's distance behind the last primary position published in etcd."""
        if not self.is_replica or self.last is None or self.snapshot is None:
            return None
        base, position = primary_position(self.snapshot), self.last.state.position
        if base is None or position is None:
            return None
        return max(base - position, 0)

    @property
    def lag_seconds(self) -> float | None:
        return self.last.state.replay_lag_seconds if self.is_replica and self.last else None

    @property
    def fencing_margin_seconds(self) -> float | None:
        """Seconds left before the fencing deadline (negative once past); None if not leader."""
        if self.claim_term is None or self.fencing_deadline is None:
            return None
        return self.fencing_deadline - self.now

    def liveness_problem(self) -> str | None:
        """Why the agent's loop does not look alive, or None when it does."""
        limit = max(3 * self.loop_wait_seconds, self.ttl_seconds)
        last, running = self.last, self.running_since
        if last is not None and self.now - last.finished_at <= limit:
            return None
        finished_at = last.finished_at if last is not None else None
        # A long cycle (clone, rewind) is alive if it started on time after the last one.
        if running is not None and (finished_at is None or 0 <= running - finished_at <= limit):
            if self.now - running <= LONGEST_CYCLE_SECONDS:
                return None
            return f"the current cycle has run for {self.now - running:.0f} s"
        if finished_at is None:
            return "no cycle has run yet"
        return f"the last cycle finished {self.now - finished_at:.1f} s ago (limit {limit:g} s)"


def read_report(
    settings: Settings, runtime: Runtime, cycle: Cycle, clock: Callable[[], float] = boottime
) -> NodeReport:
    """Read the agent's state now. Each attribute is replaced whole by the cycle, so a torn
    read mixes two consistent values; the deadline is read before the claim, so a torn read
    can only make `/primary` more cautious."""
    fencing_deadline = runtime.fencing_deadline
    claim = runtime.claim
    try:
        postmaster = live_postmaster(settings.postgres.data_dir)
    except PghaError:
        postmaster = None
    return NodeReport(
        node=settings.node,
        cluster=settings.cluster,
        now=clock(),
        claim_term=claim.term if claim is not None else None,
        fencing_deadline=fencing_deadline,
        renewed_at=runtime.renewed_at,
        last=cycle.last,
        running_since=cycle.running_since,
        snapshot=cycle.last_snapshot,
        snapshot_at=cycle.snapshot_at,
        postmaster_status=postmaster.status if postmaster is not None else None,
        postmaster_alive=postmaster is not None,
        loop_wait_seconds=cycle.policy.loop_wait_seconds,
        ttl_seconds=cycle.policy.ttl_seconds,
        noloadbalance=settings.tags.noloadbalance,
        busy_with=runtime.busy_with,
    )
