"""Role-change hooks: operator commands run at `pre_promote` and `on_role_change`.

Each hook is a list of commands, run one after another, synchronously, each within a
timeout. A command gets the event, the role and the cluster as its last three arguments
(the order Patroni's callbacks use) and everything in the environment: PGHA_EVENT,
PGHA_ROLE, PGHA_TERM, PGHA_CLUSTER, PGHA_LEADER, PGHA_NODE. It never sees the agent's own
PGHA_* variables, which may hold passwords. A command that outlives its timeout is
killed with its whole process group.

`pre_promote` stops at the first command that fails: the promotion must not happen
(STONITH-style fencing of the old primary failed). `on_role_change` runs every command;
a failure there is logged and changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pgha.settings import HookSettings

log = logging.getLogger("pgha.agent")  # hook lines belong with the decisions

PRE_PROMOTE = "pre_promote"
ON_ROLE_CHANGE = "on_role_change"
OUTPUT_SHOWN_CHARS = 200


@dataclass(frozen=True)
class HookEvent:
    event: str
    role: str
    term: int | None
    cluster: str
    leader: str | None
    node: str

    def environment(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PGHA_")}
        return {
            **inherited,
            "PGHA_EVENT": self.event,
            "PGHA_ROLE": self.role,
            "PGHA_TERM": "" if self.term is None else str(self.term),
            "PGHA_CLUSTER": self.cluster,
            "PGHA_LEADER": self.leader or "",
            "PGHA_NODE": self.node,
        }


@dataclass(frozen=True)
class HookResult:
    command: str
    ok: bool
    detail: str

    def describe(self) -> str:
        return f"`{self.command}` {self.detail}"


class HookRunner:
    def __init__(self, commands: Mapping[str, Sequence[str]], timeout_seconds: float) -> None:
        self.commands = {event: tuple(lines) for event, lines in commands.items()}
        self.timeout_seconds = timeout_seconds

    @classmethod
    def from_settings(cls, hooks: HookSettings) -> HookRunner:
        commands = {PRE_PROMOTE: hooks.pre_promote, ON_ROLE_CHANGE: hooks.on_role_change}
        return cls(commands, hooks.timeout)

    def configured(self, event: str) -> bool:
        return bool(self.commands.get(event))

    def run(self, event: HookEvent, budget_seconds: float) -> list[HookResult]:
        """Run the event's commands in order within `budget_seconds` in all; for
        pre_promote, stop at the first failure. One log line per command."""
        results: list[HookResult] = []
        ends_at = time.monotonic() + budget_seconds
        for command in self.commands.get(event.event, ()):
            left = min(self.timeout_seconds, ends_at - time.monotonic())
            result = _run_one(command, event, left)
            level = logging.INFO if result.ok else logging.WARNING
            log.log(level, "hook %s (role %s): %s", event.event, event.role, result.describe())
            results.append(result)
            if not result.ok and event.event == PRE_PROMOTE:
                break
        return results


def _run_one(command: str, event: HookEvent, timeout: float) -> HookResult:
    if timeout <= 0:
        return HookResult(command, False, "not run: no time left before the fencing deadline")
    argv = [*shlex.split(command), event.event, event.role, event.cluster]
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=event.environment(),
            start_new_session=True,  # its own process group, killed whole on timeout
        )
    except OSError as exc:
        return HookResult(command, False, f"cannot be run ({exc.strerror or exc})")
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        return HookResult(command, False, f"timed out after {timeout:.1f} s and was killed")
    took = time.monotonic() - started
    if process.returncode == 0:
        return HookResult(command, True, f"exited 0 in {took:.2f} s")
    shown = _last_line(err) or _last_line(out)
    said = f": {shown}" if shown else ""
    return HookResult(command, False, f"exited {process.returncode}{said}")


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.communicate(timeout=2)
    except subprocess.TimeoutExpired:  # a grandchild left the group and holds the pipes
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        process.wait()


def _last_line(output: bytes) -> str:
    lines = output.decode("utf-8", errors="replace").strip().splitlines()
    return lines[-1][:OUTPUT_SHOWN_CHARS] if lines else ""
