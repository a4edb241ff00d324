"""`pgha config check` as an operator runs it: a real process, its output and exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pgha.settings_load import load_settings
from tests.unit.test_settings import GOOD

PGHA = [sys.executable, "-m", "pgha"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGHA_")}
    return subprocess.run(
        [*PGHA, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_a_good_file_prints_the_effective_settings_with_secrets_masked(tmp_path: Path) -> None:
    secret = tmp_path / "replication.pw"
    secret.write_text("repl-secret")
    path = tmp_path / "pgha.yml"
    path.write_text(GOOD.replace("/etc/pgha/replication.pw", str(secret)))
    result = run("config", "check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "node: pg1" in result.stdout
    assert "data_dir: /var/lib/pgha/pg1" in result.stdout
    assert "topsecret" not in result.stdout + result.stderr
    assert "'**********'" in result.stdout


def test_a_bad_file_exits_non_zero_with_one_line_per_problem(tmp_path: Path) -> None:
    path = tmp_path / "pgha.yml"
    path.write_text("node: pg1\nbogus: 1\nttl: x\npostgres: {}\n")
    result = run("config", "check", "--config", str(path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert result.stdout == ""


def test_a_missing_file_exits_non_zero(tmp_path: Path) -> None:
    result = run("config", "check", "--config", str(tmp_path / "nope.yml"))
    assert result.returncode == 1
    assert "cannot read the file" in result.stderr


def test_a_superuser_open_to_the_world_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "pgha.yml"
    text = GOOD.replace("password_file: /etc/pgha/replication.pw", "password: x").replace(
        "  parameters:", '  pg_hba: ["host all postgres 0.0.0.0/0 scram-sha-256"]\n  parameters:'
    )
    path.write_text(text)
    result = run("config", "check", "--config", str(path))
    assert result.returncode == 0
    assert "warning: postgres.pg_hba" in result.stderr


def test_a_missing_rewind_user_is_warned_about_and_a_given_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "pgha.yml"
    text = GOOD.replace("password_file: /etc/pgha/replication.pw", "password: x")
    path.write_text(text)
    result = run("config", "check", "--config", str(path))
    assert result.returncode == 0
    assert "warning: postgres.rewind is not set" in result.stderr
    path.write_text(
        text.replace("  parameters:", "  rewind: {username: rw, password: y}\n  parameters:")
    )
    result = run("config", "check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "postgres.rewind" not in result.stderr


def test_an_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    result = run("config", "check", "--bogus")
    assert result.returncode == 3
    assert "--bogus" in result.stderr


def test_an_unreadable_password_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "pgha.yml"
    path.write_text(GOOD)  # names /etc/pgha/replication.pw, which does not exist here
    result = run("config", "check", "--config", str(path))
    assert result.returncode == 1
    assert "postgres.replication.password_file: cannot read /etc/pgha/replication.pw" in (
        result.stderr
    )


def test_the_example_configuration_is_valid(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "pgha.example.yml"
    settings = load_settings(example)
    assert settings.node == "pg1"
