"""The rewind preflight's pure checks: hint bits, the WAL segment holding the fork point,
and what keeps a user from running pg_rewind."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgha.adapters.postgres_state import ControlData
from pgha.adapters.rewind_preflight import (
    check_target,
    check_wal,
    rewind_user_problem,
    wal_segment_name,
)

MiB = 1024 * 1024


def control(**changes: object) -> ControlData:
    fields: dict[str, object] = {
        "system_identifier": 1,
        "cluster_state": "in production",
        "checkpoint_lsn": 0x3000060,
        "checkpoint_timeline": 1,
        "min_recovery_end_lsn": 0,
        "min_recovery_end_timeline": 0,
        **changes,
    }
    return ControlData(**fields)  # type: ignore[arg-type]


def test_the_target_needs_checksums_or_wal_log_hints() -> None:
    assert check_target(control(data_checksums=True)) is None
    assert check_target(control(wal_log_hints=True)) is None
    problem = check_target(control())
    assert problem is not None
    assert "wal_log_hints" in problem
    assert "pgha reinit" in problem


@pytest.mark.parametrize(
    ("timeline", "lsn", "segment_bytes", "name"),
    [
        (1, 0x3000060, 16 * MiB, "000000010000000000000003"),
        (2, 0x1_2300_0000, 16 * MiB, "000000020000000100000023"),
        (3, 0x1_2300_0000, 64 * MiB, "000000030000000100000008"),
    ],
)
def test_wal_segment_names_follow_postgres(
    timeline: int, lsn: int, segment_bytes: int, name: str
) -> None:
    assert wal_segment_name(timeline, lsn, segment_bytes) == name


def test_the_fork_segment_must_be_in_pg_wal(tmp_path: Path) -> None:
    (tmp_path / "000000010000000000000002").touch()
    assert check_wal(tmp_path, 1, 0x3000060, 16 * MiB) is not None
    (tmp_path / "000000010000000000000003").touch()
    assert check_wal(tmp_path, 1, 0x3000060, 16 * MiB) is None
    # At a segment boundary the last common byte is in the segment before.
    assert check_wal(tmp_path, 1, 0x3000000, 16 * MiB) is None
    # Unknown fork point: nothing to check.
    assert check_wal(tmp_path, 1, None, 16 * MiB) is None


def test_a_segment_named_by_an_ancestor_timeline_or_partial_counts(tmp_path: Path) -> None:
    (tmp_path / "000000010000000000000005.partial").touch()
    assert check_wal(tmp_path, 2, 0x5000100, 16 * MiB) is None
    # A later timeline's copy of the segment is not the target's WAL.
    assert check_wal(tmp_path, 0, 0x5000100, 16 * MiB) is not None


def test_a_missing_segment_is_named_with_what_to_do(tmp_path: Path) -> None:
    problem = check_wal(tmp_path, 1, 0x3000060, 16 * MiB)
    assert problem is not None
    assert "000000010000000000000003" in problem
    assert "0/3000060" in problem
    assert "pgha reinit" in problem


ALL = [True, True, True, True]


def test_a_user_with_the_four_functions_and_no_timeout_may_rewind() -> None:
    assert rewind_user_problem((False, "rewinder", "0", ALL)) is None
    assert rewind_user_problem((True, "postgres", "0", [False] * 4)) is None


def test_missing_privileges_and_a_statement_timeout_are_named() -> None:
    problem = rewind_user_problem((False, "rewinder", "5s", [True, False, True, True]))
    assert problem is not None
    assert "pg_stat_file(text, boolean)" in problem
    assert "statement_timeout 5s" in problem
    assert "ALTER ROLE rewinder RESET" in problem
