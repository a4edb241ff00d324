"""Operator requests as rules: the planned switchover (the leader hands over, the
candidate takes over, whoever leads next closes the request) and the forced failover."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pgha.core.actions import (
    AcquireLeader,
    Action,
    AppendHistory,
    ClearFailover,
    Promote,
    ReleaseLeader,
    RenewLeader,
    RunPrePromoteHook,
    StopPostgres,
    UpdateSwitchover,
)
from pgha.core.decide import decide
from pgha.core.model import (
    ForcedFailover,
    Handoff,
    Observation,
    SwitchoverRequest,
    SwitchoverState,
    Tags,
)
from tests.unit.core.builders import (
    POLICY,
    MiB,
    as_leader,
    assert_plan,
    cluster,
    member,
    my_key,
    observe,
    primary,
    primary_member,
    replica,
)

WALL = 1_800_000_000.0


def request(**changes: Any) -> SwitchoverRequest:
    base = SwitchoverRequest(
        id="s1", from_node="pg1", to_node="pg3", at=None, state=SwitchoverState.PENDING
    )
    return replace(base, **changes)


def leading(switchover: SwitchoverRequest | None, **members: Any) -> Observation:
    """pg1 leads in term 60 with a healthy primary; pg2 and pg3 stream from it."""
    view = cluster(
        leader=my_key(),
        members={
            "pg1": primary_member("pg1"),
            "pg2": member("pg2", upstream="pg1", position=99 * MiB),
            "pg3": member("pg3", **{"upstream": "pg1", **members}),
        },
        switchover=switchover,
    )
    return replace(observe(primary(), view, as_leader()), wall_now=WALL)


HAND_TO_PG3 = (
    RenewLeader(),
    UpdateSwitchover("handing_over", candidate="pg3"),
    StopPostgres("fast"),
    ReleaseLeader(to_node="pg3", after_clean_stop=True),
)
REFUSE = (RenewLeader(), UpdateSwitchover)
Case = tuple[str, Observation, str, tuple[type[Action] | Action, ...]]

CASES: list[Case] = [
    ("named candidate streaming: hand over", leading(request()), "hand_over", HAND_TO_PG3),
    (
        "best candidate: the one furthest ahead",
        leading(request(to_node=None)),
        "hand_over",
        HAND_TO_PG3,
    ),
    (
        "scheduled for later: keep leading",
        leading(request(at=WALL + 60)),
        "renew_as_primary",
        (RenewLeader(),),
    ),
    ("scheduled time has come", leading(request(at=WALL - 1)), "hand_over", HAND_TO_PG3),
    (
        "candidate tagged nofailover",
        leading(request(), tags=Tags(nofailover=True)),
        "refuse_switchover",
        REFUSE,
    ),
    (
        "candidate streams from nobody",
        leading(request(), upstream=None, streaming=False),
        "refuse_switchover",
        REFUSE,
    ),
    (
        "candidate lags past the limit",
        leading(request(), position=10 * MiB),
        "refuse_switchover",
        REFUSE,
    ),
    ("unknown candidate", leading(request(to_node="pg9")), "refuse_switchover", REFUSE),
    (
        "requested from another leader",
        leading(request(from_node="pg2")),
        "refuse_switchover",
        REFUSE,
    ),
    (
        "candidate now leads: done",
        replace(leading(request(state=SwitchoverState.HANDING_OVER, candidate="pg1", term=50))),
        "finish_switchover",
        (RenewLeader(), UpdateSwitchover),
    ),
    (
        "handoff lapsed, the old primary leads again",
        leading(request(state=SwitchoverState.HANDING_OVER, candidate="pg3", term=50)),
        "refuse_switchover",
        REFUSE,
    ),
    (
        "handing over failed in this very term",
        leading(request(state=SwitchoverState.HANDING_OVER, candidate="pg3", term=60)),
        "refuse_switchover",
        REFUSE,
    ),
    (
        "finished request: nothing to do",
        leading(request(state=SwitchoverState.DONE)),
        "renew_as_primary",
        (RenewLeader(),),
    ),
    (
        "paused: no switchover",
        replace(
            leading(request()),
            cluster=replace(leading(request()).cluster, paused=True),  # type: ignore[type-var]
        ),
        "paused",
        (RenewLeader(),),
    ),
]


@pytest.mark.parametrize(("name", "obs", "code", "plan"), CASES, ids=[c[0] for c in CASES])
def test_switchover_table(
    name: str, obs: Observation, code: str, plan: tuple[type[Action] | Action, ...]
) -> None:
    assert_plan(decide(obs, POLICY), code, plan)


def test_a_refusal_says_why() -> None:
    made = decide(leading(request(), tags=Tags(nofailover=True)), POLICY)
    assert "pg3 is tagged nofailover" in made.reason
    made = decide(leading(request(to_node="pg9")), POLICY)
    assert "no member named pg9" in made.reason


def handed_to(name: str, final_lsn: int) -> Observation:
    """pg2 released the key to `name` at `final_lsn`; pg1 is a replica at 100 MiB."""
    view = cluster(
        leader=None,
        revision=130,
        members={
            "pg1": member("pg1"),
            "pg3": member("pg3", position=101 * MiB),  # ahead, and not yet fresh
        },
        handoff=Handoff("pg2", name, 50, final_lsn),
    )
    return observe(replica(), view)


def test_the_named_candidate_takes_over_at_once_once_past_the_final_lsn() -> None:
    made = decide(handed_to("pg1", 100 * MiB - 200), POLICY)
    assert made.code == "take_over_after_handoff", made.describe()
    assert [type(action) for action in made.actions] == [
        AcquireLeader,
        RunPrePromoteHook,
        Promote,
        AppendHistory,
    ]


def test_the_named_candidate_short_of_the_final_lsn_looks_again_soon() -> None:
    made = decide(handed_to("pg1", 100 * MiB), POLICY)
    assert made.code == "catch_up_for_handoff", made.describe()
    assert made.actions == ()


def test_the_others_wait_for_the_named_candidate() -> None:
    made = decide(handed_to("pg3", 100 * MiB - 200), POLICY)
    assert made.code == "wait_for_handoff"
    assert made.actions == ()


def forced(to_node: str, allow_data_loss: bool = False, **local: Any) -> Observation:
    """Leaderless; the operator ran `pgha failover --candidate to_node`; seen from pg1."""
    view = cluster(
        leader=None,
        revision=130,
        members={"pg1": member("pg1"), "pg3": member("pg3", position=101 * MiB)},
        failover=ForcedFailover(to_node, allow_data_loss, 77),
    )
    return observe(replica(**local), view)


def test_a_forced_failover_names_the_only_node_that_may_take_the_key() -> None:
    made = decide(forced("pg1"), POLICY)
    assert made.code == "take_over_on_request", made.describe()
    assert [type(action) for action in made.actions] == [
        AcquireLeader,
        RunPrePromoteHook,
        Promote,
        AppendHistory,
    ]
    waiting = decide(forced("pg3"), POLICY)
    assert waiting.code == "wait_for_forced_failover"
    assert waiting.actions == ()


def test_a_lagging_forced_candidate_needs_allow_data_loss() -> None:
    behind = 10 * MiB
    refused = decide(forced("pg1", position=behind), POLICY)
    assert refused.code == "cannot_take_forced_failover"
    assert "maximum_lag_on_failover" in refused.reason
    allowed = decide(forced("pg1", allow_data_loss=True, position=behind), POLICY)
    assert allowed.code == "take_over_on_request"


def test_the_new_leader_clears_the_served_failover_request() -> None:
    obs = leading(None)
    assert obs.cluster is not None
    obs = replace(obs, cluster=replace(obs.cluster, failover=ForcedFailover("pg1")))
    made = decide(obs, POLICY)
    assert made.code == "finish_forced_failover"
    assert made.actions == (RenewLeader(), ClearFailover())
