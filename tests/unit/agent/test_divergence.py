"""What a rewind discarded: read from pg_rewind's report, published by the rewound node,
and written once into the history entry of the promotion that forked the timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pgha.adapters.postgres_state import ControlData, PostgresState
from pgha.agent.divergence import divergence_record, valid_divergence, with_divergences
from pgha.history_summary import describe_divergence, divergences_of

REPORT = """pg_rewind: servers diverged at WAL location 0/3000148 on timeline 1
pg_rewind: rewinding from last common checkpoint at 0/3000060 on timeline 1
pg_rewind: Done!
"""


def stopped_old_primary() -> PostgresState:
    control = ControlData(1, "in production", 0x3000200, 1, 0, 0)
    return PostgresState(Path("/data"), initialized=True, running=False, control=control)


def divergence(**changes: Any) -> dict[str, Any]:
    found = divergence_record(
        REPORT, stopped_old_primary(), node="pg1", source="pg2", leader_term=7, at=100.0
    )
    assert found is not None
    return {**found, **changes}


def test_the_report_gives_the_old_timeline_and_where_its_discarded_wal_begins() -> None:
    found = divergence()
    assert found["timeline"] == 1
    assert found["from"] == "0/3000148"
    assert found["to_at_least"] == "0/3000200"
    assert (found["node"], found["source"], found["term"]) == ("pg1", "pg2", 7)
    assert describe_divergence(found) == (
        "pg1's WAL on timeline 1 from 0/3000148 up to at least 0/3000200 (rewound from pg2)"
    )


def test_nothing_was_discarded_when_no_rewind_was_required() -> None:
    report = REPORT.replace("pg_rewind: Done!", "pg_rewind: no rewind required")
    assert divergence_record(report, stopped_old_primary(), node="a", source="b",
                             leader_term=1, at=0.0) is None  # fmt: skip
    assert divergence_record("", stopped_old_primary(), node="a", source="b",
                             leader_term=1, at=0.0) is None  # fmt: skip


def test_garbage_in_a_member_record_is_no_divergence() -> None:
    assert valid_divergence(divergence()) is not None
    bad: object
    for bad in (None, "x", [], {"node": "pg1"}, divergence(timeline="1"),
                divergence(timeline=True), divergence(**{"from": "nowhere"}),
                divergence(node="x" * 65)):  # fmt: skip
        assert valid_divergence(bad) is None


def test_a_divergence_joins_the_entry_of_the_promotion_that_forked_its_timeline() -> None:
    history = [
        {"term": 2, "timeline": 1, "node": "pg1"},
        {"term": 5, "timeline": 2, "node": "pg2"},
        {"term": 9, "timeline": 3, "node": "pg3"},
    ]
    updated, added = with_divergences(history, [divergence()])
    assert added == [divergence()]
    assert [divergences_of(entry) for entry in updated] == [[], [divergence()], []]
    assert history[1].get("diverged") is None, "the input is not changed"
    # Once recorded, never again.
    again, added_again = with_divergences(updated, [divergence()])
    assert added_again == []
    assert again == updated
    # Another rewind of the same node (another time) is recorded beside it.
    later = divergence(at=200.0, timeline=2, **{"from": "0/5000000"})
    _, added_later = with_divergences(updated, [later])
    assert added_later == [later]


def test_without_the_forking_entry_the_newest_entry_takes_it() -> None:
    history: list[Any] = [{"timeline": 1}, "garbage", {"timeline": 4}]
    updated, added = with_divergences(history, [divergence()])
    assert added
    assert divergences_of(updated[2]) == [divergence()]
    assert with_divergences([], [divergence()]) == ([], [])


def test_only_known_fields_of_a_bounded_size_reach_history() -> None:
    cleaned = valid_divergence(divergence(extra="x" * 10_000, source="y" * 100, at="soon"))
    assert cleaned is not None
    assert "extra" not in cleaned
    assert cleaned["source"] is None
    assert cleaned["at"] is None
