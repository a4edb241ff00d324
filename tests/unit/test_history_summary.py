"""pgha/history_summary.py: what the agent records per promotion, how old entries read, and
the availability over a window. Tables first, then properties."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgha.history_summary import (
    FAILOVER,
    SWITCHOVER,
    UNKNOWN,
    Promotion,
    kind_of,
    parse_duration,
    parse_promotions,
    promotion_fields,
    select,
    summarize,
    summary_document,
)

NOW = 1_000_000.0
DAY = 86_400.0


def entry(
    at: float | None, kind: str | None = FAILOVER, outage: float | None = 10.0
) -> dict[str, Any]:
    """A history entry as the agent writes it (kind None: an entry from before kinds)."""
    written: dict[str, Any] = {"term": 7, "timeline": 2, "lsn": "0/3000000", "node": "n1"}
    written["reason"] = "n1 promoted in term 7"
    if at is not None:
        written["at"] = at
    if kind is not None:
        written["kind"] = kind
    if outage is not None:
        written["write_outage_seconds"] = outage
    return written


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * DAY),
        ("12h", 12 * 3600),
        ("90m", 5400),
        ("45s", 45),
        ("1d12h", 1.5 * DAY),
        ("1h30m15s", 5415),
        (" 2D ", 2 * DAY),
    ],
)
def test_durations_in_days_hours_minutes_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "3x", "-1d", "1.5h", "12h1d", "d", "0s", "1w"])
def test_bad_durations_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"30d, 12h, 90m, 45s"):
        parse_duration(text)


# --- what the agent writes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "no_leader_for", "ttl", "expected"),
    [
        # A lost lease: writes may have stopped one ttl before the key vanished.
        (
            "take_over_expired_leader",
            1.5,
            10,
            {"kind": FAILOVER, "write_outage_seconds": 11.5, "writes_stopped_at": NOW - 11.5},
        ),
        (
            "take_over_on_request",
            60.0,
            10,
            {"kind": FAILOVER, "write_outage_seconds": 70.0, "writes_stopped_at": NOW - 70},
        ),
        # A handoff: writes stopped when the old leader released the key.
        (
            "take_over_after_handoff",
            0.25,
            10,
            {"kind": SWITCHOVER, "write_outage_seconds": 0.25, "writes_stopped_at": NOW - 0.25},
        ),
        # A retried promotion saw a leader (itself): neither kind nor outage is known.
        ("promote_held_key", None, 10, {"kind": UNKNOWN}),
        ("promote_held_key", 3.0, 10, {"kind": UNKNOWN}),
        # Without a lease the ttl is unknown: only what this node saw counts.
        (
            "take_over_expired_leader",
            2.0,
            None,
            {"kind": FAILOVER, "write_outage_seconds": 2.0, "writes_stopped_at": NOW - 2},
        ),
        # A clock step backwards must not make a negative outage.
        (
            "take_over_after_handoff",
            -1.0,
            10,
            {"kind": SWITCHOVER, "write_outage_seconds": 0.0, "writes_stopped_at": NOW},
        ),
    ],
)
def test_the_agent_records_kind_and_outage(
    code: str, no_leader_for: float | None, ttl: float | None, expected: dict[str, Any]
) -> None:
    assert promotion_fields(code, NOW, no_leader_for, ttl) == {"code": code, **expected}


@pytest.mark.parametrize(
    ("written", "kind"),
    [
        ({"kind": "switchover", "reason": "best eligible candidate"}, SWITCHOVER),
        ({"reason": "no leader and this node is the best eligible candidate at 0/5"}, FAILOVER),
        ({"reason": "the operator asked this node to take over (pgha failover) at 0/5"}, FAILOVER),
        (
            {"reason": "n1 handed the key over at 0/5 and this node has replayed past it"},
            SWITCHOVER,
        ),
        ({"reason": "n1 released the key at 0/5 and this node has replayed past it"}, SWITCHOVER),
        ({"reason": "n1 promoted in term 7"}, UNKNOWN),
        ({"kind": "bogus", "reason": 42}, UNKNOWN),
        ({}, UNKNOWN),
    ],
)
def test_old_entries_get_their_kind_from_the_reason(written: dict[str, Any], kind: str) -> None:
    assert kind_of(written) == kind


def test_entries_that_are_not_objects_are_skipped_and_bad_fields_read_as_unknown() -> None:
    promotions = parse_promotions(
        [entry(NOW), "junk", {"at": True, "write_outage_seconds": -3}, {"at": "yesterday"}]
    )
    assert [(p.at, p.outage_seconds) for p in promotions] == [
        (NOW, 10.0),
        (None, None),
        (None, None),
    ]
    assert parse_promotions({"not": "a list"}) == []
    assert parse_promotions(None) == []


# --- the summary ----------------------------------------------------------------------------


class Expected(NamedTuple):
    window: float
    outage: float
    availability: float
    failovers: int = 0
    switchovers: int = 0
    unknown: int = 0


@pytest.mark.parametrize(
    ("entries", "since", "expected"),
    [
        # No --since: from the start of the first outage to now.
        ([entry(NOW - 90, outage=10)], None, Expected(100, 10, 90.0, failovers=1)),
        # One day, one failover of 10 s and one switchover of 0.5 s.
        (
            [entry(NOW - 3600, outage=10), entry(NOW - 60, SWITCHOVER, 0.5)],
            DAY,
            Expected(DAY, 10.5, 100 * (1 - 10.5 / DAY), failovers=1, switchovers=1),
        ),
        # An entry before the window is not listed, and its outage is outside too.
        (
            [entry(NOW - 2 * DAY), entry(NOW - 10, SWITCHOVER, 1)],
            DAY,
            Expected(DAY, 1, 100 * (1 - 1 / DAY), switchovers=1),
        ),
        # An outage that began before the window counts only from the window's start.
        ([entry(NOW - 90, outage=20)], 100, Expected(100, 10, 90.0, failovers=1)),
        # Overlapping outages (a promotion right after another) are counted once.
        (
            [entry(NOW - 50, outage=20), entry(NOW - 40, outage=20)],
            100,
            Expected(100, 30, 70.0, failovers=2),
        ),
        # Old entries: kind from the reason (unknown here), outage not counted.
        ([entry(NOW - 10, kind=None, outage=None)], 100, Expected(100, 0, 100.0, unknown=1)),
        # Nothing in the window: fully available.
        ([], DAY, Expected(DAY, 0, 100.0)),
        # An outage longer than the window: no availability at all, never negative.
        ([entry(NOW, outage=500)], 100, Expected(100, 100, 0.0, failovers=1)),
    ],
)
def test_summary_table(
    entries: list[dict[str, Any]], since: float | None, expected: Expected
) -> None:
    summary = summarize(parse_promotions(entries), NOW, since)
    assert summary.window_seconds == pytest.approx(expected.window)
    assert summary.write_outage_seconds == pytest.approx(expected.outage)
    assert summary.availability_percent == pytest.approx(expected.availability)
    counts = (summary.count(FAILOVER), summary.count(SWITCHOVER), summary.count(UNKNOWN))
    assert counts == (expected.failovers, expected.switchovers, expected.unknown)


def test_without_entries_or_since_there_is_no_window() -> None:
    summary = summarize([], NOW, None)
    assert summary.start is None
    assert summary.availability_percent is None
    document = summary_document(summary)
    assert document["availability_percent"] is None
    assert document["since"] is None


def test_entries_without_a_time_are_never_in_a_window() -> None:
    promotions = parse_promotions([entry(None), entry(NOW - 5)])
    summary = summarize(promotions, NOW, None)
    assert [p.at for p in summary.promotions] == [NOW - 5]


def test_the_json_document_carries_the_promised_keys() -> None:
    old = entry(NOW - 30, kind=None, outage=None)
    old["reason"] = "no leader and this node is the best eligible candidate at 0/5"
    summary = summarize(parse_promotions([old, entry(NOW - 20, SWITCHOVER, 2)]), NOW, 60)
    document = summary_document(summary)
    assert document["since"] == "1970-01-12T13:45:40+00:00"
    assert document["window_seconds"] == 60
    assert document["availability_percent"] == pytest.approx(100 * (1 - 2 / 60), abs=1e-6)
    assert (document["failovers"], document["switchovers"]) == (1, 1)
    assert document["write_outage_seconds"] == 2
    assert document["promotions_without_outage"] == 1
    assert [e["kind"] for e in document["entries"]] == [FAILOVER, SWITCHOVER]


# --- properties -----------------------------------------------------------------------------

times = st.floats(min_value=NOW - 10 * DAY, max_value=NOW, allow_nan=False)
outages = st.one_of(st.none(), st.floats(min_value=0, max_value=DAY, allow_nan=False))
promotion_lists = st.lists(
    st.builds(
        lambda at, kind, outage: Promotion(at, kind, outage, {}),
        times,
        st.sampled_from([FAILOVER, SWITCHOVER, UNKNOWN]),
        outages,
    ),
    max_size=12,
)
windows = st.one_of(st.none(), st.floats(min_value=1, max_value=20 * DAY, allow_nan=False))


@given(promotion_lists, windows)
def test_availability_stays_between_0_and_100_and_outage_within_the_window(
    promotions: list[Promotion], since: float | None
) -> None:
    summary = summarize(promotions, NOW, since)
    assert 0 <= summary.write_outage_seconds <= summary.window_seconds + 1e-6
    availability = summary.availability_percent
    if availability is not None:
        assert 0 <= availability <= 100


@given(promotion_lists, windows)
def test_outage_never_exceeds_the_sum_of_the_recorded_ones(
    promotions: list[Promotion], since: float | None
) -> None:
    summary = summarize(promotions, NOW, since)
    recorded = sum(p.outage_seconds or 0 for p in promotions)
    assert summary.write_outage_seconds <= recorded + 1e-6


@given(promotion_lists, windows)
def test_the_order_of_the_entries_does_not_change_the_numbers(
    promotions: list[Promotion], since: float | None
) -> None:
    forward = summarize(promotions, NOW, since)
    backward = summarize(promotions[::-1], NOW, since)
    assert forward.write_outage_seconds == pytest.approx(backward.write_outage_seconds)
    assert forward.start == backward.start
    assert sorted(p.at or 0 for p in forward.promotions) == sorted(
        p.at or 0 for p in backward.promotions
    )


@given(
    promotion_lists,
    st.floats(min_value=1, max_value=10 * DAY, allow_nan=False),
    st.floats(min_value=0, max_value=10 * DAY, allow_nan=False),
)
def test_a_longer_window_lists_more_and_loses_no_outage(
    promotions: list[Promotion], since: float, more: float
) -> None:
    short = summarize(promotions, NOW, since)
    long = summarize(promotions, NOW, since + more)
    assert {id(p) for p in short.promotions} <= {id(p) for p in long.promotions}
    assert short.write_outage_seconds <= long.write_outage_seconds + 1e-6
    assert select(promotions, NOW - since, NOW) == list(short.promotions)


@given(st.integers(0, 99), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_every_combination_of_units_parses_to_its_seconds(
    days: int, hours: int, minutes: int, seconds: int
) -> None:
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    text = "".join(f"{n}{unit}" for n, unit in parts if n)
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total == 0:
        with pytest.raises(ValueError, match="30d"):
            parse_duration(text or "0s")
    else:
        assert parse_duration(text) == total
