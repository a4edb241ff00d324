"""The guard: a small process beside Postgres that fences it when the agent cannot.

A frozen or hung agent cannot demote its own Postgres: SIGSTOP freezes every thread of
it. So the guard runs as its own process, polls the fencing deadline the agent writes
after each successful renewal (a local file, never etcd), and when the deadline passes
without a newer one it stops Postgres:

1. SIGINT to the postmaster (a fast shutdown): the moment the postmaster accepts it, it
   marks postmaster.pid `stopping`, refuses new connections and ends the backends, so no
   write is acknowledged any more, and a clean shutdown still ships WAL to the replicas;
2. if postmaster.pid does not say `stopping` within a second (a frozen postmaster leaves
   signals pending), SIGSTOP the postmaster, SIGKILL every process of the data directory
   (each backend is its own session), then the postmaster (DESIGN rule 3).

The guard outlives a killed agent: it keeps enforcing the last deadline it read, and
exits once the agent is gone and nothing is left to guard.

It runs as `python -m pgha.agent.guard` and imports nothing but the standard library and
the few pgha modules it needs, so that it costs a few MiB, not a second agent's worth.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from pgha.adapters.pg_process import kill_postgres, live_postmaster, read_postmaster_pid
from pgha.agent.fencing_deadline import Deadline, boottime, read_deadline
from pgha.errors import PostgresError

log = logging.getLogger("pgha.guard")

ACCEPT_STOP_SECONDS = 1.0


def fence(data_dir: Path) -> str:
    """Stop the Postgres of `data_dir` so it takes no more writes; says how it went."""
    postmaster = live_postmaster(data_dir)
    if postmaster is None:
        return "no postmaster running"
    try:
        os.kill(postmaster.pid, signal.SIGINT)
    except ProcessLookupError:
        return "postmaster already gone"
    give_up = time.monotonic() + ACCEPT_STOP_SECONDS
    while time.monotonic() < give_up:
        current = read_postmaster_pid(data_dir)
        if current is None or current.pid != postmaster.pid or current.status == "stopping":
            return f"postmaster {postmaster.pid} accepted a fast shutdown"
        time.sleep(0.02)
    try:
        kill_postgres(data_dir)
    except PostgresError as exc:
        return f"UNFENCEABLE: {exc}"
    return (
        f"postmaster {postmaster.pid} did not accept a fast shutdown within "
        f"{ACCEPT_STOP_SECONDS:g} s: killed it and every process of {data_dir}"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our dead parent not yet reaped by its parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Guard:
    def __init__(self, data_dir: Path, deadline_file: Path, poll_seconds: float) -> None:
        self.data_dir = data_dir
        self.deadline_file = deadline_file
        self.poll_seconds = poll_seconds
        self.current: Deadline | None = None
        self.fenced_term: int | None = None
        self.stop_requested = False

    def step(self) -> bool:
        """One poll; False once the guard has nothing left to do."""
        latest = read_deadline(self.deadline_file)
        if latest is not None:
            # An unreadable or missing file never disarms the guard: the last deadline stands.
            self.current = latest
        current = self.current
        if current is None:
            return not self.stop_requested
        now = boottime()
        if current.passed(now) and self.fenced_term != current.term:
            if live_postmaster(self.data_dir) is not None:
                overdue = now - (current.deadline or now)
                log.warning(
                    "fencing deadline of term %s passed %.2f s ago without renewal: %s",
                    current.term,
                    overdue,
                    fence(self.data_dir),
                )
            self.fenced_term = current.term
        agent_gone = not _alive(current.agent_pid)
        armed = current.deadline is not None and self.fenced_term != current.term
        # Keep guarding while armed, or while the agent lives and has not asked us to go.
        return armed or not (agent_gone or self.stop_requested)

    def pause_seconds(self, now: float) -> float:
        """How long to sleep before the next look: until the deadline in force, but at most
        `poll_seconds`. A deadline only ever moves later while armed, and a new one is at
        least ttl - safety_margin away, so sleeping longer never makes the fence late."""
        current = self.current
        if current is None or current.deadline is None or self.fenced_term == current.term:
            return self.poll_seconds
        return min(self.poll_seconds, max(current.deadline - now, 0.0))

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        log.info("guarding %s with the deadline in %s", self.data_dir, self.deadline_file)
        while self.step():
            time.sleep(self.pause_seconds(boottime()))
        log.info("guard exits: nothing left to guard")

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        current = self.current
        if current is not None and current.deadline is not None:
            # Asked to go while armed: leaving would leave an unguarded primary, so fence.
            log.warning(
                "guard stopped while armed (term %s): %s", current.term, fence(self.data_dir)
            )
            self.fenced_term = current.term
        self.stop_requested = True


def main(argv: list[str] | None = None) -> None:
    """Entry point of the guard process the agent starts beside Postgres."""
    parser = argparse.ArgumentParser(
        prog="pgha-guard",
        description="Fence Postgres when the agent's fencing deadline passes (the agent "
        "starts this process; there is no need to run it by hand).",
    )
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--deadline-file", type=Path, required=True)
    parser.add_argument(
        "--poll", type=float, default=2.0, help="longest sleep between two looks, in seconds"
    )
    options = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    Guard(options.data_dir, options.deadline_file, options.poll).run()


if __name__ == "__main__":
    main()
