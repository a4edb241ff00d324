"""Prove that the local primary can commit: one transaction that must flush WAL, on a fresh
connection, under a deadline the client enforces.

A primary can accept connections and answer catalog queries while it cannot commit: a hung
disk blocks the WAL flush, not the reads. So the agent that holds the key asks for a
transaction id, which makes the commit write and flush a commit record.

- `synchronous_commit = local`: waiting for a sync standby is never mistaken for a failure
  to commit (traps 6); that wait is reported elsewhere and never triggers failover.
- The deadline that counts is the client's (PgSession): statement_timeout and cancel
  requests do nothing against a frozen postmaster or a backend stuck in the kernel
  (traps 22).
- No table is written: the probe leaves nothing behind but a used transaction id.

This module only reports what happened; what to do about it is the core's decision.
"""

from __future__ import annotations

from pgha.adapters.postgres_session import Connection, PgSession
from pgha.errors import PostgresError

_LOCAL_COMMIT = "SET LOCAL synchronous_commit = local"
_ASSIGN_XID = "SELECT pg_current_xact_id()"


def _commit_once(connection: Connection) -> None:
    with connection.transaction():
        connection.execute(_LOCAL_COMMIT)
        connection.execute(_ASSIGN_XID)


def check_local_commit(session: PgSession, *, timeout_seconds: float) -> str | None:
    """None when a transaction with a transaction id committed locally within
    `timeout_seconds`; otherwise what went wrong, in one line."""
    try:
        session.run(_commit_once, timeout_seconds=timeout_seconds, what="commit a test transaction")
    except PostgresError as exc:
        return str(exc)
    return None
