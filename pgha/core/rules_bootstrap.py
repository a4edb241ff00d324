"""The rules for a cluster or a member that has no data yet (DESIGN section 4, traps 13).

The winner takes `initialize` and the leader key in one transaction before initdb, so its
Postgres is never read-write without the key, and a winner that dies leaves nothing: its
lease removes both keys. The others clone only once the system identifier is recorded.
"""

from __future__ import annotations

from pgha.core.actions import (
    ClaimInitialize,
    Clone,
    FinishInitialize,
    InitDb,
    StartPostgres,
)
from pgha.core.decision import Decision, decision
from pgha.core.model import ClusterView, InitState, Observation, PgRunState, Policy


def refuse_unparsable_initialize(obs: Observation, policy: Policy) -> Decision | None:
    if obs.cluster is None or obs.cluster.init_state is not InitState.GARBAGE:
        return None
    if obs.holds_key:
        return None  # a leader is not joining: it keeps renewing and serving
    return decision(
        "refuse_unparsable_initialize",
        "the initialize key holds something unreadable; not joining or bootstrapping until an "
        "operator repairs it",
    )


def refuse_foreign_data(obs: Observation, policy: Policy) -> Decision | None:
    cluster, local = obs.cluster, obs.local
    if cluster is None or cluster.init_state is not InitState.DONE or obs.holds_key:
        return None  # a leader is not joining: it keeps renewing and serving
    if local.system_identifier is None or cluster.system_identifier is None:
        return None
    if local.system_identifier == cluster.system_identifier:
        return None
    return decision(
        "refuse_foreign_data",
        f"this data directory belongs to another cluster (system identifier "
        f"{local.system_identifier}, this cluster is {cluster.system_identifier}); not joining",
    )


def race_to_initialize(obs: Observation, policy: Policy) -> Decision | None:
    cluster, local = obs.cluster, obs.local
    if cluster is None or cluster.init_state is not InitState.ABSENT:
        return None
    if cluster.leader is not None:
        return None
    if local.run_state is not PgRunState.NO_DATA:
        return decision(
            "refuse_unknown_data",
            "the cluster is not initialized but this node's data directory already holds a "
            f"database (system identifier {local.system_identifier or 'unknown'}); move it "
            "aside or remove it to bootstrap a new cluster",
        )
    return decision(
        "race_to_initialize",
        "the cluster is not initialized: claiming it, then running initdb as its first primary",
        ClaimInitialize(),
        InitDb(),
        StartPostgres(as_primary=True),
        FinishInitialize(),
    )


def wait_for_bootstrap(obs: Observation, policy: Policy) -> Decision | None:
    cluster = obs.cluster
    if cluster is None or cluster.init_state is not InitState.BOOTSTRAPPING:
        return None
    if cluster.init_node == obs.node.name and obs.holds_key:
        return None  # our own bootstrap, resumed by the leader rules
    return decision(
        "wait_for_bootstrap",
        f"{cluster.init_node or 'another node'} is bootstrapping the cluster; waiting for it",
    )


def clone_from_leader(obs: Observation, policy: Policy) -> Decision | None:
    cluster = obs.cluster
    if cluster is None or obs.local.run_state is not PgRunState.NO_DATA:
        return None
    leader = cluster.leader
    source = cluster.members.get(leader.holder) if leader is not None else None
    if leader is None or source is None or not source.running:
        return decision(
            "wait_for_leader_to_clone",
            "this node has no data and there is no running leader to clone from; waiting",
        )
    source_name, from_what = clone_source(cluster, obs.node.name)
    return decision(
        "clone_from_leader",
        f"this node has no data: cloning it from {from_what}",
        Clone(source_name),
        StartPostgres(upstream=leader.holder),
    )


def clone_source(cluster: ClusterView, me: str) -> tuple[str, str]:
    """Whom to clone from, and how to say so: a healthy replica tagged `clonefrom` (one
    streaming on the latest timeline, so its copy is current), the furthest ahead if
    several; otherwise the leader, which takes the load of a base backup off the others.
    The clone follows the leader either way. Only called while a leader exists."""
    assert cluster.leader is not None
    holder = cluster.leader.holder
    preferred = [
        m
        for m in cluster.members.values()
        if m.tags.clonefrom
        and m.name not in (me, holder)
        and m.host
        and m.running
        and m.in_recovery
        and m.streaming
        and m.position is not None
        and m.timeline is not None
        and m.timeline >= cluster.latest_timeline
        and m.system_identifier in (None, cluster.system_identifier)
    ]
    if not preferred:
        return holder, f"the leader {holder}"
    best = min(preferred, key=lambda m: (-(m.position or 0), m.name))
    return best.name, f"{best.name}, a replica tagged clonefrom (the leader is {holder})"
