"""The rules for a node that does not hold the key: follow the leader, or elect one.

A replica that replayed past the point where the leader's timeline forked cannot follow:
it is rewound, and only against a leader that has checkpointed since its promotion
(otherwise pg_rewind on PostgreSQL 15 silently does nothing, traps 10a). A failed rewind
re-clones only when the operator allowed it; the old data is moved aside, never deleted.
"""

from __future__ import annotations

from pgha.core.actions import (
    AcquireLeader,
    AppendHistory,
    Clone,
    FollowLeader,
    Promote,
    Rewind,
    RunPrePromoteHook,
    StartPostgres,
    StopPostgres,
)
from pgha.core.decision import Decision, decision
from pgha.core.election import elect
from pgha.core.model import (
    ClusterView,
    LocalPostgres,
    MemberInfo,
    Observation,
    PgRunState,
    Policy,
    format_lsn,
)
from pgha.core.rules_bootstrap import clone_source
from pgha.core.sync import promotion_sync_reset


def follow(obs: Observation, policy: Policy) -> Decision | None:
    """Another node holds the key: be its replica."""
    cluster = obs.cluster
    if cluster is None or cluster.leader is None or obs.holds_key:
        return None
    name = cluster.leader.holder
    if name == obs.node.name and not cluster.leader.leased:
        # Someone wrote our name without a lease (rebind_own_key declined it): never lead or
        # promote on it, and following ourselves is no better (traps 14).
        return decision(
            "refuse_foreign_leader_key",
            f"the leader key names this node but is bound to no lease (term "
            f"{cluster.leader.term}): no agent wrote it; not leading or promoting on it "
            "until an operator removes it",
        )
    leader = cluster.members.get(name)
    local = obs.local
    if local.run_state in (PgRunState.STARTING, PgRunState.UNREACHABLE):
        return decision("wait_for_local_postgres", f"Postgres is {local.run_state.value}; waiting")
    diverged = _diverged_from(local, cluster, leader)
    if diverged is not None:
        return _rewind_or_clone(obs, policy, name, leader, diverged)
    if local.run_state is PgRunState.STOPPED:
        return decision(
            "start_as_replica",
            f"Postgres is stopped: starting it as a replica of the leader {name}",
            StartPostgres(upstream=name),
        )
    if local.upstream != name:
        return decision(
            "follow_new_leader",
            f"streaming from {local.upstream or 'nobody'}, but the leader is {name}: repointing",
            FollowLeader(name),
        )
    return decision("stream_from_leader", f"replica streaming from the leader {name}")


def _diverged_from(
    local: LocalPostgres, cluster: ClusterView, leader: MemberInfo | None
) -> str | None:
    """Why this node cannot simply follow the leader's timeline, or None if it can."""
    if local.timeline is None:
        return None
    leader_timeline = (
        leader.timeline if leader is not None and leader.timeline else cluster.latest_timeline
    )
    if local.timeline > leader_timeline:
        return f"on timeline {local.timeline}, ahead of the leader's {leader_timeline}"
    crashed_primary = local.was_primary and not local.stopped_cleanly
    if local.timeline == leader_timeline and crashed_primary:
        # Another node leads, so it was promoted after this primary died: its timeline is
        # newer than it says yet (its record or `history` is not written yet). Starting as
        # its replica now would replay past the fork; wait for the rewind instead.
        return (
            f"was a primary on timeline {local.timeline} and did not shut down cleanly, and "
            f"another node leads since"
        )
    if local.timeline == leader_timeline:
        return None
    fork = cluster.fork_point(local.timeline)
    if local.was_primary and not local.stopped_cleanly:
        # After a crash its WAL may run past the last checkpoint: assume it passed the fork.
        return f"was a primary on timeline {local.timeline} and did not shut down cleanly"
    if fork is not None and local.position is not None and local.position > fork:
        return (
            f"replayed {format_lsn(local.position)} on timeline {local.timeline}, past the "
            f"fork point {format_lsn(fork)} of timeline {local.timeline + 1}"
        )
    if fork is None and local.was_primary:
        return f"was a primary on timeline {local.timeline} and the fork point is unknown"
    return None


def _rewind_or_clone(
    obs: Observation, policy: Policy, name: str, leader: MemberInfo | None, why: str
) -> Decision:
    stop = (StopPostgres("fast"),) if obs.local.running else ()
    if obs.node.rewind_failed:
        if policy.remove_data_directory_on_rewind_failure:
            assert obs.cluster is not None
            source_name, from_what = clone_source(obs.cluster, obs.node.name)
            return decision(
                "clone_after_failed_rewind",
                f"{why}; pg_rewind failed before: moving the data directory aside and cloning "
                f"from {from_what}",
                *stop,
                Clone(source_name),
                StartPostgres(upstream=name),
            )
        return decision(
            "rewind_failed",
            f"{why}; pg_rewind failed and remove_data_directory_on_rewind_failure is off: "
            f"an operator must re-clone this node with `pgha reinit {obs.node.name}`",
            *stop,
        )
    if leader is None or not leader.checkpoint_after_promote:
        return decision(
            "wait_for_leader_checkpoint",
            f"{why}; waiting for {name} to checkpoint after its promotion before rewinding",
            *stop,
        )
    if obs.node.rewind_blocked is not None:
        return decision(
            "rewind_preflight_failed",
            f"{why}; pg_rewind cannot run yet ({obs.node.rewind_blocked}); checking again "
            "every cycle",
            *stop,
            Rewind(name),
            StartPostgres(upstream=name),
        )
    return decision(
        "rewind_to_follow",
        f"{why}: rewinding from {name}, then following it",
        *stop,
        Rewind(name),
        StartPostgres(upstream=name),
    )


def elect_leader(obs: Observation, policy: Policy) -> Decision | None:
    """Nobody holds the key: the best eligible replica takes it; the others say why not."""
    cluster = obs.cluster
    if cluster is None or cluster.leader is not None:
        return None
    local = obs.local
    if local.run_state is PgRunState.STOPPED:
        return decision(
            "start_in_recovery",
            "no leader and Postgres is stopped: starting it read-only to take part in the election",
            StartPostgres(upstream=None),
        )
    verdict = elect(obs, policy)
    if not verdict.take_key:
        return decision(verdict.code, f"no leader; {verdict.reason}")
    return decision(
        verdict.code,
        verdict.reason,
        AcquireLeader(),
        RunPrePromoteHook(),
        *promotion_sync_reset(policy),
        Promote(),
        AppendHistory(verdict.reason),
    )
