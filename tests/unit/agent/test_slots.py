"""Member slots: names from member names, the plan (desired vs existing), and the keeper's
error handling. The plan is a table: (situation, expected create/recreate/advance/drop).
A slot lost on the leader asks its member to re-clone, once per loss."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from pgha.adapters.memory_store import MemoryEtcd, MemoryStore
from pgha.adapters.postgres_control import PostgresControl
from pgha.adapters.postgres_state import PostgresState, ReplicationSlot
from pgha.adapters.store import Record
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
from pgha.core.model import ClusterView, MemberInfo, MemberRequest, Policy
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
    leading: bool = False
    requests: dict[str, MemberRequest] = field(default_factory=dict)


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
    "the leader asks the member of a lost slot to re-clone, then recreates it": Case(
        (ME, member("n2"), member("n3")),
        (slot("n2", None, status="lost"), slot("n3")),
        leading=True,
        expected=SlotPlan(recreate=("n2",), reclone=("n2",)),
    ),
    "a reinit already pending: the leader only recreates the slot": Case(
        (ME, member("n2")),
        (slot("n2", None, status="lost"),),
        leading=True,
        requests={"n2": MemberRequest("r1", "reinit")},
        expected=SlotPlan(recreate=("n2",)),
    ),
    "another request pending: the slot stays lost until it is served": Case(
        (ME, member("n2")),
        (slot("n2", None, status="lost"),),
        leading=True,
        requests={"n2": MemberRequest("r1", "restart")},
        expected=SlotPlan(
            held=(
                "the slot n2 of n2 was lost, and a restart request of n2 (r1) is pending: "
                "asking it to re-clone once that is served",
            )
        ),
    ),
    "a lost slot of a member whose record is gone asks nothing": Case(
        (ME,),
        (slot("n2", None, status="lost"),),
        leading=True,
        expected=SlotPlan(gone_since={"n2": NOW}),
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
        leading=case.leading,
        requests=case.requests,
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


def keeper(control: FakeControl, store: MemoryStore | None = None) -> SlotKeeper:
    runtime = Runtime(name="n1", safety_margin_seconds=5)
    store = store or MemoryStore(MemoryEtcd(clock=lambda: NOW), "/pgha/main/")
    return SlotKeeper(cast(PostgresControl, control), runtime, store)


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


# --- a slot lost on the leader ------------------------------------------------------------


def leading_keeper(control: FakeControl) -> tuple[SlotKeeper, MemoryStore]:
    store = MemoryStore(MemoryEtcd(clock=lambda: NOW), "/pgha/main/")
    slots = keeper(control, store)
    slots.runtime.lease = store.grant_lease(10)
    slots.runtime.claim = store.acquire_leader("n1", slots.runtime.lease)
    assert slots.runtime.claim is not None
    return slots, store


def view_of(store: MemoryStore) -> ClusterView:
    """The members n1 (this leader) and n2, and the requests pending in `store`."""
    requests = {
        name: MemberRequest(value.data["id"], value.data["action"], mod_revision=value.mod_revision)
        for name, value in store.read_cluster().requests.items()
        if isinstance(value, Record)
    }
    return ClusterView(revision=1, leader=None, members=VIEW.members, requests=requests)


def test_a_slot_lost_on_the_leader_asks_its_member_to_reclone_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    control = FakeControl((slot("n2", None, status="lost"),))
    slots, store = leading_keeper(control)
    with caplog.at_level(logging.INFO, logger="pgha.agent"):
        slots.keep(view_of(store), state(), Policy(), NOW)
    request = store.read_cluster().requests["n2"]
    assert isinstance(request, Record)
    assert request.data["action"] == "reinit"
    assert request.data["by"] == "pgha on n1"
    assert request.data["reason"] == (
        "its replication slot on n1 was lost: the WAL it needs is gone"
    )
    assert control.calls == [("drop", "n2"), ("create", "n2")]
    lines = [r.getMessage() for r in caplog.records if "n2 is asked to re-clone" in r.getMessage()]
    assert len(lines) == 1
    assert request.data["id"] in lines[0]

    # The recreated slot is no longer lost: nothing more is asked, also once the member
    # consumed the request.
    control.slots = (slot("n2"),)
    slots.keep(view_of(store), state(), Policy(), NOW)
    store.delete("requests/n2")
    slots.keep(view_of(store), state(), Policy(), NOW)
    assert store.read_cluster().requests == {}
    assert control.calls == [("drop", "n2"), ("create", "n2")]


def test_a_request_that_cannot_be_written_leaves_the_slot_lost_for_the_next_cycle() -> None:
    control = FakeControl((slot("n2", None, status="lost"),))
    slots, store = leading_keeper(control)
    stale = view_of(store)  # an operator's request arrives after this view was read
    store.put("requests/n2", {"id": "op1", "action": "restart"}, expected_mod_revision=0)
    slots.keep(stale, state(), Policy(), NOW)
    assert control.calls == []
    request = store.read_cluster().requests["n2"]
    assert isinstance(request, Record)
    assert request.data["id"] == "op1"


@pytest.mark.parametrize(
    ("leading", "probed"),
    [(False, state()), (True, state(in_recovery=True))],
    ids=["a replica's copy", "a leader still being promoted"],
)
def test_a_slot_lost_elsewhere_than_on_the_leading_primary_asks_nothing(
    leading: bool, probed: PostgresState
) -> None:
    control = FakeControl((slot("n2", None, status="lost"),))
    slots, store = leading_keeper(control)
    if not leading:
        slots.runtime.claim = None
    slots.keep(view_of(store), probed, Policy(), NOW)
    assert store.read_cluster().requests == {}
    assert control.calls == [("drop", "n2"), ("create", "n2")]
