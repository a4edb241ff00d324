"""What every Postgres control operation needs: the node's settings, files, tools and session.

`PostgresNode` holds them and the steps several operations share (write every pgha-owned
file, start the server through pg_ctl, refuse to touch a running server). The operations
themselves live in postgres_control (lifecycle, users, slots, repointing) and
postgres_rebuild (clone, rewind).
"""

from __future__ import annotations

import logging

from pgha.adapters import postgres_files as files
from pgha.adapters.pg_process import PgTools, live_postmaster, processes_in, tail
from pgha.adapters.postgres_files import PostgresPaths
from pgha.adapters.postgres_probe import read_control_data
from pgha.adapters.postgres_session import local_session
from pgha.adapters.postgres_state import ControlData, Upstream
from pgha.errors import PostgresError
from pgha.settings import PostgresSettings

LOG_TAIL_CHARS = 1500
log = logging.getLogger(__name__)


class PostgresNode:
    """The local Postgres of one member, as the control operations see it."""

    def __init__(
        self,
        settings: PostgresSettings,
        *,
        node: str,
        paths: PostgresPaths | None = None,
        sql_timeout_seconds: float = 10.0,
    ) -> None:
        """`node` is the member name; replicas report it as their application_name, which
        is what synchronous_standby_names and pg_stat_replication match on."""
        self.settings = settings
        self.node = node
        self.paths = paths or PostgresPaths.for_settings(settings)
        self.sql_timeout_seconds = sql_timeout_seconds
        self.tools = PgTools(settings)
        self.session = local_session(settings)

    def where(self) -> str:
        return f"data dir {self.paths.data_dir}, port {self.settings.port}"

    def check_settings(self) -> None:
        """Render every pgha-owned file without writing anything: a bad setting then fails
        before initdb or a clone has created a data directory."""
        files.render_pgha_conf(self.settings, self.paths, upstream=None, application_name=self.node)
        files.render_pg_hba(self.settings)
        files.render_pg_ident(self.settings, self.tools.run_as)
        files.render_passfile(self.settings)
        files.check_socket_dir(self.settings.socket_dir)

    def configure(self, upstream: Upstream | None = None) -> None:
        """(Re)write every file pgha owns for this node; `upstream` None means a primary.

        Does not touch standby.signal and does not reload a running server.
        """
        run_as = self.tools.run_as
        files.ensure_include(self.paths, run_as)
        conf = files.render_pgha_conf(
            self.settings, self.paths, upstream=upstream, application_name=self.node
        )
        files.write_private_file(self.paths.pgha_conf, conf, run_as)
        files.write_private_file(self.paths.hba, files.render_pg_hba(self.settings), run_as)
        ident = files.render_pg_ident(self.settings, run_as)
        files.write_private_file(self.paths.ident, ident, run_as)
        files.write_private_file(self.paths.passfile, files.render_passfile(self.settings), run_as)
        removed = files.remove_upstream_from_auto_conf(self.paths, run_as)
        if removed:
            # Names only: a hand-written primary_conninfo may carry a password.
            log.warning(
                "removed %s from %s: the upstream lives in pgha.conf only",
                ", ".join(removed),
                self.paths.auto_conf,
            )
        files.prepare_private_file(self.paths.log_file, run_as)
        files.ensure_socket_dir(self.settings.socket_dir, run_as)

    def configure_replica(self, upstream: Upstream | None) -> None:
        """All files for a replica of `upstream` (None: in recovery, streaming from nobody
        yet), standby.signal included."""
        self.configure(upstream)
        files.write_private_file(self.paths.standby_signal, "", self.tools.run_as)

    def refuse_if_running(self, what: str) -> None:
        postmaster = live_postmaster(self.paths.data_dir)
        if postmaster is not None:
            raise PostgresError(
                f"cannot {what} ({self.where()}): Postgres is running (postmaster pid "
                f"{postmaster.pid}); stop it first"
            )

    def require_initialized(self, what: str) -> None:
        if not (self.paths.data_dir / "PG_VERSION").is_file():
            raise PostgresError(
                f"cannot {what}: {self.paths.data_dir} holds no Postgres data directory"
            )

    def read_control_data(self) -> ControlData:
        return read_control_data(self.tools, self.paths.data_dir, timeout_seconds=30)

    def pg_ctl_start(self, *, what: str, timeout_seconds: float) -> None:
        """pg_ctl start -w; on failure the error carries the server log's tail."""
        if not processes_in(self.paths.data_dir):
            # A postmaster killed from outside (a crash) left its lock files behind.
            self._remove_lock_files()
        files.prepare_private_file(self.paths.log_file, self.tools.run_as)
        wait = max(1, round(timeout_seconds))
        args = ["start", "-D", str(self.paths.data_dir), "-l", str(self.paths.log_file)]
        try:
            self.tools.run(
                "pg_ctl", [*args, "-w", "-t", str(wait)], what=what, timeout_seconds=wait + 15
            )
        except PostgresError as exc:
            postmaster = live_postmaster(self.paths.data_dir)
            still = (
                f"; the postmaster (pid {postmaster.pid}) is still running"
                if postmaster is not None
                else ""
            )
            raise PostgresError(f"{exc}{still}; server log: {self.log_tail()}") from None

    def log_tail(self) -> str:
        try:
            with self.paths.log_file.open("rb") as log:
                size = log.seek(0, 2)
                log.seek(max(0, size - 4 * LOG_TAIL_CHARS))
                text = log.read().decode(errors="replace")
        except OSError as exc:
            return f"({self.paths.log_file} unreadable: {exc.strerror})"
        return tail(text, LOG_TAIL_CHARS) or "(empty)"

    def _remove_lock_files(self) -> None:
        """A killed postmaster leaves postmaster.pid and its socket lock behind. Until its
        PID is reaped (and a PID 1 that is not an init may take its time, or never reap
        at all) the next postmaster takes that PID for a live owner and refuses to start.
        Call only once no process of this data directory is left: then the files are
        ours to remove."""
        files.remove_file(self.paths.data_dir / "postmaster.pid")
        lock = self.settings.socket_dir / f".s.PGSQL.{self.settings.port}.lock"
        try:
            owner = lock.read_text().splitlines()[1:2]
        except OSError:
            return
        if owner == [str(self.paths.data_dir)]:
            files.remove_file(lock)
