"""Parsing a snapshot into the core's view: good records read, hostile ones reported."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgha.adapters.store import RawEntry, parse_snapshot
from pgha.agent.cluster_view import UNREADABLE_LEADER, parse_cluster, parse_member
from pgha.agent.record_fields import BadRecord
from pgha.core.model import InitState, Policy, parse_lsn

BASE = Policy()


MEMBER_LEASE = 0x7E


def snapshot(**keys: Any) -> Any:
    """Keys as keyword arguments (members__pg1 = members/pg1); members are on a lease, as
    agents publish them."""
    entries = []
    for revision, (key, value) in enumerate(sorted(keys.items()), start=10):
        text = value if isinstance(value, str) else json.dumps(value)
        lease = MEMBER_LEASE if key.startswith("members__") else 0
        entries.append(RawEntry(key.replace("__", "/"), text, revision, revision, lease))
    return parse_snapshot(100, entries)


def test_a_full_cluster_reads_back() -> None:
    parsed = parse_cluster(
        snapshot(
            initialize={"sysid": "7301"},
            config={
                "ttl": 10,
                "loop_wait": 1,
                "retry_timeout": 3,
                "safety_margin": 2,
                "paused": True,
            },
            members__pg1={
                "host": "127.0.0.1",
                "port": 5432,
                "running": True,
                "in_recovery": True,
                "timeline": 2,
                "position": "0/3000060",
                "tags": {"nofailover": True, "failover_priority": 3},
                "no_leader_revision": 77,
            },
            history=[{"timeline": 2, "lsn": "0/3000000", "term": 5}],
            status={"position": "0/3000100", "term": 5},
            handoff={"from": "pg2", "to": "pg1", "term": 5, "final_lsn": "0/3000028"},
        ),
        BASE,
    )
    view = parsed.view
    assert parsed.problems == ()
    assert view.init_state is InitState.DONE
    assert view.system_identifier == "7301"
    assert view.paused
    assert parsed.policy.ttl_seconds == 10
    assert parsed.policy.loop_wait_seconds == 1
    pg1 = view.members["pg1"]
    assert pg1.position == parse_lsn("0/3000060")
    assert pg1.tags.nofailover
    assert pg1.tags.failover_priority == 3
    assert pg1.no_leader_revision == 77
    assert view.latest_timeline == 2
    assert view.fork_point(1) == parse_lsn("0/3000000")
    assert view.last_primary_position == parse_lsn("0/3000100")
    assert view.handoff is not None
    assert view.handoff.to_node == "pg1"


@pytest.mark.parametrize(
    "record",
    [
        "[1, 2]",
        {"port": "5432"},
        {"position": "garbage"},
        {"running": "yes"},
        {"timeline": True},
        {"tags": []},
    ],
)
def test_a_bad_member_record_is_reported_and_counts_as_possibly_ahead(record: Any) -> None:
    parsed = parse_cluster(snapshot(members__pg3=record), BASE)
    assert any("pg3" in problem for problem in parsed.problems)
    pg3 = parsed.view.members["pg3"]
    assert pg3.running
    assert pg3.no_leader_revision is None


def test_garbage_config_keeps_the_last_good_policy() -> None:
    last = Policy(ttl_seconds=12)
    parsed = parse_cluster(snapshot(config={"ttl": "soon"}), last)
    assert parsed.policy == last
    assert any("dynamic config ignored" in problem for problem in parsed.problems)


@pytest.mark.parametrize("value", ["{nope", {"sysid": 12}, {"state": "weird"}, "[]"])
def test_unreadable_initialize_stops_joining(value: Any) -> None:
    parsed = parse_cluster(snapshot(initialize=value), BASE)
    assert parsed.view.init_state is InitState.GARBAGE


def test_bootstrapping_names_the_winner() -> None:
    parsed = parse_cluster(snapshot(initialize={"state": "bootstrapping", "node": "pg2"}), BASE)
    assert parsed.view.init_state is InitState.BOOTSTRAPPING
    assert parsed.view.init_node == "pg2"


def test_an_unreadable_handoff_lets_nobody_take_the_key() -> None:
    parsed = parse_cluster(snapshot(handoff={"from": "pg2"}), BASE)
    handoff = parsed.view.handoff
    assert handoff is not None
    assert handoff.to_node == "(unreadable handoff)"


def test_garbage_history_and_status_are_reported() -> None:
    parsed = parse_cluster(snapshot(history={"x": 1}, status=[1]), BASE)
    assert parsed.view.timeline_switches == ()
    assert parsed.view.last_primary_position is None
    assert len(parsed.problems) == 2


def test_parse_member_refuses_non_objects() -> None:
    with pytest.raises(BadRecord):
        parse_member("pg1", [1])


def test_unsafe_timers_in_etcd_are_ignored_for_the_last_good_policy() -> None:
    last = Policy(ttl_seconds=30, loop_wait_seconds=10, retry_timeout_seconds=7)
    parsed = parse_cluster(snapshot(config={"loop_wait": 25}), last)
    assert parsed.policy == last
    assert any("no room to fence" in problem for problem in parsed.problems)


# --- hostile input: every rejection names its key, nothing raises --------------------------

KEYS = [
    "leader",
    "members/pg2",
    "initialize",
    "config",
    "switchover",
    "handoff",
    "failover",
    "requests/pg2",
    "sync",
    "history",
    "endpoint",
    "status",
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
FIELDS = ["host", "port", "position", "running", "timeline", "tags", "sysid", "id", "state"]
GARBAGE = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda raw: raw.decode("utf-8", errors="replace")),
    JSON.map(json.dumps),
    st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=4).map(json.dumps),
    st.sampled_from(["NaN", '{"ttl": Infinity}', "[" * 5000, "x" * 100_000]),
)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(KEYS), raw=GARBAGE, leased=st.booleans())
def test_garbage_in_any_key_is_reported_under_that_key(key: str, raw: str, leased: bool) -> None:
    entry = RawEntry(key, raw, 10, 11, MEMBER_LEASE if leased else 0)
    parsed = parse_cluster(parse_snapshot(100, [entry]), BASE)
    assert set(parsed.unreadable) <= {key}
    for what in parsed.unreadable.values():
        assert len(what) < 600, "a rejection quotes at most an excerpt of the value"
    if key == "leader":
        leader = parsed.view.leader
        assert leader is not None, "a key holding anything is held"
        assert leased or parsed.unreadable, "a lease-less leader key is always reported"


def test_a_member_record_without_a_lease_counts_as_unknown() -> None:
    record = {"running": True, "timeline": 2, "position": "FFFFFFFF/FFFFFFFF", "sysid": "1"}
    entry = RawEntry("members/pg3", json.dumps(record), 10, 10, 0)
    parsed = parse_cluster(parse_snapshot(100, [entry]), BASE)
    pg3 = parsed.view.members["pg3"]
    assert pg3.position is None
    assert pg3.running
    assert parsed.unreadable == {
        "members/pg3": "member record ignored: bound to no lease, so no agent wrote it"
    }


@pytest.mark.parametrize("config", ['{"ttl": NaN}', '{"ttl": Infinity}', '{"loop_wait": -1}', "7"])
def test_garbage_config_keeps_the_last_pause_too(config: str) -> None:
    parsed = parse_cluster(snapshot(config=config), BASE, last_paused=True)
    assert parsed.policy == BASE
    assert parsed.view.paused
    assert "config" in parsed.unreadable


def test_an_impossible_leader_value_is_held_by_nobody_a_node_can_be() -> None:
    entry = RawEntry("leader", "x" * 100_000, 10, 11, 0)
    parsed = parse_cluster(parse_snapshot(100, [entry]), BASE)
    assert parsed.view.leader is not None
    assert parsed.view.leader.holder == UNREADABLE_LEADER
    assert "bound to no lease" in parsed.unreadable["leader"]


@pytest.mark.parametrize(
    "request_text",
    [
        '{"foo": 1}',
        '{"id": "s1"}',
        '{"id": "s1", "state": "bogus"}',
        '{"id": 5, "state": "pending"}',
    ],
)
def test_a_stray_object_is_not_taken_for_a_switchover(request_text: str) -> None:
    parsed = parse_cluster(snapshot(switchover=request_text), BASE)
    assert parsed.view.switchover is None
    assert "switchover" in parsed.unreadable


def test_unparsable_endpoint_switchover_failover_and_requests_are_reported() -> None:
    parsed = parse_cluster(
        snapshot(endpoint="{", switchover="{", failover="{", requests__pg2="{"), BASE
    )
    assert set(parsed.unreadable) == {"endpoint", "switchover", "failover", "requests/pg2"}
    assert parsed.view.switchover is None
    assert parsed.view.failover is None
    assert parsed.view.requests == {}


def test_a_request_reads_back_with_who_asked_and_why() -> None:
    why = "its replication slot on pg1 was lost: the WAL it needs is gone"
    request = {"id": "r1", "action": "reinit", "by": "pgha on pg1", "reason": why}
    parsed = parse_cluster(snapshot(requests__pg2=request), BASE)
    read = parsed.view.requests["pg2"]
    assert (read.id, read.action, read.by, read.reason) == ("r1", "reinit", "pgha on pg1", why)
    assert parse_cluster(snapshot(requests__pg2=request | {"reason": 3}), BASE).view.requests == {}


@pytest.mark.parametrize("text", ["-1/0", " 1/2", "1FFFFFFFF/0", "0x1/2", "1/2/3", "", "1/"])
def test_parse_lsn_refuses_what_postgres_never_prints(text: str) -> None:
    with pytest.raises(ValueError, match="expected an LSN"):
        parse_lsn(text)


def test_a_member_record_is_read_again_when_it_changes_and_its_problem_said_every_time() -> None:
    good = {"host": "10.0.0.1", "port": 5432, "position": "0/3000060"}
    moved = {**good, "position": "0/4000000"}
    bad = {**good, "port": "5432"}
    seen = []
    for record in (good, good, moved, bad, bad, good):
        parsed = parse_cluster(snapshot(members__pg1=record), BASE)
        seen.append((parsed.view.members["pg1"].position, "members/pg1" in parsed.unreadable))
    good_lsn, moved_lsn = parse_lsn("0/3000060"), parse_lsn("0/4000000")
    assert seen == [
        (good_lsn, False),
        (good_lsn, False),
        (moved_lsn, False),
        (None, True),
        (None, True),  # the same bad record, reported again, not only the first time
        (good_lsn, False),
    ]
