"""What `pgha status` and `GET /cluster` show: one document built from one etcd snapshot.

`cluster_document` is the only place that turns a snapshot into the status document, so the
table, `pgha status --json` and the agent's `/cluster` endpoint always agree. Records come
from etcd and may hold anything: a field of the wrong type shows as null, an unreadable
record as a member in state "unreadable record" plus a problem line, never an exception.

Lag is measured against the highest primary position published: the leader's member record
or the `status` key, both rewritten when the primary moved by 1 MiB or after a while (traps
20); so lag_bytes is exact on an idle cluster and may be short by up to that much under
load. lag_seconds is the heartbeat lag: the newest heartbeat stamp the leader published in
`status` minus the newest one the replica had replayed when it last published its record,
both from the primary's clock (traps 9d); where either stamp is missing it falls back to
replay_lag_seconds, the age of the last transaction the replica replayed, by its clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pgha.adapters.store import (
    CONFIG,
    ENDPOINT,
    STATUS,
    SWITCHOVER,
    SYNC,
    ClusterSnapshot,
    Record,
    Value,
)
from pgha.core.model import parse_lsn


def cluster_document(cluster: str, snapshot: ClusterSnapshot) -> dict[str, Any]:
    """The cluster as `pgha status --json` prints it (see the README for every field)."""
    leader = snapshot.leader.holder if snapshot.leader is not None else None
    problems = list(snapshot.problems)
    base = primary_position(snapshot)
    heartbeat = primary_heartbeat(snapshot)
    members = []
    for name in sorted(snapshot.members):
        value = snapshot.members[name]
        if isinstance(value, Record) and isinstance(value.data, dict):
            members.append(_member(name, value.data, leader, base, heartbeat))
        else:
            members.append(_unreadable_member(name))
            if isinstance(value, Record):  # parse problems of garbage are already listed
                problems.append(f"member record {name!r} is not a JSON object")
    return {
        "cluster": cluster,
        "leader": leader,
        "term": _term(snapshot),
        "paused": cluster_paused(snapshot),
        "members": members,
        "switchover": _data(snapshot.get(SWITCHOVER)),
        "synchronous": synchronous_state(snapshot),
        "endpoint": _data(snapshot.get(ENDPOINT)),
        "problems": problems,
        "revision": snapshot.revision,
    }


def primary_position(snapshot: ClusterSnapshot) -> int | None:
    """The furthest primary position published: the base every replica's lag is measured on."""
    known = []
    status = _data(snapshot.get(STATUS))
    if isinstance(status, dict):
        known.append(_lsn(status.get("position")))
    if snapshot.leader is not None:
        record = _data(snapshot.members.get(snapshot.leader.holder))
        if isinstance(record, dict) and record.get("role") == "primary":
            known.append(_lsn(record.get("position")))
    positions = [lsn for lsn in known if lsn is not None]
    return max(positions) if positions else None


def primary_heartbeat(snapshot: ClusterSnapshot) -> float | None:
    """The newest heartbeat stamp the leader published (epoch seconds, its clock)."""
    status = _data(snapshot.get(STATUS))
    return _number(status.get("heartbeat_at")) if isinstance(status, dict) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _member(
    name: str,
    data: Mapping[str, Any],
    leader: str | None,
    base: int | None,
    heartbeat: float | None = None,
) -> dict[str, Any]:
    role = _typed(data, "role", str) or "unknown"
    position_text = _typed(data, "position", str)
    position = _lsn(position_text)
    is_primary = name == leader and role == "primary"
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    replay_lag = _number(data.get("replay_lag_seconds"))
    if is_primary:
        lag_bytes, lag_seconds = 0, 0.0
    elif role == "replica":
        if position is not None and base is not None:
            lag_bytes = max(base - position, 0)
        replayed = _number(data.get("heartbeat_replayed_at"))
        if heartbeat is not None and replayed is not None:
            lag_seconds = round(max(heartbeat - replayed, 0.0), 3)
        else:
            lag_seconds = replay_lag
    decision = data.get("decision")
    decision = decision if isinstance(decision, dict) else {}
    return {
        "name": name,
        "role": role,
        "state": _state(data),
        "host": _typed(data, "host", str),
        "port": _typed(data, "port", int),
        "api_url": _typed(data, "api_url", str),
        "timeline": _typed(data, "timeline", int),
        "lsn": position_text if position is not None else None,
        "lag_bytes": lag_bytes,
        "lag_seconds": lag_seconds,
        "replay_lag_seconds": replay_lag,
        "tags": data["tags"] if isinstance(data.get("tags"), dict) else {},
        "upstream": _typed(data, "upstream", str),
        "decision": {
            "code": _typed(decision, "code", str),
            "reason": _typed(decision, "reason", str),
        },
        "request": _request(data),
    }


