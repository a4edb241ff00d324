"""Physical replication slots for the other members, kept on every node (traps 16).

A slot created only when a node is promoted reserves WAL from that moment on: WAL a lagging
replica still needs may already be gone. So every node, leader and replicas alike, keeps a
slot for every other member, created with `immediately_reserve`. On the primary the
replicas stream through theirs; on a replica each slot is advanced to the position the
leader publishes (never past the member's own published position, and never past this
node's replay position), so a newly promoted primary already retains what the others need.

This is not a leadership decision: the cycle calls `SlotKeeper.keep` once, after the
decision's actions, with a few fast SQL calls. `plan_slots` is pure; `SlotKeeper` does the
I/O and logs one line per change. A failure is logged once and never breaks the cycle.
Slots of members whose record is gone are dropped only after `member_slots_ttl`: the
"gone since" times live in the agent's memory (Runtime.slots_gone_since).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from pgha.adapters.postgres_control import PostgresControl
from pgha.adapters.postgres_state import PostgresState, ReplicationSlot, format_lsn
from pgha.agent.runtime import Runtime
from pgha.core.model import ClusterView, MemberInfo, Policy
from pgha.errors import PghaError

log = logging.getLogger("pgha.agent")

SLOT_NAME_MAX_BYTES = 63
VALID_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")
ADVANCE_LOGGED_BYTES = 64 * 1024 * 1024
"""An advance is logged when it moves a slot at least this far (they move every cycle)."""
LOST = "lost"


def slot_name(member: str) -> str:
    """The slot of `member`: lower case, `-` and `.` as `_`, any other character that a
    slot name may not hold as u+hex, at most 63 bytes (as Patroni maps them)."""

    def escape(match: re.Match[str]) -> str:
        char = match.group(0)
        return "_" if char in "-." else f"u{ord(char):04x}"

    return re.sub(r"[^a-z0-9_]", escape, member.lower())[:SLOT_NAME_MAX_BYTES]


def slot_name_problem(member: str) -> str | None:
    """Why `member` cannot have a slot, or None (for `pgha config check`)."""
    name = slot_name(member)
    if not VALID_SLOT_NAME.match(name):
        return f"node name {member!r} maps to the invalid replication slot name {name!r}"
    return None


def colliding_slots(members: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Slot names that two or more member names map to, with those members."""
    by_slot: dict[str, list[str]] = {}
    for member in members:
        by_slot.setdefault(slot_name(member), []).append(member)
    return {slot: tuple(sorted(names)) for slot, names in by_slot.items() if len(names) > 1}


def own_slot(me: str, members: Iterable[str]) -> str | None:
    """The slot this node streams through, or None when its name collides with another
    member's (both would fight over one slot)."""
    name = slot_name(me)
    if name in colliding_slots({me, *members}) or not VALID_SLOT_NAME.match(name):
        return None
    return name


@dataclass(frozen=True)
class SlotPlan:
    create: tuple[str, ...] = ()
    recreate: tuple[str, ...] = ()
    """Slots Postgres marked lost (max_slot_wal_keep_size): dropped and created again."""
    advance: tuple[tuple[str, int], ...] = ()
    """(slot, target LSN); the adapter caps the target at this node's replay position."""
    drop: tuple[str, ...] = ()
    gone_since: Mapping[str, float] = field(default_factory=dict)
    """Slots of no current member, and since when (this node's clock); the next memory."""
    collisions: tuple[str, ...] = ()
    """One sentence per slot name two members map to: that slot is never created."""


