"""The guard fences a real Postgres when the agent's deadline passes, and never before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgha.adapters.pg_process import live_postmaster
from pgha.agent.fencing_deadline import Deadline, boottime, read_deadline, write_deadline
from pgha.agent.guard import Guard, fence
from tests.fixtures.postgres import PgFactory, freeze

pytestmark = pytest.mark.integration


def armed(path: Path, seconds_from_now: float, term: int = 7) -> None:
    write_deadline(path, Deadline(boottime() + seconds_from_now, term, os.getpid()))


def test_a_guard_leaves_postgres_alone_before_the_deadline(
    pg_factory: PgFactory, tmp_path: Path
) -> None:
    node = pg_factory.primary("pg1")
    deadline_file = tmp_path / "pg1.deadline"
    armed(deadline_file, 60)
    guard = Guard(node.data_dir, deadline_file, poll_seconds=0.1)
    assert guard.step()
    assert live_postmaster(node.data_dir) is not None
    assert node.sql("SELECT 1") == [(1,)]


def test_a_passed_deadline_makes_the_guard_stop_postgres(
    pg_factory: PgFactory, tmp_path: Path
) -> None:
    node = pg_factory.primary("pg1")
    deadline_file = tmp_path / "pg1.deadline"
    armed(deadline_file, -0.1)
    guard = Guard(node.data_dir, deadline_file, poll_seconds=0.1)
    guard.step()
    node.control.stop(mode="fast")  # waits for the shutdown the guard asked for
    assert live_postmaster(node.data_dir) is None
    assert guard.fenced_term == 7


def test_a_frozen_postmaster_is_killed_with_every_backend(
    pg_factory: PgFactory, tmp_path: Path
) -> None:
    node = pg_factory.primary("pg1")
    freeze(node)
    outcome = fence(node.data_dir)
    assert "killed" in outcome
    assert node.postgres_pids() == []


def test_a_missing_or_garbled_deadline_file_never_disarms_the_guard(
    pg_factory: PgFactory, tmp_path: Path
) -> None:
    node = pg_factory.primary("pg1")
    deadline_file = tmp_path / "pg1.deadline"
    armed(deadline_file, 0.3)
    guard = Guard(node.data_dir, deadline_file, poll_seconds=0.1)
    guard.step()
    assert guard.current is not None
    assert guard.current.deadline is not None
    armed_until = guard.current.deadline
    deadline_file.write_text("{garbage")
    assert read_deadline(deadline_file) is None
    while boottime() < armed_until + 0.05:
        guard.step()
    guard.step()
    node.control.stop(mode="fast")
    assert live_postmaster(node.data_dir) is None


def test_a_disarmed_guard_exits_once_its_agent_is_gone(tmp_path: Path) -> None:
    deadline_file = tmp_path / "pg1.deadline"
    gone_pid = 2**22 + 12345  # beyond pid_max on this kernel: no such process
    write_deadline(deadline_file, Deadline(None, None, gone_pid))
    guard = Guard(tmp_path / "no-data", deadline_file, poll_seconds=0.1)
    assert not guard.step()


def test_the_guard_sleeps_until_the_deadline_but_never_longer_than_its_cap(tmp_path: Path) -> None:
    guard = Guard(tmp_path, tmp_path / "deadline", poll_seconds=2.0)
    assert guard.pause_seconds(100.0) == 2.0  # nothing to guard yet
    guard.current = Deadline(deadline=100.5, term=3, agent_pid=os.getpid())
    assert guard.pause_seconds(100.0) == 0.5
    assert guard.pause_seconds(90.0) == 2.0
    assert guard.pause_seconds(101.0) == 0.0
    guard.fenced_term = 3
    assert guard.pause_seconds(101.0) == 2.0
