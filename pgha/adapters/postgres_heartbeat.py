"""The leader's heartbeat row: one timestamp the primary rewrites every cycle.

Replicas replay the row like any other; the stamp of the newest one a replica replayed,
set against the newest one the leader published in etcd, is its lag in seconds, both
stamps from the primary's clock (traps 9d). The probe reads the row (postgres_probe).

The write commits locally only (`SET LOCAL synchronous_commit = local`, traps 6): a commit
that waited for a sync standby would measure the standby rather than this primary, and in
strict mode without a standby it would never return. The session's client-side deadline
and statement_timeout bound it, so a hung disk costs one bounded wait, never a hang.
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
    "SELECT 1, now() FROM (SELECT set_config('synchronous_commit', 'local', true)) AS setting "
    "ON CONFLICT (id) DO UPDATE SET at = excluded.at "
    "RETURNING extract(epoch FROM at)::float8"
)
"""One statement, one round trip: in autocommit it is its own transaction, and the local
setting (SET LOCAL's equivalent) holds when it commits."""
_NO_TABLE = (pg_errors.UndefinedTable, pg_errors.InvalidSchemaName)


def write_heartbeat(session: PgSession, *, timeout_seconds: float) -> float:
    """Stamp the heartbeat row with the primary's now() (creating the table the first time)
    and return that stamp in epoch seconds. Raises PostgresError (PostgresUnreachable when
    it did not commit in time)."""

    def write(connection: Connection) -> float:
        try:
            row = connection.execute(_WRITE).fetchone()
        except _NO_TABLE:
            # The first write on this cluster: create the table and write, committed
            # locally too (the DDL would otherwise wait for a sync standby).
            with connection.transaction():
                connection.execute("SET LOCAL synchronous_commit = local")
                for statement in _CREATE:
                    connection.execute(statement)
                row = connection.execute(_WRITE).fetchone()
        assert row is not None  # INSERT ... RETURNING always returns the row
        return float(row[0])

    return session.run(
        write, timeout_seconds=timeout_seconds, what="write the heartbeat row", reuse=True
    )
