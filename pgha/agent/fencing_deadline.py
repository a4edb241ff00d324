"""The fencing deadline, handed from the agent to the guard through a local file.

The agent writes it after every successful renewal; the guard, a separate process that
does not share the agent's fate (a frozen agent freezes all of its threads), reads it
every poll. The file lives in a local run directory (tmpfs under systemd), never in etcd:
the guard must work exactly when etcd cannot be reached (DESIGN rule 3, traps 12).

Times are CLOCK_BOOTTIME seconds, which keep counting through a system suspend, unlike
CLOCK_MONOTONIC; the etcd lease on another host keeps running through one too.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path


def boottime() -> float:
    """Seconds on CLOCK_BOOTTIME: the clock every fencing deadline is measured on."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass(frozen=True)
class Deadline:
    """`deadline` None means disarmed: this node is not leader, nothing to enforce."""

    deadline: float | None
    term: int | None
    agent_pid: int

    def passed(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline


def write_deadline(path: Path, deadline: Deadline) -> None:
    """Replace the file atomically: the guard never reads half a deadline."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = {
        "deadline": deadline.deadline,
        "term": deadline.term,
        "agent_pid": deadline.agent_pid,
    }
    temporary.write_text(json.dumps(payload))
    os.replace(temporary, path)


def read_deadline(path: Path) -> Deadline | None:
    """The last deadline written, or None if there is no readable file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    deadline, term, pid = data.get("deadline"), data.get("term"), data.get("agent_pid")
    if deadline is not None and not isinstance(deadline, (int, float)):
        return None
    if not isinstance(pid, int):
        return None
    return Deadline(
        float(deadline) if deadline is not None else None,
        term if isinstance(term, int) else None,
        pid,
    )
