"""The observe side of gray failures: when the agent runs its commit check, how it remembers
since when the primary has failed, how a probe that timed out is classified, and the
primary_unhealthy_timeout key of the dynamic config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgha.adapters.postgres_state import PostgresState
from pgha.adapters.store import LeaderClaim, RawEntry, parse_snapshot
from pgha.agent.cluster_view import parse_cluster
from pgha.agent.local_view import local_view
from pgha.agent.primary_health import observe_primary_health
from pgha.agent.runtime import Runtime
from pgha.core.model import LocalPostgres, PgRunState, Policy
from pgha.dynamic_config import parse_assignment

DATA = Path("/nonexistent/data")
PRIMARY = LocalPostgres(PgRunState.RUNNING, in_recovery=False)
REPLICA = LocalPostgres(PgRunState.RUNNING, in_recovery=True)
FROZEN = LocalPostgres(PgRunState.UNREACHABLE, in_recovery=False)
NO_ANSWER = PostgresState(DATA, True, True, problem="did not answer within 3 s")


class Commits:
    """A commit check that answers from a script, and counts how often it was asked."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self) -> str | None:
        self.calls += 1
        return self.answers.pop(0)


def leader_runtime() -> Runtime:
    runtime = Runtime(name="pg1", safety_margin_seconds=2)
    runtime.claim = LeaderClaim("pg1", 60, 0xA1)
    return runtime


def test_a_leader_checks_its_primary_commits_and_remembers_since_when_it_fails() -> None:
    runtime = leader_runtime()
    commits = Commits("timed out", "timed out", None)
    seen = observe_primary_health(runtime, PRIMARY, NO_ANSWER, commits, now=100.0)
    assert seen.commit_failure == "timed out"
    assert runtime.primary_unhealthy_since == 100.0
    observe_primary_health(runtime, PRIMARY, NO_ANSWER, commits, now=105.0)
    assert runtime.primary_unhealthy_since == 100.0  # the first failure counts
    assert runtime.memory().primary_unhealthy_since == 100.0
    healthy = observe_primary_health(runtime, PRIMARY, NO_ANSWER, commits, now=110.0)
    assert healthy.commit_failure is None
    assert runtime.primary_unhealthy_since is None
    assert commits.calls == 3


def test_an_unreachable_primary_fails_without_a_commit_attempt() -> None:
    runtime = leader_runtime()
    commits = Commits()
    seen = observe_primary_health(runtime, FROZEN, NO_ANSWER, commits, now=7.0)
    assert seen.commit_failure == "did not answer within 3 s"
    assert runtime.primary_unhealthy_since == 7.0
    assert commits.calls == 0


@pytest.mark.parametrize("local", [REPLICA, PRIMARY, FROZEN], ids=["replica", "primary", "frozen"])
def test_no_check_without_the_key(local: LocalPostgres) -> None:
    """A node without the key is not failed over by this rule (the fencing rules demote a
    writable one), so it commits nothing and remembers nothing."""
    runtime = Runtime(name="pg1", safety_margin_seconds=2)
    runtime.primary_unhealthy_since = 1.0
    commits = Commits()
    assert observe_primary_health(runtime, local, NO_ANSWER, commits, now=9.0) == local
    assert runtime.primary_unhealthy_since is None
    assert commits.calls == 0


def test_a_leading_replica_is_not_asked_to_commit() -> None:
    runtime = leader_runtime()
    commits = Commits()
    assert observe_primary_health(runtime, REPLICA, NO_ANSWER, commits, now=9.0) == REPLICA
    assert commits.calls == 0


@pytest.mark.parametrize(
    "problem",
    [
        "cannot probe Postgres: Postgres (x) did not answer within 3 s; abandoned",
        "cannot probe Postgres: Postgres (x): connection timeout expired",
    ],
)
def test_a_server_that_never_answers_is_unreachable_not_starting(problem: str) -> None:
    """A frozen postmaster: libpq's own connect timeout may fire before the session's."""
    state = PostgresState(DATA, True, True, postmaster_status="ready", problem=problem)
    seen = local_view(state, {}, last_in_recovery=False)
    assert seen.run_state is PgRunState.UNREACHABLE
    assert seen.writable


def test_a_server_starting_up_is_starting() -> None:
    problem = "cannot probe Postgres: FATAL: the database system is starting up"
    state = PostgresState(DATA, True, True, postmaster_status="starting", problem=problem)
    assert local_view(state, {}).run_state is PgRunState.STARTING


def test_primary_unhealthy_timeout_is_dynamic_config() -> None:
    assert parse_assignment("primary_unhealthy_timeout=5") == ("primary_unhealthy_timeout", 5.0)
    with pytest.raises(ValueError, match="primary_unhealthy_timeout"):
        parse_assignment("primary_unhealthy_timeout=0")


@pytest.mark.parametrize(("value", "expected"), [(5, 5.0), (0, 30.0), (-3, 30.0)])
def test_agents_read_primary_unhealthy_timeout_and_refuse_nonsense(
    value: float, expected: float
) -> None:
    config = json.dumps({"primary_unhealthy_timeout": value})
    snapshot = parse_snapshot(100, [RawEntry("config", config, 10, 10, 0)])
    parsed = parse_cluster(snapshot, Policy())
    assert parsed.policy.primary_unhealthy_timeout_seconds == expected
