"""Gray failures (issue 5 item 5, DESIGN rule 7): a primary that runs but does not answer or
cannot commit keeps the key for primary_unhealthy_timeout, then is killed and only then
gives the key up; a frozen replica is never promoted."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgha.core.actions import Action, ForgetLeadership, ReleaseLeader, RenewLeader, StopPostgres
from pgha.core.decide import decide
from pgha.core.model import Observation, PgRunState
from tests.unit.core.builders import (
    NOW,
    POLICY,
    MiB,
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
)

KILL = StopPostgres("immediate", fence=True)
HUNG_DISK = "cannot commit a test transaction: Postgres (...) did not answer within 3 s"
Case = tuple[str, Observation, str, tuple[type[Action] | Action, ...]]


def leading(unhealthy_for: float | None, **local: object) -> Observation:
    """pg1 holds the key with a primary that has failed for `unhealthy_for` seconds."""
    since = None if unhealthy_for is None else NOW - unhealthy_for
    return observe(
        primary(**local),
        cluster(leader=my_key()),
        as_leader(primary_unhealthy_since=since),
    )


FROZEN = {"run_state": PgRunState.UNREACHABLE}
CANNOT_COMMIT = {"commit_failure": HUNG_DISK}

CASES: list[Case] = [
    (
        "frozen primary, first cycle: keep the key",
        leading(0, **FROZEN),
        "renew_while_primary_unhealthy",
        (RenewLeader(),),
    ),
    (
        "frozen primary, just under the timeout: keep the key",
        leading(29.9, **FROZEN),
        "renew_while_primary_unhealthy",
        (RenewLeader(),),
    ),
    (
        "frozen primary at the timeout: kill, then release",
        leading(30, **FROZEN),
        "release_unhealthy_primary",
        (RenewLeader(), KILL, ReleaseLeader()),
    ),
    (
        "primary that answers but cannot commit, before the timeout",
        leading(12, **CANNOT_COMMIT),
        "renew_while_primary_unhealthy",
        (RenewLeader(),),
    ),
    (
        "primary that cannot commit past the timeout: kill, then release",
        leading(45, **CANNOT_COMMIT),
        "release_unhealthy_primary",
        (RenewLeader(), KILL, ReleaseLeader()),
    ),
    (
        "a leader whose replica froze before promoting gives the key up too",
        observe(
            replica(**FROZEN),
            cluster(leader=my_key()),
            as_leader(primary_unhealthy_since=NOW - 31),
        ),
        "release_unhealthy_primary",
        (RenewLeader(), KILL, ReleaseLeader()),
    ),
    (
        "a primary that commits again is healthy",
        leading(None),
        "renew_as_primary",
        (RenewLeader(),),
    ),
    (
        "fencing still comes first",
        observe(
            primary(**FROZEN),
            cluster(leader=my_key()),
            as_leader(deadline=NOW - 1, primary_unhealthy_since=NOW - 60),
        ),
        "fence_past_deadline",
        (StopPostgres("fast", fence=True), ForgetLeadership()),
    ),
    (
        "paused: no failover, just keep the key",
        observe(
            primary(**CANNOT_COMMIT),
            cluster(leader=my_key(), paused=True),
            as_leader(primary_unhealthy_since=NOW - 60),
        ),
        "paused",
        (RenewLeader(),),
    ),
]


@pytest.mark.parametrize(("title", "obs", "code", "plan"), CASES, ids=[c[0] for c in CASES])
def test_gray_failure_table(
    title: str, obs: Observation, code: str, plan: tuple[type[Action] | Action, ...]
) -> None:
    assert_plan(decide(obs, POLICY), code, plan)


def test_the_reason_says_how_long_and_what_failed() -> None:
    made = decide(leading(12, **CANNOT_COMMIT), POLICY)
    assert "not committed for 12 s" in made.reason
    assert "primary_unhealthy_timeout 30 s" in made.reason
    assert "did not answer within 3 s" in made.reason
    frozen = decide(leading(40, **FROZEN), POLICY)
    assert "not answered its probe for 40 s" in frozen.reason


def test_the_timeout_is_the_policys() -> None:
    short = replace(POLICY, primary_unhealthy_timeout_seconds=5)
    assert decide(leading(5, **FROZEN), short).code == "release_unhealthy_primary"
    assert decide(leading(4, **FROZEN), short).code == "renew_while_primary_unhealthy"


def test_the_key_is_never_released_before_the_kill() -> None:
    """The executor stops at the first failed action: a kill that fails keeps the key."""
    for unhealthy_for in (30, 300, 3000):
        actions = decide(leading(unhealthy_for, **FROZEN), POLICY).actions
        assert actions.index(KILL) < next(
            i for i, action in enumerate(actions) if isinstance(action, ReleaseLeader)
        )


def test_a_frozen_replica_is_never_promoted() -> None:
    """Its probe timed out: it may be far behind, or gone; it says why it stays out."""
    made = decide(observe(replica(run_state=PgRunState.UNREACHABLE), leaderless()), POLICY)
    assert made.code == "not_eligible", made.describe()
    assert not made.actions
    assert "unreachable" in made.reason


def test_a_frozen_replica_is_no_rival() -> None:
    """pg3 is ahead but frozen (its record says not running): pg1 takes the key."""
    frozen = member("pg3", no_leader_revision=121, position=101 * MiB, running=False)
    view = leaderless(members={"pg1": member("pg1", no_leader_revision=120), "pg3": frozen})
    made = decide(observe(replica(), view, memory()), POLICY)
    assert made.code == "take_over_expired_leader", made.describe()
