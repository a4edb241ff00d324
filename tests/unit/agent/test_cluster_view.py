"""Parsing a snapshot into the core's view: good records read, hostile ones reported."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pgha.adapters.store import RawEntry, parse_snapshot
from pgha.agent.cluster_view import BadRecord, parse_cluster, parse_member
from pgha.core.model import InitState, Policy, parse_lsn

BASE = Policy()


def snapshot(**keys: Any) -> Any:
    entries = []
    for revision, (key, value) in enumerate(sorted(keys.items()), start=10):
        text = value if isinstance(value, str) else json.dumps(value)
        entries.append(RawEntry(key.replace("__", "/"), text, revision, revision, 0))
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
