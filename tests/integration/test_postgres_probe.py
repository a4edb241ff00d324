"""The probe of the local Postgres: stopped, running, streaming, and frozen servers."""

from __future__ import annotations

import psycopg
import pytest

from pgha.adapters.postgres import PostgresControl, format_lsn, parse_lsn
from pgha.adapters.postgres_heartbeat import stamp_heartbeat, write_heartbeat
from pgha.adapters.postgres_probe import PostgresProbe, parse_control_data
from pgha.adapters.postgres_session import Connection, local_session, user_conninfo
from pgha.errors import PostgresUnreachable
from tests.fixtures.postgres import PgFactory, PgNode, freeze, thaw, wait_until


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0/0", 0),
        ("0/3000028", 0x3000028),
        ("16/B374D848", 0x16B374D848),
        ("FFFFFFFF/FFFFFFFF", 2**64 - 1),
    ],
)
def test_lsn_text_and_bytes_round_trip(text: str, value: int) -> None:
    assert parse_lsn(text) == value
    assert format_lsn(value) == text


@pytest.mark.parametrize("text", ["", "0", "0/", "/1", "x/1", "1/2/3", "100000000/0"])
def test_malformed_lsn_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="LSN"):
        parse_lsn(text)


def test_control_data_parses_pg_controldata_output() -> None:
    output = "\n".join(
        [
            "pg_control version number:            1300",
            "Database system identifier:           7321456789012345678",
            "Database cluster state:               shut down in recovery",
            "Latest checkpoint location:           0/5000060",
            "Latest checkpoint's TimeLineID:       3",
            "Minimum recovery ending location:     0/50000D8",
            "Min recovery ending loc's timeline:   3",
        ]
    )
    control = parse_control_data(output)
    assert control.system_identifier == 7321456789012345678
    assert control.checkpoint_lsn == 0x5000060
    assert control.checkpoint_timeline == 3
    assert control.was_standby
    assert control.shut_down_cleanly


@pytest.mark.integration
def test_probe_of_a_missing_and_of_a_stopped_data_directory(pg_factory: PgFactory) -> None:
    node = pg_factory.node("lonely")
    empty = node.state()
    assert not empty.initialized
    assert not empty.running
    assert empty.control is None

    node.control.initdb()
    stopped = node.state()
    assert stopped.initialized
    assert not stopped.running
    assert not stopped.accepting_connections
    assert stopped.in_recovery is None
    assert stopped.control is not None
    assert stopped.control.cluster_state == "shut down"
    assert stopped.control.checkpoint_timeline == 1

    node.control.start_primary()
    running = node.state()
    assert running.system_identifier == stopped.control.system_identifier
    node.control.stop()
    after = node.state()
    assert not after.running
    assert after.control is not None
    assert after.control.checkpoint_lsn > stopped.control.checkpoint_lsn


@pytest.mark.integration
def test_probe_of_a_primary_and_its_streaming_replica(pg_factory: PgFactory) -> None:
    primary = pg_factory.primary("p")
    primary.control.create_slot("r_slot")
    replica = pg_factory.replica("r", primary)
    replica.control.stop()
    replica.control.start_replica(primary.upstream("r_slot"))
    primary.sql("CREATE TABLE t AS SELECT 1 AS x")

    def caught_up() -> bool:
        upstream = replica.state().wal_receiver
        if upstream is None or upstream.status != "streaming":
            return False
        return replica.state().replay_lsn == primary.state().wal_lsn

    wait_until(caught_up, what="the replica has replayed everything")
    p = primary.state()
    assert p.running
    assert p.accepting_connections
    assert p.is_primary
    assert p.postmaster_status == "ready"
    assert p.server_version is not None
    assert p.server_version >= 150000
    assert p.timeline == 1
    assert p.position == p.wal_lsn
    assert p.pending_restart == ()
    (seen,) = p.replicas
    assert (seen.application_name, seen.state, seen.sync_state) == ("r", "streaming", "async")
    assert seen.client_addr == "127.0.0.1"
    assert seen.replay_lsn is not None
    assert seen.flush_lsn is not None

    r = replica.state()
    assert r.in_recovery
    assert not r.is_primary
    assert r.postmaster_status == "ready"  # "standby" only without hot_standby
    assert r.system_identifier == p.system_identifier
    assert r.wal_lsn is None
    assert r.replay_lsn == p.wal_lsn
    assert r.position == max(r.receive_lsn or 0, r.replay_lsn or 0)
    assert r.wal_receiver is not None
    assert (r.wal_receiver.sender_host, r.wal_receiver.sender_port) == ("127.0.0.1", primary.port)
    assert r.wal_receiver.slot_name == "r_slot"
    assert r.configured_upstream == primary.upstream("r_slot")
    assert [(s.name, s.active) for s in primary.control.list_slots()] == [("r_slot", True)]


