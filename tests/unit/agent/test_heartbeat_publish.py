"""The heartbeat lag end to end without Postgres: the leader's `status` record carries its
newest heartbeat stamp (rewritten often enough for the limit), replicas publish the stamp
they replayed, the snapshot parses both, and `pgha status` shows the difference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from pgha.adapters.postgres_state import PostgresState
from pgha.adapters.store import STATUS, ClusterStore, LeaderClaim, RawEntry, parse_snapshot
from pgha.agent.cluster_view import parse_cluster
from pgha.agent.publish import Publisher, _significant, member_record
from pgha.agent.runtime import Runtime
from pgha.core.decision import Decision
from pgha.core.model import LocalPostgres, PgRunState, Policy
from pgha.settings import PostgresSettings, Settings
from pgha.status import cluster_document

BEAT = 1_700_000_000.0
CLAIM = LeaderClaim("pg1", term=7, lease_id=1)


class RecordingStore:
    def __init__(self) -> None:
        self.written: list[dict[str, Any]] = []

    def put(self, key: str, data: Any, *, as_leader: LeaderClaim | None = None) -> bool:
        assert key == STATUS
        assert as_leader is not None
        self.written.append(data)
        return True


def publisher() -> tuple[Publisher, RecordingStore]:
    store = RecordingStore()
    return Publisher(cast(ClusterStore, store), "pg1"), store


def test_without_a_limit_the_heartbeat_alone_never_rewrites_status() -> None:
    pub, store = publisher()
    assert pub.publish_status(CLAIM, 1, 1000, 0.0, heartbeat_at=BEAT)
    assert not pub.publish_status(CLAIM, 1, 1100, 1.0, heartbeat_at=BEAT + 30)
    assert store.written == [{"term": 7, "timeline": 1, "position": "0/3E8", "heartbeat_at": BEAT}]


def test_with_a_limit_status_is_rewritten_once_the_heartbeat_moved_half_of_it() -> None:
    pub, store = publisher()
    pub.publish_status(CLAIM, 1, 1000, 0.0, heartbeat_at=BEAT, heartbeat_every_seconds=1.5)
    assert not pub.publish_status(
        CLAIM, 1, 1000, 1.0, heartbeat_at=BEAT + 1, heartbeat_every_seconds=1.5
    )
    assert pub.publish_status(
        CLAIM, 1, 1000, 2.0, heartbeat_at=BEAT + 2, heartbeat_every_seconds=1.5
    )
    assert [w["heartbeat_at"] for w in store.written] == [BEAT, BEAT + 2]


def test_a_failed_heartbeat_write_keeps_the_last_stamp_in_the_record() -> None:
    pub, store = publisher()
    pub.publish_status(CLAIM, 1, 1000, 0.0, heartbeat_at=BEAT)
    assert pub.publish_status(CLAIM, 2, 1000, 1.0, heartbeat_at=None)  # new timeline: due
    assert store.written[-1]["heartbeat_at"] == BEAT


def test_a_new_term_does_not_carry_an_old_stamp() -> None:
    pub, store = publisher()
    pub.publish_status(CLAIM, 1, 1000, 0.0, heartbeat_at=BEAT)
    pub.publish_status(LeaderClaim("pg1", 9, 1), 1, 1000, 1.0)
    assert store.written[-1]["heartbeat_at"] is None


def test_the_replayed_stamp_is_published_but_alone_never_forces_a_write() -> None:
    settings = Settings(node="pg2", postgres=PostgresSettings(data_dir=Path("/srv/pg2")))
    local = LocalPostgres(PgRunState.RUNNING, in_recovery=True, timeline=1)
    runtime, decision = Runtime("pg2", 2.0), Decision("follow_leader", "streaming")

    def record(stamp: float) -> dict[str, Any]:
        probed = PostgresState(Path("/srv/pg2"), True, True, in_recovery=True, heartbeat_at=stamp)
        return member_record(settings, local, runtime, decision, probed=probed)

    assert record(BEAT)["heartbeat_replayed_at"] == BEAT
    assert _significant(record(BEAT)) == _significant(record(BEAT + 1))


def snapshot(**keys: Any) -> Any:
    entries = []
    for revision, (key, value) in enumerate(sorted(keys.items()), start=10):
        lease = 5 if key.startswith("members__") else 0
        entries.append(
            RawEntry(key.replace("__", "/"), json.dumps(value), revision, revision, lease)
        )
    return parse_snapshot(100, entries)


REPLICA = {
    "host": "10.0.0.2",
    "port": 5432,
    "role": "replica",
    "running": True,
    "in_recovery": True,
    "timeline": 1,
    "position": "0/3E8",
    "heartbeat_replayed_at": BEAT - 4.25,
    "replay_lag_seconds": 0.0,
}


def test_the_snapshot_gives_the_core_both_stamps_and_the_limit() -> None:
    parsed = parse_cluster(
        snapshot(
            config={"maximum_lag_seconds_on_failover": 3},
            status={"term": 7, "timeline": 1, "position": "0/3E8", "heartbeat_at": BEAT},
            members__pg2=REPLICA,
        ),
        Policy(),
    )
    assert parsed.view.last_primary_heartbeat == BEAT
    assert parsed.view.members["pg2"].heartbeat_replayed_at == BEAT - 4.25
    assert parsed.policy.maximum_lag_seconds_on_failover == 3
    assert not parsed.unreadable


def test_a_negative_limit_is_refused_and_the_last_good_config_kept() -> None:
    parsed = parse_cluster(snapshot(config={"maximum_lag_seconds_on_failover": -1}), Policy())
    assert parsed.policy.maximum_lag_seconds_on_failover == 0
    assert "maximum_lag_seconds_on_failover" in parsed.unreadable["config"]


def test_status_shows_the_heartbeat_lag_next_to_the_replay_lag() -> None:
    document = cluster_document(
        "main",
        snapshot(
            status={"term": 7, "timeline": 1, "position": "0/3E8", "heartbeat_at": BEAT},
            members__pg2=REPLICA,
        ),
    )
    (pg2,) = document["members"]
    assert (pg2["lag_seconds"], pg2["replay_lag_seconds"]) == (4.25, 0.0)
