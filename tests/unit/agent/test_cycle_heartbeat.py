"""Which heartbeat stamp a leader's cycle publishes: the one its commit probe committed in
the observe step, so that an idle primary runs one statement per cycle; the cycle writes
the row itself after the plan only when no probe stamped it (the cycle that promoted the
node), and never at or past its fencing deadline. Whole cycles on the memory store, with
Postgres and its probe faked."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

from pgha.adapters.commit_probe import CommitCheck
from pgha.adapters.memory_store import MemoryEtcd, MemoryStore
from pgha.adapters.postgres_control import PostgresControl
from pgha.adapters.postgres_probe import PostgresProbe
from pgha.adapters.postgres_state import PostgresState
from pgha.adapters.store import STATUS, Record
from pgha.agent.cycle import Cycle
from pgha.agent.execute import Executor
from pgha.agent.runtime import Runtime
from pgha.settings import PostgresSettings, Settings

NOW = 1000.0
DATA = Path("/nonexistent/pg1")
PROBED_STAMP = 1_700_000_000.0
WRITTEN_STAMP = PROBED_STAMP + 10


def postgres(*, in_recovery: bool) -> PostgresState:
    return PostgresState(
        DATA,
        initialized=True,
        running=True,
        postmaster_status="ready",
        accepting_connections=True,
        system_identifier=1,
        in_recovery=in_recovery,
        timeline=1,
        wal_lsn=None if in_recovery else 1000,
        receive_lsn=1000 if in_recovery else None,
        replay_lsn=1000 if in_recovery else None,
    )


class FakeProbe:
    """Answers probes from a script (the last state repeats) and commits every time."""

    def __init__(self, *states: PostgresState, check: CommitCheck | None = None) -> None:
        self.states = list(states)
        self.commit_checks = 0
        self.check = check or CommitCheck(heartbeat_at=PROBED_STAMP)

    def probe(self) -> PostgresState:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def check_commit(self) -> CommitCheck:
        self.commit_checks += 1
        return self.check


class FakeControl:
    """What a leader's cycle asks of Postgres besides the probe: nothing that fails."""

    paths = SimpleNamespace(data_dir=DATA)

    def list_slots(self) -> list[object]:
        return []

    def ensure_users(self) -> None:
        pass

    def promote(self) -> None:
        pass

    def checkpoint(self) -> None:
        pass


class HeartbeatWriter:
    """The cycle's own heartbeat write, counted."""

    def __init__(self) -> None:
        self.writes = 0

    def __call__(self) -> float:
        self.writes += 1
        return WRITTEN_STAMP


def leader_cycle(probe: FakeProbe, writer: HeartbeatWriter) -> tuple[Cycle, MemoryStore]:
    store = MemoryStore(MemoryEtcd(clock=lambda: NOW), "/pgha/main/")
    runtime = Runtime(name="pg1", safety_margin_seconds=5)
    runtime.lease = store.grant_lease(30)
    runtime.claim = store.acquire_leader("pg1", runtime.lease)
    runtime.fencing_deadline = NOW + 20
    executor = Executor(
        store=store,
        control=cast(PostgresControl, FakeControl()),
        probe=cast(PostgresProbe, probe),
        runtime=runtime,
        dynamic_config_seed={},
        clock=lambda: NOW,
    )
    cycle = Cycle(
        settings=Settings(node="pg1", postgres=PostgresSettings(data_dir=DATA)),
        store=store,
        probe=cast(PostgresProbe, probe),
        executor=executor,
        runtime=runtime,
        clock=lambda: NOW,
        heartbeat=writer,
    )
    return cycle, store


def published_stamp(store: MemoryStore) -> object:
    status = store.read_cluster().get(STATUS)
    assert isinstance(status, Record)
    assert isinstance(status.data, dict)
    return status.data["heartbeat_at"]


def test_an_idle_leader_publishes_the_stamp_its_commit_probe_wrote() -> None:
    probe, writer = FakeProbe(postgres(in_recovery=False)), HeartbeatWriter()
    cycle, store = leader_cycle(probe, writer)
    assert cycle.run().code == "renew_as_primary"
    assert probe.commit_checks == 1
    assert writer.writes == 0  # no second statement
    assert published_stamp(store) == PROBED_STAMP


def test_the_cycle_that_promoted_the_node_writes_the_heartbeat_itself() -> None:
    """Postgres was a replica when observed, so no commit probe ran: the stamp comes from
    the write after the plan."""
    probe = FakeProbe(postgres(in_recovery=True), postgres(in_recovery=False))
    writer = HeartbeatWriter()
    cycle, store = leader_cycle(probe, writer)
    assert cycle.run().code == "promote_held_key"
    assert probe.commit_checks == 0
    assert writer.writes == 1
    assert published_stamp(store) == WRITTEN_STAMP
    # The next cycle is an idle one again: the commit probe stamps, the cycle writes nothing.
    assert cycle.run().code == "renew_as_primary"
    assert (probe.commit_checks, writer.writes) == (1, 1)


def test_no_heartbeat_of_ours_at_or_past_the_fencing_deadline() -> None:
    writer = HeartbeatWriter()
    cycle, _ = leader_cycle(FakeProbe(postgres(in_recovery=False)), writer)
    cycle.runtime.fencing_deadline = NOW
    assert cycle._write_heartbeat(postgres(in_recovery=False)) is None
    assert writer.writes == 0


def test_a_refused_heartbeat_is_not_tried_again_nor_taken_for_a_failure_to_commit() -> None:
    refused = CommitCheck(heartbeat_problem="[55P03] canceling statement due to lock timeout")
    probe = FakeProbe(postgres(in_recovery=False), check=refused)
    writer = HeartbeatWriter()
    cycle, _ = leader_cycle(probe, writer)
    assert cycle.run().code == "renew_as_primary"
    assert writer.writes == 0  # the row is locked: another try would only wait again
    assert cycle.runtime.primary_unhealthy_since is None


def test_no_second_write_while_the_primary_cannot_commit() -> None:
    failing = CommitCheck(failure="cannot commit a test transaction: did not answer within 3 s")
    probe = FakeProbe(postgres(in_recovery=False), check=failing)
    writer = HeartbeatWriter()
    cycle, _ = leader_cycle(probe, writer)
    cycle.run()
    assert cycle.runtime.primary_unhealthy_since == NOW
    assert writer.writes == 0
