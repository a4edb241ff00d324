"""The cluster store: the keys of DESIGN.md section 2, as one interface two stores implement.

`EtcdStore` (etcd v3 through its JSON gateway) is the real one; `MemoryStore` keeps the same
semantics in memory on an injected clock, for the decision-core tests and the simulation.
One contract suite (tests/contract) runs against both so that the fake stays faithful.

Rules every implementation keeps:
- Lost races are return values (False / None), never exceptions.
- An unreachable store raises `StoreUnavailable` within the call's timeout, never hangs;
  a write sent but unanswered raises `StoreOutcomeUnknown`.
- Leadership is proven by three facts together: the `leader` key's value is our name, its
  create_revision is our term, and it is bound to our lease (traps 1). Every write only a
  leader may make compares all three.
- Values are JSON (the `leader` key holds the bare name). Garbage in a key is reported in
  `ClusterSnapshot.problems` and as an `Unparsable` value, never raised.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# Keys, relative to the cluster prefix /<namespace>/<cluster>/.
LEADER = "leader"
MEMBERS = "members/"
INITIALIZE = "initialize"
CONFIG = "config"
SWITCHOVER = "switchover"
HANDOFF = "handoff"
FAILOVER = "failover"
REQUESTS = "requests/"
SYNC = "sync"
HISTORY = "history"
ENDPOINT = "endpoint"
STATUS = "status"
"""The leader's last published position {term, timeline, position}: the lag limit's base."""
SINGLE_KEYS = (INITIALIZE, CONFIG, SWITCHOVER, HANDOFF, FAILOVER, SYNC, HISTORY, ENDPOINT, STATUS)

NO_LEASE = 0


@dataclass(frozen=True)
class Lease:
    """An etcd lease. `ttl_seconds` is what etcd *granted*, which may exceed what was asked."""

    id: int
    ttl_seconds: int


@dataclass(frozen=True)
class LeaderClaim:
    """What a node must still match to act as leader: name, term and lease together."""

    name: str
    term: int
    """The create_revision of the `leader` key, i.e. the revision of the acquiring write."""
    lease_id: int


@dataclass(frozen=True)
class LeaderKey:
    """The `leader` key as read: who holds it, since which term, bound to which lease."""

    holder: str
    term: int
    lease_id: int
    mod_revision: int

    def is_held_by(self, claim: LeaderClaim) -> bool:
        return (self.holder, self.term, self.lease_id) == (claim.name, claim.term, claim.lease_id)


@dataclass(frozen=True)
class Record:
    """A JSON value read from one key, with the revisions a compare-and-set needs."""

    key: str
    data: Any
    create_revision: int
    mod_revision: int
    lease_id: int = NO_LEASE


@dataclass(frozen=True)
class Unparsable:
    """A key whose value is not the JSON pgha expects (someone wrote garbage into it)."""

    key: str
    raw: str
    error: str
    mod_revision: int

    def describe(self) -> str:
        return f"key {self.key!r} {self.what()}"

    def what(self) -> str:
        """What is wrong, without the key's name: '{oops' is not valid: not JSON (...)."""
        return f"holds {excerpt(self.raw)}, which is not valid: {self.error}"


def excerpt(value: object, limit: int = 60) -> str:
    """A repr short enough for a log line, whatever a hostile writer put in a key."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


Value = Record | Unparsable


@dataclass(frozen=True)
class RawEntry:
    """One key exactly as the store returned it (key relative to the cluster prefix)."""

    key: str
    value: str
    create_revision: int
    mod_revision: int
    lease_id: int = NO_LEASE


@dataclass(frozen=True)
class ClusterSnapshot:
    """Every key of one cluster, read in one request at one revision."""

    revision: int
    leader: LeaderKey | None = None
    members: Mapping[str, Value] = field(default_factory=dict)
    requests: Mapping[str, Value] = field(default_factory=dict)
    keys: Mapping[str, Value] = field(default_factory=dict)
    """initialize, config, switchover, handoff, failover, sync, history, endpoint (if present)."""
    problems: tuple[str, ...] = ()

    def get(self, key: str) -> Value | None:
        return self.keys.get(key)


def parse_snapshot(revision: int, entries: list[RawEntry]) -> ClusterSnapshot:
    """Turn raw key-value pairs into a ClusterSnapshot; garbage becomes `Unparsable` + a problem."""
    leader: LeaderKey | None = None
    members: dict[str, Value] = {}
    requests: dict[str, Value] = {}
    keys: dict[str, Value] = {}
    problems: list[str] = []
    for entry in entries:
        if entry.key == LEADER:
            leader, problem = _parse_leader(entry)
            if problem:
                problems.append(problem)
            continue
        if entry.key.startswith(MEMBERS):
            target, name = members, entry.key.removeprefix(MEMBERS)
        elif entry.key.startswith(REQUESTS):
            target, name = requests, entry.key.removeprefix(REQUESTS)
        elif entry.key in SINGLE_KEYS:
            target, name = keys, entry.key
        else:
            continue  # anything else under the prefix is not ours to interpret
        value = parse_value(entry)
        if isinstance(value, Unparsable):
            problems.append(value.describe())
        target[name] = value
    return ClusterSnapshot(
        revision=revision,
        leader=leader,
        members=members,
        requests=requests,
        keys=keys,
        problems=tuple(problems),
    )


def _parse_leader(entry: RawEntry) -> tuple[LeaderKey | None, str | None]:
    # Whatever it holds, the key is reported as held: a value nobody can match means nobody
    # may act as leader, which is the safe reading (traps 14).
    key = LeaderKey(
        holder=entry.value,
        term=entry.create_revision,
        lease_id=entry.lease_id,
        mod_revision=entry.mod_revision,
    )
    problem = leader_problem(key)
    return key, f"key 'leader' {problem}" if problem else None


MAX_TEXT = 255
"""The longest text field pgha writes (a member name, a host); anything longer is garbage."""


def plausible_member_name(name: str) -> bool:
    return bool(name) and len(name) <= MAX_TEXT and name.isprintable()


def leader_problem(key: LeaderKey) -> str | None:
    """What is wrong with the `leader` key (without the key's name), or None.

    No agent writes it without a lease, so a lease-less value was written by someone else.
    """
    if key.lease_id == NO_LEASE:
        return (
            f"({excerpt(key.holder)}) is bound to no lease, so no agent wrote it, and it will "
            "never expire; an operator must delete it (etcdctl del /<namespace>/<cluster>/leader)"
        )
    if not plausible_member_name(key.holder):
        return f"holds an impossible member name {excerpt(key.holder)}"
    return None


def parse_value(entry: RawEntry) -> Value:
    try:
        data = json.loads(entry.value)
    except (ValueError, RecursionError) as exc:
        return Unparsable(entry.key, entry.value, f"not JSON ({exc})", entry.mod_revision)
    if not isinstance(data, (dict, list)):
        return Unparsable(
            entry.key, entry.value, "expected a JSON object or list", entry.mod_revision
        )
    return Record(entry.key, data, entry.create_revision, entry.mod_revision, entry.lease_id)


def encode(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


class Watch(Protocol):
    """A running watch; `stop()` ends it and waits for its thread."""

    def stop(self) -> None: ...


class ClusterStore(Protocol):
    """What the agent and the CLI need from the cluster store. See the module docstring."""

    def grant_lease(self, ttl_seconds: int) -> Lease:
        """Grant a lease; the returned TTL is the one granted, which is what fencing uses."""
        ...

    def keep_alive(self, lease: Lease) -> int:
        """Refresh the lease and return the TTL etcd reports; 0 means the lease is gone."""
        ...

    def revoke_lease(self, lease: Lease) -> None:
        """Revoke the lease, deleting every key bound to it (a lease already gone is fine)."""
        ...

    def read_cluster(self) -> ClusterSnapshot:
        """Read every key of the cluster in one linearizable request."""
        ...

    def acquire_leader(self, name: str, lease: Lease) -> LeaderClaim | None:
        """Create `leader` = name on the lease only if it does not exist; None if we lost."""
        ...

    def rebind_leader(self, name: str, seen: LeaderKey, lease: Lease) -> LeaderClaim | None:
        """Re-bind a `leader` key holding our name to our current lease (after a restart).

        Compares value = name and mod_revision = seen.mod_revision; the term is unchanged.
        """
        ...

    def renew_leader(self, claim: LeaderClaim, lease: Lease, *, confirm: bool = True) -> bool:
        """Keep the lease alive and confirm the key is still ours; False if either fails.

        `confirm=False` skips the confirmation: only for a caller whose snapshot of this
        same cycle already showed the key with the claim's value, term and lease. While
        that lease lives nobody can acquire the key, and a keepalive counts only when etcd
        answers that the lease lives (traps 1), so the confirmation would repeat the
        snapshot's answer at the cost of one more etcd request per leader cycle.
        """
        ...

    def release_leader(
        self, claim: LeaderClaim, handoff: Any | None = None, handoff_lease: Lease | None = None
    ) -> bool:
        """Delete `leader` and `endpoint` if the key is still ours; in the same txn put
        `handoff` (on its lease): the published endpoint never outlives the leadership."""
        ...

    def claim_initialize(self, name: str, lease: Lease) -> LeaderClaim | None:
        """Create `initialize` = {state: bootstrapping, node} and `leader`, both on the lease,
        in one txn, only if neither exists. None if another node won the race."""
        ...

    def finish_initialize(self, claim: LeaderClaim, sysid: str) -> bool:
        """Make `initialize` = {sysid} permanent (no lease), only while we hold the key."""
        ...

    def publish_member(self, name: str, data: Any, lease: Lease) -> None:
        """Write this member's record, bound to its own lease."""
        ...

    def put(
        self,
        key: str,
        data: Any,
        *,
        expected_mod_revision: int | None = None,
        as_leader: LeaderClaim | None = None,
        lease: Lease | None = None,
    ) -> bool:
        """Write a JSON value; with `expected_mod_revision` only if the key's mod_revision
        still equals it (0 = only if absent); with `as_leader` only while the claim holds.
        False if a compare failed."""
        ...

    def delete(
        self,
        key: str,
        *,
        expected_mod_revision: int | None = None,
        as_leader: LeaderClaim | None = None,
    ) -> bool:
        """Delete a key under the same compares as `put`; False if a compare failed."""
        ...

    def watch_leader(self, on_change: Callable[[], None]) -> Watch:
        """Call `on_change` (from another thread) whenever the `leader` key changes.

        A broken watch only costs early wake-ups: the caller never relies on it.
        """
        ...

    def close(self) -> None: ...
