"""Observe the local Postgres: one `PostgresState` per call, never a hang, never a decision.

Whether the server runs comes from postmaster.pid and /proc (no SQL needed); everything
else from a few catalog queries run as the superuser over the unix socket, under a hard
client-side deadline (see postgres_session). A server that is down is described from
pg_controldata instead, so the caller still learns its system identifier and where its last
checkpoint is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgha.adapters.commit_probe import CommitCheck, check_local_commit
from pgha.adapters.pg_process import PgTools, live_postmaster
from pgha.adapters.postgres_files import PostgresPaths
from pgha.adapters.postgres_session import Connection, local_session
from pgha.adapters.postgres_state import (
    ControlData,
    PostgresState,
    StreamingReplica,
    Upstream,
    WalReceiver,
    parse_lsn,
)
from pgha.errors import PostgresError
from pgha.settings import PostgresSettings

_SERVER_SQL = """
SELECT current_setting('server_version_num')::int,
       (SELECT system_identifier FROM pg_control_system()),
       pg_is_in_recovery(),
       (SELECT timeline_id FROM pg_control_checkpoint()),
       (SELECT min_recovery_end_timeline FROM pg_control_recovery()),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
       END,
       pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       current_setting('primary_conninfo'),
       current_setting('primary_slot_name'),
       ARRAY(SELECT name FROM pg_settings WHERE pending_restart ORDER BY name),
       CASE WHEN pg_is_in_recovery()
            THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
       END,
       current_setting('synchronous_standby_names'),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_flush_lsn()::text END,
       to_regclass('pgha.heartbeat') IS NOT NULL,
       (SELECT json_build_array(status, sender_host, sender_port, slot_name, received_tli,
                                flushed_lsn::text)
          FROM pg_stat_wal_receiver),
       (SELECT json_agg(json_build_array(application_name, host(client_addr), state,
                                         sync_state, sent_lsn::text, write_lsn::text,
                                         flush_lsn::text, replay_lsn::text)
                        ORDER BY application_name, pid)
          FROM pg_stat_replication),
       CASE WHEN pg_is_in_recovery() THEN
            (SELECT max(('x' || substr(name, 1, 8))::bit(32)::int)
               FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$')
       END
"""
"""One round trip for everything: each statement more costs an idle agent CPU every cycle.
The walreceiver (one row, or none) and the walsenders (a row each) come as JSON arrays."""


def _lsn(text: str | None) -> int | None:
    return None if text is None else parse_lsn(text)


def _configured_upstream(conninfo: str, slot: str) -> Upstream | None:
    if not conninfo:
        return None
    try:
        parts = conninfo_to_dict(conninfo)
        port = int(str(parts.get("port") or 5432).split(",")[0])
    except (ValueError, psycopg.ProgrammingError):
        return None
    host = str(parts.get("host") or parts.get("hostaddr") or "")
    return Upstream(host=host, port=port, slot=slot or None) if host else None


_HEARTBEAT_SQL = """
SELECT extract(epoch FROM at)::float8 FROM pgha.heartbeat WHERE id = 1
"""


def _read_heartbeat(connection: Connection, table_exists: bool) -> float | None:
    """The newest heartbeat stamp here (None before the leader first wrote one); whether
    the table exists comes with the server query, one round trip fewer per probe."""
    if not table_exists:
        return None
    cursor = connection.cursor()
    found = cursor.execute(_HEARTBEAT_SQL).fetchone()
    return float(found[0]) if found is not None and found[0] is not None else None


def _read_server(connection: Connection) -> dict[str, Any]:
    """All SQL-derived fields of PostgresState, from one query (and the heartbeat's)."""
    cursor = connection.cursor()
    row = cursor.execute(_SERVER_SQL).fetchone()
    assert row is not None  # a SELECT without FROM always returns one row
    (version, sysid, in_recovery, checkpoint_tli, min_recovery_tli, wal_lsn, wal_tli,
     receive_lsn, replay_lsn, conninfo, slot, pending, replay_age, sync_names,
     flush_lsn, heartbeat_table, receiver_row, replica_rows, segment_tli) = row  # fmt: skip
    receiver = None
    if receiver_row is not None:
        status, host, port, slot_name, tli, flushed = receiver_row
        receiver = WalReceiver(status, host, port, slot_name, tli, _lsn(flushed))
    replicas = tuple(
        StreamingReplica(name, addr, state, sync, _lsn(sent), _lsn(write), _lsn(flush), _lsn(rep))
        for name, addr, state, sync, sent, write, flush, rep in replica_rows or ()
    )
    if in_recovery:
        # No SQL function gives a standby's replay timeline on PG 15: take the best of the
        # timeline it receives, what pg_control knows, and the newest timeline of a WAL
        # segment in pg_wal. A replica that switched to a newer timeline has that timeline's
        # segments, so it still knows it after its walreceiver disconnected. Not the newest
        # *.history file: a replica past the fork fetches the new timeline's history too,
        # but Postgres refuses to switch it (it logs "forked off ... before current recovery
        # point"); it stays on, and must report, its old timeline, so that it is rewound.
        known = [
            checkpoint_tli,
            min_recovery_tli,
            receiver.received_timeline if receiver else 0,
            segment_tli,
        ]
        timeline = max(tli for tli in known if tli is not None)
    else:
        # pg_control_checkpoint() lags right after a promotion; the WAL file name does not.
        timeline = wal_tli
    return {
        "accepting_connections": True,
        "server_version": version,
        "system_identifier": sysid & 0xFFFFFFFFFFFFFFFF,  # uint64 stored as a signed int8
        "in_recovery": in_recovery,
        "timeline": timeline,
        "checkpoint_timeline": checkpoint_tli,
        "wal_lsn": _lsn(wal_lsn),
        "receive_lsn": _lsn(receive_lsn),
        "replay_lsn": _lsn(replay_lsn),
        "wal_receiver": receiver,
        "configured_upstream": _configured_upstream(conninfo, slot) if in_recovery else None,
        "replicas": replicas,
        "pending_restart": tuple(pending),
        "last_replay_age_seconds": replay_age,
        "synchronous_standby_names": sync_names,
        "flush_lsn": _lsn(flush_lsn),
        "heartbeat_at": _read_heartbeat(connection, heartbeat_table),
    }


def parse_control_data(text: str) -> ControlData:
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    try:
        return ControlData(
            system_identifier=int(fields["Database system identifier"]),
            cluster_state=fields["Database cluster state"],
            checkpoint_lsn=parse_lsn(fields["Latest checkpoint location"]),
            checkpoint_timeline=int(fields["Latest checkpoint's TimeLineID"]),
            min_recovery_end_lsn=parse_lsn(fields["Minimum recovery ending location"]),
            min_recovery_end_timeline=int(fields["Min recovery ending loc's timeline"]),
            wal_segment_bytes=int(fields.get("Bytes per WAL segment", 16 * 1024 * 1024)),
            data_checksums=fields.get("Data page checksum version", "0") != "0",
            wal_log_hints=fields.get("wal_log_hints setting") == "on",
        )
    except (KeyError, ValueError) as exc:
        raise PostgresError(f"cannot parse pg_controldata output ({exc}): {text[:300]!r}") from None


def read_control_data(
    tools: PgTools, data_dir: Path, *, timeout_seconds: float = 10.0
) -> ControlData:
    """pg_controldata of `data_dir`; works whether the server runs or not."""
    output = tools.run(
        "pg_controldata",
        ["-D", str(data_dir)],
        what="read pg_control",
        timeout_seconds=timeout_seconds,
    )
    return parse_control_data(output.stdout)


class PostgresProbe:
    """Reads the state of the local Postgres; safe to call from any thread, at any time."""

    def __init__(
        self,
        settings: PostgresSettings,
        *,
        timeout_seconds: float = 3.0,
        paths: PostgresPaths | None = None,
    ) -> None:
        self.settings = settings
        self.timeout_seconds = timeout_seconds
        self.paths = paths or PostgresPaths.for_settings(settings)
        self._tools = PgTools(settings)
        self._session = local_session(settings)

    def probe(self) -> PostgresState:
        """What the local Postgres is doing. Never raises because the server is down,
        frozen, starting or damaged: that is what the returned state describes."""
        data_dir = self.paths.data_dir
        initialized = (data_dir / "PG_VERSION").is_file()
        postmaster = live_postmaster(data_dir)
        if postmaster is None:
            if not initialized:
                return PostgresState(data_dir, initialized, running=False)
            try:
                control = self.read_control_data()
            except PostgresError as exc:  # a damaged pg_control is something to report
                return PostgresState(data_dir, initialized, running=False, problem=str(exc))
            return PostgresState(data_dir, initialized, running=False, control=control)
        running: dict[str, Any] = {
            "postmaster_pid": postmaster.pid,
            "postmaster_status": postmaster.status,
        }
        try:
            # Read-only, no session state: the same connection serves every cycle.
            found = self._session.run(
                _read_server,
                timeout_seconds=self.timeout_seconds,
                what="probe Postgres",
                reuse=True,
            )
        except PostgresError as exc:  # PostgresUnreachable above all: frozen, starting, gone
            return PostgresState(data_dir, initialized, True, **running, problem=str(exc))
        return PostgresState(data_dir, initialized, True, **running, **found)

    def close(self) -> None:
        """Close the connection kept for the next probe."""
        self._session.close()

    def check_commit(self) -> CommitCheck:
        """Stamp the heartbeat row in one local transaction on a fresh connection: the
        stamp if it committed in time, else what went wrong (see commit_probe). Only
        meaningful on a primary."""
        return check_local_commit(self._session, timeout_seconds=self.timeout_seconds)

    def read_control_data(self) -> ControlData:
        """pg_controldata of the data directory; works whether the server runs or not."""
        return read_control_data(
            self._tools, self.paths.data_dir, timeout_seconds=max(self.timeout_seconds, 10.0)
        )
