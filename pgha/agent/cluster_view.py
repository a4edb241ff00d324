"""Turn an etcd snapshot into the core's ClusterView and Policy.

Records written by other agents, operators or attackers are parsed defensively: a field
of the wrong type makes that record unusable and is reported, never raised. For most keys
the agent then keeps its last good state; for `leader` and `initialize` safety decides
instead (traps 14): an unreadable `initialize` stops joining, and any `leader` value this
node did not write is someone else's key.

Every rejection is reported under the key it concerns (`ParsedCluster.unreadable`), so the
agent can log it once when it appears and once when the key is readable again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pgha.adapters.store import (
    CONFIG,
    ENDPOINT,
    FAILOVER,
    HANDOFF,
    HISTORY,
    INITIALIZE,
    LEADER,
    MAX_TEXT,
    MEMBERS,
    NO_LEASE,
    REQUESTS,
    STATUS,
    SWITCHOVER,
    SYNC,
    ClusterSnapshot,
    LeaderKey,
    Record,
    Unparsable,
    Value,
    leader_problem,
    plausible_member_name,
)
from pgha.agent.problem_log import Problems, describe
from pgha.agent.switchover_record import parse_switchover
from pgha.core.model import (
    ClusterView,
    ForcedFailover,
    Handoff,
    InitState,
    LeaderInfo,
    Lsn,
    MemberInfo,
    MemberRequest,
    Policy,
    SyncState,
    Tags,
    TimelineSwitch,
    parse_lsn,
)
from pgha.settings import check_timers

DYNAMIC_KEYS: Mapping[str, str] = {
    "ttl": "ttl_seconds",
    "loop_wait": "loop_wait_seconds",
    "retry_timeout": "retry_timeout_seconds",
    "safety_margin": "safety_margin_seconds",
    "primary_start_timeout": "primary_start_timeout_seconds",
    "primary_unhealthy_timeout": "primary_unhealthy_timeout_seconds",
    "maximum_lag_on_failover": "maximum_lag_on_failover_bytes",
    "maximum_lag_seconds_on_failover": "maximum_lag_seconds_on_failover",
    "remove_data_directory_on_rewind_failure": "remove_data_directory_on_rewind_failure",
    "synchronous_node_count": "synchronous_node_count",
    "member_slots_ttl": "member_slots_ttl_seconds",
}
SYNCHRONOUS_MODES = ("off", "on", "strict")


class BadRecord(ValueError):
    """A record whose shape is not what pgha writes."""


UNREADABLE_LEADER = "(unreadable leader key)"
"""The holder shown for a `leader` value no member can have: it matches no node name."""


@dataclass(frozen=True)
class ParsedCluster:
    view: ClusterView
    policy: Policy
    unreadable: Mapping[str, str] = field(default_factory=dict)
    """Rejected keys (relative to the cluster prefix) and what is wrong with each."""

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(describe(key, what) for key, what in self.unreadable.items())


def parse_cluster(
    snapshot: ClusterSnapshot, last_policy: Policy, last_paused: bool = False
) -> ParsedCluster:
    """Build the core's view of the cluster; `last_policy` and `last_paused` stand in for
    an unreadable config."""
    found = Problems()
    members = {
        name: _parse_member_value(name, value, found.on(MEMBERS + name))
        for name, value in snapshot.members.items()
    }
    config = _parse_config(snapshot.get(CONFIG), last_policy, last_paused, found.on(CONFIG))
    policy, paused = config
    init_state, init_node, sysid = _parse_initialize(snapshot.get(INITIALIZE), found.on(INITIALIZE))
    sync, sync_unreadable = _parse_sync(snapshot.get(SYNC), found.on(SYNC))
    last_position, last_heartbeat = _parse_status(snapshot.get(STATUS), found.on(STATUS))
    endpoint = snapshot.get(ENDPOINT)
    if isinstance(endpoint, Unparsable):
        found.on(ENDPOINT).append(f"{endpoint.what()}; the leader rewrites it")
    view = ClusterView(
        revision=snapshot.revision,
        leader=_leader(snapshot.leader, found.on(LEADER)),
        members=members,
        init_state=init_state,
        init_node=init_node,
        system_identifier=sysid,
        last_primary_position=last_position,
        last_primary_heartbeat=last_heartbeat,
        timeline_switches=_parse_history(snapshot.get(HISTORY), found.on(HISTORY)),
        handoff=_parse_handoff(snapshot.get(HANDOFF), found.on(HANDOFF)),
        paused=paused,
        switchover=parse_switchover(snapshot.get(SWITCHOVER), found.on(SWITCHOVER)),
        failover=_parse_failover(snapshot.get(FAILOVER), found.on(FAILOVER)),
        requests=_parse_requests(snapshot.requests, found),
        sync=sync,
        sync_unreadable=sync_unreadable,
    )
    return ParsedCluster(view, policy, found.by_key())


def _leader(key: LeaderKey | None, problems: list[str]) -> LeaderInfo | None:
    """The key as held (whatever it holds, nobody else may take it), under a name no node
    has when no member could have written it."""
    if key is None:
        return None
    problem = leader_problem(key)
    if problem:
        problems.append(problem)
    holder = key.holder if plausible_member_name(key.holder) else UNREADABLE_LEADER
    return LeaderInfo(holder, key.term, key.lease_id, key.mod_revision)


def _parse_member_value(name: str, value: Value, problems: list[str]) -> MemberInfo:
    try:
        if isinstance(value, Record) and value.lease_id == NO_LEASE:
            # Agents publish on their lease: this record will never expire, so a claim in it
            # (an impossible position, say) could block every election for good.
            raise BadRecord("bound to no lease, so no agent wrote it")
        return parse_member(name, _data(value))
    except BadRecord as exc:
        problems.append(f"member record ignored: {exc}")
        # A live member we cannot read may be ahead of us: it counts as not yet fresh.
        return MemberInfo(name=name, host="", port=0, running=True)


def _data(value: Value | None) -> Any:
    if value is None:
        return None
    if isinstance(value, Unparsable):
        raise BadRecord(value.what())
    return value.data


def _field(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = data.get(name, default)
    if value is None or value is default:
        return value
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:  # bool is an int to isinstance
        raise BadRecord(f"{name} has the wrong type (bool)")
    if not isinstance(value, kinds):
        raise BadRecord(f"{name} has the wrong type ({type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRecord(f"{name} must be a finite number, got {value!r}")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise BadRecord(f"{name} is {len(value)} characters long, more than {MAX_TEXT}")
    return value


def _lsn_field(data: Mapping[str, Any], name: str) -> Lsn | None:
    text = _field(data, name, str, None)
    if text is None:
        return None
    try:
        return parse_lsn(text)
    except ValueError as exc:
        raise BadRecord(f"{name}: {exc}") from None


def parse_member(name: str, data: Any) -> MemberInfo:
    if not isinstance(data, dict):
        raise BadRecord("expected a JSON object")
    tags = _field(data, "tags", dict, {}) or {}
    return MemberInfo(
        name=name,
        host=_field(data, "host", str, ""),
        port=_field(data, "port", int, 0),
        role=_field(data, "role", str, "replica"),
        running=_field(data, "running", bool, False),
        in_recovery=_field(data, "in_recovery", bool, True),
        timeline=_field(data, "timeline", int, None),
        position=_lsn_field(data, "position"),
        streaming=_field(data, "streaming", bool, False),
        upstream=_field(data, "upstream", str, None),
        tags=Tags(
            nofailover=_field(tags, "nofailover", bool, False),
            failover_priority=_field(tags, "failover_priority", int, 1),
            nosync=_field(tags, "nosync", bool, False),
            noloadbalance=_field(tags, "noloadbalance", bool, False),
            clonefrom=_field(tags, "clonefrom", bool, False),
        ),
        no_leader_revision=_field(data, "no_leader_revision", int, None),
        checkpoint_after_promote=_field(data, "checkpoint_after_promote", bool, False),
        system_identifier=_field(data, "sysid", str, None),
        sits_out=_field(data, "sits_out", bool, False),
        heartbeat_replayed_at=_field(data, "heartbeat_replayed_at", (int, float), None),
    )


def _parse_config(
    value: Value | None, last_policy: Policy, last_paused: bool, problems: list[str]
) -> tuple[Policy, bool]:
    try:
        data = _data(value)
        if data is None:
            return last_policy, False
        if not isinstance(data, dict):
            raise BadRecord("expected a JSON object")
        changes = {}
        for key, attribute in DYNAMIC_KEYS.items():
            if key in data:
                kind = bool if attribute.startswith("remove_") else (int, float)
                changes[attribute] = _field(data, key, kind, None)
        paused = _field(data, "paused", bool, False)
        mode = _field(data, "synchronous_mode", str, "off")
        if mode not in SYNCHRONOUS_MODES:
            raise BadRecord(f"synchronous_mode must be off, on or strict, got {mode[:20]!r}")
        changes["synchronous_mode"] = mode
        count = changes.get("synchronous_node_count")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise BadRecord("synchronous_node_count must be a whole number, 1 or more")
        policy = replace(last_policy, **changes)
        if (
            policy.primary_start_timeout_seconds < 0
            or policy.maximum_lag_on_failover_bytes < 0
            or not 0 <= policy.maximum_lag_seconds_on_failover < math.inf
        ):
            raise BadRecord(
                "primary_start_timeout, maximum_lag_on_failover and "
                "maximum_lag_seconds_on_failover must not be negative"
            )
        if not 0 < policy.primary_unhealthy_timeout_seconds < math.inf:  # refuses NaN too
            raise BadRecord("primary_unhealthy_timeout must be a positive number of seconds")
        if not 0 <= policy.member_slots_ttl_seconds < math.inf:
            raise BadRecord("member_slots_ttl must be a number of seconds, 0 or more")
        try:
            check_timers(
                policy.ttl_seconds,
                policy.loop_wait_seconds,
                policy.retry_timeout_seconds,
                policy.safety_margin_seconds,
            )
        except ValueError as exc:
            raise BadRecord(str(exc)) from None
        return policy, bool(paused)
    except BadRecord as exc:
        # Keep the pause too: garbage must not end an operator's maintenance window.
        problems.append(f"dynamic config ignored, keeping the last good one: {exc}")
        return last_policy, last_paused


def _parse_initialize(
    value: Value | None, problems: list[str]
) -> tuple[InitState, str | None, str | None]:
    if value is None:
        return InitState.ABSENT, None, None
    if isinstance(value, Record) and isinstance(value.data, dict):
        data = value.data
        sysid, node = data.get("sysid"), data.get("node")
        if isinstance(sysid, str) and sysid.isdigit():
            return InitState.DONE, None, sysid
        if data.get("state") == "bootstrapping" and isinstance(node, str):
            return InitState.BOOTSTRAPPING, node, None
    why = value.what() if isinstance(value, Unparsable) else "not a sysid or bootstrap record"
    problems.append(f"unreadable ({why}): not joining or bootstrapping")
    return InitState.GARBAGE, None, None


def _parse_failover(value: Value | None, problems: list[str]) -> ForcedFailover | None:
    try:
        data = _data(value)
        if data is None:
            return None
        if not isinstance(value, Record) or not isinstance(data, dict):
            raise BadRecord("expected a JSON object")
        to_node = _field(data, "to", str, None)
        if not to_node:
            raise BadRecord("names no candidate ('to')")
        allow = _field(data, "allow_data_loss", bool, False)
        return ForcedFailover(to_node, bool(allow), value.mod_revision)
    except BadRecord as exc:
        problems.append(f"failover request ignored: {exc}")
        return None


def _parse_requests(values: Mapping[str, Value], found: Problems) -> dict[str, MemberRequest]:
    """Well-formed requests by member; garbage is reported and left alone (the CLI that
    wrote it, or an operator with etcdctl, can remove it)."""
    requests = {}
    for name, value in values.items():
        try:
            data = _data(value)
            if not isinstance(value, Record) or not isinstance(data, dict):
                raise BadRecord("expected a JSON object")
            request_id = _field(data, "id", str, None)
            action = _field(data, "action", str, None)
            if not request_id or not action:
                raise BadRecord("needs an id and an action")
            by = _field(data, "by", str, "") or ""
            requests[name] = MemberRequest(
                request_id[:64], action[:32], by[:64], value.mod_revision
            )
        except BadRecord as exc:
            found.on(REQUESTS + name).append(f"request ignored: {exc}")
    return requests


def _parse_sync(value: Value | None, problems: list[str]) -> tuple[SyncState | None, bool]:
    """The `sync` key, or (None, True) when it holds garbage: in synchronous mode nobody is
    then promoted automatically (traps 14), so this is never 'keep the last good'."""
    if value is None:
        return None, False
    try:
        data = _data(value)
        if not isinstance(data, dict):
            raise BadRecord("expected a JSON object")
        leader = _field(data, "leader", str, None)
        term = _field(data, "term", int, None)
        standbys = _field(data, "standbys", list, None)
        if not leader or term is None or standbys is None:
            raise BadRecord("needs leader, term and standbys")
        if not all(isinstance(name, str) for name in standbys):
            raise BadRecord("standbys must be member names")
        mod_revision = value.mod_revision if isinstance(value, Record) else 0
        return SyncState(leader, term, tuple(standbys), mod_revision), False
    except BadRecord as exc:
        problems.append(f"sync key unreadable, no automatic promotion in synchronous mode: {exc}")
        return None, True


def _parse_status(value: Value | None, problems: list[str]) -> tuple[Lsn | None, float | None]:
    """The leader's published position and heartbeat stamp: the bases of the lag limits."""
    try:
        data = _data(value)
        if data is None:
            return None, None
        if not isinstance(data, dict):
            raise BadRecord("expected a JSON object")
        heartbeat = _field(data, "heartbeat_at", (int, float), None)
        return _lsn_field(data, "position"), None if heartbeat is None else float(heartbeat)
    except BadRecord as exc:
        problems.append(f"ignored (no lag limit until the leader rewrites it): {exc}")
        return None, None


