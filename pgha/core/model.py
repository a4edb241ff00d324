"""Frozen values the decision core reasons about: what one agent observed in one cycle.

Nothing here does I/O or reads a clock. The agent's observe step builds an `Observation`
from an etcd snapshot, a Postgres probe and the agent's own memory (`NodeMemory`); the
core turns it into a `Decision`.

Words: *leader* = holds the `leader` key; *primary* = Postgres read-write. They are kept
apart on purpose: a node can be one without the other for a moment, and that moment is
exactly what the safety rules are about.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

Lsn = int
"""A WAL position in bytes; `format_lsn` gives Postgres's 'X/Y' form."""


def format_lsn(lsn: Lsn | None) -> str:
    if lsn is None:
        return "unknown"
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def parse_lsn(text: str) -> Lsn:
    """Postgres's 'X/Y' form (two 32-bit hex halves) to bytes; anything else, a sign or
    whitespace included, is a ValueError."""
    found = _LSN.fullmatch(text)
    if found is None:
        shown = repr(text) if len(text) <= 40 else repr(text[:37]) + "..."
        raise ValueError(f"expected an LSN like 0/3000028, got {shown}")
    return (int(found.group(1), 16) << 32) | int(found.group(2), 16)


class PgRunState(Enum):
    """What the local Postgres is doing, as far as the probe can tell."""

    NO_DATA = "no data"  # empty or missing data directory
    STOPPED = "stopped"
    STARTING = "starting"  # postmaster up, not yet accepting connections (recovery)
    RUNNING = "running"
    UNREACHABLE = "unreachable"  # postmaster alive but the probe timed out (frozen, hung disk)


@dataclass(frozen=True)
class LocalPostgres:
    """The local Postgres, as probed this cycle."""

    run_state: PgRunState
    in_recovery: bool = True
    timeline: int | None = None
    position: Lsn | None = None
    """max(received, replayed) on a replica; the current write position on a primary;
    the end of the last checkpoint for a stopped server."""
    upstream: str | None = None
    """The member this replica's walreceiver streams from (None when not streaming)."""
    system_identifier: str | None = None
    was_primary: bool = False
    """For a stopped server: pg_control says it last ran as a primary, not in recovery."""
    stopped_cleanly: bool = False
    standbys: tuple[StandbyFeed, ...] = ()
    """A primary's standbys (pg_stat_replication)."""
    sync_names: tuple[str, ...] | None = ()
    """The standbys synchronous_standby_names waits for, as pgha writes it; None when it
    holds something pgha did not write (an operator's value)."""
    flush_lsn: Lsn | None = None
    commit_failure: str | None = None
    """Why this node, holding the key, could not commit a local test transaction this cycle
    (or could not even probe its Postgres); None when it could, or it was not tried."""
    heartbeat_replayed_at: float | None = None
    """The stamp of the newest heartbeat row this server has (replayed, or written)."""

    @property
    def running(self) -> bool:
        return self.run_state in (PgRunState.RUNNING, PgRunState.UNREACHABLE)

    @property
    def writable(self) -> bool:
        """Read-write, or possibly so: an unreachable primary must be assumed to take writes."""
        return self.running and not self.in_recovery


@dataclass(frozen=True)
class StandbyFeed:
    """One standby as the local primary sees it in pg_stat_replication."""

    name: str
    streaming: bool
    sync_state: str
    """async, potential, sync or quorum."""
    flush_lsn: Lsn | None


@dataclass(frozen=True)
class Tags:
    """A member's tags from its local config. `failover_priority` breaks ties between
    candidates at the same position (higher wins); 0 means never promoted automatically,
    like `nofailover`."""

    nofailover: bool = False
    failover_priority: int = 1
    nosync: bool = False
    noloadbalance: bool = False
    clonefrom: bool = False

    @property
    def never_promoted(self) -> str | None:
        """Why these tags keep a member from being promoted, or None."""
        if self.nofailover:
            return "tagged nofailover"
        if self.failover_priority <= 0:
            return f"tagged failover_priority {self.failover_priority} (never promoted)"
        return None


