"""The leader's heartbeat row: one timestamp the primary rewrites every cycle.

Replicas replay the row like any other; the stamp of the newest one a replica replayed,
set against the newest one the leader published in etcd, is its lag in seconds, both
stamps from the primary's clock (traps 9d). The probe reads the row (postgres_probe).

This module owns the write. It is the leader's commit probe too (commit_probe, on a fresh
connection, every cycle the primary was read-write when observed), so one statement both
proves that the primary commits and stamps the row; the cycle writes it on the control
session only when the probe did not this cycle (the cycle that promoted the node).

The write commits locally only (`synchronous_commit = local` for its transaction, traps 6):
a commit that waited for a sync standby would measure the standby rather than this primary,
and in strict mode without a standby it would never return. It writes WAL (a row), so its
commit still waits for the local flush: a hung disk cannot pass it. The session's
client-side deadline and statement_timeout bound it, so a hung disk costs one bounded
wait, never a hang.
"""

from __future__ import annotations

from psycopg import errors as pg_errors

from pgha.adapters.postgres_session import Connection, PgSession

_CREATE = (
    "CREATE SCHEMA IF NOT EXISTS pgha",
    "CREATE TABLE IF NOT EXISTS pgha.heartbeat ("
    "id int PRIMARY KEY CHECK (id = 1), at timestamptz NOT NULL)",
)
_WRITE = (
    "INSERT INTO pgha.heartbeat (id, at) "
    "SELECT 1, now() FROM (SELECT set_config('synchronous_commit', 'local', true), "
    "set_config('lock_timeout', '500ms', true)) AS setting "
    "ON CONFLICT (id) DO UPDATE SET at = excluded.at "
    "RETURNING extract(epoch FROM at)::float8"
)
"""One statement, one round trip: in autocommit it is its own transaction, and the local
settings (SET LOCAL's equivalent) hold while it takes the row lock and when it commits.
lock_timeout: the write waits half a second at most for a row lock someone else's open
transaction holds; the commit probe then proves the commit without the heartbeat."""
_NO_TABLE = (pg_errors.UndefinedTable, pg_errors.InvalidSchemaName)


def stamp_heartbeat(connection: Connection) -> float:
    """Stamp the heartbeat row with the primary's now() on `connection` (in autocommit
    mode), creating the table the first time; return the stamp in epoch seconds once its
    transaction has committed and flushed locally."""
    try:
        row = connection.execute(_WRITE).fetchone()
    except _NO_TABLE:
        # The first write on this cluster: create the table and write, committed locally
        # too (the DDL would otherwise wait for a sync standby).
        with connection.transaction():
            connection.execute("SET LOCAL synchronous_commit = local")
            for statement in _CREATE:
                connection.execute(statement)
            row = connection.execute(_WRITE).fetchone()
    assert row is not None  # INSERT ... RETURNING always returns the row
    return float(row[0])


def write_heartbeat(session: PgSession, *, timeout_seconds: float) -> float:
    """Stamp the heartbeat row on the session's reused connection and return the stamp.
    Raises PostgresError (PostgresUnreachable when it did not commit in time)."""
    return session.run(
        stamp_heartbeat, timeout_seconds=timeout_seconds, what="write the heartbeat row", reuse=True
    )