@pytest.mark.integration
def test_probe_reports_settings_pending_restart(pg_factory: PgFactory) -> None:
    node = pg_factory.primary("pending")
    node.sql("ALTER SYSTEM SET max_connections = 40")
    node.control.reload()
    wait_until(lambda: node.state().pending_restart == ("max_connections",), what="pending")


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_frozen_postmaster_does_not_freeze_the_probe(pg_factory: PgFactory) -> None:
    """SIGSTOP the postmaster and every backend: statement_timeout and cancel requests
    cannot help, only the client-side deadline returns control to the caller."""
    node = pg_factory.primary("frozen")
    pids = freeze(node)
    try:
        state = node.state()
        assert state.running
        assert not state.accepting_connections
        assert state.problem is not None
        assert "did not answer" in state.problem or "timeout" in state.problem
        with pytest.raises(PostgresUnreachable):
            local_session(node.settings).run(
                lambda connection: connection.execute("SELECT 1"),
                timeout_seconds=1.0,
                what="run a query",
            )
        with pytest.raises(PostgresUnreachable):
            node.control.checkpoint(timeout_seconds=1.0)
    finally:
        thaw(pids)
    wait_until(lambda: node.state().accepting_connections, what="the thawed server answers")


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_backend_frozen_mid_query_is_abandoned(pg_factory: PgFactory) -> None:
    """The worst case: connected, then the server freezes while the query runs."""
    node = pg_factory.primary("stuck")
    control = PostgresControl(node.settings, node="stuck", sql_timeout_seconds=2.0)
    session = local_session(node.settings)

    def freeze_then_query(connection: Connection) -> None:
        freeze(node)
        connection.execute("SELECT 1")

    with pytest.raises(PostgresUnreachable, match="did not answer"):
        session.run(freeze_then_query, timeout_seconds=2.0, what="query a freezing server")
    with pytest.raises(PostgresUnreachable):
        control.reload()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_the_commit_probe_stamps_the_heartbeat_and_returns_the_stamp(pg_factory: PgFactory) -> None:
    """The commit probe's one statement is the heartbeat write, on a fresh connection: on a
    fresh cluster it creates the table, and the stamp it returns is the row's."""
    node = pg_factory.primary("stamping")
    probe = PostgresProbe(node.settings, timeout_seconds=3.0)
    try:
        assert node.state().heartbeat_at is None  # no table yet
        first = probe.check_commit()
        assert first.failure is None
        assert first.heartbeat_at is not None
        assert node.state().heartbeat_at == pytest.approx(first.heartbeat_at)
        second = probe.check_commit()  # the one-statement write, the table being there
        assert second.failure is None
        assert second.heartbeat_at is not None
        assert second.heartbeat_at > first.heartbeat_at
        assert node.state().heartbeat_at == pytest.approx(second.heartbeat_at)
    finally:
        probe.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_refused_heartbeat_costs_the_stamp_never_the_commit(pg_factory: PgFactory) -> None:
    """Someone's open transaction holds the heartbeat row, then the table loses the key its
    upsert needs: the probe reports the heartbeat's problem, and a commit that it proved
    without the heartbeat, never a failure that could lead to a failover."""
    node = pg_factory.primary("refused")
    probe = PostgresProbe(node.settings, timeout_seconds=3.0)
    try:
        assert probe.check_commit().heartbeat_at is not None  # creates the table
        conninfo = user_conninfo(node.settings.superuser, str(node.settings.socket_dir), node.port)
        with psycopg.connect(**conninfo) as holder:
            holder.execute("UPDATE pgha.heartbeat SET at = now()")  # and stays open
            locked = probe.check_commit()
            assert locked.failure is None
            assert locked.heartbeat_at is None
            assert locked.heartbeat_problem is not None
            assert "55P03" in locked.heartbeat_problem  # lock_not_available
            holder.rollback()

        node.sql("ALTER TABLE pgha.heartbeat DROP CONSTRAINT heartbeat_pkey")
        altered = probe.check_commit()
        assert altered.failure is None
        assert altered.heartbeat_problem is not None
        assert "ON CONFLICT" in altered.heartbeat_problem
    finally:
        probe.close()


def wait_for_standby(connection: Connection) -> None:
    """The commit probe's statement, then its local setting undone before the commit."""
    with connection.transaction():
        stamp_heartbeat(connection)
        connection.execute("SET LOCAL synchronous_commit = on")