@dataclass(frozen=True)
class MemberInfo:
    """A member record from etcd, as its agent last published it."""

    name: str
    host: str
    port: int
    role: str = "replica"
    running: bool = False
    in_recovery: bool = True
    timeline: int | None = None
    position: Lsn | None = None
    streaming: bool = False
    upstream: str | None = None
    """The member its primary_conninfo points at (None: no upstream configured)."""
    tags: Tags = Tags()
    no_leader_revision: int | None = None
    """The etcd revision at which this member saw the leader key missing; None while it
    sees a leader. Positions tagged so are fresh for an election (traps 9)."""
    checkpoint_after_promote: bool = False
    system_identifier: str | None = None
    sits_out: bool = False
    """The member sits out elections for now (its pre_promote hook failed): not a rival."""
    heartbeat_replayed_at: float | None = None
    """The primary's wall-clock stamp of the newest heartbeat row this replica replayed."""


@dataclass(frozen=True)
class LeaderInfo:
    holder: str
    term: int
    lease_id: int
    mod_revision: int

    @property
    def leased(self) -> bool:
        """Agents only ever write the key on a lease: one without was written by someone else."""
        return self.lease_id != 0

    def bound_to(self, holder: str, term: int | None, lease_id: int | None) -> bool:
        """The key names `holder` in `term` on `lease_id`: what holding it means (traps 1)."""
        return (self.holder, self.term, self.lease_id) == (holder, term, lease_id)


class InitState(Enum):
    ABSENT = "absent"
    BOOTSTRAPPING = "bootstrapping"
    DONE = "done"
    GARBAGE = "garbage"


@dataclass(frozen=True)
class Handoff:
    """A voluntary release in progress: only `to` may take the key, once past `final_lsn`."""

    from_node: str
    to_node: str | None
    term: int
    final_lsn: Lsn


class SwitchoverState(Enum):
    PENDING = "pending"
    """Requested; waits for its time (if scheduled) and for the leader to serve it."""
    HANDING_OVER = "handing_over"
    """The leader checked the candidate and is stopping Postgres to hand the key over."""
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class SwitchoverRequest:
    """A planned switchover, as `pgha switchover` wrote it and the leaders advanced it."""

    id: str
    from_node: str | None
    """The leader the operator meant to replace (None: whoever leads when it runs)."""
    to_node: str | None
    """The candidate asked for (None: the best eligible replica)."""
    at: float | None
    """Wall-clock seconds since the epoch before which it must not run (None: now)."""
    state: SwitchoverState
    candidate: str | None = None
    """The candidate the leader chose when it began handing over."""
    term: int | None = None
    """The term in which the leader began handing over."""
    mod_revision: int = 0

    @property
    def open(self) -> bool:
        return self.state in (SwitchoverState.PENDING, SwitchoverState.HANDING_OVER)


@dataclass(frozen=True)
class SyncState:
    """The `sync` key: the standbys `leader` waited for in `term` (DESIGN rule 6, traps 5).
    Only they, or that leader, may be promoted after a failure in synchronous mode."""

    leader: str
    term: int
    standbys: tuple[str, ...]
    mod_revision: int = 0

    def may_promote(self, name: str) -> bool:
        return name == self.leader or name in self.standbys


@dataclass(frozen=True)
class ForcedFailover:
    """`pgha failover --candidate NAME`: with no leader, only `to_node` may take the key."""

    to_node: str
    allow_data_loss: bool = False
    mod_revision: int = 0


@dataclass(frozen=True)
class MemberRequest:
    """`pgha restart NAME` / `pgha reinit NAME`: one action asked of one member's agent,
    which consumes the request (compare-and-delete) before acting, so it runs at most once."""

    id: str
    action: str
    """"restart" or "reinit"; anything else is refused (and consumed) with a reason."""
    by: str = ""
    mod_revision: int = 0
    reason: str = ""
    """Why it was asked, when pgha itself asked (a leader whose slot of this member was lost)."""


@dataclass(frozen=True)
class TimelineSwitch:
    """From `history`: timeline `timeline` began at `lsn` (the fork point of the one before)."""

    timeline: int
    lsn: Lsn


@dataclass(frozen=True)
class ClusterView:
    """One consistent etcd snapshot of the cluster, parsed."""

    revision: int
    leader: LeaderInfo | None
    members: Mapping[str, MemberInfo] = field(default_factory=dict)
    init_state: InitState = InitState.ABSENT
    init_node: str | None = None
    system_identifier: str | None = None
    last_primary_position: Lsn | None = None
    last_primary_heartbeat: float | None = None
    """The newest heartbeat stamp the leader published in `status` (its wall clock)."""
    timeline_switches: tuple[TimelineSwitch, ...] = ()
    handoff: Handoff | None = None
    paused: bool = False
    switchover: SwitchoverRequest | None = None
    failover: ForcedFailover | None = None
    requests: Mapping[str, MemberRequest] = field(default_factory=dict)
    """Operator requests by member name (`requests/<member>`)."""
    sync: SyncState | None = None
    sync_unreadable: bool = False
    """The `sync` key holds garbage: no automatic promotion in synchronous mode (traps 14)."""

    @property
    def latest_timeline(self) -> int:
        return max((s.timeline for s in self.timeline_switches), default=1)

    def fork_point(self, timeline: int) -> Lsn | None:
        """Where `timeline` ended, i.e. where the next timeline began; None if it did not."""
        later = [s for s in self.timeline_switches if s.timeline == timeline + 1]
        return later[0].lsn if later else None


