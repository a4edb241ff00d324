"""One log line when the leader's synchronous replication degrades, and one when it recovers.

In `synchronous_mode: on` a leader left without a sync standby goes on committing without
waiting for any standby (degraded to asynchronous, DESIGN rule 6): no replica then holds
every acknowledged commit, so none may be promoted automatically. Every cycle's line says
so in its reason; an operator reading the log, or alerting on it, needs the moment it began
and the moment it ended, once each. `/metrics` (pgha_synchronous_degraded) and
`pgha status` show the state itself.

`degraded_now` is pure; `SyncDegradationLog` only remembers the last state and logs changes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pgha.agent.outcome import Outcome
from pgha.core.actions import UpdateSync
from pgha.core.model import ClusterView

log = logging.getLogger("pgha.agent")


def sync_standbys_now(
    view: ClusterView, outcomes: Sequence[Outcome], me: str, term: int
) -> tuple[str, ...]:
    """This leader's sync standbys after this cycle's actions: the `sync` key it just wrote,
    else the one read, counted only when it is this leader's own in this term."""
    written = [o.action for o in outcomes if o.ok and isinstance(o.action, UpdateSync)]
    if written:
        assert isinstance(written[-1], UpdateSync)
        return written[-1].standbys or ()
    record = view.sync
    if record is None or (record.leader, record.term) != (me, term):
        return ()
    return record.standbys


def degraded_now(
    *,
    leading: bool,
    mode: str,
    view: ClusterView | None,
    outcomes: Sequence[Outcome],
    me: str,
    term: int | None,
) -> tuple[bool, tuple[str, ...]] | None:
    """(degraded, sync standbys) for the leader of a writable primary; None when this node
    does not lead (or etcd was not read)."""
    if not leading or view is None or term is None:
        return None
    standbys = sync_standbys_now(view, outcomes, me, term)
    return mode == "on" and not standbys, standbys


class SyncDegradationLog:
    """Logs the changes of `degraded_now` while this node leads; silent otherwise."""

    def __init__(self) -> None:
        self.degraded: bool | None = None
        """The last state seen as leader; None when not leading (a new leadership starts
        from nothing, so a leader that begins degraded says so)."""

    def note(self, now: tuple[bool, tuple[str, ...]] | None, mode: str) -> None:
        if now is None:
            self.degraded = None
            return
        degraded, standbys = now
        if degraded and self.degraded is not True:
            log.warning(
                "synchronous_mode on, but no standby is synchronous: commits no longer wait "
                "for any standby (degraded to asynchronous), and no replica may be promoted "
                "automatically until one has caught up"
            )
        elif not degraded and self.degraded is True:
            if mode == "on":
                log.info(
                    "synchronous replication restored: commits wait for %s again",
                    ", ".join(standbys),
                )
            else:
                log.info("synchronous_mode is %s now: no longer degraded to asynchronous", mode)
        self.degraded = degraded
