"""The database users pgha needs, with the privileges they need and no more.

- the replication user: LOGIN REPLICATION, for streaming and pg_basebackup;
- the rewind user (optional, `postgres.rewind`): LOGIN and EXECUTE on the four functions
  pg_rewind calls on its source (pg_rewind(1), Notes); without it pg_rewind connects as
  the superuser;
- the superuser: its password only.

Passwords are hashed to SCRAM verifiers on our side, so the server (and its log, should the
statement ever be logged) never sees them in clear.
"""

from __future__ import annotations

from psycopg import sql

from pgha.adapters.postgres_session import Connection
from pgha.settings import Credentials, PostgresSettings

REWIND_FUNCTIONS = (
    "pg_catalog.pg_ls_dir(text, boolean, boolean)",
    "pg_catalog.pg_stat_file(text, boolean)",
    "pg_catalog.pg_read_binary_file(text)",
    "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
)
"""What pg_rewind runs on the source server; a non-superuser needs EXECUTE on each."""


def apply_users(connection: Connection, settings: PostgresSettings) -> None:
    """Create the missing users, reset their attributes and grants, set every password."""
    connection.execute("SET log_statement = 'none'")
    # Never wait for a sync standby (strict mode blocks every commit right after a
    # promotion); a role change lost in a failover is made again after the next promotion.
    connection.execute("SET synchronous_commit = local")
    _ensure_role(connection, settings.replication.username, "REPLICATION")
    users: list[Credentials] = [settings.replication, settings.superuser]
    if settings.rewind is not None:
        _ensure_role(connection, settings.rewind.username, "NOREPLICATION")
        for function in REWIND_FUNCTIONS:
            grant = sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(
                sql.SQL(function), sql.Identifier(settings.rewind.username)
            )
            connection.execute(grant)
        users.append(settings.rewind)
    for user in users:
        password = user.secret()
        if password is not None:
            verifier = connection.pgconn.encrypt_password(
                password.encode(), user.username.encode(), b"scram-sha-256"
            )
            statement = sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(user.username), sql.Literal(verifier.decode())
            )
            connection.execute(statement)


def _ensure_role(connection: Connection, name: str, replication: str) -> None:
    """A LOGIN role that is neither superuser nor creates roles or databases."""
    role = sql.Identifier(name)
    found = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    if found is None:
        connection.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
    attributes = sql.SQL(f"LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE {replication}")
    connection.execute(sql.SQL("ALTER ROLE {} WITH {}").format(role, attributes))
