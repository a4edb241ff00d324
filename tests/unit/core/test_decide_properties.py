"""Properties of decide() over generated observations (hypothesis).

decide is total and deterministic; Promote never comes without the key; a node without
the key never ends a plan read-write; a leader past its fencing deadline always stops
writing; the key is released only after a confirmed stop; every node of a leaderless
cluster elects the same single winner, the best eligible candidate.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from pgha.core.actions import (
    AcquireLeader,
    Action,
    ClaimInitialize,
    ConsumeRequest,
    ForgetLeadership,
    Promote,
    RebindLeader,
    ReleaseLeader,
    RenewLeader,
    StartPostgres,
    StopPostgres,
)
from pgha.core.decide import decide
from pgha.core.election import Candidate
from pgha.core.model import (
    ClusterView,
    Handoff,
    InitState,
    LeaderInfo,
    LocalPostgres,
    MemberInfo,
    MemberRequest,
    NodeMemory,
    Observation,
    PgRunState,
    Policy,
    StandbyFeed,
    SyncState,
    Tags,
    TimelineSwitch,
)

NAMES = ("pg1", "pg2", "pg3")
MY_LEASE = 7
lsns = st.integers(min_value=0, max_value=2**40)
timelines = st.integers(min_value=1, max_value=4)

locals_ = st.builds(
    LocalPostgres,
    run_state=st.sampled_from(PgRunState),
    in_recovery=st.booleans(),
    timeline=st.none() | timelines,
    position=st.none() | lsns,
    upstream=st.none() | st.sampled_from(NAMES),
    system_identifier=st.sampled_from([None, "7300", "999"]),
    was_primary=st.booleans(),
    stopped_cleanly=st.booleans(),
    standbys=st.lists(
        st.builds(
            StandbyFeed,
            name=st.sampled_from(NAMES),
            streaming=st.booleans(),
            sync_state=st.sampled_from(["async", "sync", "potential"]),
            flush_lsn=st.none() | lsns,
        ),
        max_size=3,
    ).map(tuple),
    sync_names=st.none() | st.lists(st.sampled_from(NAMES), max_size=2, unique=True).map(tuple),
)
members = st.builds(
    MemberInfo,
    name=st.sampled_from(NAMES),
    host=st.just("127.0.0.1"),
    port=st.just(5432),
    running=st.booleans(),
    in_recovery=st.booleans(),
    timeline=st.none() | timelines,
    position=st.none() | lsns,
    tags=st.builds(Tags, nofailover=st.booleans(), failover_priority=st.integers(0, 2)),
    no_leader_revision=st.none() | st.integers(0, 200),
    checkpoint_after_promote=st.booleans(),
    sits_out=st.booleans(),
)
requests = st.dictionaries(
    st.sampled_from(NAMES),
    st.builds(
        MemberRequest,
        id=st.sampled_from(["r1", "r2"]),
        action=st.sampled_from(["restart", "reinit", "bogus"]),
        mod_revision=st.integers(1, 300),
    ),
    max_size=2,
)
leaders = st.builds(
    LeaderInfo,
    holder=st.sampled_from(NAMES),
    term=st.integers(1, 100),
    lease_id=st.sampled_from([MY_LEASE, 8, 9]),
    mod_revision=st.integers(1, 200),
)
clusters = st.builds(
    ClusterView,
    revision=st.integers(1, 300),
    leader=st.none() | leaders,
    members=st.lists(members, max_size=3).map(lambda ms: {m.name: m for m in ms}),
    init_state=st.sampled_from(InitState),
    init_node=st.none() | st.sampled_from(NAMES),
    system_identifier=st.sampled_from([None, "7300"]),
    last_primary_position=st.none() | lsns,
    timeline_switches=st.lists(
        st.builds(TimelineSwitch, timeline=st.integers(2, 4), lsn=lsns), max_size=3
    ).map(tuple),
    handoff=st.none()
    | st.builds(
        Handoff,
        from_node=st.sampled_from(NAMES),
        to_node=st.none() | st.sampled_from(NAMES),
        term=st.integers(1, 100),
        final_lsn=lsns,
    ),
    paused=st.booleans(),
    requests=requests,
    sync=st.none()
    | st.builds(
        SyncState,
        leader=st.sampled_from(NAMES),
        term=st.integers(1, 100),
        standbys=st.lists(st.sampled_from(NAMES), max_size=2, unique=True).map(tuple),
    ),
    sync_unreadable=st.booleans(),
)
memories = st.builds(
    NodeMemory,
    name=st.just("pg1"),
    lease_id=st.sampled_from([None, MY_LEASE]),
    claimed_term=st.none() | st.integers(1, 100),
    fencing_deadline=st.none() | st.floats(0, 200),
    released_term=st.none() | st.integers(1, 100),
    primary_down_since=st.none() | st.floats(0, 200),
    no_leader_since=st.none() | st.floats(0, 200),
    last_leader_revision=st.integers(0, 200),
    election_backoff_until=st.none() | st.floats(0, 200),
    sit_out_reason=st.none() | st.just("its pre_promote hook `x` exited 1"),
    pre_promote_failed_term=st.none() | st.integers(1, 100),
    rewind_failed=st.booleans(),
    guard_alive=st.booleans(),
)
policies = st.builds(
    Policy,
    tags=st.builds(Tags, nofailover=st.booleans(), failover_priority=st.integers(0, 2)),
    remove_data_directory_on_rewind_failure=st.booleans(),
    synchronous_mode=st.sampled_from(["off", "on", "strict"]),
)
observations = st.builds(
    Observation,
    now=st.floats(0, 200),
    node=memories,
    local=locals_,
    cluster=st.none() | clusters,
    store_error=st.none() | st.just("timeout"),
)


def simulate(obs: Observation, plan: tuple[Action, ...]) -> tuple[bool, bool]:
    """(holds the key, Postgres writable) after the plan, if every action succeeds."""
    holds, writable = obs.holds_key, obs.local.writable
    for action in plan:
        if isinstance(action, (AcquireLeader, RebindLeader, ClaimInitialize)):
            holds = True
        elif isinstance(action, (ReleaseLeader, ForgetLeadership)):
            holds = False
        elif isinstance(action, StopPostgres):
            writable = False
        elif isinstance(action, Promote) or (
            isinstance(action, StartPostgres) and action.as_primary
        ):
            writable = True
    return holds, writable


@settings(max_examples=3000, deadline=None)
@given(observations, policies)
def test_decide_is_total_and_deterministic(obs: Observation, policy: Policy) -> None:
    first = decide(obs, policy)
    assert first == decide(obs, policy)
    assert first.code
    assert first.reason


@settings(max_examples=3000, deadline=None)
@given(observations, policies)
def test_promote_never_comes_without_the_key(obs: Observation, policy: Policy) -> None:
    holds = obs.holds_key
    for action in decide(obs, policy).actions:
        if isinstance(action, (AcquireLeader, RebindLeader, ClaimInitialize)):
            holds = True
        if isinstance(action, Promote) or (isinstance(action, StartPostgres) and action.as_primary):
            assert holds, f"{action} without the key"


@settings(max_examples=3000, deadline=None)
@given(observations, policies)
def test_a_node_without_the_key_never_ends_a_plan_writable(
    obs: Observation, policy: Policy
) -> None:
    holds, writable = simulate(obs, decide(obs, policy).actions)
    if writable:
        assert holds or (obs.cluster is None and obs.node.claimed_term is not None)


@settings(max_examples=3000, deadline=None)
@given(observations, policies)
def test_a_leader_past_its_fencing_deadline_always_stops_writing(
    obs: Observation, policy: Policy
) -> None:
    if not obs.past_fencing_deadline:
        return
    made = decide(obs, policy)
    assert made.code == "fence_past_deadline"
    holds, writable = simulate(obs, made.actions)
    assert not writable
    assert not holds
    if obs.local.running:
        assert isinstance(made.actions[0], StopPostgres)


@settings(max_examples=3000, deadline=None)
@given(observations, policies)
def test_the_key_is_released_only_after_a_confirmed_stop(obs: Observation, policy: Policy) -> None:
    stopped = not obs.local.running
    for action in decide(obs, policy).actions:
        if isinstance(action, StopPostgres):
            stopped = True
        if isinstance(action, ReleaseLeader):
            # A key taken whose promotion never ran may go back from a read-only replica.
            assert stopped or (action.never_promoted and not obs.local.writable)


@settings(max_examples=3000, deadline=None)
@given(observations, policies)
def test_a_leader_plan_renews_before_anything_slow(obs: Observation, policy: Policy) -> None:
    """A key holder's plan starts with its renewal, unless it stops writing or lets go."""
    made = decide(obs, policy)
    if not obs.holds_key or not made.actions:
        return
    first = made.actions[0]
    assert isinstance(first, (RenewLeader, StopPostgres, ReleaseLeader, ForgetLeadership)), (
        made.describe()
    )


