"""Prove that the local primary can commit: one transaction that must flush WAL, on a fresh
connection, under a deadline the client enforces.

A primary can accept connections and answer catalog queries while it cannot commit: a hung
disk blocks the WAL flush, not the reads. So the agent that holds the key commits a
transaction that wrote WAL, which Postgres must flush before it answers.

- The WAL is a transactional logical-decoding message (`FLUSHED_WRITE`): a transaction
  that only takes a transaction id writes no WAL before its commit record, and Postgres
  commits such a transaction asynchronously, without waiting for the flush, so a hung disk
  would pass that probe.

- `synchronous_commit = local` for this transaction: waiting for a sync standby is never
  mistaken for a failure to commit (traps 6); that wait is reported elsewhere and never
  triggers failover.
- The deadline that counts is the client's (PgSession): statement_timeout and cancel
  requests do nothing against a frozen postmaster or a backend stuck in the kernel
  (traps 22).
- No table is written: the probe leaves nothing behind but a used transaction id and a
  few bytes of WAL, which logical decoding passes on only to a plugin that asks for messages.

This module only reports what happened; what to do about it is the core's decision.
"""

from __future__ import annotations

from pgha.adapters.postgres_session import Connection, PgSession
from pgha.errors import PostgresError

FLUSHED_WRITE = "pg_logical_emit_message(true, 'pgha', 'commit probe')"
"""WAL written inside the transaction, so that its commit waits for the flush."""
_COMMIT_LOCALLY = f"SELECT set_config('synchronous_commit', 'local', true), {FLUSHED_WRITE}"
"""One statement, one round trip: in autocommit it is its own transaction, and the local
setting (SET LOCAL's equivalent) is still in force when that transaction commits."""


def _commit_once(connection: Connection) -> None:
    connection.execute(_COMMIT_LOCALLY)


def check_local_commit(session: PgSession, *, timeout_seconds: float) -> str | None:
    """None when a transaction that wrote WAL committed and flushed locally within
    `timeout_seconds`; otherwise what went wrong, in one line."""
    try:
        session.run(_commit_once, timeout_seconds=timeout_seconds, what="commit a test transaction")
    except PostgresError as exc:
        return str(exc)
    return None
