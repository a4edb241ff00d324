"""Run the PostgreSQL programs of `bin_dir`, and find the processes of one data directory.

Every Postgres program pgha runs goes through `PgTools.run`:
- as `os_user` (with that user's own groups) when the agent is root: Postgres refuses to
  run as root, and a tool run as root would leave root-owned files in the data directory;
- with umask 077, so nothing it creates is readable by other users;
- with an environment scrubbed of systemd's notify/watchdog variables (a postmaster that
  inherits NOTIFY_SOCKET would talk to systemd on the agent's behalf) and of every PG*
  variable (an inherited PGHOST or PGPASSFILE would silently change what a tool connects
  to);
- with a timeout, and failures turned into `PostgresError` carrying the tool's stderr tail.

The process helpers identify a postmaster by its PID *and* its working directory (every
Postgres server process runs inside its data directory), so a reused PID is never mistaken
for our server and never signalled.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgha.errors import PostgresError

if TYPE_CHECKING:
    # Only a type here: the guard imports this module and must stay small (no pydantic).
    from pgha.settings import PostgresSettings

_DROPPED_VARIABLES = frozenset(
    {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"}
)
STDERR_TAIL_CHARS = 1500


@dataclass(frozen=True)
class RunAs:
    """Who Postgres programs run as. `uid` is None when we do not switch users (not root)."""

    name: str
    home: str
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] = ()

    @classmethod
    def for_os_user(cls, os_user: str) -> RunAs:
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid())
            return cls(name=me.pw_name, home=me.pw_dir)
        try:
            entry = pwd.getpwnam(os_user)
        except KeyError:
            raise PostgresError(
                f"OS user {os_user!r} (postgres.os_user) does not exist; create it or set "
                "postgres.os_user to the user that owns the data directory"
            ) from None
        if entry.pw_uid == 0:
            raise PostgresError(
                "postgres.os_user must not be root: Postgres refuses to run as root"
            )
        groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
        return cls(entry.pw_name, entry.pw_dir, entry.pw_uid, entry.pw_gid, groups)

    def chown(self, path: Path) -> None:
        """Give `path` to the OS user (a no-op when we are not root)."""
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)


def tool_environment(run_as: RunAs, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _DROPPED_VARIABLES and not name.startswith("PG")
    }
    env.update(HOME=run_as.home, USER=run_as.name, LOGNAME=run_as.name, LC_MESSAGES="C")
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class ToolOutput:
    stdout: str
    stderr: str


def tail(text: str, limit: int = STDERR_TAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


class PgTools:
    """Runs the programs of one node's `bin_dir` as its OS user."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self.run_as = RunAs.for_os_user(settings.os_user)

    def where(self) -> str:
        return f"data dir {self.settings.data_dir}, port {self.settings.port}"

    def _as_os_user(self, env: Mapping[str, str] | None) -> dict[str, Any]:
        switch = self.run_as.uid is not None
        return {
            "env": tool_environment(self.run_as, env),
            # "/" rather than our own cwd: the OS user may not be allowed into it.
            "cwd": "/",
            "user": self.run_as.uid,
            "group": self.run_as.gid,
            "extra_groups": list(self.run_as.groups) if switch else None,
            "umask": 0o077,
        }

    def run(
        self,
        tool: str,
        args: Sequence[str],
        *,
        what: str,
        timeout_seconds: float,
        env: Mapping[str, str] | None = None,
    ) -> ToolOutput:
        """Run `bin_dir/tool args` and return what it printed; PostgresError on any failure."""
        program = self.settings.bin_dir / tool
        if not os.access(program, os.X_OK):
            raise PostgresError(f"cannot {what}: {program} is missing or not executable")
        try:
            done = subprocess.run(
                [str(program), *args],
                check=False,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout_seconds,
                **self._as_os_user(env),
            )
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr or ""
            if isinstance(stderr, bytes):
                stderr = stderr.decode(errors="replace")
            raise PostgresError(
                f"cannot {what} ({self.where()}): {tool} did not finish within "
                f"{timeout_seconds:g} s and was killed; stderr: {tail(stderr) or '(empty)'}"
            ) from None
        except OSError as exc:
            raise PostgresError(f"cannot {what} ({self.where()}): {tool}: {exc}") from None
        if done.returncode != 0:
            detail = tail(done.stderr) or tail(done.stdout) or "(no output)"
            raise PostgresError(
                f"cannot {what} ({self.where()}): {tool} exited with status "
                f"{done.returncode}: {detail}"
            )
        return ToolOutput(done.stdout, done.stderr)


