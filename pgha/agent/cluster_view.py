"""Turn an etcd snapshot into the core's ClusterView and Policy.

Records written by other agents, operators or attackers are parsed defensively: a field
of the wrong type makes that record unusable and is reported, never raised. For most keys
the agent then keeps its last good state; for `leader` and `initialize` safety decides
instead (traps 14): an unreadable `initialize` stops joining, and any `leader` value this
node did not write is someone else's key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pgha.adapters.store import (
    CONFIG,
    FAILOVER,
    HANDOFF,
    HISTORY,
    INITIALIZE,
    STATUS,
    SWITCHOVER,
    ClusterSnapshot,
    Record,
    Unparsable,
    Value,
)
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
    "maximum_lag_on_failover": "maximum_lag_on_failover_bytes",
    "remove_data_directory_on_rewind_failure": "remove_data_directory_on_rewind_failure",
}


class BadRecord(ValueError):
    """A record whose shape is not what pgha writes."""


@dataclass(frozen=True)
class ParsedCluster:
    view: ClusterView
    policy: Policy
    problems: tuple[str, ...]


def parse_cluster(snapshot: ClusterSnapshot, last_policy: Policy) -> ParsedCluster:
    """Build the core's view of the cluster; `last_policy` stands in for an unreadable config."""
    problems = list(snapshot.problems)
    members: dict[str, MemberInfo] = {}
    for name, value in snapshot.members.items():
        try:
            members[name] = parse_member(name, _data(value))
        except BadRecord as exc:
            problems.append(f"member record {name!r} ignored: {exc}")
            # A live member we cannot read may be ahead of us: it counts as not yet fresh.
            members[name] = MemberInfo(name=name, host="", port=0, running=True)
    policy, paused = _parse_config(snapshot.get(CONFIG), last_policy, problems)
    init_state, init_node, sysid = _parse_initialize(snapshot.get(INITIALIZE), problems)
    leader = snapshot.leader
    view = ClusterView(
        revision=snapshot.revision,
        leader=LeaderInfo(leader.holder, leader.term, leader.lease_id, leader.mod_revision)
        if leader is not None
        else None,
        members=members,
        init_state=init_state,
        init_node=init_node,
        system_identifier=sysid,
        last_primary_position=_parse_status(snapshot.get(STATUS), problems),
        timeline_switches=_parse_history(snapshot.get(HISTORY), problems),
        handoff=_parse_handoff(snapshot.get(HANDOFF), problems),
        paused=paused,
        switchover=parse_switchover(snapshot.get(SWITCHOVER), problems),
        failover=_parse_failover(snapshot.get(FAILOVER), problems),
        requests=_parse_requests(snapshot.requests, problems),
    )
    return ParsedCluster(view, policy, tuple(problems))


def _data(value: Value | None) -> Any:
    if value is None:
        return None
    if isinstance(value, Unparsable):
        raise BadRecord(value.error)
    return value.data


def _field(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = data.get(name, default)
    if value is None or value is default:
        return value
    if isinstance(value, bool) and kind in (int, float):
        raise BadRecord(f"{name} must be a number, got {value!r}")
    if not isinstance(value, kind):
        raise BadRecord(f"{name} has the wrong type ({type(value).__name__})")
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
            failover_priority=_field(tags, "failover_priority", int, 0),
        ),
        no_leader_revision=_field(data, "no_leader_revision", int, None),
        checkpoint_after_promote=_field(data, "checkpoint_after_promote", bool, False),
        system_identifier=_field(data, "sysid", str, None),
        sits_out=_field(data, "sits_out", bool, False),
    )


def _parse_config(
    value: Value | None, last_policy: Policy, problems: list[str]
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
        policy = replace(last_policy, **changes)
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
        problems.append(f"dynamic config ignored, keeping the last good one: {exc}")
        return last_policy, False


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
    problems.append("initialize key is unreadable: not joining or bootstrapping")
    return InitState.GARBAGE, None, None


def _parse_failover(value: Value | None, problems: list[str]) -> ForcedFailover | None:
    if not isinstance(value, Record):
        return None  # absent, or already reported as unparsable: no forced failover
    try:
        data = _data(value)
        if not isinstance(data, dict):
            raise BadRecord("expected a JSON object")
        to_node = _field(data, "to", str, None)
        if not to_node:
            raise BadRecord("names no candidate ('to')")
        allow = _field(data, "allow_data_loss", bool, False)
        return ForcedFailover(to_node, bool(allow), value.mod_revision)
    except BadRecord as exc:
        problems.append(f"failover request ignored: {exc}")
        return None


def _parse_requests(values: Mapping[str, Value], problems: list[str]) -> dict[str, MemberRequest]:
    """Well-formed requests by member; garbage is reported and left alone (the CLI that
    wrote it, or an operator with etcdctl, can remove it)."""
    requests = {}
    for name, value in values.items():
        if isinstance(value, Unparsable):
            continue  # the snapshot reported it already
        try:
            data = _data(value)
            if not isinstance(data, dict):
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
            problems.append(f"request for member {name!r} ignored: {exc}")
    return requests


def _parse_status(value: Value | None, problems: list[str]) -> Lsn | None:
    try:
        data = _data(value)
        if data is None:
            return None
        if not isinstance(data, dict):
            raise BadRecord("expected a JSON object")
        return _lsn_field(data, "position")
    except BadRecord as exc:
        problems.append(f"status key ignored: {exc}")
        return None


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
        problems.append(f"history key ignored: {exc}")
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
        problems.append(f"handoff key unreadable, nobody takes the key until it lapses: {exc}")
        return Handoff("unknown", "(unreadable handoff)", 0, 2**64 - 1)