def _request(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The last operator request the member served ({id, action, outcome, detail}), also
    one pgha itself asked for (a re-clone after its slot was lost), or None."""
    answer = data.get("request")
    if not isinstance(answer, dict):
        return None
    return {key: _typed(answer, key, str) for key in ("id", "action", "outcome", "detail")}


def _unreadable_member(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "role": "unknown",
        "state": "unreadable record",
        "host": None,
        "port": None,
        "api_url": None,
        "timeline": None,
        "lsn": None,
        "lag_bytes": None,
        "lag_seconds": None,
        "replay_lag_seconds": None,
        "tags": {},
        "upstream": None,
        "decision": {"code": None, "reason": None},
        "request": None,
    }


def _state(data: Mapping[str, Any]) -> str:
    """The published run state, or "streaming" for a running replica whose walreceiver is."""
    state = _typed(data, "state", str) or "unknown"
    receiving = data.get("receiver") == "streaming"
    if state == "running" and data.get("in_recovery") is True and receiving:
        return "streaming"
    return state


def _term(snapshot: ClusterSnapshot) -> int:
    """The leader's term; without a leader the last one a leader published (0 if none)."""
    if snapshot.leader is not None:
        return snapshot.leader.term
    status = _data(snapshot.get(STATUS))
    term = status.get("term") if isinstance(status, dict) else None
    return term if isinstance(term, int) and not isinstance(term, bool) else 0


def cluster_paused(snapshot: ClusterSnapshot) -> bool:
    """The dynamic config says `paused: true` (maintenance mode: agents change nothing)."""
    data = _data(snapshot.get(CONFIG))
    return isinstance(data, dict) and data.get("paused") is True


def synchronous_state(snapshot: ClusterSnapshot) -> dict[str, Any]:
    """{mode, standbys, degraded}: whom commits wait for, and whether `on` mode runs
    without any sync standby (no automatic failover then: only the leader has everything)."""
    config = _data(snapshot.get(CONFIG))
    mode = config.get("synchronous_mode", "off") if isinstance(config, dict) else "off"
    value = snapshot.get(SYNC)
    record = _data(value)
    standbys = record.get("standbys") if isinstance(record, dict) else None
    if not isinstance(standbys, list):
        standbys = None
    state: dict[str, Any] = {"mode": mode, "standbys": standbys}
    state["degraded"] = mode == "on" and not standbys
    if value is not None and standbys is None:
        state["problem"] = "the sync key is unreadable: no automatic promotion"
    return state


def _data(value: Value | None) -> Any:
    return value.data if isinstance(value, Record) else None


def _typed(data: Mapping[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if isinstance(value, bool) and kind is not bool:
        return None
    return value if isinstance(value, kind) else None


def _lsn(text: object) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_lsn(text)
    except ValueError:
        return None


# --- the table ------------------------------------------------------------------------------

HEADER = ("member", "host:port", "role", "state", "tl", "lsn", "lag", "lag s", "tags")


def render_status(document: Mapping[str, Any]) -> str:
    """The members as a table an operator reads at a glance, then the cluster's state."""
    rows = [[*HEADER, "last decision"]]
    rows += [_cells(member, document["leader"]) for member in document["members"]]
    widths = [max(len(row[column]) for row in rows) for column in range(len(HEADER))]
    lines = []
    for row in rows:
        padded = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    lines.append(_summary(document))
    lines.extend(f"problem: {problem}" for problem in document["problems"])
    return "\n".join(lines)


def _cells(member: Mapping[str, Any], leader: str | None) -> list[str]:
    host, port = member["host"], member["port"]
    code, reason = member["decision"]["code"], member["decision"]["reason"]
    shown_decision = f"{code}: {reason}" if code and reason else code or ""
    lag_seconds = member["lag_seconds"]
    return [
        member["name"],
        f"{host}:{port}" if host is not None else "?",
        _shown_role(member["name"], member["role"], leader),
        member["state"],
        _blank(member["timeline"]),
        _blank(member["lsn"]),
        _bytes(member["lag_bytes"]),
        f"{lag_seconds:.1f}" if lag_seconds is not None else "",
        _tags(member["tags"]),
        shown_decision,
    ]


def _shown_role(name: str, role: str, leader: str | None) -> str:
    if name == leader:
        return "leader" if role == "primary" else f"leader ({role})"
    if role == "primary":
        return "primary (no key)"
    return role


def _summary(document: Mapping[str, Any]) -> str:
    cluster, leader, term = document["cluster"], document["leader"], document["term"]
    parts = [f"leader {leader}, term {term}" if leader else f"no leader (last term {term})"]
    parts.append("PAUSED (maintenance mode)" if document["paused"] else "not paused")
    sync = document.get("synchronous") or {}
    if sync.get("mode", "off") != "off":
        waited = ", ".join(sync.get("standbys") or []) or "no standby"
        degraded = " DEGRADED to asynchronous" if sync.get("degraded") else ""
        parts.append(f"synchronous_mode {sync['mode']} ({waited}){degraded}")
    switchover = document.get("switchover")
    if switchover is None:
        parts.append("no switchover pending")
    else:
        parts.append(f"switchover pending: {json.dumps(switchover, sort_keys=True)}")
    return f"cluster {cluster}: {', '.join(parts)}"


def _blank(value: object) -> str:
    return "" if value is None else str(value)


def _bytes(count: int | None) -> str:
    if count is None:
        return ""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} TiB"


def _tags(tags: Mapping[str, Any]) -> str:
    shown = []
    for key, value in sorted(tags.items()):
        if key == "failover_priority":
            if value != 1:  # the default is not shown; 0 (never promoted) is
                shown.append(f"{key}={value}")
        elif value is True:
            shown.append(str(key))
        elif value not in (False, 0, None, ""):
            shown.append(f"{key}={value}")
    return ",".join(shown)


def healthy(snapshot: ClusterSnapshot, members: int) -> bool:
    """A leader whose Postgres is read-write, and every other member streaming from it."""
    document = cluster_document("", snapshot)
    leader = document["leader"]
    rows = {member["name"]: member for member in document["members"]}
    if leader is None or len(rows) < members or rows.get(leader, {}).get("role") != "primary":
        return False
    followers = [row for name, row in rows.items() if name != leader]
    return all(row["role"] == "replica" and row["upstream"] == leader for row in followers)
