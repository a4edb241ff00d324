"""The README's first command: `pgha demo` brings up a healthy three-node cluster and stops."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def processes_under(directory: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(directory) in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.timeout(400)
def test_the_demo_bootstraps_a_healthy_cluster_and_stops_cleanly() -> None:
    base = Path(tempfile.mkdtemp(prefix="pgha-demo-test-"))
    base.chmod(0o755)
    workdir = base / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "pgha", "demo", "--dir", str(workdir), "--exit-when-healthy"],
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("PGHA_")},
    )
    leftovers = processes_under(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    roles = sorted(line.split()[2] for line in result.stdout.splitlines() if line.startswith("pg"))
    assert roles == ["leader", "replica", "replica"], result.stdout
    assert "cluster demo: leader pg" in result.stdout
    assert "target_session_attrs=read-write" in result.stdout
    assert "demo stopped" in result.stdout
    assert leftovers == [], f"processes left running: {leftovers}"
