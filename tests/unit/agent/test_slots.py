"""Member slots: names from member names, the plan (desired vs existing), and the keeper's
error handling. The plan is a table: (situation, expected create/recreate/advance/drop)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from pgha.adapters.postgres_control import PostgresControl
from pgha.adapters.postgres_state import PostgresState, ReplicationSlot
from pgha.agent.runtime import Runtime
from pgha.agent.slots import (
    SlotKeeper,
    SlotPlan,
    colliding_slots,
    own_slot,
    plan_slots,
    slot_name,
    slot_name_problem,
)
from pgha.core.model import ClusterView, MemberInfo, Policy
from pgha.errors import PostgresError

GB = 1024**3


@pytest.mark.parametrize(
    ("member", "slot"),
    [
        ("n1", "n1"),
        ("DB-1.example.com", "db_1_example_com"),
        ("pg_2", "pg_2"),
        ("café", "cafu00e9"),
        ("a" * 70, "a" * 63),
    ],
)
def test_slot_names_derive_from_member_names(member: str, slot: str) -> None:
    assert slot_name(member) == slot
    assert slot_name_problem(member) is None


def test_colliding_member_names_are_found_and_get_no_slot() -> None:
    assert colliding_slots(["db-1", "db.1", "DB_1", "db-2"]) == {"db_1": ("DB_1", "db-1", "db.1")}
    assert own_slot("db-1", ["db.1", "n2"]) is None
    assert own_slot("db-1", ["n2", "db-1"]) == "db_1"


def member(name: str, position: int | None = None) -> MemberInfo:
    return MemberInfo(name=name, host="127.0.0.1", port=5432, position=position)


def slot(
    name: str, restart: int | None = GB, *, active: bool = False, status: str = "reserved"
) -> ReplicationSlot:
    return ReplicationSlot(name, active, restart, status)


@dataclass(frozen=True)
class Case:
    members: tuple[MemberInfo, ...]
    existing: tuple[ReplicationSlot, ...] = ()
    is_primary: bool = True
    leader_position: int | None = None
    gone_since: dict[str, float] = field(default_factory=dict)
    expected: SlotPlan = field(default_factory=SlotPlan)


NOW, TTL = 1000.0, 60.0
ME = member("n1")
CASES = {
    "a primary creates a slot for every other member": Case(
        (ME, member("n2"), member("n3")), expected=SlotPlan(create=("n2", "n3"))
    ),
    "existing slots are kept, a primary advances none": Case(
        (ME, member("n2", 5 * GB)),
        (slot("n2"),),
        leader_position=6 * GB,
    ),
    "a replica creates a slot for the leader too": Case(
        (ME, member("n2")), is_primary=False, expected=SlotPlan(create=("n2",))
    ),
    "a replica advances to the leader's position when the member is ahead of the slot": Case(
        (ME, member("n2"), member("n3", 9 * GB)),
        (slot("n2"), slot("n3")),
        is_primary=False,
        leader_position=4 * GB,
        expected=SlotPlan(advance=(("n2", 4 * GB), ("n3", 4 * GB))),
    ),
    "never past the member's own published position": Case(
        (ME, member("n3", 2 * GB)),
        (slot("n3"),),
        is_primary=False,
        leader_position=4 * GB,
        expected=SlotPlan(advance=(("n3", 2 * GB),)),
    ),
    "no advance backwards, nor without a published leader position": Case(
        (ME, member("n2", 3 * GB), member("n3")),
        (slot("n2", 3 * GB), slot("n3")),
        is_primary=False,
        leader_position=None,
    ),
    "a lost slot is recreated, never advanced": Case(
        (ME, member("n2")),
        (slot("n2", None, status="lost"),),
        is_primary=False,
        leader_position=4 * GB,
        expected=SlotPlan(recreate=("n2",)),
    ),
    "a slot of no member starts its ttl": Case(
        (ME, member("n2")), (slot("n2"), slot("old")), expected=SlotPlan(gone_since={"old": NOW})
    ),
    "it is dropped once the ttl has passed": Case(
        (ME,),
        (slot("old"), slot("older")),
        gone_since={"old": NOW - TTL + 1, "older": NOW - TTL},
        expected=SlotPlan(drop=("older",), gone_since={"old": NOW - TTL + 1}),
    ),
    "an active slot is never dropped": Case(
        (ME,),
        (slot("old", active=True),),
        gone_since={"old": 0.0},
        expected=SlotPlan(gone_since={"old": 0.0}),
    ),
    "a member back before the ttl keeps its slot and its ttl is forgotten": Case(
        (ME, member("n2")), (slot("n2"),), gone_since={"n2": 0.0}
    ),
    "a slot named after this node itself is not a member's": Case(
        (ME,), (slot("n1"),), expected=SlotPlan(gone_since={"n1": NOW})
    ),
    "colliding names get no slot, and an existing one is kept": Case(
        (ME, member("db-1"), member("db.1")),
        (slot("db_1"),),
        expected=SlotPlan(
            collisions=(
                "members db-1, db.1 all map to the replication slot db_1: not creating it; "
                "rename one of them",
            )
        ),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plan(case: Case) -> None:
    plan = plan_slots(
        me=ME.name,
        members={info.name: info for info in case.members},
        existing=case.existing,
        is_primary=case.is_primary,
        leader_position=case.leader_position,
        gone_since=case.gone_since,
        now=NOW,
        ttl_seconds=TTL,
    )
    assert plan == case.expected


# --- the keeper -------------------------------------------------------------------------------


class FakeControl:
    def __init__(self, slots: tuple[ReplicationSlot, ...] = (), fail: str | None = None) -> None:
        self.slots = slots
        self.fail = fail
        self.calls: list[tuple[str, Any]] = []

    def list_slots(self) -> tuple[ReplicationSlot, ...]:
        return self.slots

    def create_slot(self, name: str) -> bool:
        self.calls.append(("create", name))
        if self.fail == name:
            raise PostgresError(f"cannot create slot {name}: disk full")
        return True

    def drop_slot(self, name: str) -> bool:
        self.calls.append(("drop", name))
        return True

    def advance_slot(self, name: str, target: int) -> int | None:
        self.calls.append(("advance", name))
        return target


def keeper(control: FakeControl) -> SlotKeeper:
    return SlotKeeper(cast(PostgresControl, control), Runtime(name="n1", safety_margin_seconds=5))


def state(*, running: bool = True, in_recovery: bool | None = False) -> PostgresState:
    return PostgresState(Path("/data"), True, running, accepting_connections=running,
                         in_recovery=in_recovery)  # fmt: skip


VIEW = ClusterView(revision=1, leader=None, members={"n1": ME, "n2": member("n2")})


@pytest.mark.parametrize(
    ("view", "probed"),
    [
        (None, state()),
        (ClusterView(revision=1, leader=None, members=VIEW.members, paused=True), state()),
        (VIEW, state(running=False, in_recovery=None)),
        (VIEW, state(in_recovery=None)),
    ],
    ids=["etcd unreadable", "paused", "postgres down", "postgres not answering"],
)
def test_the_keeper_does_nothing_when_it_cannot_know(
    view: ClusterView | None, probed: PostgresState
) -> None:
    control = FakeControl()
    keeper(control).keep(view, probed, Policy(), NOW)
    assert control.calls == []


def test_a_failure_is_logged_once_and_later_changes_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    members = {**VIEW.members, "n3": member("n3")}
    control = FakeControl(fail="n2")
    slots = keeper(control)
    with caplog.at_level(logging.INFO, logger="pgha.agent"):
        for _ in range(3):
            slots.keep(
                ClusterView(revision=1, leader=None, members=members), state(), Policy(), NOW
            )
    assert control.calls.count(("create", "n3")) == 3
    failures = [r for r in caplog.records if "disk full" in r.getMessage()]
    assert len(failures) == 1


def test_gone_since_lives_in_the_runtime_and_drops_after_the_ttl() -> None:
    control = FakeControl((slot("gone"),))
    slots = keeper(control)
    policy = Policy(member_slots_ttl_seconds=TTL)
    slots.keep(VIEW, state(), policy, NOW)
    assert slots.runtime.slots_gone_since == {"gone": NOW}
    slots.keep(VIEW, state(), policy, NOW + TTL)
    assert ("drop", "gone") in control.calls
    assert slots.runtime.slots_gone_since == {}
