"""Repair a data directory that cannot follow the leader: pg_rewind it, or clone afresh.

Both take long (600 s each at most), so each first tells the cluster what it is doing
(`rewinding`, `cloning` in the member record and the health API). A rewind refused by its
preflight changed nothing and is tried again next cycle; a rewind that failed is not
(rules_follower decides between a clone and waiting for an operator). What a rewind
discarded is logged and published (agent/divergence.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pgha.adapters.postgres_control import PostgresControl
from pgha.adapters.postgres_probe import PostgresProbe
from pgha.adapters.postgres_state import Upstream
from pgha.adapters.rewind_preflight import RewindPreflightFailed
from pgha.agent.divergence import divergence_record
from pgha.agent.runtime import Runtime
from pgha.core.model import ClusterView
from pgha.errors import PghaError
from pgha.history_summary import describe_divergence

log = logging.getLogger("pgha.agent")


@dataclass
class Rebuilder:
    control: PostgresControl
    probe: PostgresProbe
    runtime: Runtime
    announce: Callable[[str], None] | None = None
    """Publishes a long action's state ("rewinding", "cloning") before it starts."""

    def rewind(self, source_name: str, source: Upstream, view: ClusterView | None) -> str:
        runtime = self.runtime
        before = self.probe.probe()
        timeline = before.control.checkpoint_timeline if before.control is not None else None
        fork = view.fork_point(timeline) if view is not None and timeline is not None else None
        self._announce("rewinding")
        try:
            report = self.control.rewind(source, fork_lsn=fork)
        except RewindPreflightFailed as exc:
            runtime.rewind_blocked = str(exc)  # nothing changed: try again next cycle
            raise
        except PghaError:
            runtime.rewind_failed = True
            runtime.rewind_blocked = None
            raise
        finally:
            runtime.busy_with = None
        runtime.rewind_failed = False
        runtime.rewind_blocked = None
        divergence = divergence_record(
            report,
            before,
            node=runtime.name,
            source=source_name,
            leader_term=view.leader.term if view is not None and view.leader else None,
            at=time.time(),
        )
        if divergence is not None:
            runtime.divergence = divergence
            log.info("pg_rewind discarded %s", describe_divergence(divergence))
        return report.strip().splitlines()[-1] if report.strip() else "rewound"

    def clone(self, source: Upstream) -> str:
        self._announce("cloning")
        try:
            moved = move_aside(self.control.paths.data_dir)
            self.control.clone(source)
        finally:
            self.runtime.busy_with = None
        self.runtime.rewind_failed = False
        self.runtime.rewind_blocked = None
        return f"old data moved to {moved}" if moved else "cloned"

    def _announce(self, busy_with: str) -> None:
        """Tell the API and, through the member record, `pgha status` what this long
        action is; a failure to publish it never stops the action."""
        self.runtime.busy_with = busy_with
        if self.announce is not None:
            try:
                self.announce(busy_with)
            except PghaError as exc:
                log.warning("could not publish the state %r: %s", busy_with, exc)


def move_aside(data_dir: Path) -> Path | None:
    """Keep an old data directory under a new name: it may hold the only copy of lost writes."""
    if not data_dir.exists() or not any(data_dir.iterdir()):
        return None
    target = data_dir.with_name(f"{data_dir.name}.moved-{int(time.time())}")
    data_dir.rename(target)
    return target
