"""Change what the local Postgres does: create, start, stop, promote, repoint, slots, users.

Each method does one thing the executor asked for, checks that it happened, and raises
`PostgresError` (what failed, on which data directory and port, and the tool's or the
server log's last lines) when it did not. Nothing here decides *whether* to do it.

Safety notes:
- `start_primary` refuses a data directory whose last life was a standby or that is an
  unstarted copy (backup_label): bringing it up read-write without a promotion would fork
  history on the same timeline.
- `stop` and `kill` return only once no process of the data directory is left (DESIGN
  section 3, rule 7); a survivor is an error, never a silent success.
"""

from __future__ import annotations

import re
import time
from typing import Any

from psycopg import errors as pg_errors

from pgha.adapters import postgres_files as files
from pgha.adapters import postgres_rebuild
from pgha.adapters.pg_process import kill_postgres, live_postmaster, wait_until_gone
from pgha.adapters.postgres_node import PostgresNode
from pgha.adapters.postgres_session import Connection
from pgha.adapters.postgres_state import ReplicationSlot, Upstream, format_lsn, parse_lsn
from pgha.adapters.postgres_users import apply_users
from pgha.errors import PostgresError

_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")
STOP_MODES = ("smart", "fast", "immediate")


def _check_slot_name(name: str) -> str:
    if not _SLOT_NAME.match(name):
        raise PostgresError(
            f"invalid replication slot name {name!r}: use 1-63 lower-case letters, digits, _"
        )
    return name


