"""Every path's status code and body on a primary, a replica and a stopped node, from
hand-made reports: the rules of /primary above all (key, deadline, read-write, per request)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from pgha.api.health import parse_size
from pgha.api.routes import route
from tests.unit.api.reports import NOW, TERM, cluster_snapshot, primary_state, replica_state, report

HEALTH_PATHS = ("/primary", "/read-write", "/leader", "/replica", "/read-only", "/health")


def codes(node: Any) -> dict[str, int]:
    return {path: route(path, "", node).status for path in HEALTH_PATHS}


def body(path: str, node: Any, query: str = "") -> Any:
    return json.loads(route(path, query, node).body)


def test_a_primary() -> None:
    assert codes(report("primary")) == {
        "/primary": 200,
        "/read-write": 200,
        "/leader": 200,
        "/replica": 503,
        "/read-only": 200,
        "/health": 200,
    }
    answer = body("/primary", report("primary"))
    assert answer["role"] == "primary"
    assert answer["term"] == TERM
    assert answer["timeline"] == 3
    assert answer["lsn"] == "0/5000000"
    assert answer["holds_key"] is True
    assert answer["fencing_deadline_in_seconds"] == 5
    assert answer["reason"] is None


def test_a_streaming_replica() -> None:
    assert codes(report("replica")) == {
        "/primary": 503,
        "/read-write": 503,
        "/leader": 503,
        "/replica": 200,
        "/read-only": 200,
        "/health": 200,
    }
    answer = body("/primary", report("replica"))
    assert answer["role"] == "replica"
    assert answer["state"] == "streaming"
    assert answer["lag_bytes"] == 0x10000
    assert answer["term"] == TERM  # the leader's, as last read
    assert answer["reason"] == "pg1 holds the leader key"


def test_a_stopped_node() -> None:
    assert set(codes(report("stopped")).values()) == {503}
    answer = body("/health", report("stopped"))
    assert (answer["role"], answer["state"]) == ("stopped", "stopped")


def test_primary_is_refused_once_the_fencing_deadline_passed() -> None:
    past = report("primary", now=NOW + 5)
    assert route("/primary", "", past).status == 503
    assert "fencing deadline" in body("/primary", past)["reason"]
    assert body("/primary", past)["fencing_deadline_in_seconds"] == 0


def test_primary_needs_the_observation_made_under_the_same_term() -> None:
    node = report("primary")
    assert node.last is not None
    earlier = replace(node, last=replace(node.last, claim_term=TERM - 1))
    assert route("/primary", "", earlier).status == 503


def test_primary_is_refused_when_the_postmaster_dies_or_stops_between_cycles() -> None:
    assert route("/primary", "", report("primary", postmaster_alive=False)).status == 503
    stopping = report("primary", postmaster_status="stopping")
    assert route("/primary", "", stopping).status == 503
    assert body("/health", stopping)["state"] == "stopping"


def test_a_read_write_postgres_without_the_key_is_not_primary() -> None:
    rogue = report("primary", claim_term=None, fencing_deadline=None)
    assert route("/primary", "", rogue).status == 503
    assert route("/read-only", "", rogue).status == 503
    assert body("/primary", rogue)["role"] == "demoting"


def test_a_replica_that_is_not_streaming_is_no_replica_target_but_is_read_only() -> None:
    idle = report("replica", state=replica_state(wal_receiver=None))
    assert route("/replica", "", idle).status == 503
    assert route("/read-only", "", idle).status == 200


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("lag=1MB", 200),
        ("lag=65536", 200),
        ("lag=65535", 503),
        ("lag=16kB", 503),
        ("lag=", 400),
        ("lag=lots", 400),
        ("lag=1&lag=2", 400),
        ("lg=1MB", 400),
    ],
)
def test_replica_lag_limits(query: str, status: int) -> None:
    assert route("/replica", query, report("replica")).status == status


def test_unknown_lag_is_refused_when_a_limit_is_asked() -> None:
    blind = report("replica", snapshot=cluster_snapshot(status={}))
    assert route("/replica", "", blind).status == 200
    assert route("/replica", "lag=1GB", blind).status == 503


def test_liveness_follows_the_cycles() -> None:
    assert route("/liveness", "", report("replica")).status == 200
    stale = report("replica", now=NOW + 30)  # no cycle for 31 s with ttl 10
    assert route("/liveness", "", stale).status == 503
    assert "finished" in body("/liveness", stale)["reason"]
    # A long cycle (a clone) that started on time is alive.
    cloning = report("replica", now=NOW + 300, running_since=NOW)
    assert route("/liveness", "", cloning).status == 200
    never = report("replica", last=None, running_since=None)
    assert route("/liveness", "", never).status == 503


def test_cluster_and_history_come_from_the_last_snapshot() -> None:
    history = [{"term": 40, "timeline": 2, "lsn": "0/3000000", "node": "pg1"}]
    node = report(
        "primary",
        snapshot=cluster_snapshot(
            history=history, members__pg1={"role": "primary", "position": "0/5000000"}
        ),
    )
    document = body("/cluster", node)
    assert document["leader"] == "pg1"
    assert document["term"] == TERM
    assert document["snapshot_age_seconds"] == 1.1
    assert body("/history", node) == history
    none_yet = report("primary", snapshot=None, snapshot_at=None)
    assert route("/cluster", "", none_yet).status == 503
    assert body("/history", report("primary")) == []


def test_unknown_paths_and_parameters() -> None:
    assert route("/", "", report()).status == 404
    assert route("/primary/", "", report()).status == 404
    assert route("/cluster", "x=1", report()).status == 400
    many = "&".join(f"p{i}=1" for i in range(50))
    assert route("/replica", many, report("replica")).status == 400


def test_an_unreachable_postgres_last_seen_read_write_is_not_up() -> None:
    hung = report("primary", state=primary_state(accepting_connections=False, in_recovery=None))
    assert route("/primary", "", hung).status == 503
    assert route("/health", "", hung).status == 503


def test_parse_size() -> None:
    assert parse_size("16MB") == 16 * 1024 * 1024
    assert parse_size("16 mib") == 16 * 1024 * 1024
    assert parse_size("100") == 100
    assert parse_size("1GB") == 1024**3
    for bad in ("", "MB", "-1", "1.5MB", "1PB", "9" * 20):
        with pytest.raises(ValueError, match="expected a size"):
            parse_size(bad)
