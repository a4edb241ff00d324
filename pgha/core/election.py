"""Who may lead when nobody does: eligibility, lag limits, freshness, ranking, tie-break.

Every node runs the same function on the same snapshot, so every node reaches the same
winner; the ones that do not win say why ("pg3 is ahead: 0/5000060 vs 0/4FFF000").

A member's position is max(received, replayed) on its timeline (traps 9a). Positions are
compared only when fresh: published after the publisher saw the leader key missing
(`no_leader_revision` newer than the last revision at which this node saw a leader). A
member whose fresh position has not arrived is waited for, up to `election_wait_seconds`;
after that its last known position still counts, so a node never takes the key from a
member known to be ahead of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pgha.core.model import (
    ClusterView,
    Lsn,
    MemberInfo,
    Observation,
    PgRunState,
    Policy,
    format_lsn,
)


@dataclass(frozen=True)
class Candidate:
    name: str
    position: Lsn
    priority: int

    def rank(self) -> tuple[int, int, str]:
        """Lower sorts first: highest position, then highest failover_priority, then name.
        (Priority 0 never gets here: such a member is not eligible at all.)"""
        return (-self.position, -self.priority, self.name)


@dataclass(frozen=True)
class Verdict:
    take_key: bool
    code: str
    reason: str


def elect(obs: Observation, policy: Policy) -> Verdict:
    """Decide whether this node takes the free leader key now, and why (not)."""
    cluster = obs.cluster
    assert cluster is not None, "elect() needs a snapshot"
    forced = cluster.failover
    if forced is not None:
        return _forced(obs, policy, forced.to_node, forced.allow_data_loss)
    me = _self_as_candidate(obs, policy)
    if isinstance(me, str):
        handoff = cluster.handoff
        position = obs.local.position
        if (
            handoff is not None
            and handoff.to_node == obs.node.name
            and position is not None
            and position <= handoff.final_lsn
        ):
            # Named by a switchover and a few bytes short: look again very soon.
            return Verdict(False, "catch_up_for_handoff", me)
        return Verdict(False, "not_eligible", me)

    handoff = cluster.handoff
    if handoff is not None and handoff.to_node not in (None, obs.node.name):
        return Verdict(
            False,
            "wait_for_handoff",
            f"{handoff.from_node} is handing the key to {handoff.to_node}; waiting for it",
        )
    if handoff is not None and handoff.to_node == obs.node.name:
        # Named by a switchover: no waiting for rivals' positions, and none can outrank it
        # (the others wait for it; all of them stop at the same final position anyway).
        return Verdict(
            True,
            "take_over_after_handoff",
            f"{handoff.from_node} handed the key over at {format_lsn(handoff.final_lsn)} "
            f"and this node has replayed past it ({format_lsn(me.position)})",
        )

    stale = _stale_peers(obs)
    waited = obs.now - (
        obs.node.no_leader_since if obs.node.no_leader_since is not None else obs.now
    )
    if stale and waited < policy.election_wait_seconds:
        return Verdict(
            False,
            "wait_for_fresh_positions",
            f"waiting up to {policy.election_wait_seconds:g} s for fresh positions from "
            f"{', '.join(sorted(stale))} before comparing",
        )

    rivals = [c for c in _eligible_peers(cluster, obs.node.name, policy) if c.rank() < me.rank()]
    if rivals:
        best = min(rivals, key=Candidate.rank)
        return Verdict(False, "wait_for_better_candidate", _why_behind(best, me))
    if handoff is not None:
        return Verdict(
            True,
            "take_over_after_handoff",
            f"{handoff.from_node} released the key at {format_lsn(handoff.final_lsn)} and this "
            f"node has replayed past it ({format_lsn(me.position)})",
        )
    return Verdict(
        True,
        "take_over_expired_leader",
        f"no leader and this node is the best eligible candidate at {format_lsn(me.position)}",
    )


def _forced(obs: Observation, policy: Policy, wanted: str, allow_data_loss: bool) -> Verdict:
    """An operator named the next leader: only it may take the key, and it takes it at once
    (the lag limit too is waived with --allow-data-loss)."""
    if wanted != obs.node.name:
        return Verdict(
            False, "wait_for_forced_failover", f"the operator asked {wanted} to take over"
        )
    if allow_data_loss:
        policy = replace(
            policy,
            maximum_lag_on_failover_bytes=2**64,
            maximum_lag_seconds_on_failover=0,
            synchronous_mode="off",
        )
    me = _self_as_candidate(obs, policy)
    if isinstance(me, str):
        return Verdict(False, "cannot_take_forced_failover", me)
    return Verdict(
        True,
        "take_over_on_request",
        f"the operator asked this node to take over (pgha failover) at {format_lsn(me.position)}",
    )


def _self_as_candidate(obs: Observation, policy: Policy) -> Candidate | str:
    """This node as a candidate, or the reason it may not take the key."""
    cluster, local, node = obs.cluster, obs.local, obs.node
    assert cluster is not None
    never = policy.tags.never_promoted
    if never is not None:
        return f"this node is {never}"
    if node.election_backoff_until is not None and obs.now < node.election_backoff_until:
        left = node.election_backoff_until - obs.now
        why = node.sit_out_reason or "a failed promotion attempt"
        return f"sitting out the election for {left:.0f} s more after {why}"
    if not node.guard_alive:
        return "no live guard process to fence this node's Postgres: not taking the key"
    if local.run_state is not PgRunState.RUNNING or not local.in_recovery:
        return f"Postgres is {local.run_state.value}, not a running replica"
    if local.position is None or local.timeline is None:
        return "this replica's WAL position is unknown"
    if cluster.system_identifier and local.system_identifier != cluster.system_identifier:
        return (
            f"this data directory belongs to another cluster (system identifier "
            f"{local.system_identifier}, cluster {cluster.system_identifier})"
        )
    if local.timeline < cluster.latest_timeline:
        return f"on timeline {local.timeline}, behind the cluster's {cluster.latest_timeline}"
    handed_to_me = cluster.handoff is not None and cluster.handoff.to_node == node.name
    if not handed_to_me:  # a handoff's final LSN already proves this node has every byte
        unsynced = _not_synchronous(cluster, node.name, policy)
        if unsynced is not None:
            return unsynced
    lag = _lag_bytes(cluster, local.position)
    if lag is not None and lag > policy.maximum_lag_on_failover_bytes:
        return (
            f"{lag} bytes behind the last primary position "
            f"{format_lsn(cluster.last_primary_position)}, more than "
            f"maximum_lag_on_failover ({policy.maximum_lag_on_failover_bytes} bytes)"
        )
    late = _too_late(cluster, local.heartbeat_replayed_at, policy)
    if late is not None:
        return late
    handoff = cluster.handoff
    if handoff is not None and local.position <= handoff.final_lsn:
        return (
            f"replayed {format_lsn(local.position)}, not yet past the released primary's final "
            f"position {format_lsn(handoff.final_lsn)}"
        )
    return Candidate(node.name, local.position, policy.tags.failover_priority)


def _not_synchronous(cluster: ClusterView, name: str, policy: Policy) -> str | None:
    """In synchronous mode only the `sync` key's members (and its leader) may be promoted
    after a failure: anyone else may lack acknowledged commits (DESIGN rule 6, traps 5c/d)."""
    if policy.synchronous_mode == "off":
        return None
    if cluster.sync_unreadable:
        return "the sync key is unreadable: no automatic promotion in synchronous mode"
    sync = cluster.sync
    if sync is None:
        return (
            "synchronous mode, but no sync key says who holds every acknowledged commit: "
            "no automatic promotion"
        )
    if not sync.may_promote(name):
        listed = ", ".join(sync.standbys) or "none"
        return (
            f"not a synchronous standby (sync standbys of {sync.leader}: {listed}): it may "
            "lack acknowledged commits"
        )
    return None


def _lag_bytes(cluster: ClusterView, position: Lsn) -> int | None:
    if cluster.last_primary_position is None:
        return None
    return max(0, cluster.last_primary_position - position)


def lag_seconds(cluster: ClusterView, replayed_at: float | None) -> float | None:
    """The leader's newest published heartbeat stamp minus the newest one replayed: both
    from the primary's clock, so the replica's clock plays no part (traps 9d)."""
    published = cluster.last_primary_heartbeat
    if published is None or replayed_at is None:
        return None
    return max(0.0, published - replayed_at)


def _too_late(cluster: ClusterView, replayed_at: float | None, policy: Policy) -> str | None:
    """Why a replica is beyond maximum_lag_seconds_on_failover, or None (also when the limit
    is off, 0, or no leader ever published a heartbeat to measure against)."""
    limit = policy.maximum_lag_seconds_on_failover
    if limit <= 0 or cluster.last_primary_heartbeat is None:
        return None
    lag = lag_seconds(cluster, replayed_at)
    if lag is None:
        return (
            "no heartbeat row of the primary replayed yet, so the lag in seconds is unknown "
            f"(maximum_lag_seconds_on_failover is {limit:g} s)"
        )
    if lag > limit:
        return (
            f"{lag:.1f} s behind the last heartbeat the primary published, more than "
            f"maximum_lag_seconds_on_failover ({limit:g} s)"
        )
    return None


def peer_is_eligible(member: MemberInfo, cluster: ClusterView, policy: Policy) -> bool:
    """A running replica of this cluster on the latest timeline within the lag limits, not
    tagged away from promotion. A member of another cluster (system identifier) is never a
    rival, whatever position it claims."""
    if member.tags.never_promoted is not None or member.sits_out:
        return False
    sysid = member.system_identifier
    if sysid is not None and cluster.system_identifier and sysid != cluster.system_identifier:
        return False
    if _not_synchronous(cluster, member.name, policy) is not None:
        return False
    if not member.running or not member.in_recovery:
        return False
    if member.position is None or member.timeline is None:
        return False
    if member.timeline < cluster.latest_timeline:
        return False
    lag = _lag_bytes(cluster, member.position)
    if lag is not None and lag > policy.maximum_lag_on_failover_bytes:
        return False
    return _too_late(cluster, member.heartbeat_replayed_at, policy) is None


def _eligible_peers(cluster: ClusterView, me: str, policy: Policy) -> list[Candidate]:
    return [
        Candidate(m.name, m.position, m.tags.failover_priority)
        for m in cluster.members.values()
        if m.name != me and m.position is not None and peer_is_eligible(m, cluster, policy)
    ]


def _stale_peers(obs: Observation) -> list[str]:
    """Live peers that have not yet published a position after the leader vanished."""
    cluster = obs.cluster
    assert cluster is not None
    since = obs.node.last_leader_revision
    return [
        m.name
        for m in cluster.members.values()
        if m.name != obs.node.name
        and m.running
        and (m.no_leader_revision is None or m.no_leader_revision <= since)
    ]


def _why_behind(best: Candidate, me: Candidate) -> str:
    if best.position != me.position:
        return f"{best.name} is ahead: {format_lsn(best.position)} vs {format_lsn(me.position)}"
    if best.priority != me.priority:
        return (
            f"{best.name} is at the same position {format_lsn(me.position)} with a higher "
            f"failover_priority ({best.priority} vs {me.priority})"
        )
    return (
        f"{best.name} is at the same position {format_lsn(me.position)} with the same "
        f"priority and sorts first by name"
    )
