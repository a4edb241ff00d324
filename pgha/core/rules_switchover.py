"""The planned switchover, as rules of the leader (DESIGN section 4, traps 8).

`pgha switchover` writes the request into the `switchover` key; the leader serves it when
its time has come: it checks the candidate, marks the request `handing_over`, shuts
Postgres down cleanly (which ships all WAL to the connected standbys), and in one txn
deletes `leader` and writes the `handoff` with the shutdown checkpoint as final LSN. Only
the candidate may then take the key, once it has replayed past that LSN. Whoever leads
next closes the request: `done` if the candidate leads, `failed` otherwise (the handoff
lapsed and the old primary, which holds every byte, led again).

The schedule is a rule here, not a timer in one agent: a timer would die with its agent.
"""

from __future__ import annotations

from pgha.core.actions import ReleaseLeader, RenewLeader, StopPostgres, UpdateSwitchover
from pgha.core.decision import Decision, decision
from pgha.core.election import Candidate, peer_is_eligible
from pgha.core.model import (
    ClusterView,
    Observation,
    PgRunState,
    Policy,
    SwitchoverRequest,
    SwitchoverState,
    format_lsn,
)


def serve_switchover(obs: Observation, policy: Policy) -> Decision | None:
    """As a healthy leader: close a finished request, or hand over for a due one."""
    cluster = obs.cluster
    if cluster is None or not obs.holds_key:
        return None
    request = cluster.switchover
    local = obs.local
    if request is None or not request.open:
        return None
    if local.run_state is not PgRunState.RUNNING or local.in_recovery:
        return None  # the leader rules first make this a healthy primary
    if request.state is SwitchoverState.HANDING_OVER:
        return _close(obs, request)
    if request.at is not None and obs.wall_now < request.at:
        return None
    me = obs.node.name
    if request.from_node not in (None, me):
        return _fail(
            f"switchover {request.id} was requested from {request.from_node}, but {me} leads "
            "now: refusing it, request a new one"
        )
    chosen = switchover_candidate(cluster, me, request.to_node, policy)
    if isinstance(chosen, str):
        return _fail(f"switchover {request.id} refused: {chosen}")
    return decision(
        "hand_over",
        f"switchover {request.id}: {chosen.name} is streaming at "
        f"{format_lsn(chosen.position)}; stopping Postgres cleanly, then handing it the key",
        RenewLeader(),
        UpdateSwitchover(SwitchoverState.HANDING_OVER.value, candidate=chosen.name),
        StopPostgres("fast"),
        ReleaseLeader(to_node=chosen.name, after_clean_stop=True),
    )


def _close(obs: Observation, request: SwitchoverRequest) -> Decision:
    me, term = obs.node.name, obs.node.claimed_term
    if request.candidate == me and request.term != term:
        return decision(
            "finish_switchover",
            f"switchover {request.id} done: {me} leads in term {term}",
            RenewLeader(),
            UpdateSwitchover(SwitchoverState.DONE.value, candidate=me, reason="done"),
        )
    if request.term == term:
        why = (
            f"{me} began handing over in term {term} but still leads with Postgres "
            "read-write (the clean stop or the release failed)"
        )
    else:
        why = (
            f"the handoff to {request.candidate} lapsed before it took the key; "
            f"{me} leads in term {term}"
        )
    return _fail(f"switchover {request.id} failed: {why}")


def _fail(reason: str) -> Decision:
    return decision(
        "refuse_switchover",
        reason,
        RenewLeader(),
        UpdateSwitchover(SwitchoverState.FAILED.value, reason=reason),
    )


def switchover_candidate(
    cluster: ClusterView, leader: str, wanted: str | None, policy: Policy
) -> Candidate | str:
    """The replica to hand over to: `wanted` if it qualifies, else the best one; or why none.

    A candidate must stream from the leader right now (a clean shutdown ships WAL only to
    the standbys connected at that moment) and be eligible for a failover.
    """
    if wanted is not None and wanted == leader:
        return f"{wanted} is already the leader"
    if wanted is not None and wanted not in cluster.members:
        return f"no member named {wanted} (members: {', '.join(sorted(cluster.members))})"
    found: list[Candidate] = []
    reasons: list[str] = []
    for member in cluster.members.values():
        if member.name == leader or (wanted is not None and member.name != wanted):
            continue
        if member.tags.never_promoted is not None:
            reasons.append(f"{member.name} is {member.tags.never_promoted}")
        elif not member.streaming or member.upstream != leader:
            reasons.append(f"{member.name} does not stream from {leader}")
        elif member.system_identifier not in (None, cluster.system_identifier):
            reasons.append(
                f"{member.name} reports another cluster's system identifier "
                f"({member.system_identifier}, this cluster is {cluster.system_identifier})"
            )
        elif member.position is None or not peer_is_eligible(member, cluster, policy):
            seconds = policy.maximum_lag_seconds_on_failover
            also = f" and {seconds:g} s" if seconds > 0 else ""
            reasons.append(
                f"{member.name} is not a healthy replica on the latest timeline within "
                f"maximum_lag_on_failover ({policy.maximum_lag_on_failover_bytes} bytes){also}"
            )
        else:
            found.append(Candidate(member.name, member.position, member.tags.failover_priority))
    if not found:
        return "; ".join(reasons) if reasons else "no replica to hand over to"
    return min(found, key=Candidate.rank)
