"""Whether the primary this node leads is healthy: it answers its probe and it commits.

Part of a cycle's observe step. While this node holds the key and its Postgres is running
read-write (or possibly so: a probe that timed out), it commits one local test transaction
and remembers since when that has been failing, for primary_unhealthy_timeout. What to do
about it is the core's decision (rules_leader), never this module's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from pgha.adapters.postgres_state import PostgresState
from pgha.agent.runtime import Runtime
from pgha.core.model import LocalPostgres, PgRunState


def observe_primary_health(
    runtime: Runtime,
    local: LocalPostgres,
    state: PostgresState,
    check_commit: Callable[[], str | None],
    now: float,
) -> LocalPostgres:
    """`local` with `commit_failure` set when the primary failed this cycle; updates
    `runtime.primary_unhealthy_since` (set on the first failure, cleared on a success)."""
    failure = None
    if runtime.claim is not None:
        if local.run_state is PgRunState.UNREACHABLE:
            failure = state.problem or "Postgres does not answer its probe"
        elif local.run_state is PgRunState.RUNNING and not local.in_recovery:
            failure = check_commit()
    if failure is None:
        runtime.primary_unhealthy_since = None
        return local
    if runtime.primary_unhealthy_since is None:
        runtime.primary_unhealthy_since = now
    return replace(local, commit_failure=failure)
