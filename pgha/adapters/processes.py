"""Starting pgha's own child processes (the guard; etcd and agents for the demo)."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
from pathlib import Path

SCRUBBED = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def spawn_guard(
    data_dir: Path, deadline_file: Path, poll_seconds: float, log_file: Path
) -> ManagedProcess:
    """Start the guard (`python -m pgha.agent.guard`) in its own session, so that a signal to
    the agent's process group (Ctrl-C, a kill of the group) does not take the guard with it
    before it has fenced."""
    command = [
        sys.executable,
        "-m",
        "pgha.agent.guard",
        "--data-dir",
        str(data_dir),
        "--deadline-file",
        str(deadline_file),
        "--poll",
        str(poll_seconds),
    ]
    return spawn("guard", command, log_file)


class ManagedProcess:
    """A long-running child (etcd, an agent) started by `pgha demo`, stopped by PID."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log_file: Path) -> None:
        self.name = name
        self.log_file = log_file
        self._process = process

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            self._process.send_signal(signum)

    def wait(self, timeout_seconds: float) -> bool:
        try:
            self._process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    def kill(self) -> None:
        if self.alive():
            self._process.kill()
            self._process.wait()

    def stop(self, timeout_seconds: float = 10) -> None:
        """SIGTERM, then SIGKILL if it has not exited within the timeout."""
        self.signal(signal.SIGTERM)
        if not self.wait(timeout_seconds):
            self.kill()


def spawn(
    name: str,
    command: list[str],
    log_file: Path,
    *,
    user: str | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start a child in its own session with output to `log_file`, as `user` if given."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    uid = gid = None
    if user is not None:
        entry = pwd.getpwnam(user)
        uid, gid = entry.pw_uid, entry.pw_gid
        env["HOME"] = entry.pw_dir
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd=cwd,
            start_new_session=True,
            user=uid,
            group=gid,
            extra_groups=[] if uid is not None else None,
        )
    return ManagedProcess(name, process, log_file)
