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

A slot Postgres marked lost (`max_slot_wal_keep_size` exceeded) is created again, but the
WAL its member still needed is gone: that member can no longer stream. So the leader, on
the primary, first writes a reinit request for it (`requests/<member>`, as `pgha reinit`
would, only if none is pending) and recreates the slot only once the request is written:
the member's agent then re-clones through the operator path (data directory moved aside,
never deleted) and answers in its member record. The recreated slot is no longer lost, so
one loss makes one request. A replica's copies of slots ask for nothing: its slot being
lost says nothing about what the primary still holds.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from pgha.adapters.postgres_control import PostgresControl
from pgha.adapters.postgres_state import PostgresState, ReplicationSlot, format_lsn
from pgha.adapters.store import REQUESTS, ClusterStore
from pgha.agent.runtime import Runtime
from pgha.core.model import ClusterView, MemberInfo, MemberRequest, Policy
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
    reclone: tuple[str, ...] = ()
    """Members whose slot was lost on the leader: each is asked to re-clone (a reinit
    request) and its slot, in `recreate` too, is recreated only once the request is written."""
    held: tuple[str, ...] = ()
    """One sentence per lost slot left as it is because another request of its member is
    pending: recreated once that request is served, so that the loss still gets its re-clone."""


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
    leading: bool = False,
    requests: Mapping[str, MemberRequest] | None = None,
) -> SlotPlan:
    """Desired slots (one per other member) against the existing physical slots.

    `leading`: this node holds the leader key and its Postgres is the primary; `requests`:
    the operator requests pending, by member."""
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
    lost = sorted(
        name for name, slot in present.items() if name in wanted and slot.wal_status == LOST
    )
    recreate, reclone, held = _plan_lost(lost, wanted, leading, requests or {})
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
    return SlotPlan(
        create, recreate, tuple(advance), tuple(drop), still_gone, sentences, reclone, held
    )


def _plan_lost(
    lost: Sequence[str],
    wanted: Mapping[str, MemberInfo],
    leading: bool,
    requests: Mapping[str, MemberRequest],
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(slots to recreate, members to ask for a re-clone, sentences of slots held lost)."""
    if not leading:
        return tuple(lost), (), ()
    recreate: list[str] = []
    reclone: list[str] = []
    held: list[str] = []
    for slot in lost:
        member = wanted[slot].name
        pending = requests.get(member)
        if pending is None:
            reclone.append(member)
            recreate.append(slot)
        elif pending.action == "reinit":
            recreate.append(slot)  # a re-clone is asked for already
        else:
            held.append(
                f"the slot {slot} of {member} was lost, and a {pending.action} request of "
                f"{member} ({pending.id}) is pending: asking it to re-clone once that is served"
            )
    return tuple(recreate), tuple(reclone), tuple(held)


class SlotKeeper:
    """Carries out `plan_slots` on the local Postgres once per cycle."""

    def __init__(self, control: PostgresControl, runtime: Runtime, store: ClusterStore) -> None:
        self.control = control
        self.runtime = runtime
        self.store = store
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
            # The claim alone is not enough: a leader still being promoted is in recovery.
            leading=self.runtime.claim is not None and not state.in_recovery,
            requests=view.requests,
        )
        self.runtime.slots_gone_since = dict(plan.gone_since)
        if plan.collisions != self._last_collisions:
            for sentence in plan.collisions:
                log.error("replication slots: %s", sentence)
            self._last_collisions = plan.collisions
        self._apply(plan, existing, errors)
        self._report([*plan.held, *errors])

    def _apply(
        self, plan: SlotPlan, existing: Sequence[ReplicationSlot], errors: list[str]
    ) -> None:
        restart = {slot.name: slot.restart_lsn for slot in existing}
        asked = {slot_name(member): member for member in plan.reclone}
        steps: list[tuple[str, Callable[[], None]]] = [
            *(
                (f"recreate lost slot {n}", partial(self._recreate, n, asked.get(n)))
                for n in plan.recreate
            ),
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

    def _recreate(self, name: str, member: str | None) -> None:
        """Drop and create a lost slot; as leader, first ask `member` to re-clone."""
        request_id = self._ask_reclone(member) if member is not None else None
        self.control.drop_slot(name)
        self.control.create_slot(name)
        if member is not None:
            log.warning(
                "replication slot %s was lost (max_slot_wal_keep_size exceeded) and is created "
                "again; %s is asked to re-clone (reinit request %s): the WAL it needs is gone "
                "from this primary",
                name,
                member,
                request_id,
            )
            return
        log.warning(
            "replication slot %s was lost (max_slot_wal_keep_size exceeded) and is created "
            "again; the member it serves may lack WAL and need a re-clone (pgha reinit)",
            name,
        )

    def _ask_reclone(self, member: str) -> str:
        """Write a reinit request for `member`, only if none is pending and only while this
        node holds the key; the request's id. Raises when it was not written, so that the
        slot stays lost and the next cycle decides again."""
        claim = self.runtime.claim
        if claim is None:
            raise PghaError(f"cannot ask {member} to re-clone: this node no longer leads")
        me = self.runtime.name
        request_id = uuid.uuid4().hex[:12]
        record = {
            "id": request_id,
            "action": "reinit",
            "by": f"pgha on {me}",
            "reason": f"its replication slot on {me} was lost: the WAL it needs is gone",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        key = REQUESTS + member
        if not self.store.put(key, record, expected_mod_revision=0, as_leader=claim):
            raise PghaError(
                f"cannot ask {member} to re-clone: another request for it arrived meanwhile, "
                "or the leader key changed; deciding again next cycle"
            )
        return request_id

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
