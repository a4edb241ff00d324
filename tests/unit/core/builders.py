"""Small builders so that each core test case reads in a few lines.

`scene()` makes a three-node cluster seen from pg1 with a healthy leader pg2; keyword
arguments change just what a case is about.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pgha.core.actions import Action
from pgha.core.decision import Decision
from pgha.core.model import (
    ClusterView,
    InitState,
    LeaderInfo,
    LocalPostgres,
    MemberInfo,
    NodeMemory,
    Observation,
    PgRunState,
    Policy,
    Tags,
    TimelineSwitch,
)

NOW = 10_000.0
LEASE = 0xA1
MiB = 1024 * 1024


def member(name: str, **changes: Any) -> MemberInfo:
    base = MemberInfo(
        name=name,
        host="127.0.0.1",
        port=5432,
        role="replica",
        running=True,
        in_recovery=True,
        timeline=2,
        position=100 * MiB,
        streaming=True,
        upstream="pg2",
        checkpoint_after_promote=True,
        system_identifier="7300",
    )
    return replace(base, **changes)


def primary_member(name: str, **changes: Any) -> MemberInfo:
    return member(name, role="primary", in_recovery=False, streaming=False, **changes)


def leader(holder: str = "pg2", term: int = 50, lease_id: int = 0xB2) -> LeaderInfo:
    return LeaderInfo(holder=holder, term=term, lease_id=lease_id, mod_revision=term + 5)


def cluster(**changes: Any) -> ClusterView:
    base = ClusterView(
        revision=100,
        leader=leader(),
        members={
            "pg1": member("pg1"),
            "pg2": primary_member("pg2"),
            "pg3": member("pg3"),
        },
        init_state=InitState.DONE,
        system_identifier="7300",
        last_primary_position=100 * MiB,
        timeline_switches=(TimelineSwitch(2, 90 * MiB),),
    )
    return replace(base, **changes)


def replica(**changes: Any) -> LocalPostgres:
    base = LocalPostgres(
        run_state=PgRunState.RUNNING,
        in_recovery=True,
        timeline=2,
        position=100 * MiB,
        upstream="pg2",
        system_identifier="7300",
    )
    return replace(base, **changes)


def primary(**changes: Any) -> LocalPostgres:
    return replica(in_recovery=False, upstream=None, **changes)


def stopped(**changes: Any) -> LocalPostgres:
    return replica(run_state=PgRunState.STOPPED, upstream=None, **changes)


NO_DATA = LocalPostgres(run_state=PgRunState.NO_DATA, timeline=None, position=None)


def memory(**changes: Any) -> NodeMemory:
    base = NodeMemory(name="pg1", lease_id=LEASE, last_leader_revision=99)
    return replace(base, **changes)


def as_leader(term: int = 60, deadline: float = NOW + 15, **changes: Any) -> NodeMemory:
    """pg1's memory while it believes it holds the key in `term`."""
    return memory(claimed_term=term, fencing_deadline=deadline, **changes)


def my_key(term: int = 60) -> LeaderInfo:
    return LeaderInfo(holder="pg1", term=term, lease_id=LEASE, mod_revision=term + 5)


def observe(
    local: LocalPostgres | None = None,
    view: ClusterView | str | None = "default",
    node: NodeMemory | None = None,
    now: float = NOW,
    store_error: str | None = None,
) -> Observation:
    return Observation(
        now=now,
        node=node if node is not None else memory(),
        local=local if local is not None else replica(),
        cluster=cluster() if view == "default" else view,  # type: ignore[arg-type]
        store_error=store_error,
    )


def leaderless(**changes: Any) -> ClusterView:
    """pg2 is gone; pg1 and pg3 published fresh positions after seeing the key missing."""
    members = {
        "pg1": member("pg1", no_leader_revision=120),
        "pg3": member("pg3", no_leader_revision=121, position=99 * MiB + 512 * 1024),
    }
    defaults: dict[str, Any] = {"leader": None, "members": members, "revision": 130}
    defaults.update(changes)
    return cluster(**defaults)


POLICY = Policy(ttl_seconds=30, loop_wait_seconds=10, retry_timeout_seconds=7)
NOFAILOVER = replace(POLICY, tags=Tags(nofailover=True))


def assert_plan(made: Decision, code: str, plan: tuple[type[Action] | Action, ...]) -> None:
    """The decision has this code and these actions in order (a type matches any instance)."""
    assert made.code == code, made.describe()
    assert len(made.actions) == len(plan), made.describe()
    for actual, expected in zip(made.actions, plan, strict=True):
        if isinstance(expected, type):
            assert isinstance(actual, expected), made.describe()
        else:
            assert actual == expected, made.describe()
