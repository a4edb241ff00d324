"""Operator requests to one member: `pgha restart NAME` and `pgha reinit NAME` (traps 18).

The CLI writes `requests/<member>`; that member's agent consumes it with a
compare-and-delete before acting, so a request runs at most once, and answers in its
member record. These rules come after fencing and before `paused`: an operator may restart
or re-clone a node during maintenance. A leader's plan still starts with its renewal.
"""

from __future__ import annotations

from pgha.core.actions import (
    Action,
    Clone,
    ConsumeRequest,
    RenewLeader,
    StartPostgres,
    StopPostgres,
)
from pgha.core.decision import Decision, decision
from pgha.core.model import MemberRequest, Observation, PgRunState, Policy
from pgha.core.rules_bootstrap import clone_source


def serve_request(obs: Observation, policy: Policy) -> Decision | None:
    cluster = obs.cluster
    if cluster is None:
        return None
    request = cluster.requests.get(obs.node.name)
    if request is None:
        return None
    if request.action == "restart":
        return _restart(obs, request)
    if request.action == "reinit":
        return _reinit(obs, request)
    return _refuse(obs, request, f"unknown action {request.action!r}: expected restart or reinit")


def _restart(obs: Observation, request: MemberRequest) -> Decision:
    local = obs.local
    if local.run_state is PgRunState.NO_DATA:
        return _refuse(obs, request, "there is no data directory to start: use `pgha reinit`")
    stop = (StopPostgres("fast"),) if local.running else ()
    consume = ConsumeRequest(request.id, request.action)
    if obs.holds_key:
        if local.running and local.in_recovery:
            return _refuse(obs, request, "this leader is still being promoted: try again")
        return decision(
            "restart_on_request",
            f"{_who(request)}: restarting Postgres as the primary (term "
            f"{obs.node.claimed_term}, the key stays held)",
            RenewLeader(),
            consume,
            *stop,
            StartPostgres(as_primary=True),
        )
    leader = obs.cluster.leader if obs.cluster is not None else None
    upstream = leader.holder if leader is not None else None
    return decision(
        "restart_on_request",
        f"{_who(request)}: restarting Postgres as a replica of {upstream or 'nobody yet'}",
        consume,
        *stop,
        StartPostgres(upstream=upstream),
    )


def _reinit(obs: Observation, request: MemberRequest) -> Decision:
    cluster = obs.cluster
    assert cluster is not None
    leader = cluster.leader
    if obs.holds_key or (leader is not None and leader.holder == obs.node.name):
        return _refuse(obs, request, "this node is the leader: switch over to another member first")
    if leader is None:
        return _refuse(obs, request, "there is no leader to clone from")
    source = cluster.members.get(leader.holder)
    if source is None or not source.host:
        return _refuse(obs, request, f"the leader {leader.holder} has published no address")
    stop = (StopPostgres("fast"),) if obs.local.running else ()
    source_name, from_what = clone_source(cluster, obs.node.name)
    return decision(
        "reinit_on_request",
        f"{_who(request)}: moving the data directory aside and cloning from {from_what}",
        ConsumeRequest(request.id, request.action),
        *stop,
        Clone(source_name),
        StartPostgres(upstream=leader.holder),
    )


def _refuse(obs: Observation, request: MemberRequest, why: str) -> Decision:
    renew: tuple[Action, ...] = (RenewLeader(),) if obs.holds_key else ()
    return decision(
        "refuse_request",
        f"{_who(request)} refused: {why}",
        *renew,
        ConsumeRequest(request.id, request.action, refused=why),
    )


def _who(request: MemberRequest) -> str:
    by = f" by {request.by}" if request.by else ""
    why = f": {request.reason}" if request.reason else ""
    return f"pgha {request.action} ({request.id}{by}{why})"
