"""Garbage in every etcd key of a running three-node cluster (issue 7 item 4, traps 14).

One cluster for the whole test, with the writer (multi-host DSN) and the split-brain
monitor running throughout. Values are written the way an operator's etcdctl or an
attacker would: raw bytes through the gateway, bound to no lease.

- Every key but `leader` and `sync`, all at once (each hypothesis example puts its own
  garbage in every one of them: random bytes and text, JSON of the wrong type, JSON objects
  with wrong field types, values of ~100 KB): the same node stays primary and leader, writes
  go on, and every agent logs each rejection once (not once per cycle) and once more when the
  key is readable again. The keys are then restored (compare-and-set on the garbage's
  revision: a key an agent already repaired is left alone). Explicit examples add ~100 KB
  values, unsafe timers and a member record claiming the highest possible position and
  another cluster's system identifier.
- A well-formed switchover naming a member that does not exist: refused with a reason.
- `sync` (a few explicit values): the same, and no replica is promoted.
- `leader` (a few explicit values, one through etcdctl): a value the leader did not write
  means it lost the key, so it steps down; no node is read-write while the lease-less key
  stays, not even the replica whose name was written into it. The test deletes the key (the
  operator's part) and the cluster elects a leader again.

Throughout: never two read-write nodes, no acknowledged write lost, no agent exits.
Behaviour only; the write outage is printed, never asserted.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from pgha.adapters.store import NO_LEASE, RawEntry, parse_snapshot
from pgha.agent.cluster_view import parse_cluster
from pgha.core.model import Policy
from tests.fixtures.agent_node import AgentNode
from tests.fixtures.cluster import TIMERS, Cluster
from tests.fixtures.raw_etcd import RawKeys
from tests.fixtures.traffic import Traffic, assert_no_split_brain, assert_nothing_lost, traffic

pytestmark = pytest.mark.integration

AgentCluster = Callable[..., Cluster]
POLICY = Policy(
    ttl_seconds=TIMERS["ttl"],
    loop_wait_seconds=TIMERS["loop_wait"],
    retry_timeout_seconds=TIMERS["retry_timeout"],
    safety_margin_seconds=TIMERS["safety_margin"],
)
KEEP_SERVING = (
    "members/{node}",
    "config",
    "switchover",
    "history",
    "endpoint",
    "status",
    "handoff",
    "failover",
    "requests/{node}",
)
SELF_HEALING = ("members/", "endpoint", "status")
"""Keys an agent rewrites on its own when it sees them overwritten: their garbage may come
and go between two reads of some agent, so that agent may never report it."""

# --- garbage ----------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = (
    "host", "port", "position", "running", "in_recovery", "timeline", "tags", "sysid", "id",
    "state", "from", "to", "at", "term", "final_lsn", "lsn", "paused", "action", "name",
    "dsn", "leader", "standbys",
)  # fmt: skip
"""Field names pgha reads somewhere: objects with these fields and values of the wrong type."""


def huge(seed: int, kind: str) -> bytes:
    """About 100 KB: random bytes, one long JSON string, a long list, or deep nesting."""
    rng = random.Random(seed)
    if kind == "bytes":
        return rng.randbytes(100_000)
    if kind == "string":
        return json.dumps({"host": "h" * 100_000, "position": "F" * 100_000}).encode()
    if kind == "list":
        return json.dumps([rng.random() for _ in range(5_000)]).encode()
    return b"[" * 100_000


GARBAGE = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64).map(str.encode),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, min_size=1, max_size=4).map(
        lambda value: json.dumps(value).encode()
    ),
    st.builds(huge, st.integers(0, 2**32 - 1), st.sampled_from(["bytes", "string", "list", "x"])),
)


def garbage_in_every_key(names: list[str]) -> st.SearchStrategy[dict[str, bytes]]:
    """Garbage for every key in KEEP_SERVING, the per-node ones under a drawn node's name."""
    return st.sampled_from(names).flatmap(
        lambda node: st.fixed_dictionaries({key.format(node=node): GARBAGE for key in KEEP_SERVING})
    )


IMPOSSIBLE_MEMBER = json.dumps(
    {"running": True, "in_recovery": True, "timeline": 1, "position": "FFFFFFFF/FFFFFFFF",
     "sysid": "1", "host": "127.0.0.1", "port": 1, "streaming": True}
).encode()  # fmt: skip
"""A member record claiming the highest possible position and another cluster's data."""