@dataclass(frozen=True)
class PostmasterPid:
    """The fields of postmaster.pid that pgha uses (see miscadmin.h LOCK_FILE_LINE_*)."""

    pid: int
    port: int | None
    socket_dir: str | None
    # "starting", "stopping", "ready" (a hot standby too), "standby" (no hot_standby);
    # None while the postmaster is still writing the file.
    status: str | None


def read_postmaster_pid(data_dir: Path) -> PostmasterPid | None:
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PostgresError(f"cannot read {data_dir / 'postmaster.pid'}: {exc}") from None
    if not lines or not lines[0].strip().isdigit():
        return None  # being written right now, or garbage: treat as no postmaster yet
    field = dict(enumerate(line.strip() for line in lines))
    port_text = field.get(3, "")
    return PostmasterPid(
        pid=int(lines[0].strip()),
        port=int(port_text) if port_text.isdigit() else None,
        socket_dir=field.get(4) or None,
        status=field.get(7) or None,
    )


def _identity(path: Path | str) -> tuple[int, int] | None:
    """The device and inode of a directory: the same for every path that leads to it."""
    try:
        found = os.stat(path)
    except OSError:
        return None  # gone, a zombie's cwd, or not ours to look at
    return found.st_dev, found.st_ino


def _runs_in(pid: int, directory: tuple[int, int]) -> bool:
    """Whether process `pid` has `directory` as its working directory. Compared by
    identity, not by path: two stats instead of a readlink and a resolve of every path
    component, and a data directory moved aside is not the one now at its old path."""
    return _identity(f"/proc/{pid}/cwd") == directory


def processes_in(data_dir: Path) -> list[int]:
    """Every live process whose working directory is `data_dir`: the postmaster and all of
    its children (they chdir into it), including orphans of a killed postmaster."""
    target = _identity(data_dir)
    if target is None:
        return []
    return sorted(pid for pid in _pids() if _runs_in(pid, target))


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def live_postmaster(data_dir: Path) -> PostmasterPid | None:
    """postmaster.pid, but only if its PID is a live process running in `data_dir`."""
    recorded = read_postmaster_pid(data_dir)
    if recorded is None:
        return None
    target = _identity(data_dir)
    if target is None or not _runs_in(recorded.pid, target):
        return None
    return recorded


def kill_postgres(data_dir: Path, *, wait_seconds: float = 10.0) -> None:
    """Stop every process of this data directory at once, even a frozen one.

    SIGSTOP first so the postmaster cannot restart children while they die, then SIGKILL
    the children (each backend is its own session: killing the postmaster alone leaves
    them serving), then the postmaster. Raises PostgresError if something survives, e.g.
    a backend stuck in the kernel (D state): the caller must then not assume it is fenced.
    """
    postmaster = live_postmaster(data_dir)
    if postmaster is not None:
        _signal(postmaster.pid, signal.SIGSTOP)
    for pid in processes_in(data_dir):
        if postmaster is None or pid != postmaster.pid:
            _signal(pid, signal.SIGKILL)
    if postmaster is not None:
        _signal(postmaster.pid, signal.SIGKILL)
    wait_until_gone(data_dir, wait_seconds=wait_seconds, what="kill Postgres")


def wait_until_gone(data_dir: Path, *, wait_seconds: float, what: str) -> None:
    """Wait until no process runs in `data_dir`; PostgresError naming the survivors if not."""
    deadline = time.monotonic() + wait_seconds
    while True:
        left = processes_in(data_dir)
        if not left:
            return
        if time.monotonic() >= deadline:
            raise PostgresError(
                f"cannot {what} ({data_dir}): processes {left} are still running after "
                f"{wait_seconds:g} s; Postgres is not confirmed stopped"
            )
        time.sleep(0.05)


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
