"""The rules that come before everything else, pause included (traps 4).

A leader past its fencing deadline stops writing; a node whose Postgres is read-write
while the key is not its own stops writing. Neither waits for anything.
"""

from __future__ import annotations

from pgha.core.actions import Action, ForgetLeadership, RebindLeader, RenewLeader, StopPostgres
from pgha.core.decision import Decision, decision
from pgha.core.model import Observation, Policy


def fence_past_deadline(obs: Observation, policy: Policy) -> Decision | None:
    """No renewal succeeded in time: the lease may expire any moment, so stop writing now."""
    if not obs.past_fencing_deadline:
        return None
    reason = (
        f"no lease renewal succeeded before the fencing deadline (term {obs.node.claimed_term}); "
        "the lease may expire and a replica may be promoted"
    )
    if obs.local.running:
        return decision(
            "fence_past_deadline",
            reason + ": stopping Postgres",
            StopPostgres("fast", fence=True),
            ForgetLeadership(),
        )
    return decision("fence_past_deadline", reason, ForgetLeadership())


def rebind_own_key(obs: Observation, policy: Policy) -> Decision | None:
    """Our name is on the key but bound to a lease that is not ours (this agent restarted)."""
    cluster = obs.cluster
    if cluster is None or cluster.leader is None or obs.node.lease_id is None:
        return None
    leader = cluster.leader
    if leader.holder != obs.node.name or leader.lease_id == obs.node.lease_id:
        return None
    if not leader.leased:
        return None  # someone wrote our name without a lease: not ours to lead on (traps 14)
    if leader.term == obs.node.released_term:
        return None  # we gave this term up; never lead in it again (traps 1)
    return decision(
        "rebind_own_key",
        f"the leader key names this node (term {leader.term}) but is bound to a previous "
        "process's lease; binding it to ours",
        RebindLeader(),
    )


def step_down_after_losing_key(obs: Observation, policy: Policy) -> Decision | None:
    """Read-write without holding the key: someone else may be promoted, so stop writing."""
    if not obs.local.writable or obs.holds_key:
        return None
    if obs.cluster is None:
        if obs.node.claimed_term is not None:
            return None  # a leader rides out an etcd outage until its fencing deadline
        who = "etcd cannot be read and this node has no claim on the leader key"
    elif obs.cluster.leader is None:
        who = "nobody holds the leader key"
    else:
        leader = obs.cluster.leader
        who = f"{leader.holder} holds the leader key (term {leader.term})"
    actions: list[Action] = [StopPostgres("fast", fence=True)]
    if obs.node.claimed_term is not None:
        actions.append(ForgetLeadership())
    return decision(
        "step_down_after_losing_key",
        f"{who} while this node's Postgres is read-write: stopping it",
        *actions,
    )


def forget_lost_key(obs: Observation, policy: Policy) -> Decision | None:
    """We thought we held the key, the snapshot says otherwise, and Postgres is not writable."""
    if obs.cluster is None or obs.node.claimed_term is None or obs.holds_key:
        return None
    return decision(
        "forget_lost_key",
        f"the leader key is no longer this node's (term {obs.node.claimed_term})",
        ForgetLeadership(),
    )


def ride_out_store_outage(obs: Observation, policy: Policy) -> Decision | None:
    """etcd cannot be read: a leader keeps trying to renew until its deadline; others wait."""
    if obs.cluster is not None:
        return None
    error = obs.store_error or "etcd unreachable"
    if obs.node.claimed_term is not None and obs.node.fencing_deadline is not None:
        left = obs.node.fencing_deadline - obs.now
        return decision(
            "renew_through_store_outage",
            f"cannot read the cluster ({error}); still leader for {left:.1f} s until the "
            "fencing deadline unless a renewal succeeds",
            RenewLeader(),
        )
    return decision(
        "wait_for_store", f"cannot read the cluster ({error}); changing nothing until it answers"
    )


def paused(obs: Observation, policy: Policy) -> Decision | None:
    """Maintenance mode: keep the key if held, change nothing else. Fencing already ran."""
    if obs.cluster is None or not obs.cluster.paused:
        return None
    if obs.holds_key:
        return decision(
            "paused", "cluster is paused: renewing the leader key, changing nothing", RenewLeader()
        )
    return decision("paused", "cluster is paused: no failover, promotion, restart or rewind")
