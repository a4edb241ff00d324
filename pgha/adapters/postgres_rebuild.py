"""Give a node a data directory that fits the current primary: clone (pg_basebackup) and
rewind (pg_rewind).

Both copy files from another member, and with them that member's configuration. So both
end the same way: the pgha-owned files are rewritten for *this* node, standby.signal and
the upstream are written, and `primary_conninfo` / `primary_slot_name` are stripped from the
copied postgresql.auto.conf, where they would override pgha.conf (traps 10c). That is also
why neither tool runs with -R. Passwords reach the tools through the passfile only.
"""

from __future__ import annotations

import re
from typing import Any

from psycopg.conninfo import make_conninfo

from pgha.adapters import postgres_files as files
from pgha.adapters.postgres_node import PostgresNode
from pgha.adapters.postgres_session import Connection, remote_session
from pgha.adapters.postgres_state import Upstream, parse_lsn
from pgha.adapters.rewind_preflight import preflight
from pgha.errors import PostgresError

_SOURCE_SQL = """
SELECT pg_is_in_recovery(),
       (SELECT timeline_id FROM pg_control_checkpoint()),
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
       END
"""


def _tool_conninfo(node: PostgresNode, source: Upstream, user: str, **extra: Any) -> str:
    return make_conninfo(
        host=source.host,
        port=source.port,
        user=user,
        passfile=str(node.paths.passfile),
        application_name=f"pgha-{node.node}",
        connect_timeout=10,
        **extra,
    )


def _write_passfile(node: PostgresNode) -> None:
    text = files.render_passfile(node.settings)
    files.write_private_file(node.paths.passfile, text, node.tools.run_as)


def _become_replica_of(node: PostgresNode, source: Upstream) -> None:
    files.remove_copied_socket_locks(node.paths)
    node.configure_replica(source)


def clone(node: PostgresNode, source: Upstream, *, timeout_seconds: float) -> None:
    """pg_basebackup from `source` into the (missing or empty) data directory, as the
    replication user, WAL streamed alongside (-X stream) after a fast checkpoint; through
    `source.slot` when given, created on `source` first if it has none (so the source
    retains WAL for the new replica from the clone on). Leaves a replica of `source`, not
    started."""
    what = f"clone a replica from {source}"
    node.refuse_if_running(what)
    node.check_settings()
    files.ensure_empty_data_dir(node.paths.data_dir, node.tools.run_as)
    _write_passfile(node)
    args = [
        f"--pgdata={node.paths.data_dir}",
        f"--dbname={_tool_conninfo(node, source, node.settings.replication.username)}",
        "--wal-method=stream",
        "--checkpoint=fast",
        "--no-password",
    ]
    if source.slot:
        args.append(f"--slot={source.slot}")
        if not _slot_exists(node, source, source.slot):
            args.append("--create-slot")
    node.tools.run("pg_basebackup", args, what=what, timeout_seconds=timeout_seconds)
    _become_replica_of(node, source)


def _slot_exists(node: PostgresNode, source: Upstream, slot: str) -> bool:
    """Whether `source` has the physical slot `slot` (pg_basebackup --create-slot fails on
    an existing one; if the source's agent creates it in between, the next clone works)."""

    def read(connection: Connection) -> bool:
        query = "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s"
        row = connection.execute(query, (slot,)).fetchone()
        return row is not None and bool(row[0])

    session = remote_session(node.settings, source)
    return session.run(read, timeout_seconds=node.sql_timeout_seconds, what=f"look up slot {slot}")


def check_rewind_source(node: PostgresNode, source: Upstream) -> None:
    """Refuse a source that pg_rewind would silently ignore or reject (traps 10a).

    pg_rewind reads the source's timeline from its pg_control, which moves to the new
    timeline only at the first checkpoint after a promotion. Before that it reports "source
    and target cluster are on the same timeline", does nothing and succeeds, and the node
    would then fail to follow.
    """

    def read(connection: Connection) -> tuple[Any, ...]:
        row = connection.execute(_SOURCE_SQL).fetchone()
        assert row is not None  # a SELECT without FROM always returns one row
        return row

    what = f"check the rewind source {source}"
    session = remote_session(node.settings, source)
    in_recovery, checkpoint_tli, current_tli = session.run(
        read, timeout_seconds=node.sql_timeout_seconds, what=what
    )
    refusal = f"refusing to rewind {node.paths.data_dir} against {source}"
    if in_recovery:
        raise PostgresError(f"{refusal}: the source is in recovery; rewind against a primary")
    if checkpoint_tli != current_tli:
        raise PostgresError(
            f"{refusal}: the source has not checkpointed since its promotion (last checkpoint "
            f"on timeline {checkpoint_tli}, writing timeline {current_tli}), so pg_rewind would "
            "do nothing; run CHECKPOINT on the source, then retry"
        )


def rewind(
    node: PostgresNode, source: Upstream, *, fork_lsn: int | None, timeout_seconds: float
) -> str:
    """pg_rewind this stopped data directory against the primary `source`, then make it a
    replica of `source` (not started). Returns pg_rewind's report. `fork_lsn` is where the
    source's timeline branched off this node's, if known (for the WAL preflight check).

    Raises RewindPreflightFailed, having changed nothing, when pg_rewind could not work
    (rewind_preflight). standby.signal is removed first: pg_rewind finishes an unclean
    shutdown in single-user mode, which refuses standby mode (traps 10b). A failed rewind
    leaves the data directory for the operator; pgha never wipes it (it may hold the only
    copy of lost commits).
    """
    what = f"rewind against {source}"
    node.refuse_if_running(what)
    node.require_initialized(what)
    check_rewind_source(node, source)
    settings = node.settings
    user = (settings.rewind or settings.superuser).username
    preflight(
        settings=settings,
        control=node.read_control_data(),
        pg_wal=node.paths.data_dir / "pg_wal",
        source=source,
        fork_lsn=fork_lsn,
        timeout_seconds=node.sql_timeout_seconds,
    )
    files.remove_file(node.paths.standby_signal)
    files.remove_file(node.paths.recovery_signal)
    _write_passfile(node)
    conninfo = _tool_conninfo(node, source, user, dbname="postgres")
    args = [f"--target-pgdata={node.paths.data_dir}", f"--source-server={conninfo}"]
    output = node.tools.run("pg_rewind", args, what=what, timeout_seconds=timeout_seconds)
    _become_replica_of(node, source)
    # pg_rewind reports on stderr ("servers diverged at ...", "no rewind required", "Done!").
    return (output.stdout + output.stderr).strip()


_DIVERGED = re.compile(
    r"servers diverged at WAL location ([0-9A-Fa-f]+/[0-9A-Fa-f]+) on timeline (\d+)"
)


def diverged_at(report: str) -> tuple[int, int] | None:
    """(LSN, timeline) from pg_rewind's "servers diverged at WAL location X on timeline N":
    this node's WAL on timeline N from X on is what the rewind discarded."""
    found = _DIVERGED.search(report)
    if found is None:
        return None
    return parse_lsn(found.group(1)), int(found.group(2))
