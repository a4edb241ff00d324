"""The Postgres control operations, one behaviour at a time, on real servers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from pgha.adapters.postgres import PostgresControl, Upstream
from pgha.adapters.postgres_state import parse_lsn
from pgha.errors import PostgresError
from tests.fixtures.postgres import (
    REPLICATION_PASSWORD,
    SUPERUSER_PASSWORD,
    PgFactory,
    PgNode,
    freeze,
    thaw,
    wait_until,
)

pytestmark = pytest.mark.integration


def caught_up(replica: PgNode, primary: PgNode) -> bool:
    return replica.state().replay_lsn == primary.state().wal_lsn


def owner_and_mode(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_uid, stat.S_IMODE(info.st_mode)


def test_rewind_is_refused_until_the_new_primary_has_checkpointed(pg_factory: PgFactory) -> None:
    old = pg_factory.primary("old")
    # Keep the promoted node's own end-of-recovery checkpoint slow (spread over an hour,
    # many dirty buffers, no background writer), so "not checkpointed yet" lasts.
    new = pg_factory.replica("new", old, checkpoint_timeout="1h", bgwriter_lru_maxpages=0)
    old.sql(
        "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 50000) g"
    )
    wait_until(lambda: caught_up(new, old), what="the replica replayed the filler")
    # The old primary crashes: pg_rewind must first finish its crash recovery in single-user
    # mode, which refuses a standby.signal such as a failed start as a replica leaves.
    old.control.kill()
    signal_file = old.data_dir / "standby.signal"
    signal_file.write_text("")
    shutil.chown(signal_file, *(2 * [old.settings.os_user]))
    new.control.promote()

    promoted = new.state()
    assert promoted.is_primary
    assert not promoted.checkpointed_since_promotion
    with pytest.raises(PostgresError, match="has not checkpointed since its promotion"):
        old.control.rewind(new.upstream())
    assert signal_file.exists(), "a refused rewind changes nothing"

    new.control.checkpoint()
    assert new.state().checkpointed_since_promotion
    report = old.control.rewind(new.upstream())
    assert "crash recovery" in report
    old.control.start_replica(new.upstream())
    wait_until(lambda: old.state().timeline == 2, what="the old primary follows timeline 2")


def test_a_rewind_source_that_is_a_replica_is_refused(pg_factory: PgFactory) -> None:
    primary = pg_factory.primary("p")
    replica = pg_factory.replica("r", primary)
    primary.control.stop()
    with pytest.raises(PostgresError, match="source is in recovery"):
        primary.control.rewind(replica.upstream())


def test_files_holding_secrets_are_private_and_owned_by_the_os_user(pg_factory: PgFactory) -> None:
    primary = pg_factory.primary("p")
    replica = pg_factory.replica("r", primary)
    os_uid = replica.data_dir.stat().st_uid
    if os.geteuid() == 0:
        assert os_uid != 0, "Postgres must not run as root"
    for node in (primary, replica):
        paths = node.control.paths
        assert owner_and_mode(node.data_dir) == (os_uid, 0o700)
        for private in (paths.passfile, paths.pgha_conf, paths.hba, paths.ident, paths.log_file):
            assert owner_and_mode(private) == (os_uid, 0o600), private
        passfile = paths.passfile.read_text()
        assert "replicator:repl-Secret\\:pw" in passfile
        assert (
            "postgres:" + SUPERUSER_PASSWORD.replace("\\", "\\\\").replace(":", "\\:") in passfile
        )
        # The initdb password file is gone, and no password sits in a file pg_basebackup copies.
        assert list(node.root.glob("*initdb-password*")) == []
        for copied in ("pgha.conf", "postgresql.conf", "postgresql.auto.conf"):
            text = (node.data_dir / copied).read_text()
            assert SUPERUSER_PASSWORD not in text
            assert REPLICATION_PASSWORD not in text
    (seen,) = primary.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'replicator'")
    assert str(seen[0]).startswith("SCRAM-SHA-256$")


def test_a_clone_never_inherits_an_upstream_from_postgresql_auto_conf(
    pg_factory: PgFactory,
) -> None:
    primary = pg_factory.primary("p")
    primary.sql("ALTER SYSTEM SET primary_conninfo = 'host=192.0.2.1 port=1'")
    primary.sql("ALTER SYSTEM SET primary_slot_name = 'stale'")
    primary.sql("ALTER SYSTEM SET work_mem = '8MB'")
    replica = pg_factory.replica("r", primary)
    auto_conf = (replica.data_dir / "postgresql.auto.conf").read_text()
    assert "primary_" not in auto_conf
    assert "work_mem = '8MB'" in auto_conf  # everything else is left alone
    pgha_conf = (replica.data_dir / "pgha.conf").read_text()
    assert f"port={primary.port}" in pgha_conf
    assert "primary_slot_name = ''" in pgha_conf
    assert replica.state().configured_upstream == primary.upstream()
    assert (replica.data_dir / "standby.signal").exists()


def test_start_primary_refuses_data_that_must_be_promoted_instead(pg_factory: PgFactory) -> None:
    primary = pg_factory.primary("p")
    fresh_clone = pg_factory.node("clone")
    fresh_clone.control.clone(primary.upstream())
    with pytest.raises(PostgresError, match="backup_label"):
        fresh_clone.control.start_primary()

    replica = pg_factory.replica("r", primary)
    replica.control.stop()
    with pytest.raises(PostgresError, match="last run was as a standby"):
        replica.control.start_primary()
    assert not replica.state().running


def test_starting_a_running_server_or_initdb_over_data_is_refused(pg_factory: PgFactory) -> None:
    primary = pg_factory.primary("p")
    with pytest.raises(PostgresError, match="Postgres is running"):
        primary.control.start_primary()
    with pytest.raises(PostgresError, match="Postgres is running"):
        primary.control.initdb()
    primary.control.stop()
    with pytest.raises(PostgresError, match="not empty"):
        primary.control.initdb()
    with pytest.raises(PostgresError, match="not empty"):
        primary.control.clone(Upstream("127.0.0.1", 1))
    assert primary.state().initialized


def test_stop_fast_and_immediate_confirm_that_nothing_is_left(pg_factory: PgFactory) -> None:
    node = pg_factory.primary("p")
    node.control.stop(mode="immediate")
    state = node.state()
    assert not state.running
    assert node.postgres_pids() == []
    assert not (node.data_dir / "postmaster.pid").exists()
    assert state.control is not None
    assert state.control.cluster_state == "in production"
    node.control.stop()  # already down: nothing to do
    node.control.start_primary()  # crash recovery
    node.control.stop(mode="fast")
    assert node.postgres_pids() == []
    assert node.state().control.cluster_state == "shut down"  # type: ignore[union-attr]


def test_kill_fences_a_frozen_server_that_stop_cannot(pg_factory: PgFactory) -> None:
    node = pg_factory.primary("p")
    freeze(node)
    # A stopped postmaster never acts on the shutdown signal: stop must say so, not hang.
    with pytest.raises(PostgresError, match="pg_ctl exited"):
        node.control.stop(mode="immediate", timeout_seconds=2)
    assert node.postgres_pids() != []
    node.control.kill()
    assert node.postgres_pids() == []
    assert not node.state().running
    node.control.start_primary()
    assert node.state().is_primary


def test_a_crashed_postmaster_whose_pid_is_not_reaped_yet_does_not_block_a_restart(
    pg_factory: PgFactory,
) -> None:
    node = pg_factory.primary("p")
    pids = node.postgres_pids()
    for pid in pids:
        # A child may exit on its own once the postmaster is gone, before its turn.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: node.postgres_pids() == [], what="every Postgres process is gone")
    # The killed postmaster's PID stays taken until its parent reaps it (a PID 1 that is no
    # init may take seconds, or never): a zombie of ours, owned by the OS user like the
    # postmaster was, stands in for it in both lock files.
    zombie = subprocess.Popen(["true"], user=node.settings.os_user)

    def is_zombie() -> bool:
        return Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"

    wait_until(is_zombie, what="the stand-in is a zombie")
    lock_files = [
        node.data_dir / "postmaster.pid",
        node.settings.socket_dir / f".s.PGSQL.{node.port}.lock",
    ]
    try:
        for lock in lock_files:
            lines = lock.read_text().splitlines()
            lock.write_text("\n".join([str(zombie.pid), *lines[1:]]) + "\n")
        node.control.start_primary()  # crash recovery, in place
        assert node.state().is_primary
    finally:
        zombie.wait()


def test_every_tool_call_has_a_timeout(pg_factory: PgFactory) -> None:
    primary = pg_factory.primary("p")
    frozen = freeze(primary)
    replica = pg_factory.node("r")
    with pytest.raises(PostgresError, match="pg_basebackup did not finish within 2 s") as failure:
        replica.control.clone(primary.upstream(), timeout_seconds=2)
    assert str(replica.data_dir) in str(failure.value)
    thaw(frozen)


def test_replication_slots_are_created_listed_and_dropped(pg_factory: PgFactory) -> None:
    node = pg_factory.primary("p")
    assert node.control.create_slot("node_b") is True
    assert node.control.create_slot("node_b") is False
    (slot,) = node.control.list_slots()
    assert (slot.name, slot.active) == ("node_b", False)
    assert slot.restart_lsn is not None  # reserved at once
    assert node.control.drop_slot("node_b") is True
    assert node.control.drop_slot("node_b") is False
    assert node.control.list_slots() == ()
    with pytest.raises(PostgresError, match="invalid replication slot name"):
        node.control.create_slot("Node-B")


def test_a_replica_streams_through_its_slot_from_the_clone_on(pg_factory: PgFactory) -> None:
    primary = pg_factory.primary("p")
    primary.control.create_slot("r")
    replica = pg_factory.node("r")
    replica.control.clone(primary.upstream("r"))
    replica.control.start_replica(primary.upstream("r"))
    wait_until(lambda: primary.control.list_slots()[0].active, what="the slot is in use")
    receiver = replica.state().wal_receiver
    assert receiver is not None
    assert receiver.slot_name == "r"


def test_follow_refuses_a_primary_and_a_stopped_server(pg_factory: PgFactory) -> None:
    primary = pg_factory.primary("p")
    with pytest.raises(PostgresError, match="it is a primary"):
        primary.control.follow(Upstream("127.0.0.1", 1))
    primary.control.stop()
    with pytest.raises(PostgresError, match="not running"):
        primary.control.follow(Upstream("127.0.0.1", 1))


def test_promote_makes_a_replica_writable_and_is_idempotent(pg_factory: PgFactory) -> None:
    primary = pg_factory.primary("p")
    replica = pg_factory.replica("r", primary)
    replica.control.promote()
    assert replica.state().is_primary
    replica.sql("CREATE TABLE written_after_promotion (x int)")
    replica.control.promote()
    assert "primary_conninfo =" not in (replica.data_dir / "pgha.conf").read_text()
    assert not (replica.data_dir / "standby.signal").exists()


def test_a_failed_start_reports_the_server_log(pg_factory: PgFactory) -> None:
    node = pg_factory.node("p", shared_buffers="not-a-size")
    node.control.initdb()
    with pytest.raises(PostgresError) as failure:
        node.control.start_primary(timeout_seconds=20)
    message = str(failure.value)
    assert str(node.data_dir) in message
    assert f"port {node.port}" in message
    assert "shared_buffers" in message  # from the server log's tail
    assert not node.state().running


def test_parameters_may_not_override_what_pgha_owns(pg_factory: PgFactory) -> None:
    node = pg_factory.node("p", primary_conninfo="host=elsewhere")
    with pytest.raises(PostgresError, match="may not set primary_conninfo"):
        node.control.initdb()


def test_a_missing_binary_is_a_clear_error(pg_factory: PgFactory, tmp_path: Path) -> None:
    node = pg_factory.node("p")
    broken = replace(node.settings, bin_dir=tmp_path / "nowhere")
    with pytest.raises(PostgresError, match="nowhere/initdb is missing"):
        PostgresControl(broken, node="p").initdb()


def test_pg_hba_admits_the_members_network_and_local_peers_only(pg_factory: PgFactory) -> None:
    node = pg_factory.primary("p")
    hba = (node.data_dir / "pg_hba.conf").read_text()
    assert 'local  all          "postgres"  peer map=pgha' in hba
    assert 'host   replication  "replicator"  127.0.0.0/8  scram-sha-256' in hba
    assert "0.0.0.0/0" not in hba
    assert "trust" not in hba
    ((in_use,),) = node.sql("SELECT current_setting('hba_file')")
    assert in_use == str(node.data_dir / "pg_hba.conf")


def test_postgres_runs_as_the_os_user_without_the_agents_environment(
    pg_factory: PgFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A postmaster that inherited NOTIFY_SOCKET would talk to systemd for the agent; an
    # inherited PGPORT or PGHOST would point the tools elsewhere.
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("PGPORT", "1")
    monkeypatch.setenv("PGHOST", "192.0.2.1")
    primary = pg_factory.primary("p")
    replica = pg_factory.replica("r", primary)
    for node in (primary, replica):
        pid = node.state().postmaster_pid
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        names = {entry.partition(b"=")[0].decode() for entry in environ if entry}
        assert not names & {"NOTIFY_SOCKET", "WATCHDOG_USEC", "PGPORT", "PGHOST"}
        assert Path(f"/proc/{pid}").stat().st_uid == node.data_dir.stat().st_uid


def test_a_slot_is_advanced_but_never_past_what_the_server_has(pg_factory: PgFactory) -> None:
    node = pg_factory.primary("p")
    node.control.create_slot("other")
    (before,) = node.control.list_slots()
    assert before.wal_status == "reserved"
    assert before.restart_lsn is not None
    node.sql("SELECT pg_switch_wal()")
    moved_to = node.control.advance_slot("other", 2**63)
    (flushed,) = node.sql("SELECT pg_current_wal_flush_lsn()::text")[0]
    assert moved_to is not None
    assert before.restart_lsn < moved_to <= parse_lsn(flushed)
    assert node.control.advance_slot("other", before.restart_lsn) is None  # never backwards
    assert node.control.advance_slot("missing", moved_to) is None


def test_a_clone_creates_its_slot_on_the_source_when_missing(pg_factory: PgFactory) -> None:
    primary = pg_factory.primary("p")
    replica = pg_factory.node("r")
    replica.control.clone(primary.upstream("r_new"))
    assert [slot.name for slot in primary.control.list_slots()] == ["r_new"]
    replica.control.start_replica(primary.upstream("r_new"))
    wait_until(lambda: primary.control.list_slots()[0].active, what="the slot is in use")
