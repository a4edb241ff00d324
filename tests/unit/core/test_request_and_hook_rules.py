"""Operator requests (`pgha restart`, `pgha reinit`) and a failed pre_promote hook, as
decisions: who does what, in which order, and what is refused with which reason."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgha.core.actions import (
    AcquireLeader,
    Action,
    AppendHistory,
    Clone,
    ConsumeRequest,
    Promote,
    ReleaseLeader,
    RenewLeader,
    RunPrePromoteHook,
    StartPostgres,
    StopPostgres,
)
from pgha.core.decide import decide
from pgha.core.model import ClusterView, MemberRequest, Observation
from tests.unit.core.builders import (
    NO_DATA,
    NOW,
    POLICY,
    as_leader,
    assert_plan,
    cluster,
    leaderless,
    member,
    memory,
    my_key,
    observe,
    primary,
    replica,
    stopped,
)


def asked(action: str, view: ClusterView | None = None) -> ClusterView:
    """The cluster (pg2 leads by default) with a request for pg1."""
    base = view if view is not None else cluster()
    request = MemberRequest("r7", action, by="ops@bastion", mod_revision=140)
    return replace(base, requests={"pg1": request})


SIT_OUT = "its pre_promote hook `/bin/stonith` exited 1: no IPMI answer"

Case = tuple[str, Observation, str, tuple[type[Action] | Action, ...]]
CASES: list[Case] = [
    (
        "restart a streaming replica",
        observe(replica(), asked("restart")),
        "restart_on_request",
        (ConsumeRequest("r7", "restart"), StopPostgres("fast"), StartPostgres(upstream="pg2")),
    ),
    (
        "restart a stopped replica: just start it",
        observe(stopped(), asked("restart")),
        "restart_on_request",
        (ConsumeRequest("r7", "restart"), StartPostgres(upstream="pg2")),
    ),
    (
        "restart the primary: renew first, keep the key",
        observe(primary(), asked("restart", cluster(leader=my_key())), as_leader()),
        "restart_on_request",
        (
            RenewLeader(),
            ConsumeRequest("r7", "restart"),
            StopPostgres("fast"),
            StartPostgres(as_primary=True),
        ),
    ),
    (
        "restart while paused still runs",
        observe(replica(), asked("restart", cluster(paused=True))),
        "restart_on_request",
        (ConsumeRequest, StopPostgres, StartPostgres),
    ),
    (
        "restart without data is refused",
        observe(NO_DATA, asked("restart")),
        "refuse_request",
        (ConsumeRequest,),
    ),
    (
        "reinit a replica: consume, stop, clone, start",
        observe(replica(), asked("reinit")),
        "reinit_on_request",
        (
            ConsumeRequest("r7", "reinit"),
            StopPostgres("fast"),
            Clone("pg2"),
            StartPostgres(upstream="pg2"),
        ),
    ),
    (
        "reinit of the leader is refused, and the leader still renews",
        observe(primary(), asked("reinit", cluster(leader=my_key())), as_leader()),
        "refuse_request",
        (RenewLeader(), ConsumeRequest),
    ),
    (
        "reinit with no leader is refused",
        observe(replica(), asked("reinit", leaderless())),
        "refuse_request",
        (ConsumeRequest,),
    ),
    (
        "an unknown action is refused and consumed",
        observe(replica(), asked("drop-database")),
        "refuse_request",
        (ConsumeRequest,),
    ),
    (
        "fencing outranks a request",
        observe(primary(), asked("restart", cluster(leader=my_key())), as_leader(deadline=NOW)),
        "fence_past_deadline",
        (StopPostgres, Action),
    ),
    (
        "a failed pre_promote hook gives the key back from a read-only replica",
        observe(
            replica(),
            cluster(leader=my_key()),
            as_leader(pre_promote_failed_term=60, sit_out_reason=SIT_OUT),
        ),
        "give_up_key_after_failed_pre_promote",
        (ReleaseLeader(never_promoted=True),),
    ),
    (
        "a hook failure of an earlier term does not stop this promotion",
        observe(replica(), cluster(leader=my_key()), as_leader(pre_promote_failed_term=59)),
        "promote_held_key",
        (RenewLeader(), RunPrePromoteHook(), Promote(), AppendHistory),
    ),
    (
        "the winner runs the hook between taking the key and promoting",
        observe(replica(), leaderless(members={"pg1": member("pg1", no_leader_revision=120)})),
        "take_over_expired_leader",
        (AcquireLeader(), RunPrePromoteHook(), Promote(), AppendHistory),
    ),
    (
        "sitting out after a failed hook: not eligible, and says why",
        observe(
            replica(),
            leaderless(members={"pg1": member("pg1", no_leader_revision=120)}),
            memory(election_backoff_until=NOW + 20, sit_out_reason=SIT_OUT),
        ),
        "not_eligible",
        (),
    ),
    (
        "a peer sitting out is no rival: the next best takes over",
        observe(
            replica(position=99 * 1024 * 1024),
            leaderless(
                members={
                    "pg1": member("pg1", no_leader_revision=120, position=99 * 1024 * 1024),
                    "pg0": member("pg0", no_leader_revision=121, sits_out=True),
                }
            ),
        ),
        "take_over_expired_leader",
        (AcquireLeader, RunPrePromoteHook, Promote, AppendHistory),
    ),
]


@pytest.mark.parametrize(("name", "obs", "code", "plan"), CASES, ids=[c[0] for c in CASES])
def test_request_and_hook_decisions(
    name: str, obs: Observation, code: str, plan: tuple[type[Action] | Action, ...]
) -> None:
    made = decide(obs, POLICY)
    assert_plan(made, code, plan)
    assert made.reason


def test_a_refusal_says_why_and_who_asked() -> None:
    made = decide(observe(replica(), asked("reinit", leaderless())), POLICY)
    why = "there is no leader to clone from"
    assert made.reason == f"pgha reinit (r7 by ops@bastion) refused: {why}"
    consume = made.actions[-1]
    assert isinstance(consume, ConsumeRequest)
    assert consume.refused == why


def test_a_reinit_pgha_asked_for_says_why() -> None:
    why = "its replication slot on pg2 was lost: the WAL it needs is gone"
    request = MemberRequest("r9", "reinit", by="pgha on pg2", mod_revision=7, reason=why)
    made = decide(observe(replica(), replace(cluster(), requests={"pg1": request})), POLICY)
    assert made.code == "reinit_on_request"
    assert made.reason.startswith(f"pgha reinit (r9 by pgha on pg2: {why}): moving the data")


def test_the_sit_out_reason_names_the_hook_and_the_time_left() -> None:
    obs = observe(
        replica(),
        leaderless(members={"pg1": member("pg1", no_leader_revision=120)}),
        memory(election_backoff_until=NOW + 20, sit_out_reason=SIT_OUT),
    )
    made = decide(obs, POLICY)
    assert made.reason == f"no leader; sitting out the election for 20 s more after {SIT_OUT}"


def test_a_request_for_another_member_changes_nothing_here() -> None:
    view = replace(cluster(), requests={"pg3": MemberRequest("r8", "restart", mod_revision=9)})
    assert decide(observe(replica(), view), POLICY).code == "stream_from_leader"
