"""Before pg_rewind runs: check what it needs, and say what is missing (issue 5, item 6).

A rewind that cannot work should be refused with a reason an operator can act on, not
fail halfway through with a message from deep inside pg_rewind. Three things are checked:

1. the target (this stopped data directory) logged hint-bit changes to its WAL: data
   checksums or wal_log_hints, as pg_controldata reports them;
2. the user pg_rewind connects as can log in to the source, run the four functions it
   calls there, and has no statement_timeout that would cut a long file copy short;
3. the WAL it will read: the target's segment that holds the fork point is still in
   pg_wal (pg_rewind reads the target's WAL back from there to the last common checkpoint).

Nothing here changes a file, so a failed preflight can simply be tried again next cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pgha.adapters.postgres_session import Connection, PgSession, user_conninfo
from pgha.adapters.postgres_state import ControlData, Upstream, format_lsn
from pgha.adapters.postgres_users import REWIND_FUNCTIONS
from pgha.errors import PostgresError
from pgha.settings import PostgresSettings


class RewindPreflightFailed(PostgresError):
    """pg_rewind would fail: nothing was changed, and the reason says what to fix."""


def check_target(control: ControlData) -> str | None:
    if control.data_checksums or control.wal_log_hints:
        return None
    return (
        "the data directory has neither data checksums nor wal_log_hints, so pg_rewind "
        "cannot tell which pages changed; re-clone it with `pgha reinit`"
    )


def wal_segment_name(timeline: int, lsn: int, segment_bytes: int) -> str:
    """The name of the WAL file of `timeline` that holds byte `lsn`."""
    segment = lsn // segment_bytes
    per_id = 0x1_0000_0000 // segment_bytes
    return f"{timeline:08X}{segment // per_id:08X}{segment % per_id:08X}"


def check_wal(pg_wal: Path, timeline: int, fork_lsn: int | None, segment_bytes: int) -> str | None:
    """Whether the segment holding the last byte before the fork point is in pg_wal, under
    this timeline's name or an ancestor's (a segment keeps the name of the timeline that
    began it), whole or .partial. None also when the fork point is unknown."""
    if fork_lsn is None or fork_lsn <= 0:
        return None
    wanted = wal_segment_name(timeline, fork_lsn - 1, segment_bytes)
    suffix = wanted[8:]
    try:
        names = [entry.name for entry in pg_wal.iterdir()]
    except OSError as exc:
        return f"cannot list {pg_wal}: {exc.strerror}"
    for name in names:
        base = name.removesuffix(".partial")
        if len(base) == 24 and base.endswith(suffix) and _timeline_of(base) <= timeline:
            return None
    return (
        f"WAL segment {wanted}, which holds the fork point {format_lsn(fork_lsn)}, is no "
        f"longer in {pg_wal}; pg_rewind needs it: re-clone this node with `pgha reinit`"
    )


def _timeline_of(segment_name: str) -> int:
    try:
        return int(segment_name[:8], 16)
    except ValueError:
        return 1 << 32


_USER_SQL = """
SELECT r.rolsuper, current_user, current_setting('statement_timeout'),
       ARRAY[{privileges}]
FROM pg_roles r WHERE r.rolname = current_user
"""


def rewind_user_problem(row: tuple[Any, ...]) -> str | None:
    """What keeps the user in `row` (from _USER_SQL) from running pg_rewind, or None."""
    superuser, user, statement_timeout, privileges = row
    problems = []
    missing = [f for f, granted in zip(REWIND_FUNCTIONS, privileges, strict=True) if not granted]
    if missing and not superuser:
        problems.append(f"user {user} may not execute {', '.join(missing)}")
    if statement_timeout not in ("0", "0ms", "0s"):
        problems.append(
            f"user {user} runs with statement_timeout {statement_timeout}, which would cut "
            f"pg_rewind's file copies short; run ALTER ROLE {user} RESET statement_timeout "
            "(or SET it to 0) on the primary"
        )
    return "; ".join(problems) or None


def check_rewind_user(
    settings: PostgresSettings, source: Upstream, *, timeout_seconds: float
) -> str | None:
    """Connect to `source` as pg_rewind will (the password passed in memory, not through
    the passfile) and check the user's privileges and statement_timeout."""
    credentials = settings.rewind or settings.superuser
    user = credentials.username
    conninfo = user_conninfo(credentials, source.host, source.port, "pgha-rewind-check")
    session = PgSession(f"{source.host}:{source.port}", server_timeout=False, **conninfo)
    privileges = ", ".join(
        f"has_function_privilege(current_user, '{function}', 'EXECUTE')"
        for function in REWIND_FUNCTIONS
    )

    def read(connection: Connection) -> tuple[Any, ...] | None:
        return connection.execute(_USER_SQL.format(privileges=privileges)).fetchone()

    try:
        row = session.run(read, timeout_seconds=timeout_seconds, what=f"log in as {user}")
    except PostgresError as exc:
        return f"pg_rewind's user {user} cannot log in to the source: {exc}"
    if row is None:
        return f"user {user} has no row in pg_roles on the source"
    return rewind_user_problem(row)


def preflight(
    *,
    settings: PostgresSettings,
    control: ControlData,
    pg_wal: Path,
    source: Upstream,
    fork_lsn: int | None,
    timeout_seconds: float,
) -> None:
    """Raise RewindPreflightFailed naming every problem found; return if there is none."""
    problems = [
        check_target(control),
        check_wal(pg_wal, control.checkpoint_timeline, fork_lsn, control.wal_segment_bytes),
        check_rewind_user(settings, source, timeout_seconds=timeout_seconds),
    ]
    found = [problem for problem in problems if problem is not None]
    if found:
        raise RewindPreflightFailed("rewind preflight failed: " + "; ".join(found))
