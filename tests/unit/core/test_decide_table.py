"""Every row of DESIGN.md section 4 and every safety rule of section 3, as a table.

Each case: an observation built in a line or two, the decision code expected, and the
plan expected (action reprs in order).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgha.core.actions import (
    AcquireLeader,
    Action,
    AppendHistory,
    ClaimInitialize,
    Clone,
    FinishInitialize,
    FollowLeader,
    ForgetLeadership,
    InitDb,
    Promote,
    RebindLeader,
    ReleaseLeader,
    RenewLeader,
    Rewind,
    RunPrePromoteHook,
    StartPostgres,
    StopPostgres,
)
from pgha.core.decide import RULES, decide
from pgha.core.model import (
    Handoff,
    InitState,
    LocalPostgres,
    Observation,
    PgRunState,
    Policy,
)
from tests.unit.core.builders import (
    NO_DATA,
    NOFAILOVER,
    NOW,
    POLICY,
    MiB,
    as_leader,
    assert_plan,
    cluster,
    leader,
    leaderless,
    member,
    memory,
    my_key,
    observe,
    primary,
    primary_member,
    replica,
    stopped,
)

FENCE = StopPostgres("fast", fence=True)
Case = tuple[str, Observation, str, tuple[type[Action] | Action, ...]]


def held(local: LocalPostgres, **view: object) -> Observation:
    """pg1 holds the key in term 60 (snapshot agrees), with this local Postgres."""
    return observe(local, cluster(leader=my_key(), **view), as_leader())


CASES: list[Case] = [
    # --- fencing comes first, always ----------------------------------------------------
    (
        "leader past its deadline stops writing",
        observe(primary(), cluster(leader=my_key()), as_leader(deadline=NOW - 1)),
        "fence_past_deadline",
        (FENCE, ForgetLeadership()),
    ),
    (
        "deadline passes even while paused",
        observe(primary(), cluster(leader=my_key(), paused=True), as_leader(deadline=NOW)),
        "fence_past_deadline",
        (FENCE, ForgetLeadership()),
    ),
    (
        "deadline passes with etcd down",
        observe(primary(), None, as_leader(deadline=NOW - 3), store_error="timeout"),
        "fence_past_deadline",
        (FENCE, ForgetLeadership()),
    ),
    (
        "deadline passes on a stopped primary: just forget",
        observe(stopped(), None, as_leader(deadline=NOW - 3)),
        "fence_past_deadline",
        (ForgetLeadership(),),
    ),
    (
        "read-write while another holds the key",
        observe(primary()),
        "step_down_after_losing_key",
        (FENCE,),
    ),
    (
        "read-write with no leader at all",
        observe(primary(), leaderless()),
        "step_down_after_losing_key",
        (FENCE,),
    ),
    (
        "lost compare: key taken by another while we thought we led",
        observe(primary(), cluster(), as_leader()),
        "step_down_after_losing_key",
        (FENCE, ForgetLeadership()),
    ),
    (
        "read-write while paused and not leader",
        observe(primary(), cluster(paused=True)),
        "step_down_after_losing_key",
        (FENCE,),
    ),
    (
        "an unreachable postmaster may be writable",
        observe(primary(run_state=PgRunState.UNREACHABLE)),
        "step_down_after_losing_key",
        (FENCE,),
    ),
    (
        "key lost while a replica: forget it",
        observe(replica(), cluster(), as_leader()),
        "forget_lost_key",
        (ForgetLeadership(),),
    ),
    # --- restart of the agent: our name on a foreign lease --------------------------------
    (
        "restarted agent rebinds its key",
        observe(primary(), cluster(leader=leader("pg1", 60, 0xDEAD))),
        "rebind_own_key",
        (RebindLeader(),),
    ),
    (
        "never rebind a term we released",
        observe(stopped(), cluster(leader=leader("pg1", 60, 0xDEAD)), memory(released_term=60)),
        "start_as_replica",
        (StartPostgres(upstream="pg1"),),
    ),
    # --- etcd unreachable -----------------------------------------------------------------
    (
        "leader keeps renewing through an etcd outage",
        observe(primary(), None, as_leader(), store_error="timeout"),
        "renew_through_store_outage",
        (RenewLeader(),),
    ),
    (
        "read-write, no claim, etcd unreadable: stop",
        observe(primary(), None, store_error="timeout"),
        "step_down_after_losing_key",
        (FENCE,),
    ),
    (
        "replica waits for etcd",
        observe(replica(), None, store_error="timeout"),
        "wait_for_store",
        (),
    ),
    # --- paused ---------------------------------------------------------------------------
    ("paused leader renews", held(primary(), paused=True), "paused", (RenewLeader(),)),
    (
        "paused leader with Postgres down does not restart it",
        held(stopped(), paused=True),
        "paused",
        (RenewLeader(),),
    ),
    ("paused replica does not follow", observe(stopped(), cluster(paused=True)), "paused", ()),
    (
        "paused cluster without leader elects nobody",
        observe(replica(), leaderless(paused=True)),
        "paused",
        (),
    ),
    # --- not initialized ------------------------------------------------------------------
    (
        "empty cluster, empty node: race to initialize",
        observe(
            NO_DATA,
            cluster(leader=None, members={}, init_state=InitState.ABSENT, system_identifier=None),
        ),
        "race_to_initialize",
        (ClaimInitialize(), InitDb(), StartPostgres(as_primary=True), FinishInitialize()),
    ),
    (
        "another node bootstraps",
        observe(
            NO_DATA,
            cluster(leader=leader("pg3"), init_state=InitState.BOOTSTRAPPING, init_node="pg3"),
        ),
        "wait_for_bootstrap",
        (),
    ),
    (
        "initialized, leader running: clone",
        observe(NO_DATA),
        "clone_from_leader",
        (Clone("pg2"), StartPostgres(upstream="pg2")),
    ),
    (
        "initialized, no leader: wait to clone",
        observe(NO_DATA, leaderless()),
        "wait_for_leader_to_clone",
        (),
    ),
    (
        "garbage in initialize stops joining",
        observe(NO_DATA, cluster(init_state=InitState.GARBAGE)),
        "refuse_unparsable_initialize",
        (),
    ),
    (
        "foreign system identifier",
        observe(replica(system_identifier="999")),
        "refuse_foreign_data",
        (),
    ),
    (
        "uninitialized cluster but local data",
        observe(stopped(), cluster(leader=None, init_state=InitState.ABSENT)),
        "refuse_unknown_data",
        (),
    ),
    # --- I hold the key -------------------------------------------------------------------
    ("healthy primary renews", held(primary()), "renew_as_primary", (RenewLeader(),)),
    (
        "read-only while holding the key: promote",
        held(replica()),
        "promote_held_key",
        (RenewLeader(), RunPrePromoteHook(), Promote(), AppendHistory),
    ),
    (
        "crashed primary restarts in place",
        held(stopped(was_primary=True)),
        "restart_crashed_primary",
        (RenewLeader(), StartPostgres(as_primary=True)),
    ),
    (
        "primary start timeout: stop, then release",
        observe(stopped(), cluster(leader=my_key()), as_leader(primary_down_since=NOW - 301)),
        "release_after_start_timeout",
        (StopPostgres("immediate", fence=True), ReleaseLeader),
    ),
    (
        "primary starting: renew and wait",
        held(replica(run_state=PgRunState.STARTING)),
        "wait_for_primary_start",
        (RenewLeader(),),
    ),
    (
        "primary still starting past primary_start_timeout: stop, then release",
        observe(
            replica(run_state=PgRunState.STARTING),
            cluster(leader=my_key()),
            as_leader(primary_down_since=NOW - 301),
        ),
        "release_after_start_timeout",
        (StopPostgres("immediate", fence=True), ReleaseLeader),
    ),
    (
        "primary probe times out: keep renewing until primary_unhealthy_timeout",
        held(primary(run_state=PgRunState.UNREACHABLE)),
        "renew_while_primary_unhealthy",
        (RenewLeader(),),
    ),
    # --- another node holds the key -------------------------------------------------------
    ("replica streams from the leader", observe(replica()), "stream_from_leader", ()),
    (
        "replica of the old leader repoints",
        observe(replica(upstream="pg3")),
        "follow_new_leader",
        (FollowLeader("pg2"),),
    ),
    (
        "stopped replica starts following",
        observe(stopped()),
        "start_as_replica",
        (StartPostgres(upstream="pg2"),),
    ),
    (
        "replica on the old timeline before the fork follows",
        observe(replica(timeline=1, position=80 * MiB, upstream=None)),
        "follow_new_leader",
        (FollowLeader("pg2"),),
    ),
    (
        "replica that replayed past the fork rewinds",
        observe(replica(timeline=1, position=95 * MiB, upstream=None)),
        "rewind_to_follow",
        (StopPostgres("fast"), Rewind("pg2"), StartPostgres(upstream="pg2")),
    ),
    (
        "crashed old primary rewinds",
        observe(stopped(timeline=1, position=80 * MiB, was_primary=True)),
        "rewind_to_follow",
        (Rewind("pg2"), StartPostgres(upstream="pg2")),
    ),
    (
        "crashed old primary whose new leader has not published its timeline yet waits",
        observe(
            stopped(timeline=1, position=80 * MiB, was_primary=True),
            cluster(
                members={"pg2": primary_member("pg2", timeline=1, checkpoint_after_promote=False)},
                timeline_switches=(),
            ),
        ),
        "wait_for_leader_checkpoint",
        (),
    ),
    (
        "cleanly stopped old primary before the fork follows",
        observe(stopped(timeline=1, position=90 * MiB, was_primary=True, stopped_cleanly=True)),
        "start_as_replica",
        (StartPostgres(upstream="pg2"),),
    ),
    (
        "rewind waits for the leader's checkpoint",
        observe(
            stopped(timeline=1, was_primary=True),
            cluster(members={"pg2": primary_member("pg2", checkpoint_after_promote=False)}),
        ),
        "wait_for_leader_checkpoint",
        (),
    ),
    (
        "failed rewind without permission to wipe",
        observe(stopped(timeline=1, was_primary=True), node=memory(rewind_failed=True)),
        "rewind_failed",
        (),
    ),
    (
        "rewind refused by its preflight: tried again, with the reason",
        observe(
            stopped(timeline=1, was_primary=True),
            node=memory(rewind_blocked="user rewinder runs with statement_timeout 5s"),
        ),
        "rewind_preflight_failed",
        (Rewind("pg2"), StartPostgres(upstream="pg2")),
    ),
    (
        "failed rewind with permission: clone",
        Observation(NOW, memory(rewind_failed=True), stopped(timeline=3), cluster()),
        "clone_after_failed_rewind",
        (Clone("pg2"), StartPostgres(upstream="pg2")),
    ),
    # --- nobody holds the key -------------------------------------------------------------
    (
        "best candidate takes over",
        observe(replica(upstream=None), leaderless()),
        "take_over_expired_leader",
        (AcquireLeader(), RunPrePromoteHook(), Promote(), AppendHistory),
    ),
    (
        "a candidate ahead wins",
        observe(replica(position=99 * MiB + 256 * 1024), leaderless()),
        "wait_for_better_candidate",
        (),
    ),
    (
        "stopped node starts read-only first",
        observe(stopped(), leaderless()),
        "start_in_recovery",
        (StartPostgres(upstream=None),),
    ),
    ("nofailover never takes the key", observe(replica(), leaderless()), "not_eligible", ()),
    (
        "lagging replica is not eligible",
        observe(replica(position=50 * MiB), leaderless()),
        "not_eligible",
        (),
    ),
    (
        "older timeline is not eligible",
        observe(replica(timeline=1), leaderless()),
        "not_eligible",
        (),
    ),
    (
        "stale peer positions: wait briefly",
        observe(
            replica(),
            leaderless(
                members={"pg1": member("pg1"), "pg3": member("pg3", no_leader_revision=None)}
            ),
            memory(no_leader_since=NOW - 1),
        ),
        "wait_for_fresh_positions",
        (),
    ),
    (
        "stale peer after the wait: its last position still counts",
        observe(
            replica(),
            leaderless(members={"pg3": member("pg3", position=101 * MiB)}),
            memory(no_leader_since=NOW - 3),
        ),
        "wait_for_better_candidate",
        (),
    ),
    (
        "handoff to another node: wait",
        observe(replica(), leaderless(handoff=Handoff("pg2", "pg3", 50, 99 * MiB))),
        "wait_for_handoff",
        (),
    ),
    (
        "handoff to me, replayed past it: take over",
        observe(replica(upstream=None), leaderless(handoff=Handoff("pg2", "pg1", 50, 99 * MiB))),
        "take_over_after_handoff",
        (AcquireLeader(), RunPrePromoteHook(), Promote(), AppendHistory),
    ),
    (
        "handoff to me, not yet past the final LSN",
        observe(replica(), leaderless(handoff=Handoff("pg2", "pg1", 50, 100 * MiB))),
        "catch_up_for_handoff",
        (),
    ),
    (
        "no guard process: not taking the key",
        observe(replica(), leaderless(), memory(guard_alive=False)),
        "not_eligible",
        (),
    ),
]

POLICIES = {
    "nofailover never takes the key": NOFAILOVER,
    "failed rewind with permission: clone": replace(
        POLICY, remove_data_directory_on_rewind_failure=True
    ),
}


@pytest.mark.parametrize(("name", "obs", "code", "plan"), CASES, ids=[c[0] for c in CASES])
def test_decision_table(
    name: str, obs: Observation, code: str, plan: tuple[type[Action] | Action, ...]
) -> None:
    policy: Policy = POLICIES.get(name, POLICY)
    made = decide(obs, policy)
    assert_plan(made, code, plan)
    assert made.reason


DISPATCHERS = (
    "lead",
    "follow",
    "elect_leader",
    "ride_out_store_outage",
    "serve_switchover",
    "serve_request",
)


def test_every_rule_is_exercised_by_the_table() -> None:
    codes = {case[2] for case in CASES}
    for rule in RULES:
        if rule.__name__ in DISPATCHERS:
            continue  # dispatchers: their codes are the cases they return
        assert rule.__name__ in codes, f"no table row for rule {rule.__name__}"


def test_a_waiting_candidate_says_who_is_ahead_with_both_positions() -> None:
    made = decide(observe(replica(position=99 * MiB + 256 * 1024), leaderless()), POLICY)
    assert made.reason == "no leader; pg3 is ahead: 0/6380000 vs 0/6340000"


def test_ties_break_on_priority_then_name() -> None:
    even = leaderless(members={"pg0": member("pg0", no_leader_revision=125)})
    made = decide(observe(replica(), even), POLICY)
    assert made.code == "wait_for_better_candidate"
    assert "sorts first by name" in made.reason
