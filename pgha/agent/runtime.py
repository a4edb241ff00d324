"""What one agent process remembers between cycles, and the fencing deadline it keeps.

The core sees this as an immutable NodeMemory; the executor updates it as actions succeed.
The fencing deadline moves only on a renewal etcd confirmed, and is computed from the time
the renewal was *sent* and the TTL etcd *granted* (DESIGN rule 2, traps 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pgha.adapters.store import LeaderClaim, Lease
from pgha.agent.fencing_deadline import Deadline, write_deadline
from pgha.core.model import NodeMemory


@dataclass
class Runtime:
    name: str
    safety_margin_seconds: float
    deadline_file: Path | None = None
    agent_pid: int = 0
    lease: Lease | None = None
    claim: LeaderClaim | None = None
    fencing_deadline: float | None = None
    renewed_at: float | None = None
    """When the last renewal etcd confirmed was sent (CLOCK_BOOTTIME); for metrics."""
    released_term: int | None = None
    primary_down_since: float | None = None
    primary_unhealthy_since: float | None = None
    no_leader_since: float | None = None
    no_leader_revision: int | None = None
    last_leader_revision: int = 0
    election_backoff_until: float | None = None
    sit_out_reason: str | None = None
    pre_promote_failed_term: int | None = None
    sync_baselines: dict[str, int] = field(default_factory=dict)
    last_request: dict[str, str] | None = None
    """The last operator request this node consumed and how it ended (member record)."""
    rewind_failed: bool = False
    rewind_blocked: str | None = None
    """Why the last rewind attempt was refused before pg_rewind ran (its preflight)."""
    divergence: dict[str, object] | None = None
    """The WAL range the last rewind of this node discarded, for its member record and,
    through the leader, for `history` (agent/divergence.py)."""
    users_ensured: bool = False
    """This node has created or updated the database users in its current leadership
    (cycle.py); cleared when it loses the key, so every new leader does it once."""
    busy_with: str | None = None
    """"rewinding" or "cloning" while the cycle runs pg_rewind or pg_basebackup."""
    checkpoint_after_promote: bool = False
    last_in_recovery: bool | None = None
    guard_alive: bool = True
    slots_gone_since: dict[str, float] = field(default_factory=dict)
    """Replication slots no member's name maps to, and since when (agent/slots.py)."""

    def memory(self) -> NodeMemory:
        return NodeMemory(
            name=self.name,
            lease_id=self.lease.id if self.lease is not None else None,
            claimed_term=self.claim.term if self.claim is not None else None,
            fencing_deadline=self.fencing_deadline,
            released_term=self.released_term,
            primary_down_since=self.primary_down_since,
            primary_unhealthy_since=self.primary_unhealthy_since,
            no_leader_since=self.no_leader_since,
            last_leader_revision=self.last_leader_revision,
            election_backoff_until=self.election_backoff_until,
            sit_out_reason=self.sit_out_reason,
            pre_promote_failed_term=self.pre_promote_failed_term,
            rewind_failed=self.rewind_failed,
            rewind_blocked=self.rewind_blocked,
            sync_baselines=dict(self.sync_baselines),
            guard_alive=self.guard_alive,
        )

    def sits_out(self, now: float) -> bool:
        return self.election_backoff_until is not None and now < self.election_backoff_until

    def renewed(self, sent_at: float, claim: LeaderClaim) -> None:
        """A renewal sent at `sent_at` was confirmed: move the deadline and tell the guard."""
        assert self.lease is not None
        self.claim = claim
        self.renewed_at = sent_at
        self.fencing_deadline = sent_at + self.lease.ttl_seconds - self.safety_margin_seconds
        self._publish_deadline()

    def lost_leadership(self, released: bool = False) -> None:
        """Forget the claim; a released term is never led again (traps 1)."""
        if self.claim is not None and released:
            self.released_term = self.claim.term
        self.claim = None
        self.fencing_deadline = None
        self.checkpoint_after_promote = False
        self.users_ensured = False
        self._publish_deadline()

    def disarm_guard(self) -> None:
        self._publish_deadline()

    def _publish_deadline(self) -> None:
        if self.deadline_file is None:
            return
        term = self.claim.term if self.claim is not None else None
        write_deadline(self.deadline_file, Deadline(self.fencing_deadline, term, self.agent_pid))
