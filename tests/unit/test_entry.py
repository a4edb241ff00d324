"""pgha/entry.py: the plain `pgha agent` command line runs without typer; every other one
(and every odd form of it) reaches the full command line unchanged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pgha.entry import DEFAULT_CONFIG, agent_config


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["agent"], {}, DEFAULT_CONFIG),
        (["agent"], {"PGHA_CONFIG": "/etc/x.yml"}, Path("/etc/x.yml")),
        (["agent"], {"PGHA_CONFIG": ""}, DEFAULT_CONFIG),
        (["agent", "--config", "/a.yml"], {"PGHA_CONFIG": "/etc/x.yml"}, Path("/a.yml")),
        (["agent", "-c", "/a.yml"], {}, Path("/a.yml")),
        (["agent", "--config=/a.yml"], {}, Path("/a.yml")),
    ],
)
def test_plain_agent_command_lines_name_their_file(
    argv: list[str], environ: dict[str, str], expected: Path
) -> None:
    assert agent_config(argv, environ) == expected


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["status"],
        ["version"],
        ["agent", "--help"],
        ["agent", "--bogus"],
        ["agent", "--config"],
        ["agent", "--config", "--help"],
        ["agent", "-c/a.yml"],
        ["agent", "--config", "/a.yml", "extra"],
        ["agent", "--config", "/"],  # a directory: the full command line says so
        ["agent", "--config="],
    ],
)
def test_other_command_lines_go_to_the_full_command_line(argv: list[str]) -> None:
    assert agent_config(argv, {}) is None


def test_the_agent_path_does_not_load_the_command_line_framework() -> None:
    probe = (
        "import sys, pgha.entry; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('typer', 'click', 'rich') or m.startswith('pgha.cli')))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "[]"


def run_pgha(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgha", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_unreadable_file_stops_the_agent_with_the_problem(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yml"
    for form in (["--config", str(missing)], [f"--config={missing}"], ["-c", str(missing)]):
        stopped = run_pgha("agent", *form)
        assert stopped.returncode == 1
        assert f"{missing}: cannot read the file" in stopped.stderr


def test_odd_forms_get_the_full_command_line_answers(tmp_path: Path) -> None:
    helped = run_pgha("agent", "--help")
    assert helped.returncode == 0
    assert "--config" in helped.stdout
    refused = run_pgha("agent", "--config", str(tmp_path))
    assert refused.returncode == 3
    assert "Invalid value for '--config'" in refused.stderr