def rejected(key: str, value: bytes) -> bool:
    """Whether pgha's parser refuses this lease-less value in this key (some garbage is a
    well-formed value: `{}` in `config`, a `failover` the leader then clears)."""
    entry = RawEntry(key, value.decode("utf-8", errors="replace"), 1, 1, NO_LEASE)
    return key in parse_cluster(parse_snapshot(2, [entry]), POLICY).unreadable


# --- agent logs -------------------------------------------------------------------------------


def log_offsets(cluster: Cluster) -> dict[str, int]:
    return {node.name: _size(node.log_path) for node in cluster.nodes}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def log_since(node: AgentNode, offset: int) -> str:
    with node.log_path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def wait_cycles(cluster: Cluster, count: int = 2) -> None:
    """Wait until every agent logged `count` cycles from now. A cycle logs when it ends and
    the next one starts after that, so the second read a snapshot taken after whatever the
    test just wrote."""
    since = log_offsets(cluster)

    def done() -> bool:
        return all(
            log_since(node, since[node.name]).count(f"node={node.name} role=") >= count
            for node in cluster.nodes
        )

    cluster.wait_until(done, what=f"every agent ran {count} more cycles", timeout=60)


def check_logged_once(cluster: Cluster, key: str, since: dict[str, int], always: bool) -> None:
    """Each agent logged the rejection of `key` at most once (exactly once if `always`) since
    `since`, and logged the key readable again as often as it logged it rejected."""
    for node in cluster.nodes:
        text = log_since(node, since[node.name])
        shown = [line for line in text.splitlines() if f"cluster store: key {key!r}: " in line]
        cleared = text.count(f"cluster store: key {key!r} is readable again")
        expected = "exactly once" if always else "at most once"
        cluster.check(
            len(shown) == 1 if always else len(shown) <= 1,
            f"{node.name} logged the rejection of {key!r} {len(shown)} times, not {expected}: "
            f"{[line[:200] for line in shown[:3]]}",
        )
        cluster.check(
            cleared == len(shown),
            f"{node.name} logged {key!r} rejected {len(shown)} times, readable again {cleared}",
        )
        cluster.check(
            all(len(line) < 2000 for line in shown),
            f"{node.name} logged a {max(map(len, shown), default=0)}-character line about {key!r}",
        )


# --- the test ---------------------------------------------------------------------------------