@dataclass(frozen=True)
class NodeMemory:
    """What the agent remembers between cycles (it lives in the agent process only)."""

    name: str
    lease_id: int | None = None
    claimed_term: int | None = None
    """The term of the leader key this node believes it holds, if any."""
    fencing_deadline: float | None = None
    """last successful renewal *sent* + granted TTL - safety_margin, on CLOCK_BOOTTIME."""
    released_term: int | None = None
    """The term this node gave up; it never leads again in that term (traps 1)."""
    primary_down_since: float | None = None
    """When this node, holding the key, first saw its Postgres down (for primary_start_timeout)."""
    primary_unhealthy_since: float | None = None
    """When this node, holding the key, first saw its running Postgres fail to commit or to
    answer its probe (for primary_unhealthy_timeout); None while it commits."""
    no_leader_since: float | None = None
    last_leader_revision: int = 0
    """The newest snapshot revision at which this node saw a leader key."""
    election_backoff_until: float | None = None
    """Until then this node sits out elections (its pre_promote hook failed, traps 15)."""
    sit_out_reason: str | None = None
    pre_promote_failed_term: int | None = None
    """The term in which this node took the key but its pre_promote hook failed: it must
    give that key up, never promote in it."""
    rewind_failed: bool = False
    rewind_blocked: str | None = None
    """Why the last rewind was refused before pg_rewind ran (its preflight): nothing was
    changed, so it is tried again every cycle until the cause is fixed."""
    guard_alive: bool = True
    sync_baselines: Mapping[str, Lsn] = field(default_factory=dict)
    """Per standby added to synchronous_standby_names: the primary's flush LSN right after;
    it joins `sync` only once it has flushed that far (traps 5a)."""


@dataclass(frozen=True)
class Policy:
    """Cluster-wide settings that shape decisions (the dynamic configuration)."""

    ttl_seconds: float = 30
    loop_wait_seconds: float = 10
    retry_timeout_seconds: float = 7
    safety_margin_seconds: float = 5
    primary_start_timeout_seconds: float = 300
    primary_unhealthy_timeout_seconds: float = 30
    """How long a running primary may fail to commit locally before it is killed and the
    key released (gray failures: hung disk, frozen postmaster)."""
    maximum_lag_on_failover_bytes: int = 1024 * 1024
    maximum_lag_seconds_on_failover: float = 0
    """Heartbeat lag beyond which a replica is not promoted after a failure; 0 = no limit."""
    election_wait_seconds: float = 2
    remove_data_directory_on_rewind_failure: bool = False
    synchronous_mode: str = "off"
    """off, on (degrade to async when no standby is left) or strict (writes block)."""
    synchronous_node_count: int = 1
    member_slots_ttl_seconds: float = 1800
    """How long a slot outlives its member's record before it is dropped (agent/slots.py)."""
    tags: Tags = Tags()


@dataclass(frozen=True)
class Observation:
    """Everything one decision is made from. `now` is CLOCK_BOOTTIME seconds."""

    now: float
    node: NodeMemory
    local: LocalPostgres
    cluster: ClusterView | None
    """None when etcd could not be read this cycle."""
    store_error: str | None = None
    wall_now: float = 0.0
    """Wall-clock seconds since the epoch: only for operator schedules (switchover --at),
    never for fencing, which runs on `now`."""

    @property
    def holds_key(self) -> bool:
        """The snapshot shows the leader key bound to this node's name, term and lease."""
        leader = self.cluster.leader if self.cluster is not None else None
        node = self.node
        return (
            leader is not None
            and node.claimed_term is not None
            and leader.bound_to(node.name, node.claimed_term, node.lease_id)
        )

    @property
    def past_fencing_deadline(self) -> bool:
        deadline = self.node.fencing_deadline
        return self.node.claimed_term is not None and (deadline is None or self.now >= deadline)