def terminate_the_waits_for_a_standby(node: PgNode) -> int:
    """Terminate the backends waiting for the standby (nothing else ends that wait, not
    even statement_timeout), so that none keeps the heartbeat row locked; how many."""
    rows = node.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
    )
    return len(rows)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_commit_probe_and_heartbeat_commit_locally_without_their_sync_standby(
    pg_factory: PgFactory,
) -> None:
    """Each is one statement, not a transaction with SET LOCAL: a missing synchronous
    standby must still never hold up the probe nor the cycle's own heartbeat write
    (traps 6), and whichever writes first creates the table."""
    node = pg_factory.primary("sync-less", synchronous_standby_names="nobody")
    probe = PostgresProbe(node.settings, timeout_seconds=3.0)
    session = local_session(node.settings)
    try:
        assert node.state().heartbeat_at is None
        first = write_heartbeat(session, timeout_seconds=3.0)  # creates the table
        second = write_heartbeat(session, timeout_seconds=3.0)  # the one-statement write
        assert second >= first
        assert node.state().heartbeat_at == pytest.approx(second)
        checked = probe.check_commit()
        assert checked.failure is None
        assert checked.heartbeat_at is not None
        assert checked.heartbeat_at >= second
        # The probe's transaction is one whose commit waits for the flush (and so, without
        # the local setting, for the missing standby): a hung disk cannot pass it.
        with pytest.raises(PostgresUnreachable):
            session.run(
                wait_for_standby,
                timeout_seconds=1.0,
                what="commit the probe's write with synchronous_commit on",
            )
        assert terminate_the_waits_for_a_standby(node) == 1
        wait_until(
            lambda: terminate_the_waits_for_a_standby(node) == 0,
            what="no backend waits for the standby",
        )
        # The local setting lasted only for those transactions: an ordinary write waits.
        with pytest.raises(PostgresUnreachable):
            session.run(
                lambda connection: connection.execute("UPDATE pgha.heartbeat SET at = now()"),
                timeout_seconds=1.0,
                what="commit with synchronous_commit on",
                reuse=True,
            )
    finally:
        probe.close()
        session.close()


def _wal_files(node: PgNode, pattern: str) -> list[str]:
    rows = node.sql("SELECT name FROM pg_ls_waldir() WHERE name ~ %s ORDER BY name", (pattern,))
    return [name for (name,) in rows]


def _caught_up(replica: PgNode, primary: PgNode) -> bool:
    return replica.state().replay_lsn == primary.state().wal_lsn


@pytest.mark.integration
def test_a_replica_past_the_fork_reports_its_old_timeline_one_that_switched_its_new(
    pg_factory: PgFactory,
) -> None:
    """The timeline of a replica is the one it replays. `ahead` replayed WAL of timeline 1
    that the new primary never had: Postgres refuses to switch it to timeline 2 (it logs
    "forked off ... before current recovery point") although its walreceiver fetched
    00000002.history. It must say 1, so that pgha sees it past the fork and rewinds it; `level`
    stopped where the new primary's timeline began, switched, and still says 2 once its
    walreceiver is gone."""
    old = pg_factory.primary("old")
    new = pg_factory.replica("new", old)
    level = pg_factory.replica("level", old)
    ahead = pg_factory.replica("ahead", old)
    old.sql("CREATE TABLE t (v int)")
    wait_until(
        lambda: all(_caught_up(node, old) for node in (new, level, ahead)),
        what="every replica caught up",
    )
    new.control.stop()
    level.control.stop()
    old.sql("INSERT INTO t SELECT generate_series(1, 1000)")
    wait_until(lambda: _caught_up(ahead, old), what="ahead replayed the rows")
    old.control.stop(mode="immediate")

    new.control.start_replica(None)
    new.control.promote()
    assert new.state().timeline == 2
    level.control.start_replica(new.upstream())
    ahead.control.follow(new.upstream())
    wait_until(lambda: _wal_files(level, "^00000002[0-9A-F]{16}$"), what="level streams TL 2")
    wait_until(
        lambda: _wal_files(ahead, "^00000002[.]history$"),
        what="ahead's walreceiver fetched the history of timeline 2",
    )
    wait_until(
        lambda: "forked off current database system timeline 1" in ahead.control.log_tail(),
        what="Postgres refuses to switch ahead to timeline 2",
    )
    assert ahead.state().timeline == 1
    assert level.state().timeline == 2

    new.control.stop(mode="immediate")
    wait_until(lambda: level.state().wal_receiver is None, what="level's walreceiver is gone")
    assert level.state().timeline == 2
    assert ahead.state().timeline == 1
