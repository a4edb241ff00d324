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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pgha.adapters.store import (
    CONFIG,
    ENDPOINT,
    FAILOVER,
    HANDOFF,
    HISTORY,
    INITIALIZE,
    LEADER,
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
from pgha.agent.config_record import parse_config
from pgha.agent.problem_log import Problems, describe
from pgha.agent.record_fields import BadRecord, data_of, field_of, lsn_field, object_of
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
)

UNREADABLE_LEADER = "(unreadable leader key)"
"""The holder shown for a `leader` value no member can have: it matches no node name."""
MEMBERS_REMEMBERED = 256

_last_members: dict[str, tuple[Value, MemberInfo, str | None]] = {}
"""The last parse of each member's record, reused while the record is equal: every cycle
reads every record, and between cycles most have not changed. Keyed on the name, checked
on the whole record (dict equality, not the revision, which a restored etcd can reuse)."""


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
    config = parse_config(snapshot.get(CONFIG), last_policy, last_paused, found.on(CONFIG))
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
    last = _last_members.get(name)
    if last is not None and last[0] == value:
        member, problem = last[1], last[2]
    else:
        member, problem = _parse_member_anew(name, value)
        if len(_last_members) > MEMBERS_REMEMBERED:
            _last_members.clear()
        _last_members[name] = (value, member, problem)
    if problem is not None:
        problems.append(problem)
    return member


def _parse_member_anew(name: str, value: Value) -> tuple[MemberInfo, str | None]:
    """The member's view of a record, and the problem to report, if any."""
    try:
        if isinstance(value, Record) and value.lease_id == NO_LEASE:
            # Agents publish on their lease: this record will never expire, so a claim in it
            # (an impossible position, say) could block every election for good.
            raise BadRecord("bound to no lease, so no agent wrote it")
        return parse_member(name, data_of(value)), None
    except BadRecord as exc:
        # A live member we cannot read may be ahead of us: it counts as not yet fresh.
        unread = MemberInfo(name=name, host="", port=0, running=True)
        return unread, f"member record ignored: {exc}"


def parse_member(name: str, data: Any) -> MemberInfo:
    if not isinstance(data, dict):
        raise BadRecord("expected a JSON object")
    tags = field_of(data, "tags", dict, {}) or {}
    return MemberInfo(
        name=name,
        host=field_of(data, "host", str, ""),
        port=field_of(data, "port", int, 0),
        role=field_of(data, "role", str, "replica"),
        running=field_of(data, "running", bool, False),
        in_recovery=field_of(data, "in_recovery", bool, True),
        timeline=field_of(data, "timeline", int, None),
        position=lsn_field(data, "position"),
        streaming=field_of(data, "streaming", bool, False),
        upstream=field_of(data, "upstream", str, None),
        tags=Tags(
            nofailover=field_of(tags, "nofailover", bool, False),
            failover_priority=field_of(tags, "failover_priority", int, 1),
            nosync=field_of(tags, "nosync", bool, False),
            noloadbalance=field_of(tags, "noloadbalance", bool, False),
            clonefrom=field_of(tags, "clonefrom", bool, False),
        ),
        no_leader_revision=field_of(data, "no_leader_revision", int, None),
        checkpoint_after_promote=field_of(data, "checkpoint_after_promote", bool, False),
        system_identifier=field_of(data, "sysid", str, None),
        sits_out=field_of(data, "sits_out", bool, False),
        heartbeat_replayed_at=field_of(data, "heartbeat_replayed_at", (int, float), None),
    )


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
        data = data_of(value)
        if data is None:
            return None
        if not isinstance(value, Record) or not isinstance(data, dict):
            raise BadRecord("expected a JSON object")
        to_node = field_of(data, "to", str, None)
        if not to_node:
            raise BadRecord("names no candidate ('to')")
        allow = field_of(data, "allow_data_loss", bool, False)
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
            data = data_of(value)
            if not isinstance(value, Record) or not isinstance(data, dict):
                raise BadRecord("expected a JSON object")
            request_id = field_of(data, "id", str, None)
            action = field_of(data, "action", str, None)
            if not request_id or not action:
                raise BadRecord("needs an id and an action")
            by = field_of(data, "by", str, "") or ""
            reason = field_of(data, "reason", str, "") or ""
            requests[name] = MemberRequest(
                request_id[:64], action[:32], by[:64], value.mod_revision, reason[:200]
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
        data = data_of(value)
        if not isinstance(data, dict):
            raise BadRecord("expected a JSON object")
        leader = field_of(data, "leader", str, None)
        term = field_of(data, "term", int, None)
        standbys = field_of(data, "standbys", list, None)
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
        data = object_of(value)
        if data is None:
            return None, None
        heartbeat = field_of(data, "heartbeat_at", (int, float), None)
        return lsn_field(data, "position"), None if heartbeat is None else float(heartbeat)
    except BadRecord as exc:
        problems.append(f"ignored (no lag limit until the leader rewrites it): {exc}")
        return None, None


def _parse_history(value: Value | None, problems: list[str]) -> tuple[TimelineSwitch, ...]:
    try:
        data = data_of(value)
        if data is None:
            return ()
        if not isinstance(data, list):
            raise BadRecord("expected a JSON list")
        switches = []
        for entry in data:
            if not isinstance(entry, dict):
                raise BadRecord("history entries must be objects")
            timeline = field_of(entry, "timeline", int, None)
            lsn = lsn_field(entry, "lsn")
            if timeline is not None and lsn is not None:
                switches.append(TimelineSwitch(timeline, lsn))
        return tuple(switches)
    except BadRecord as exc:
        problems.append(f"ignored, no timeline history known: {exc}")
        return ()


def _parse_handoff(value: Value | None, problems: list[str]) -> Handoff | None:
    try:
        data = object_of(value)
        if data is None:
            return None
        final_lsn = lsn_field(data, "final_lsn")
        if final_lsn is None:
            raise BadRecord("final_lsn is missing")
        return Handoff(
            from_node=field_of(data, "from", str, ""),
            to_node=field_of(data, "to", str, None),
            term=field_of(data, "term", int, 0),
            final_lsn=final_lsn,
        )
    except BadRecord as exc:
        # Whoever wrote it meant to hand the key to someone: nobody takes it until the
        # handoff lapses with its lease.
        problems.append(f"unreadable, nobody takes the leader key until it lapses: {exc}")
        return Handoff("unknown", "(unreadable handoff)", 0, 2**64 - 1)
