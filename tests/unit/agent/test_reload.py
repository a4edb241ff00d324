"""SIGHUP's reading of the configuration file: tags apply, anything else waits for a
restart, and a file that does not load changes nothing. Each reload loads the file in a
new interpreter, as the agent does."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pgha.agent.reload import reloaded_settings
from pgha.settings import Settings
from pgha.settings_load import load_settings
from tests.unit.test_settings import GOOD

BASE = GOOD.replace("password_file: /etc/pgha/replication.pw", "password: r3plic4")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGHA_CONFIG", "PGHA_NODE", "PGHA_LOOP_WAIT"):
        monkeypatch.delenv(name, raising=False)


def running_from(path: Path, text: str) -> Settings:
    path.write_text(text)
    return load_settings(path)


def reload_logged(running: Settings, path: Path, caplog: pytest.LogCaptureFixture) -> Settings:
    with caplog.at_level(logging.INFO, logger="pgha.agent"):
        return reloaded_settings(running, path)


def test_changed_tags_apply_and_nothing_else_moves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pgha.yml"
    running = running_from(path, BASE)
    path.write_text(BASE + "tags: {nofailover: true, failover_priority: 3}\n")
    updated = reload_logged(running, path, caplog)
    assert updated.tags.nofailover is True
    assert updated.tags.failover_priority == 3
    assert updated.loop_wait == running.loop_wait
    assert updated.postgres == running.postgres
    assert "reload: tags nofailover=False, failover_priority=1" in caplog.text
    assert "nofailover=True, failover_priority=3" in caplog.text
    assert "takes effect when the agent restarts" not in caplog.text


def test_other_changes_wait_for_a_restart_and_are_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pgha.yml"
    running = running_from(path, BASE)
    changed = BASE.replace("loop_wait: 10", "loop_wait: 5").replace("topsecret", "n3w-s3cret")
    path.write_text(changed)
    updated = reload_logged(running, path, caplog)
    assert updated is running
    assert "changed postgres, loop_wait; that takes effect when the agent restarts" in caplog.text
    assert "the tags are unchanged" in caplog.text
    assert "n3w-s3cret" not in caplog.text


def test_a_file_that_does_not_load_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pgha.yml"
    running = running_from(path, BASE)
    path.write_text(BASE + "tags: {nofailover: maybe}\n")
    assert reload_logged(running, path, caplog) is running
    assert f"reload: {path} does not load, the running settings stay" in caplog.text
    assert "tags.nofailover" in caplog.text
    path.unlink()
    assert reload_logged(running, path, caplog) is running
    assert "cannot read the file" in caplog.text
