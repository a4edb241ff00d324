"""systemd/pgha.service: accepted by systemd-analyze as it is, hardened, and its watchdog
timing consistent with the agent's default timers (traps 11)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from pgha.agent.liveness import WATCHDOG_KILL_SECONDS
from pgha.settings import Settings

pytestmark = pytest.mark.integration

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "pgha.service"
INSTALLED_PGHA = "/opt/pgha/bin/pgha"


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing: run scripts/install-system-deps.sh as root")
    return found


def directives(text: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file, in order (keys may repeat)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def rendered(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's pgha, which exists here
    (verify checks that the command is an executable on this machine)."""
    pgha = Path(sys.executable).with_name("pgha")
    assert pgha.exists(), f"{pgha} is missing: run make setup"
    text = UNIT.read_text()
    assert INSTALLED_PGHA in text
    path = tmp_path / "pgha.service"
    path.write_text(text.replace(INSTALLED_PGHA, str(pgha)))
    return path


def test_systemd_analyze_verify_prints_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(rendered(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    assert result.stdout == "", result.stdout


def test_the_unit_is_hardened(tmp_path: Path) -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", str(rendered(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for pgha\.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    # systemd rates 0-2 "OK"; this unit scores about 1.4.
    assert float(match.group(1)) <= 2.0, result.stdout


def test_notify_watchdog_and_kill_settings_follow_traps_11() -> None:
    unit = directives(UNIT.read_text())
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",  # Postgres must not speak for the unit
        "TimeoutStartSec": "infinity",  # READY waits for a first cycle that may clone
        "KillMode": "mixed",  # SIGTERM to the agent only: a clean stop, then the handoff
        "WatchdogSignal": "SIGKILL",
        "FinalKillSignal": "SIGKILL",
        "User": "postgres",
        "Restart": "on-failure",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
    }
    for key, value in expected.items():
        assert unit.get(key) == [value], f"{key}={unit.get(key)}, expected {value}"
    assert "pgha" in unit["RuntimeDirectory"][0].split()
    assert "postgresql" in unit["RuntimeDirectory"][0].split()


def test_the_watchdog_fits_the_default_timers() -> None:
    """A leader may ping only while WatchdogSec + the kill still end before its fencing
    deadline, which is ttl - safety_margin after a renewal; loop_wait stays well below."""
    watchdog = float(directives(UNIT.read_text())["WatchdogSec"][0])
    defaults = {
        item.name: item.default
        for item in fields(Settings)
        if isinstance(item.default, (int, float))
    }
    ttl = defaults["ttl"]
    safety_margin = defaults["safety_margin"]
    loop_wait = defaults["loop_wait"]
    assert watchdog + WATCHDOG_KILL_SECONDS < ttl - safety_margin
    assert loop_wait < watchdog
    # Renewals every loop_wait must come before the watchdog can starve a healthy leader:
    # it may ping until deadline - watchdog - kill, and is killed watchdog after that.
    assert loop_wait < ttl - safety_margin - WATCHDOG_KILL_SECONDS
