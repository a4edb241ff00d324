"""One exception tree for pgha.

Adapters translate third-party exceptions (urllib3, psycopg, subprocess) into
these at the boundary, so that the agent and the CLI handle one family of errors. Messages
say what happened, to what, and what happens next.
"""


class PghaError(Exception):
    """Base of every error pgha raises on purpose."""


class ConfigError(PghaError):
    """The configuration is unusable; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StoreError(PghaError):
    """The cluster store (etcd) refused a request or answered something unexpected."""


class StoreUnavailable(StoreError):
    """etcd could not be reached within the call's timeout on any endpoint.

    For a write this means the request was not applied: it never reached a server.
    """


class StoreOutcomeUnknown(StoreUnavailable):
    """A write was sent but no answer came back in time: it may or may not have been applied.

    A leadership write with an unknown outcome leaves the node not-leader until a fresh
    snapshot proves otherwise (traps 1d).
    """


class StoreAuthError(StoreError):
    """etcd rejected our credentials or permissions; retrying the same request will not help."""


class PostgresError(PghaError):
    """A Postgres probe, SQL statement or tool (initdb, pg_ctl, pg_basebackup, ...) failed."""


class PostgresUnreachable(PostgresError):
    """The local Postgres did not answer within the probe's client-side timeout."""