@pytest.mark.timeout(900)
def test_garbage_in_every_key(agent_cluster: AgentCluster) -> None:
    cluster = agent_cluster(3)
    primary = cluster.wait_healthy()
    names = [node.name for node in cluster.nodes]

    with traffic(cluster, primary) as running:
        running.wait_for_writes(20)
        scene = Scene(cluster, RawKeys(cluster), running)

        @settings(
            max_examples=6,
            deadline=None,
            database=None,
            # No shrinking: it would replay examples on a live cluster for minutes.
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(garbage=garbage_in_every_key(names))
        @example(
            garbage={
                "config": huge(1, "string"),
                "members/n2": huge(2, "bytes"),
                "members/n3": IMPOSSIBLE_MEMBER,
                "history": huge(3, "list"),
                "switchover": huge(4, "nested"),
                "status": b'{"position": 7, "term": "x"}',
            }
        )
        @example(garbage={"config": b'{"ttl": 5, "loop_wait": NaN}'})
        def every_other_key(garbage: dict[str, bytes]) -> None:
            scene.poison_and_restore(primary, garbage)

        every_other_key()
        scene.switchover_to_a_missing_member(primary)

        sync_garbage = [
            b"{garbage",
            json.dumps({"leader": 5, "term": "x", "standbys": "n2"}).encode(),
            huge(7, "string"),
        ]
        for value in sync_garbage:
            scene.poison_and_restore(primary, {"sync": value})

        primary = scene.poison_leader(b"{not json", via_etcdctl=True)
        replica = next(node for node in cluster.nodes if node is not primary)
        scene.poison_leader(replica.name.encode(), named=replica)
        primary = scene.poison_leader(huge(11, "bytes"))

        running.wait_for_writes(10, since=time.monotonic())
        report = running.report("garbage in every etcd key", primary)

    assert_no_split_brain(cluster, report)
    assert_nothing_lost(cluster, report)
    dead = [node.name for node in cluster.nodes if not node.agent_alive()]
    cluster.check(not dead, f"the agents of {dead} exited")


@dataclass
class Scene:
    cluster: Cluster
    keys: RawKeys
    running: Traffic

    def poison_and_restore(self, primary: AgentNode, garbage: dict[str, bytes]) -> None:
        """Garbage in keys other than `leader`: nothing changes but a log line per key, then
        another when it is restored."""
        cluster, keys = self.cluster, self.keys
        since = log_offsets(cluster)
        originals = {key: keys.get(key) for key in garbage}
        written_at = time.monotonic()
        revisions = {key: keys.put(key, value) for key, value in garbage.items()}
        wait_cycles(cluster)
        self.running.wait_for_writes(3, since=written_at)
        shown = ", ".join(f"{key}={value[:40]!r}" for key, value in garbage.items())
        cluster.check(
            cluster.leader() == primary.name and cluster.is_primary(primary),
            f"{primary.name} is no longer leader and primary after garbage in {shown}",
        )
        cluster.check(
            not self.running.monitor.split_brain(),
            f"two read-write nodes after garbage in {shown}: a replica promoted",
        )
        for key, original in originals.items():
            keys.restore(key, original, revisions[key])
        wait_cycles(cluster)
        for key, value in garbage.items():
            always = rejected(key, value) and not key.startswith(SELF_HEALING)
            check_logged_once(cluster, key, since, always)

    def switchover_to_a_missing_member(self, primary: AgentNode) -> None:
        """A well-formed request naming a member that does not exist: refused with a reason."""
        cluster, keys = self.cluster, self.keys
        request = {"id": "hostile", "from": None, "to": "n9", "at": None, "state": "pending"}
        keys.put("switchover", json.dumps(request).encode())

        def refused() -> str | None:
            answer = cluster.etcd_get("switchover")
            failed = isinstance(answer, dict) and answer.get("state") == "failed"
            return str(answer.get("reason")) if failed else None

        reason = cluster.wait_until(refused, what="the leader refuses the switchover", timeout=30)
        cluster.check("no member named n9" in reason, f"refused for another reason: {reason}")
        cluster.check(cluster.is_primary(primary), f"{primary.name} is no longer primary")
        current = keys.get("switchover")
        assert current is not None
        keys.restore("switchover", None, current.mod_revision)

    def poison_leader(
        self, value: bytes, *, via_etcdctl: bool = False, named: AgentNode | None = None
    ) -> AgentNode:
        """Garbage in `leader`: the leader steps down and nobody is read-write until the test
        deletes the key; then a leader is elected again, which is returned."""
        cluster, keys, running = self.cluster, self.keys, self.running
        old = cluster.primary()
        since = log_offsets(cluster)
        poisoned_at = time.monotonic()
        if via_etcdctl:
            cluster.etcd.etcdctl("put", f"{cluster.prefix}leader", "--", value.decode())
        else:
            keys.put("leader", value)
        cluster.wait_until(
            lambda: cluster.is_primary(old) is not True,
            what=f"{old.name} steps down after losing the leader key to {value[:40]!r}",
            timeout=30,
        )
        stepped_at = time.monotonic()
        wait_cycles(cluster)
        held = keys.get("leader")
        cluster.check(
            held is not None and held.value == value and held.lease == NO_LEASE,
            f"the lease-less leader key changed under the test: {held!r:.200}",
        )
        assert held is not None
        if named is not None:
            cluster.check(
                "code=refuse_foreign_leader_key" in log_since(named, since[named.name]),
                f"{named.name} did not refuse the leader key that names it",
            )
        deleted_at = time.monotonic()
        cluster.check(keys.restore("leader", None, held.mod_revision), "could not delete it")

        window = [s for s in running.monitor.samples if poisoned_at <= s.at <= deleted_at]
        promoted = [s for s in window if set(s.primaries()) - {old.name}]
        cluster.check(not promoted, f"a replica was read-write on a poisoned leader: {promoted}")
        stale = [s for s in window if s.at >= stepped_at and s.primaries()]
        cluster.check(not stale, f"read-write after stepping down, key still poisoned: {stale}")

        new = cluster.wait_healthy(timeout=120)
        running.wait_for_writes(5, since=deleted_at)
        wait_cycles(cluster)
        check_logged_once(cluster, "leader", since, always=True)
        running.note(
            f"    garbage {value[:20]!r} in leader: {old.name} stepped down after "
            f"{stepped_at - poisoned_at:.2f} s; {new.name} leads again"
        )
        return new
