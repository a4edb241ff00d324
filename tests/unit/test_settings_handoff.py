"""The agent's settings come from a loader child: the same settings (secrets included) and
the same problems as loading them in-process, and pydantic, pydantic-settings and PyYAML
never enter the agent's own process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgha.errors import ConfigError
from pgha.settings import Settings
from pgha.settings_handoff import load_settings_apart
from pgha.settings_load import load_settings
from pgha.settings_plain import from_plain, plain

FULL = """\
cluster: orders
node: pg1
etcd:
  endpoints: ["https://127.0.0.1:2379"]
  username: pgha
  password: etcd-secret
  ca_cert: /etc/pgha/ca.crt
  timeout: 1.5
postgres:
  data_dir: /var/lib/pgha/pg1
  listen: 127.0.0.1:5433
  superuser: {username: postgres, password: su-secret}
  replication: {username: replicator, password_file: /etc/pgha/replication.pw}
  rewind: {username: rewinder, password: rw-secret}
  parameters: {max_connections: 200, shared_buffers: 256MB, hot_standby: true}
  pg_hba: ["host all all 10.0.0.0/8 scram-sha-256"]
api:
  listen: 127.0.0.1:8009
  auth: {token: api-token-1}
tags: {failover_priority: 3, nosync: true}
hooks: {on_role_change: "/usr/local/bin/notify --role"}
ttl: 10
loop_wait: 1
retry_timeout: 3
safety_margin: 2
maximum_lag_seconds_on_failover: 2.5
"""

LIBRARIES_THE_AGENT_DOES_WITHOUT = ("pydantic", "pydantic_core", "pydantic_settings", "yaml")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PGHA_"):
            monkeypatch.delenv(name)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "pgha.yml"
    path.write_text(FULL)
    return path


def test_the_loader_child_gives_what_loading_here_gives(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGHA_POSTGRES__SUPERUSER__PASSWORD", "from-the-environment")
    handed = load_settings_apart(config)
    assert handed == load_settings(config)
    assert handed.postgres.superuser.secret() == "from-the-environment"
    assert handed.api.auth.token is not None
    assert handed.api.auth.token.get_secret_value() == "api-token-1"
    assert handed.postgres.replication.password_file == Path("/etc/pgha/replication.pw")
    assert handed.hooks.on_role_change == ["/usr/local/bin/notify --role"]


def test_the_loader_child_reports_the_same_problems(tmp_path: Path) -> None:
    path = tmp_path / "pgha.yml"
    path.write_text(FULL.replace("ttl: 10", "ttl: 5").replace("node: pg1", "node: 'pg 1'"))
    with pytest.raises(ConfigError) as here:
        load_settings(path)
    with pytest.raises(ConfigError) as apart:
        load_settings_apart(path)
    assert apart.value.problems == here.value.problems
    assert any(problem.startswith(f"{path}: node: ") for problem in apart.value.problems)


def test_plain_data_rebuilds_the_same_settings(config: Path) -> None:
    settings = load_settings(config)
    assert from_plain(Settings, plain(settings, reveal_secrets=True)) == settings
    masked = str(plain(settings))
    for secret in ("etcd-secret", "su-secret", "rw-secret", "api-token-1"):
        assert secret not in masked


def test_the_agent_process_never_loads_the_validation_libraries(config: Path) -> None:
    probe = (
        "import sys; from pathlib import Path; import pgha.entry; "
        "from pgha.settings_handoff import load_settings_apart; "
        f"settings = load_settings_apart(Path({str(config)!r})); "
        f"print(settings.node, sorted(m for m in sys.modules "
        f"if m.split('.')[0] in {LIBRARIES_THE_AGENT_DOES_WITHOUT!r}))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "pg1 []"