@settings(max_examples=3000, deadline=None)
@given(observations, policies)
def test_an_operator_request_is_consumed_before_it_is_acted_on(
    obs: Observation, policy: Policy
) -> None:
    actions = decide(obs, policy).actions
    kinds = [type(action) for action in actions]
    if ConsumeRequest in kinds:
        assert all(kind is RenewLeader for kind in kinds[: kinds.index(ConsumeRequest)])


replica_members = st.builds(
    MemberInfo,
    name=st.just("x"),
    host=st.just("127.0.0.1"),
    port=st.just(5432),
    running=st.just(True),
    in_recovery=st.just(True),
    timeline=st.integers(1, 2),
    position=st.integers(0, 5000),
    tags=st.builds(Tags, nofailover=st.booleans(), failover_priority=st.integers(0, 2)),
    no_leader_revision=st.just(150),
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(replica_members, min_size=1, max_size=5), st.integers(0, 6000))
def test_every_node_elects_the_same_single_best_candidate(
    raw: list[MemberInfo], last_primary: int
) -> None:
    members = {f"n{i}": replace(m, name=f"n{i}") for i, m in enumerate(raw)}
    view = ClusterView(
        revision=160,
        leader=None,
        members=members,
        init_state=InitState.DONE,
        last_primary_position=last_primary,
        timeline_switches=(TimelineSwitch(2, 0),),
    )
    policy = Policy(maximum_lag_on_failover_bytes=1000)
    takers = []
    for name, m in members.items():
        local = LocalPostgres(
            PgRunState.RUNNING, in_recovery=True, timeline=m.timeline, position=m.position
        )
        node = NodeMemory(name=name, lease_id=1, last_leader_revision=100, no_leader_since=0)
        made = decide(Observation(10, node, local, view), replace(policy, tags=m.tags))
        if any(isinstance(a, AcquireLeader) for a in made.actions):
            takers.append(name)

    eligible = [
        Candidate(n, m.position or 0, m.tags.failover_priority)
        for n, m in members.items()
        if m.tags.never_promoted is None
        and m.timeline == 2
        and last_primary - (m.position or 0) <= 1000
    ]
    if eligible:
        assert takers == [min(eligible, key=Candidate.rank).name]
    else:
        assert takers == []