class PostgresControl(PostgresNode):
    """Lifecycle and replication control of the local Postgres (see PostgresNode for the
    constructor)."""

    # ---- creating and starting ---------------------------------------------------------

    def initdb(self, *, locale: str = "C.UTF-8", timeout_seconds: float = 180.0) -> None:
        """A new data directory with checksums (pg_rewind needs them), scram-sha-256, the
        configured superuser and its password, and every pgha-owned file written."""
        data_dir = self.paths.data_dir
        self.refuse_if_running("initdb")
        self.check_settings()
        files.ensure_empty_data_dir(data_dir, self.tools.run_as)
        args = [
            f"--pgdata={data_dir}",
            "--data-checksums",
            f"--username={self.settings.superuser.username}",
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            f"--locale={locale}",
        ]
        password = self.settings.superuser.secret()
        # The password goes through a private file that only the OS user can read, never
        # the command line (visible to every user in /proc).
        pwfile = data_dir.with_name(f".{data_dir.name}.initdb-password")
        try:
            if password is not None:
                files.write_private_file(pwfile, password + "\n", self.tools.run_as)
                args.append(f"--pwfile={pwfile}")
            self.tools.run("initdb", args, what="initdb", timeout_seconds=timeout_seconds)
        finally:
            files.remove_file(pwfile)
        self.configure(upstream=None)

    def start_primary(self, *, timeout_seconds: float = 60.0) -> None:
        """Start read-write. Refuses a data directory that must not become a primary
        without a promotion (last run as a standby, or an unstarted clone or rewind)."""
        what = "start Postgres as a primary"
        self.refuse_if_running(what)
        self.require_initialized(what)
        if (self.paths.data_dir / "backup_label").exists():
            raise PostgresError(
                f"cannot {what} ({self.where()}): it is a base backup or rewound copy that "
                "has not run yet (backup_label); start it as a replica"
            )
        control = self.read_control_data()
        if control.was_standby:
            raise PostgresError(
                f"cannot {what} ({self.where()}): its last run was as a standby "
                f"({control.cluster_state}); start it as a replica and promote it"
            )
        files.remove_file(self.paths.standby_signal)
        files.remove_file(self.paths.recovery_signal)
        self.configure(upstream=None)
        self.pg_ctl_start(what=what, timeout_seconds=timeout_seconds)

    def start_replica(self, upstream: Upstream | None, *, timeout_seconds: float = 60.0) -> None:
        """Start as a hot standby of `upstream` (None: read-only, streaming from nobody until
        repointed); returns once it accepts connections."""
        what = f"start Postgres as a replica of {upstream or 'nobody'}"
        self.refuse_if_running(what)
        self.require_initialized(what)
        self.configure_replica(upstream)
        self.pg_ctl_start(what=what, timeout_seconds=timeout_seconds)

    # ---- stopping -----------------------------------------------------------------------

    def stop(self, *, mode: str = "fast", timeout_seconds: float = 60.0) -> None:
        """pg_ctl stop, then confirm: postmaster.pid gone and no process left in the data
        directory. `immediate` is for fencing: no shutdown checkpoint, no waiting for
        clients. Does nothing on a server that is already down."""
        if mode not in STOP_MODES:
            raise ValueError(f"stop mode must be one of {STOP_MODES}, got {mode!r}")
        what = f"stop Postgres ({mode})"
        data_dir = self.paths.data_dir
        if live_postmaster(data_dir) is not None:
            wait = max(1, round(timeout_seconds))
            try:
                self.tools.run(
                    "pg_ctl",
                    ["stop", "-D", str(data_dir), "-m", mode, "-w", "-t", str(wait)],
                    what=what,
                    timeout_seconds=wait + 15,
                )
            except PostgresError:
                if live_postmaster(data_dir) is not None:
                    raise
        wait_until_gone(data_dir, wait_seconds=10, what=what)
        if (data_dir / "postmaster.pid").exists():
            # Only a killed postmaster leaves its pid file behind; nothing runs any more.
            self._remove_lock_files()

    def kill(self, *, wait_seconds: float = 10.0) -> None:
        """Last-resort fence for a frozen or hung server: SIGSTOP the postmaster, SIGKILL
        every child, then the postmaster; returns only when nothing is left."""
        kill_postgres(self.paths.data_dir, wait_seconds=wait_seconds)
        self._remove_lock_files()

    # ---- promotion, checkpoints, reloads ------------------------------------------------

    def promote(self, *, timeout_seconds: float = 60.0) -> None:
        """pg_promote(wait => true), then prove the server writable by assigning a
        transaction id. A no-op on a server that is already a primary."""
        wait = max(1, round(timeout_seconds))

        def promote(connection: Connection) -> None:
            in_recovery = _one(connection, "SELECT pg_is_in_recovery()")
            if in_recovery and not _one(connection, "SELECT pg_promote(true, %s)", (wait,)):
                raise PostgresError(
                    f"cannot promote ({self.where()}): not finished within {wait} s"
                )
            if _one(connection, "SELECT pg_is_in_recovery()"):
                raise PostgresError(f"cannot promote ({self.where()}): still in recovery")
            _one(connection, "SELECT pg_current_xact_id()::text")

        self.session.run(promote, timeout_seconds=wait + self.sql_timeout_seconds, what="promote")
        # A primary ignores primary_conninfo; drop it so that a restart reads what it is.
        self.configure(upstream=None)

    def checkpoint(self, *, timeout_seconds: float = 120.0) -> None:
        """CHECKPOINT: after a promotion, pg_control's timeline moves only with it, and
        pg_rewind against this server does nothing until then (traps 10a)."""
        self.session.run(
            lambda connection: connection.execute("CHECKPOINT"),
            timeout_seconds=timeout_seconds,
            what="checkpoint",
        )

    def reload(self) -> None:
        self.session.run(
            lambda connection: connection.execute("SELECT pg_reload_conf()"),
            timeout_seconds=self.sql_timeout_seconds,
            what="reload the configuration",
        )

    def set_synchronous_standby_names(
        self, value: str, *, timeout_seconds: float = 10.0
    ) -> int | None:
        """Write pgha-sync.conf, reload, and wait until the server uses `value`. Returns the
        primary's flush LSN taken after that (None on a standby): a standby added now has
        every commit acknowledged before it once it has flushed that far (traps 5a)."""
        files.write_private_file(
            self.paths.sync_conf, files.render_sync_conf(value), self.tools.run_as
        )

        def reload_and_wait(connection: Connection) -> int | None:
            connection.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + timeout_seconds / 2
            while _one(connection, "SELECT current_setting('synchronous_standby_names')") != value:
                if time.monotonic() > deadline:
                    raise PostgresError(
                        "synchronous_standby_names did not take the value pgha wrote: is it "
                        "set with ALTER SYSTEM (postgresql.auto.conf)? Remove it there"
                    )
                time.sleep(0.05)
            flush = _one(
                connection,
                "SELECT CASE WHEN pg_is_in_recovery() THEN NULL "
                "ELSE pg_current_wal_flush_lsn()::text END",
            )
            return parse_lsn(flush) if flush is not None else None

        return self.session.run(
            reload_and_wait, timeout_seconds=timeout_seconds, what="set synchronous_standby_names"
        )

    # ---- users --------------------------------------------------------------------------

    def ensure_users(self) -> None:
        """Create or update pgha's database users on this primary (postgres_users). Run at
        bootstrap and after every promotion, so that a user added to the settings later
        exists once a node that names it has led."""

        def apply(connection: Connection) -> None:
            apply_users(connection, self.settings)

        self.session.run(apply, timeout_seconds=self.sql_timeout_seconds, what="set up users")

    # ---- replication --------------------------------------------------------------------

    def follow(self, upstream: Upstream, *, timeout_seconds: float = 15.0) -> None:
        """Point a running replica at `upstream` without a restart: rewrite pgha.conf and
        reload (PG 13+ restarts the WAL receiver with the new primary_conninfo). Returns
        once the server has loaded the new settings."""
        what = f"repoint the replica to {upstream}"
        if live_postmaster(self.paths.data_dir) is None:
            raise PostgresError(f"cannot {what} ({self.where()}): Postgres is not running")
        in_recovery = self.session.run(
            lambda connection: _one(connection, "SELECT pg_is_in_recovery()"),
            timeout_seconds=self.sql_timeout_seconds,
            what=what,
        )
        if not in_recovery:
            raise PostgresError(f"cannot {what} ({self.where()}): it is a primary")
        self.configure_replica(upstream)
        conninfo = files.walreceiver_conninfo(self.settings, self.paths, upstream, self.node)
        expected = (conninfo, upstream.slot or "")

        def reload_and_wait(connection: Connection) -> None:
            connection.execute("SELECT pg_reload_conf()")
            query = (
                "SELECT current_setting('primary_conninfo'), current_setting('primary_slot_name')"
            )
            while _row(connection, query) != expected:
                # Our backend applies the reload before its next statement; poll until then.
                time.sleep(0.05)

        try:
            self.session.run(reload_and_wait, timeout_seconds=timeout_seconds, what=what)
        except PostgresError as exc:
            raise PostgresError(f"{exc}; server log: {self.log_tail()}") from None

    def create_slot(self, name: str) -> bool:
        """A physical slot that reserves WAL at once; False if it already existed."""
        _check_slot_name(name)

        def create(connection: Connection) -> bool:
            if _one(connection, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                    (name,)):  # fmt: skip
                return False
            try:
                connection.execute("SELECT pg_create_physical_replication_slot(%s, true)", (name,))
            except pg_errors.DuplicateObject:
                return False
            return True

        return self.session.run(
            create, timeout_seconds=self.sql_timeout_seconds, what=f"create slot {name}"
        )

    def drop_slot(self, name: str) -> bool:
        """Drop a slot; False if there was none. An active slot is an error."""
        _check_slot_name(name)

        def drop(connection: Connection) -> bool:
            try:
                connection.execute("SELECT pg_drop_replication_slot(%s)", (name,))
            except pg_errors.UndefinedObject:
                return False
            return True

        return self.session.run(
            drop, timeout_seconds=self.sql_timeout_seconds, what=f"drop slot {name}"
        )

    def list_slots(self) -> tuple[ReplicationSlot, ...]:
        """The permanent physical slots (temporary ones belong to running pg_basebackups)."""

        def read(connection: Connection) -> tuple[ReplicationSlot, ...]:
            rows = connection.execute(
                "SELECT slot_name, active, restart_lsn::text, wal_status FROM pg_replication_slots "
                "WHERE slot_type = 'physical' AND NOT temporary ORDER BY slot_name"
            ).fetchall()
            return tuple(
                ReplicationSlot(name, active, None if lsn is None else parse_lsn(lsn), status)
                for name, active, lsn, status in rows
            )

        return self.session.run(
            read, timeout_seconds=self.sql_timeout_seconds, what="list slots", reuse=True
        )

    def advance_slot(self, name: str, target: int) -> int | None:
        """pg_replication_slot_advance towards `target`, never past what this server has
        flushed (primary) or replayed (replica); returns the slot's new restart LSN, None
        when it was already there or the slot is gone."""
        _check_slot_name(name)
        query = """
            SELECT (pg_replication_slot_advance(slot_name, target)).end_lsn::text
            FROM (SELECT slot_name, restart_lsn, LEAST(%s::pg_lsn,
                         CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                              ELSE pg_current_wal_flush_lsn() END) AS target
                  FROM pg_replication_slots WHERE slot_name = %s) AS slot
            WHERE target > restart_lsn
        """

        def advance(connection: Connection) -> int | None:
            row = connection.execute(query, (format_lsn(target), name)).fetchone()
            return None if row is None or row[0] is None else parse_lsn(row[0])

        return self.session.run(
            advance,
            timeout_seconds=self.sql_timeout_seconds,
            what=f"advance slot {name}",
            reuse=True,
        )

    def clone(self, source: Upstream, *, timeout_seconds: float = 600.0) -> None:
        """A new replica of `source`: see postgres_rebuild.clone."""
        postgres_rebuild.clone(self, source, timeout_seconds=timeout_seconds)

    def rewind(
        self, source: Upstream, *, fork_lsn: int | None = None, timeout_seconds: float = 600.0
    ) -> str:
        """Make this stopped old primary a replica of `source`: see postgres_rebuild.rewind."""
        return postgres_rebuild.rewind(
            self, source, fork_lsn=fork_lsn, timeout_seconds=timeout_seconds
        )


def _row(connection: Connection, query: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    row = connection.execute(query, params).fetchone()
    if row is None:
        raise PostgresError(f"no row from {query!r}")
    return row


def _one(connection: Connection, query: str, params: tuple[Any, ...] = ()) -> Any:
    return _row(connection, query, params)[0]