def plan_slots(
    *,
    me: str,
    members: Mapping[str, MemberInfo],
    existing: Sequence[ReplicationSlot],
    is_primary: bool,
    leader_position: int | None,
    gone_since: Mapping[str, float],
    now: float,
    ttl_seconds: float,
) -> SlotPlan:
    """Desired slots (one per other member) against the existing physical slots."""
    others = {name: info for name, info in members.items() if name != me}
    collisions = colliding_slots({me, *others})
    wanted = {
        slot_name(name): info
        for name, info in others.items()
        if slot_name(name) not in collisions and VALID_SLOT_NAME.match(slot_name(name))
    }
    # A slot some member's name maps to is never dropped, even a contested one.
    known = {slot_name(name) for name in others}
    present = {slot.name: slot for slot in existing}
    create = tuple(sorted(name for name in wanted if name not in present))
    recreate = tuple(
        sorted(name for name, slot in present.items() if name in wanted and slot.wal_status == LOST)
    )
    advance: list[tuple[str, int]] = []
    if not is_primary and leader_position is not None:
        for name, info in sorted(wanted.items()):
            slot = present.get(name)
            if slot is None or slot.wal_status == LOST or slot.restart_lsn is None:
                continue
            target = leader_position
            if info.position is not None:
                target = min(target, info.position)
            if target > slot.restart_lsn:
                advance.append((name, target))
    drop: list[str] = []
    still_gone: dict[str, float] = {}
    for name, slot in sorted(present.items()):
        if name in known:
            continue
        since = gone_since.get(name, now)
        if now - since >= ttl_seconds and not slot.active:
            drop.append(name)
        else:
            still_gone[name] = since
    sentences = tuple(
        f"members {', '.join(names)} all map to the replication slot {slot}: not creating it; "
        "rename one of them"
        for slot, names in sorted(collisions.items())
    )
    return SlotPlan(create, recreate, tuple(advance), tuple(drop), still_gone, sentences)


class SlotKeeper:
    """Carries out `plan_slots` on the local Postgres once per cycle."""

    def __init__(self, control: PostgresControl, runtime: Runtime) -> None:
        self.control = control
        self.runtime = runtime
        self._last_error: str | None = None
        self._last_collisions: tuple[str, ...] = ()

    def keep(
        self, view: ClusterView | None, state: PostgresState, policy: Policy, now: float
    ) -> None:
        # Without a fresh view of the members nothing may be dropped; paused: change nothing.
        if view is None or view.paused or not state.running or state.in_recovery is None:
            return
        errors: list[str] = []
        try:
            existing = self.control.list_slots()
        except PghaError as exc:
            self._report([f"cannot list replication slots: {exc}"])
            return
        plan = plan_slots(
            me=self.runtime.name,
            members=view.members,
            existing=existing,
            is_primary=not state.in_recovery,
            leader_position=view.last_primary_position,
            gone_since=self.runtime.slots_gone_since,
            now=now,
            ttl_seconds=policy.member_slots_ttl_seconds,
        )
        self.runtime.slots_gone_since = dict(plan.gone_since)
        if plan.collisions != self._last_collisions:
            for sentence in plan.collisions:
                log.error("replication slots: %s", sentence)
            self._last_collisions = plan.collisions
        self._apply(plan, existing, errors)
        self._report(errors)

    def _apply(
        self, plan: SlotPlan, existing: Sequence[ReplicationSlot], errors: list[str]
    ) -> None:
        restart = {slot.name: slot.restart_lsn for slot in existing}
        steps: list[tuple[str, Callable[[], None]]] = [
            *((f"recreate lost slot {n}", partial(self._recreate, n)) for n in plan.recreate),
            *((f"create slot {n}", partial(self._create, n)) for n in plan.create),
            *((f"drop slot {n}", partial(self._drop, n)) for n in plan.drop),
            *(
                (f"advance slot {n}", partial(self._advance, n, target, restart.get(n)))
                for n, target in plan.advance
            ),
        ]
        for what, step in steps:
            try:
                step()
            except PghaError as exc:
                errors.append(f"cannot {what}: {exc}")

    def _create(self, name: str) -> None:
        if self.control.create_slot(name):
            log.info("replication slot %s created (reserving WAL from now on)", name)

    def _recreate(self, name: str) -> None:
        self.control.drop_slot(name)
        self.control.create_slot(name)
        log.warning(
            "replication slot %s was lost (max_slot_wal_keep_size exceeded) and is created "
            "again; the member it serves may lack WAL and need a re-clone (pgha reinit)",
            name,
        )

    def _drop(self, name: str) -> None:
        if self.control.drop_slot(name):
            log.info(
                "replication slot %s dropped: no member has used it for member_slots_ttl", name
            )

    def _advance(self, name: str, target: int, before: int | None) -> None:
        moved_to = self.control.advance_slot(name, target)
        if (
            moved_to is not None
            and before is not None
            and moved_to - before >= ADVANCE_LOGGED_BYTES
        ):
            log.info("replication slot %s advanced to %s", name, format_lsn(moved_to))

    def _report(self, errors: list[str]) -> None:
        """Log a failure once, not every cycle; and say when it is over."""
        text = "; ".join(errors) or None
        if text is not None and text != self._last_error:
            log.warning("replication slots: %s", text)
        elif text is None and self._last_error is not None:
            log.info("replication slots: back in order")
        self._last_error = text
