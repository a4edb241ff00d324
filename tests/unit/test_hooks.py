"""The hook runner with real commands: arguments, environment, order, failure, timeout."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pgha.adapters.hooks import ON_ROLE_CHANGE, PRE_PROMOTE, HookEvent, HookRunner


def event(name: str = PRE_PROMOTE) -> HookEvent:
    return HookEvent(name, "primary", 42, "main", "pg1", "pg1")


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_a_command_gets_event_role_cluster_as_arguments_and_the_rest_in_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGHA_POSTGRES__SUPERUSER__PASSWORD", "s3cret")
    out = tmp_path / "out"
    command = script(
        tmp_path,
        "h",
        f'echo "$* $PGHA_TERM $PGHA_LEADER $PGHA_NODE [$PGHA_POSTGRES__SUPERUSER__PASSWORD]"'
        f" > {out}\n",
    )
    results = HookRunner({PRE_PROMOTE: [command]}, 5).run(event(), 10)
    assert [r.ok for r in results] == [True]
    assert out.read_text() == "pre_promote primary main 42 pg1 pg1 []\n"


def test_pre_promote_stops_at_the_first_failure_and_says_why(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    first = script(tmp_path, "a", f"echo a >> {calls}; echo 'no IPMI answer' >&2; exit 3\n")
    second = script(tmp_path, "b", f"echo b >> {calls}\n")
    results = HookRunner({PRE_PROMOTE: [first, second]}, 5).run(event(), 10)
    assert [r.ok for r in results] == [False]
    assert results[0].detail == "exited 3: no IPMI answer"
    assert calls.read_text() == "a\n"


def test_on_role_change_runs_every_command_in_order_even_after_a_failure(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    first = script(tmp_path, "a", f"echo a >> {calls}; exit 1\n")
    second = script(tmp_path, "b", f"echo b >> {calls}\n")
    results = HookRunner({ON_ROLE_CHANGE: [first, second]}, 5).run(event(ON_ROLE_CHANGE), 10)
    assert [r.ok for r in results] == [False, True]
    assert calls.read_text() == "a\nb\n"


def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    command = script(tmp_path, "slow", f"sleep 30 & echo $! > {pids}; sleep 30\n")
    started = time.monotonic()
    results = HookRunner({PRE_PROMOTE: [command]}, 0.5).run(event(), 10)
    assert not results[0].ok
    assert "timed out after 0.5 s" in results[0].detail
    assert time.monotonic() - started < 10
    child = int(pids.read_text())
    for _ in range(50):
        if not os.path.exists(f"/proc/{child}") or "Z" in _state(child):
            break
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{child}") or "Z" in _state(child)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_missing_command_or_no_time_left_fails_without_raising(tmp_path: Path) -> None:
    missing = HookRunner({PRE_PROMOTE: [str(tmp_path / "nope")]}, 5).run(event(), 10)
    assert not missing[0].ok
    assert "cannot be run" in missing[0].detail
    late = HookRunner({PRE_PROMOTE: ["true"]}, 5).run(event(), 0)
    assert not late[0].ok
    assert "no time left" in late[0].detail


def test_a_runner_without_commands_is_not_configured() -> None:
    runner = HookRunner({PRE_PROMOTE: [], ON_ROLE_CHANGE: ["true"]}, 5)
    assert not runner.configured(PRE_PROMOTE)
    assert runner.configured(ON_ROLE_CHANGE)
