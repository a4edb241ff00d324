"""Tags in the core: failover_priority (1 by default, 0 = never promoted, higher wins ties)
and clonefrom (the preferred clone source)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgha.core.actions import Action, Clone, ConsumeRequest, StartPostgres, StopPostgres
from pgha.core.decide import decide
from pgha.core.model import ForcedFailover, MemberRequest, Observation, Policy, Tags
from pgha.core.rules_switchover import switchover_candidate
from tests.unit.core.builders import (
    NO_DATA,
    POLICY,
    MiB,
    assert_plan,
    cluster,
    leaderless,
    member,
    observe,
    primary_member,
    replica,
)


def priority(value: int) -> Policy:
    return replace(POLICY, tags=Tags(failover_priority=value))


def even_with(**tags: object) -> dict[str, object]:
    """pg1 and a rival pg3 at the same fresh position, pg3 tagged so."""
    rival = member("pg3", no_leader_revision=121, tags=Tags(**tags))  # type: ignore[arg-type]
    return {"members": {"pg1": member("pg1", no_leader_revision=120), "pg3": rival}}


def test_the_default_priority_is_1_and_promotable() -> None:
    assert Tags().failover_priority == 1
    assert Tags().never_promoted is None
    assert Tags(failover_priority=0).never_promoted is not None


ELECTIONS = [
    # (case, pg1's priority, the cluster, expected code, reason fragment)
    ("priority 0 never takes the key", 0, leaderless(), "not_eligible", "failover_priority 0"),
    (
        "a rival at priority 0 is no rival, even ahead",
        1,
        leaderless(
            members={
                "pg1": member("pg1", no_leader_revision=120),
                "pg3": member(
                    "pg3",
                    no_leader_revision=121,
                    position=100 * MiB + 4096,
                    tags=Tags(failover_priority=0),
                ),
            },
        ),
        "take_over_expired_leader",
        "best eligible candidate",
    ),
    (
        "same position: the higher priority wins",
        1,
        leaderless(**even_with(failover_priority=2)),
        "wait_for_better_candidate",
        "higher failover_priority (2 vs 1)",
    ),
    (
        "same position: this node's higher priority beats a name that sorts first",
        3,
        leaderless(
            members={
                "pg1": member("pg1", no_leader_revision=120),
                "pg0": member("pg0", no_leader_revision=121, tags=Tags(failover_priority=2)),
            }
        ),
        "take_over_expired_leader",
        "best eligible candidate",
    ),
    (
        "position still comes first: a rival ahead wins over a higher priority here",
        5,
        leaderless(
            members={
                "pg1": member("pg1", no_leader_revision=120),
                "pg3": member("pg3", no_leader_revision=121, position=101 * MiB),
            },
            last_primary_position=101 * MiB,
        ),
        "wait_for_better_candidate",
        "pg3 is ahead",
    ),
]


@pytest.mark.parametrize(
    ("case", "mine", "view", "code", "why"), ELECTIONS, ids=[e[0] for e in ELECTIONS]
)
def test_priority_in_the_election(case: str, mine: int, view: object, code: str, why: str) -> None:
    made = decide(observe(replica(), view), priority(mine))  # type: ignore[arg-type]
    assert made.code == code, made.describe()
    assert why in made.reason


def test_an_operator_cannot_force_a_priority_0_node_either() -> None:
    view = leaderless(failover=ForcedFailover("pg1", allow_data_loss=True))
    made = decide(observe(replica(), view), priority(0))
    assert made.code == "cannot_take_forced_failover"
    assert "failover_priority 0" in made.reason


def test_a_switchover_names_priority_0_as_the_reason() -> None:
    never = member("pg1", tags=Tags(failover_priority=0))
    view = cluster(members={"pg2": primary_member("pg2"), "pg1": never})
    found = switchover_candidate(view, "pg2", None, POLICY)
    assert isinstance(found, str)
    assert "pg1 is tagged failover_priority 0" in found


def clone_source_scene(**pg3: object) -> Observation:
    """pg1 has no data; pg2 leads; pg3 is a replica tagged clonefrom, changed by `pg3`."""
    source = member("pg3", tags=Tags(clonefrom=True), **pg3)
    return observe(NO_DATA, cluster(members={"pg2": primary_member("pg2"), "pg3": source}))


CLONES = [
    ("a healthy clonefrom replica is preferred", clone_source_scene(), "pg3"),
    ("not streaming: the leader", clone_source_scene(streaming=False), "pg2"),
    ("not running: the leader", clone_source_scene(running=False), "pg2"),
    ("on an older timeline: the leader", clone_source_scene(timeline=1), "pg2"),
    ("no address published: the leader", clone_source_scene(host=""), "pg2"),
    ("another cluster's data: the leader", clone_source_scene(system_identifier="1"), "pg2"),
    ("no tag anywhere: the leader", observe(NO_DATA), "pg2"),
]


@pytest.mark.parametrize(("case", "obs", "source"), CLONES, ids=[c[0] for c in CLONES])
def test_clone_source(case: str, obs: Observation, source: str) -> None:
    made = decide(obs, POLICY)
    # Whatever it clones from, it follows the leader afterwards.
    assert_plan(made, "clone_from_leader", (Clone(source), StartPostgres(upstream="pg2")))
    assert source in made.reason


def test_reinit_clones_from_a_clonefrom_replica_too() -> None:
    base = clone_source_scene().cluster
    assert base is not None
    view = replace(base, requests={"pg1": MemberRequest("r7", "reinit", "ops", 3)})
    made = decide(observe(replica(), view), POLICY)
    plan: tuple[Action, ...] = (
        ConsumeRequest("r7", "reinit"),
        StopPostgres("fast"),
        Clone("pg3"),
        StartPostgres(upstream="pg2"),
    )
    assert_plan(made, "reinit_on_request", plan)
    assert "pg3, a replica tagged clonefrom" in made.reason


def test_a_node_never_clones_from_itself() -> None:
    view = cluster(
        members={"pg2": primary_member("pg2"), "pg1": member("pg1", tags=Tags(clonefrom=True))}
    )
    made = decide(observe(NO_DATA, view), POLICY)
    assert_plan(made, "clone_from_leader", (Clone("pg2"), StartPostgres(upstream="pg2")))
