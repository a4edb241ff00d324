"""`pgha status` and `pgha dsn` without a cluster: exit codes and messages for scripts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures.ports import free_port
from tests.unit.test_cli_config import run

NOBODY = f"http://127.0.0.1:{free_port()}"
"""An etcd endpoint where nothing listens."""


def test_an_unreachable_etcd_exits_2_and_names_the_endpoints_tried() -> None:
    other = f"http://127.0.0.2:{free_port()}"
    result = run("status", "--etcd", f"{NOBODY},{other}", "--cluster", "c1")
    assert result.returncode == 2
    assert NOBODY in result.stderr
    assert other in result.stderr
    assert "cluster 'c1'" in result.stderr
    assert result.stdout == ""
    assert run("status", "--json", "--etcd", NOBODY).returncode == 2
    assert run("dsn", "--etcd", NOBODY).returncode == 2


def test_bad_options_exit_3_with_the_reason(tmp_path: Path) -> None:
    result = run("status", "--etcd", "ftp://x:1")
    assert result.returncode == 3
    assert "--etcd: 'ftp://x:1'" in result.stderr
    result = run("status", "--etcd", NOBODY, "--cluster", "a/b")
    assert result.returncode == 3
    assert "--cluster" in result.stderr
    result = run("dsn", "--config", str(tmp_path / "missing.yml"))
    assert result.returncode == 3
    assert "cannot read the file" in result.stderr


def test_usage_errors_of_every_command_exit_3_never_2_which_means_etcd_unreachable() -> None:
    usage_errors = {
        ("status", "--bogus"): "No such option: --bogus",
        ("status", "--watch", "often"): "Invalid value for '--watch'",
        ("switchover", "--bogus"): "No such option: --bogus",
        ("config", "set"): "Missing argument",
        ("agent", "--bogus"): "No such option: --bogus",
        ("nosuch",): "No such command 'nosuch'",
    }
    for command, shown in usage_errors.items():
        result = run(*command)
        assert result.returncode == 3, (command, result.returncode, result.stderr)
        assert shown in result.stderr, (command, result.stderr)
    assert run("version").returncode == 0


def test_watch_refreshes_until_ctrl_c() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGHA_")}
    watcher = subprocess.Popen(
        [sys.executable, "-m", "pgha", "status", "--watch", "0.2", "--etcd", NOBODY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        assert watcher.stderr is not None
        seen = 0
        while seen < 2 and time.monotonic() < deadline:
            if "cannot read cluster" in watcher.stderr.readline():
                seen += 1
        assert seen == 2, "the status was not refreshed"
    finally:
        watcher.send_signal(signal.SIGINT)
        out, _ = watcher.communicate(timeout=30)
    assert watcher.returncode == 2  # the last refresh's verdict: etcd unreachable
    assert "every 0.2 s; Ctrl-C stops" in out
