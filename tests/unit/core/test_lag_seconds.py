"""maximum_lag_seconds_on_failover in the election: the leader's newest published heartbeat
stamp minus the newest one a replica replayed, both from the primary's clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgha.core.decide import decide
from pgha.core.election import lag_seconds
from pgha.core.model import ClusterView, ForcedFailover, LocalPostgres, Policy
from pgha.core.rules_switchover import switchover_candidate
from tests.unit.core.builders import POLICY, MiB, cluster, leaderless, member, observe, replica

BEAT = 1_700_000_000.0
"""The newest heartbeat stamp the leader published (epoch seconds, the primary's clock)."""
LIMIT = replace(POLICY, maximum_lag_seconds_on_failover=3)


def gone(**changes: object) -> ClusterView:
    """pg2 is gone after publishing BEAT; pg3 replayed everything up to it."""
    members = {
        "pg1": member("pg1", no_leader_revision=120),
        "pg3": member("pg3", no_leader_revision=121, position=99 * MiB, heartbeat_replayed_at=BEAT),
    }
    defaults: dict[str, object] = {"members": members, "last_primary_heartbeat": BEAT}
    defaults.update(changes)
    return leaderless(**defaults)


def rival_ahead(replayed_seconds_ago: float) -> ClusterView:
    """pg3 ahead of pg1 in bytes (at the last published position), its replayed heartbeat
    `replayed_seconds_ago` old."""
    pg3 = member(
        "pg3",
        no_leader_revision=121,
        position=101 * MiB,
        heartbeat_replayed_at=BEAT - replayed_seconds_ago,
    )
    members = {"pg1": member("pg1", no_leader_revision=120), "pg3": pg3}
    return gone(members=members, last_primary_position=101 * MiB)


def behind(seconds: float | None) -> LocalPostgres:
    """pg1 (ahead of pg3 in bytes) whose replayed heartbeat is `seconds` old."""
    return replica(heartbeat_replayed_at=None if seconds is None else BEAT - seconds)


CASES = [
    # (case, local, view, policy, code, reason fragment)
    ("within the limit", behind(1), gone(), LIMIT, "take_over_expired_leader", "best eligible"),
    (
        "beyond the limit: refused, with both numbers",
        behind(10),
        gone(),
        LIMIT,
        "not_eligible",
        "10.0 s behind the last heartbeat the primary published, more than "
        "maximum_lag_seconds_on_failover (3 s)",
    ),
    (
        "no heartbeat replayed while the primary published one: unknown, refused",
        behind(None),
        gone(),
        LIMIT,
        "not_eligible",
        "no heartbeat row of the primary replayed yet",
    ),
    ("limit 0 is off", behind(1000), gone(), POLICY, "take_over_expired_leader", "best"),
    (
        "no heartbeat ever published: nothing to measure against",
        behind(None),
        gone(last_primary_heartbeat=None),
        LIMIT,
        "take_over_expired_leader",
        "best eligible",
    ),
    (
        "replayed a newer stamp than the published one: no lag",
        behind(-5),
        gone(),
        LIMIT,
        "take_over_expired_leader",
        "best eligible",
    ),
    (
        "a rival ahead in bytes but beyond the limit is no rival",
        behind(1),
        rival_ahead(replayed_seconds_ago=4),
        LIMIT,
        "take_over_expired_leader",
        "best eligible",
    ),
    (
        "a rival ahead in bytes and within the limit wins",
        behind(1),
        rival_ahead(replayed_seconds_ago=2),
        LIMIT,
        "wait_for_better_candidate",
        "pg3 is ahead",
    ),
    (
        "pgha failover --allow-data-loss waives the limit",
        behind(10),
        gone(failover=ForcedFailover("pg1", allow_data_loss=True)),
        LIMIT,
        "take_over_on_request",
        "the operator asked this node",
    ),
    (
        "pgha failover without --allow-data-loss keeps it",
        behind(10),
        gone(failover=ForcedFailover("pg1")),
        LIMIT,
        "cannot_take_forced_failover",
        "maximum_lag_seconds_on_failover (3 s)",
    ),
]


@pytest.mark.parametrize(
    ("case", "local", "view", "policy", "expected"),
    [(c[0], c[1], c[2], c[3], c[4:]) for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_election_with_a_lag_limit_in_seconds(
    case: str, local: LocalPostgres, view: ClusterView, policy: Policy, expected: tuple[str, str]
) -> None:
    code, why = expected
    made = decide(observe(local, view), policy)
    assert made.code == code, made.describe()
    assert why in made.reason, made.reason
    assert not made.actions or code.startswith("take_over")


def test_lag_is_published_minus_replayed_never_negative() -> None:
    view = gone()
    assert lag_seconds(view, BEAT - 2.5) == 2.5
    assert lag_seconds(view, BEAT + 1) == 0.0
    assert lag_seconds(view, None) is None
    assert lag_seconds(gone(last_primary_heartbeat=None), BEAT) is None


def test_a_switchover_skips_a_replica_beyond_the_limit_and_says_so() -> None:
    late = member("pg1", heartbeat_replayed_at=BEAT - 10)
    view = cluster(last_primary_heartbeat=BEAT)
    view = replace(view, members={**view.members, "pg1": late})
    found = switchover_candidate(view, "pg2", "pg1", LIMIT)
    assert isinstance(found, str)
    assert "within maximum_lag_on_failover (1048576 bytes) and 3 s" in found
