"""Prove that the local primary can commit: one transaction that must flush WAL, on a fresh
connection, under a deadline the client enforces.

A primary can accept connections and answer catalog queries while it cannot commit: a hung
disk blocks the WAL flush, not the reads. So the agent that holds the key commits a
transaction that wrote WAL, which Postgres must flush before it answers.

- The transaction is the heartbeat write (postgres_heartbeat): the row it updates is WAL
  written before the commit record, so the commit waits for the flush. (A transaction that
  only takes a transaction id writes no WAL before its commit record, and Postgres commits
  such a transaction asynchronously, without waiting for the flush: a hung disk would pass
  that probe.) One statement proves the commit and stamps the heartbeat, whose stamp the
  probe reports, so the cycle has nothing more to write.
- A bookkeeping row must never pass for a primary that cannot commit: when the server
  refuses the heartbeat itself (its table altered or dropped by hand, its row locked by
  someone's open transaction: the write gives up on a row lock after a moment), the probe
  proves the commit with a transactional logical-decoding message instead
  (`pg_logical_emit_message(true, ...)`, which writes WAL too and touches no table), and
  reports the heartbeat's problem apart from the commit's. Only the commit's failure can
  lead to a failover.
- `synchronous_commit = local` for this transaction: waiting for a sync standby is never
  mistaken for a failure to commit (traps 6); that wait is reported elsewhere and never
  triggers failover.
- A fresh connection every time: a frozen postmaster, which still serves the sessions it
  already forked, must fail the probe.
- The deadline that counts is the client's (PgSession): statement_timeout and cancel
  requests do nothing against a frozen postmaster or a backend stuck in the kernel
  (traps 22).

This module only reports what happened; what to do about it is the core's decision.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import errors as pg_errors

from pgha.adapters.postgres_heartbeat import stamp_heartbeat
from pgha.adapters.postgres_session import Connection, PgSession
from pgha.errors import PostgresError

PROVE_COMMIT = (
    "SELECT set_config('synchronous_commit', 'local', true), "
    "pg_logical_emit_message(true, 'pgha', 'commit probe')"
)
"""The proof when the heartbeat is refused: WAL written in the transaction, so that its
commit waits for the flush, in one statement with the local setting."""


@dataclass(frozen=True)
class CommitCheck:
    """What one commit probe found: `failure` or a committed transaction, and then either
    the heartbeat stamp it wrote or why the heartbeat could not be written."""

    failure: str | None = None
    """Why nothing committed, in one line."""
    heartbeat_at: float | None = None
    """The heartbeat stamp the probe's transaction committed (epoch seconds, the primary's
    clock)."""
    heartbeat_problem: str | None = None
    """Why the server refused the heartbeat while the proof without it committed."""


@dataclass(frozen=True)
class _Committed:
    heartbeat_at: float | None
    heartbeat_problem: str | None


def _commit_and_stamp(connection: Connection) -> _Committed:
    try:
        return _Committed(stamp_heartbeat(connection), None)
    except psycopg.Error as exc:
        if not _refused_heartbeat(exc, connection):
            raise
        problem = f"[{exc.sqlstate}] {str(exc).strip()}"
    connection.execute(PROVE_COMMIT)
    return _Committed(None, problem)


def _refused_heartbeat(exc: psycopg.Error, connection: Connection) -> bool:
    """The server answered the heartbeat with an error of its own, and the connection can
    still take the proof. Not a statement_timeout (the time is up) and not a lost
    connection: those are the commit's failure."""
    if exc.sqlstate is None or isinstance(exc, pg_errors.QueryCanceled):
        return False
    return not connection.broken and not connection.closed


def check_local_commit(session: PgSession, *, timeout_seconds: float) -> CommitCheck:
    """Stamp the heartbeat row on a fresh connection (or, when the server refuses that,
    commit the proof without it): what committed and flushed locally within
    `timeout_seconds`, otherwise what went wrong."""
    try:
        committed = session.run(
            _commit_and_stamp, timeout_seconds=timeout_seconds, what="commit a test transaction"
        )
    except PostgresError as exc:
        return CommitCheck(failure=str(exc))
    return CommitCheck(
        heartbeat_at=committed.heartbeat_at, heartbeat_problem=committed.heartbeat_problem
    )
