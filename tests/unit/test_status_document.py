"""The status document of `pgha status --json` and `GET /cluster`, from hand-made snapshots."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pgha.adapters.store import LEADER, ClusterSnapshot, RawEntry, parse_snapshot
from pgha.status import cluster_document, healthy, primary_position, render_status

MEMBER_KEYS = {
    "name",
    "role",
    "state",
    "host",
    "port",
    "api_url",
    "timeline",
    "lsn",
    "lag_bytes",
    "lag_seconds",
    "tags",
    "decision",
    "request",
}


def record(role: str, position: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "host": "10.0.0.1",
        "port": 5432,
        "api_url": "http://10.0.0.1:8008",
        "role": role,
        "state": "running",
        "running": True,
        "in_recovery": role != "primary",
        "timeline": 3,
        "position": position,
        "tags": {"nofailover": False, "failover_priority": 0},
        "decision": {"code": "follow_leader", "reason": "streaming from pg1"},
        **extra,
    }


def snapshot(
    keys: Mapping[str, object], *, leader: str | None = "pg1", term: int = 40
) -> ClusterSnapshot:
    """Keys as a mapping (members__pg1 = members/pg1): a string value is stored as is."""
    entries = []
    if leader is not None:
        entries.append(RawEntry(LEADER, leader, term, term + 5, 77))
    for revision, (key, value) in enumerate(sorted(keys.items()), start=100):
        text = value if isinstance(value, str) else json.dumps(value)
        entries.append(RawEntry(key.replace("__", "/"), text, revision, revision, 0))
    return parse_snapshot(500, entries)


HEALTHY = {
    "members__pg1": record("primary", "0/5000000", decision={"code": "keep_leading"}),
    "members__pg2": record(
        "replica", "0/4F00000", upstream="pg1", receiver="streaming", replay_lag_seconds=1.5
    ),
    "members__pg3": record(
        "replica",
        "0/5000000",
        upstream="pg1",
        receiver="streaming",
        replay_lag_seconds=0,
        tags={"nofailover": True, "failover_priority": 2},
        request={"id": "r1", "action": "reinit", "outcome": "done", "detail": 7, "by": "x"},
    ),
    "status": {"term": 40, "timeline": 3, "position": "0/4000000"},
    "config": {"ttl": 10, "paused": False},
}


def test_a_healthy_cluster_reads_as_the_issue_specifies() -> None:
    document = cluster_document("main", snapshot(HEALTHY))
    assert document["cluster"] == "main"
    assert document["leader"] == "pg1"
    assert document["term"] == 40
    assert document["paused"] is False
    assert document["switchover"] is None
    assert [member["name"] for member in document["members"]] == ["pg1", "pg2", "pg3"]
    for member in document["members"]:
        assert set(member) >= MEMBER_KEYS
    pg1, pg2, pg3 = document["members"]
    assert (pg1["role"], pg1["state"], pg1["lag_bytes"], pg1["lag_seconds"]) == (
        "primary",
        "running",
        0,
        0.0,
    )
    # The base is the furthest primary position published: the leader's record here.
    assert pg2["lag_bytes"] == 0x100000
    assert pg2["lag_seconds"] == 1.5
    assert (pg2["state"], pg2["timeline"], pg2["lsn"]) == ("streaming", 3, "0/4F00000")
    assert pg3["lag_bytes"] == 0
    assert pg3["tags"] == {"nofailover": True, "failover_priority": 2}
    assert pg2["decision"] == {"code": "follow_leader", "reason": "streaming from pg1"}
    assert pg1["decision"] == {"code": "keep_leading", "reason": None}
    assert pg1["request"] is None
    assert pg3["request"] == {"id": "r1", "action": "reinit", "outcome": "done", "detail": None}
    json.dumps(document)  # plain JSON all the way down


def test_the_table_shows_every_column_and_the_footer() -> None:
    text = render_status(cluster_document("main", snapshot(HEALTHY)))
    lines = text.splitlines()
    assert lines[0].split()[:9] == [
        "member",
        "host:port",
        "role",
        "state",
        "tl",
        "lsn",
        "lag",
        "lag",
        "s",
    ]
    pg2 = next(line for line in lines if line.startswith("pg2"))
    assert "streaming" in pg2
    assert "1.0 MiB" in pg2
    assert "1.5" in pg2
    assert "follow_leader: streaming from pg1" in pg2
    assert lines[1].split()[2] == "leader"
    pg3 = next(line for line in lines if line.startswith("pg3"))
    assert "failover_priority=2,nofailover" in pg3
    assert "cluster main: leader pg1, term 40, not paused, no switchover pending" in text


def test_no_leader_pause_and_a_pending_switchover() -> None:
    keys = {
        **HEALTHY,
        "config": {"paused": True},
        "switchover": {"from": "pg1", "to": "pg2"},
    }
    document = cluster_document("main", snapshot(keys, leader=None))
    assert document["leader"] is None
    assert document["term"] == 40  # the last term a leader published
    assert document["paused"] is True
    assert document["switchover"] == {"from": "pg1", "to": "pg2"}
    pg1 = document["members"][0]
    assert pg1["lag_bytes"] is None  # a primary without the key is nobody's base
    text = render_status(document)
    assert "no leader (last term 40)" in text
    assert "PAUSED" in text
    assert '"to": "pg2"' in text
    assert "primary (no key)" in text


def test_hostile_records_show_as_problems_not_exceptions() -> None:
    keys = {
        "members__pg1": record("primary", "0/5000000"),
        "members__bad": "{not json",
        "members__list": [1, 2],
        "members__odd": {"role": 7, "port": "x", "position": "garbage", "tags": "no"},
        "status": {"position": 12},
    }
    document = cluster_document("main", snapshot(keys))
    by_name = {member["name"]: member for member in document["members"]}
    assert by_name["bad"]["state"] == "unreadable record"
    assert by_name["list"]["state"] == "unreadable record"
    odd = by_name["odd"]
    assert (odd["role"], odd["port"], odd["lsn"], odd["tags"]) == ("unknown", None, None, {})
    assert any("bad" in problem for problem in document["problems"])
    assert any("'list'" in problem for problem in document["problems"])
    render_status(document)


def test_primary_position_takes_the_furthest_published() -> None:
    ahead = snapshot({**HEALTHY, "status": {"term": 40, "timeline": 3, "position": "0/6000000"}})
    assert primary_position(ahead) == 0x6000000
    assert primary_position(snapshot(HEALTHY)) == 0x5000000
    assert primary_position(snapshot({}, leader=None)) is None


def test_healthy_needs_a_primary_leader_and_replicas_following_it() -> None:
    assert healthy(snapshot(HEALTHY), 3)
    assert not healthy(snapshot(HEALTHY), 4)
    assert not healthy(snapshot(HEALTHY, leader=None), 3)
    astray = {**HEALTHY, "members__pg3": record("replica", "0/5000000", upstream="pg2")}
    assert not healthy(snapshot(astray), 3)