def _parse_history(value: Value | None, problems: list[str]) -> tuple[TimelineSwitch, ...]:
    try:
        data = _data(value)
        if data is None:
            return ()
        if not isinstance(data, list):
            raise BadRecord("expected a JSON list")
        switches = []
        for entry in data:
            if not isinstance(entry, dict):
                raise BadRecord("history entries must be objects")
            timeline = _field(entry, "timeline", int, None)
            lsn = _lsn_field(entry, "lsn")
            if timeline is not None and lsn is not None:
                switches.append(TimelineSwitch(timeline, lsn))
        return tuple(switches)
    except BadRecord as exc:
        problems.append(f"ignored, no timeline history known: {exc}")
        return ()


def _parse_handoff(value: Value | None, problems: list[str]) -> Handoff | None:
    try:
        data = _data(value)
        if data is None:
            return None
        if not isinstance(data, dict):
            raise BadRecord("expected a JSON object")
        final_lsn = _lsn_field(data, "final_lsn")
        if final_lsn is None:
            raise BadRecord("final_lsn is missing")
        return Handoff(
            from_node=_field(data, "from", str, ""),
            to_node=_field(data, "to", str, None),
            term=_field(data, "term", int, 0),
            final_lsn=final_lsn,
        )
    except BadRecord as exc:
        # Whoever wrote it meant to hand the key to someone: nobody takes it until the
        # handoff lapses with its lease.
        problems.append(f"unreadable, nobody takes the leader key until it lapses: {exc}")
        return Handoff("unknown", "(unreadable handoff)", 0, 2**64 - 1)
