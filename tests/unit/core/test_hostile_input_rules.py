"""What the rules make of values someone else wrote into etcd (issue 7 item 4, traps 14).

A `leader` value no agent wrote (bound to no lease) is never led or promoted on; a member
of another cluster never blocks an election; an unreadable `initialize` stops joining but
never a healthy leader.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgha.core.actions import (
    AcquireLeader,
    Action,
    AppendHistory,
    ForgetLeadership,
    Promote,
    RenewLeader,
    RunPrePromoteHook,
    StopPostgres,
)
from pgha.core.decide import decide
from pgha.core.model import InitState, Observation
from pgha.core.rules_switchover import switchover_candidate
from tests.unit.core.builders import (
    POLICY,
    MiB,
    as_leader,
    assert_plan,
    cluster,
    leader,
    leaderless,
    member,
    my_key,
    observe,
    primary,
    replica,
)

FENCE = StopPostgres("fast", fence=True)
TAKE_OVER = (AcquireLeader(), RunPrePromoteHook(), Promote(), AppendHistory)
NO_LEASE = 0
Case = tuple[str, Observation, str, tuple[type[Action] | Action, ...]]

CASES: list[Case] = [
    (
        "a lease-less key naming this replica is not its own: no rebind, no promotion",
        observe(replica(), cluster(leader=leader("pg1", 60, NO_LEASE))),
        "refuse_foreign_leader_key",
        (),
    ),
    (
        "a lease-less key naming the leader itself: the leader steps down",
        observe(primary(), cluster(leader=leader("pg1", 60, NO_LEASE)), as_leader()),
        "step_down_after_losing_key",
        (FENCE, ForgetLeadership()),
    ),
    (
        "garbage in the leader key: the leader steps down",
        observe(primary(), cluster(leader=leader("(unreadable leader key)", 60)), as_leader()),
        "step_down_after_losing_key",
        (FENCE, ForgetLeadership()),
    ),
    (
        "a member of another cluster claiming an impossible position is no rival",
        observe(
            replica(upstream=None),
            leaderless(
                members={
                    "pg1": member("pg1", no_leader_revision=120),
                    "pg3": member(
                        "pg3", no_leader_revision=121, position=2**64 - 1, system_identifier="1"
                    ),
                }
            ),
        ),
        "take_over_expired_leader",
        TAKE_OVER,
    ),
    (
        "an unreadable initialize does not stop a healthy leader",
        observe(primary(), cluster(leader=my_key(), init_state=InitState.GARBAGE), as_leader()),
        "renew_as_primary",
        (RenewLeader(),),
    ),
    (
        "an unreadable initialize stops a replica from joining",
        observe(replica(), cluster(init_state=InitState.GARBAGE)),
        "refuse_unparsable_initialize",
        (),
    ),
    (
        "a foreign system identifier in initialize does not stop a healthy leader",
        observe(primary(), cluster(leader=my_key(), system_identifier="9999"), as_leader()),
        "renew_as_primary",
        (RenewLeader(),),
    ),
    (
        "a foreign system identifier in initialize stops a replica from joining",
        observe(replica(), cluster(system_identifier="9999")),
        "refuse_foreign_data",
        (),
    ),
]


@pytest.mark.parametrize(("name", "obs", "code", "plan"), CASES, ids=[c[0] for c in CASES])
def test_hostile_values(
    name: str, obs: Observation, code: str, plan: tuple[type[Action] | Action, ...]
) -> None:
    made = decide(obs, POLICY)
    assert_plan(made, code, plan)
    assert made.reason


def test_a_member_of_this_cluster_ahead_still_wins() -> None:
    """The rule above is about the system identifier, not the position."""
    ahead = member("pg3", no_leader_revision=121, position=101 * MiB)
    view = leaderless(members={"pg1": member("pg1", no_leader_revision=120), "pg3": ahead})
    made = decide(observe(replica(), view), POLICY)
    assert made.code == "wait_for_better_candidate"
    assert "pg3 is ahead" in made.reason


def test_a_switchover_to_a_member_of_another_cluster_is_refused() -> None:
    foreign = member("pg3", upstream="pg1", system_identifier="1")
    view = replace(cluster(leader=my_key()), members={"pg3": foreign})
    chosen = switchover_candidate(view, "pg1", "pg3", POLICY)
    assert chosen == "pg3 reports another cluster's system identifier (1, this cluster is 7300)"
