"""The rules for the node that holds the leader key (DESIGN section 4).

Renewal comes first in every plan: a leader must keep its lease before anything slow.
The key is given up only after a confirmed stop (DESIGN rule 7).
"""

from __future__ import annotations

from pgha.core.actions import (
    AppendHistory,
    ClearFailover,
    Promote,
    ReleaseLeader,
    RenewLeader,
    RunPrePromoteHook,
    StartPostgres,
    StopPostgres,
)
from pgha.core.decision import Decision, decision
from pgha.core.model import Observation, PgRunState, Policy
from pgha.core.sync import promotion_sync_reset, sync_step, sync_summary


def lead(obs: Observation, policy: Policy) -> Decision | None:
    """Dispatch on the local Postgres while holding the key."""
    if not obs.holds_key:
        return None
    term = obs.node.claimed_term
    state = obs.local.run_state
    if obs.node.pre_promote_failed_term == term and not obs.local.writable:
        return decision(
            "give_up_key_after_failed_pre_promote",
            f"{obs.node.sit_out_reason or 'the pre_promote hook failed'}: not promoting; "
            f"giving the key (term {term}) back and sitting out the election for one ttl",
            ReleaseLeader(never_promoted=True),
        )
    unhealthy = _unhealthy_primary(obs, policy)
    if unhealthy is not None:
        return unhealthy
    if state is PgRunState.RUNNING and not obs.local.in_recovery:
        if obs.cluster is not None and obs.cluster.failover is not None:
            return decision(
                "finish_forced_failover",
                f"leader in term {term}, Postgres read-write: the failover request is served",
                RenewLeader(),
                ClearFailover(),
            )
        step = None if obs.cluster is None or obs.cluster.paused else sync_step(obs, policy)
        if step is not None:
            action, why = step
            return decision(
                "manage_sync_standbys",
                f"leader in term {term}, Postgres read-write; {why}",
                RenewLeader(),
                action,
            )
        return decision(
            "renew_as_primary",
            f"leader in term {term}, Postgres read-write{sync_summary(obs, policy)}",
            RenewLeader(),
        )
    if state is PgRunState.RUNNING:
        return decision(
            "promote_held_key",
            f"holds the leader key (term {term}) while Postgres is read-only: promoting",
            RenewLeader(),
            RunPrePromoteHook(),
            *promotion_sync_reset(policy),
            Promote(),
            AppendHistory(f"{obs.node.name} promoted in term {term}"),
        )
    if state is PgRunState.STARTING:
        # Crash recovery counts against primary_start_timeout too, as in Patroni: a
        # primary that never finishes starting must not hold the key for ever.
        down_for = _down_for(obs)
        if down_for >= policy.primary_start_timeout_seconds:
            return _release_after_start_timeout(obs, policy)
        return decision(
            "wait_for_primary_start",
            f"leader in term {term}; Postgres is starting (crash recovery?) for "
            f"{down_for:.0f} s of primary_start_timeout {policy.primary_start_timeout_seconds:g} s",
            RenewLeader(),
        )
    if state is PgRunState.NO_DATA:
        return decision(
            "release_without_data",
            "holds the leader key but the data directory is empty: releasing the key",
            StopPostgres("immediate", fence=True),
            ReleaseLeader(),
        )
    return _restart_or_release(obs, policy)


def _unhealthy_primary(obs: Observation, policy: Policy) -> Decision | None:
    """Gray failures: a Postgres that runs but does not answer, or answers but cannot commit
    (hung disk, frozen postmaster), is not healthy. Keep the key for primary_unhealthy_timeout
    (a slow disk may recover), then kill Postgres and only then release the key (DESIGN rule
    7): a frozen postmaster ignores pg_ctl stop, and woken later it would serve its open
    sessions read-write beside the new primary."""
    local = obs.local
    if local.run_state is PgRunState.UNREACHABLE:
        what = "answered its probe"
    elif local.run_state is PgRunState.RUNNING and local.commit_failure is not None:
        what = "committed"
    else:
        return None
    since = obs.node.primary_unhealthy_since
    unhealthy_for = 0.0 if since is None else max(0.0, obs.now - since)
    timeout = policy.primary_unhealthy_timeout_seconds
    failure = local.commit_failure or "no answer"
    if unhealthy_for < timeout:
        return decision(
            "renew_while_primary_unhealthy",
            f"leader in term {obs.node.claimed_term}; Postgres has not {what} for "
            f"{unhealthy_for:.0f} s of primary_unhealthy_timeout {timeout:g} s ({failure})",
            RenewLeader(),
        )
    return decision(
        "release_unhealthy_primary",
        f"Postgres has not {what} for {unhealthy_for:.0f} s, past primary_unhealthy_timeout "
        f"({timeout:g} s) ({failure}): killing it, then releasing the key so that a healthy "
        "replica takes over",
        # Renew first: if some process survives SIGKILL (stuck in the kernel), the stop fails,
        # the release never runs, and this node keeps the key rather than letting it lapse
        # while its Postgres may still commit (DESIGN rule 7).
        RenewLeader(),
        StopPostgres("immediate", fence=True),
        ReleaseLeader(),
    )


def _down_for(obs: Observation) -> float:
    """Seconds since this leader first saw its Postgres not running (0 if it runs)."""
    down_since = obs.node.primary_down_since
    return 0.0 if down_since is None else obs.now - down_since


def _restart_or_release(obs: Observation, policy: Policy) -> Decision:
    down_for = _down_for(obs)
    if down_for < policy.primary_start_timeout_seconds:
        return decision(
            "restart_crashed_primary",
            f"leader in term {obs.node.claimed_term} but Postgres is stopped "
            f"(down {down_for:.0f} s of primary_start_timeout "
            f"{policy.primary_start_timeout_seconds:g} s): starting it in place",
            RenewLeader(),
            StartPostgres(as_primary=True),
        )
    return _release_after_start_timeout(obs, policy)


def _release_after_start_timeout(obs: Observation, policy: Policy) -> Decision:
    return decision(
        "release_after_start_timeout",
        f"Postgres did not come back within primary_start_timeout "
        f"({policy.primary_start_timeout_seconds:g} s): confirming it is stopped, then "
        "releasing the key so that a replica takes over",
        StopPostgres("immediate", fence=True),
        ReleaseLeader(final_lsn=obs.local.position if obs.local.stopped_cleanly else None),
    )
