"""What `pgha status` shows: the members of one cluster as their agents published them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgha.adapters.store import ClusterSnapshot, Record


@dataclass(frozen=True)
class MemberRow:
    name: str
    address: str
    role: str
    state: str
    timeline: str
    position: str
    upstream: str
    decision: str


def member_rows(snapshot: ClusterSnapshot) -> list[MemberRow]:
    rows = []
    leader = snapshot.leader.holder if snapshot.leader is not None else None
    for name in sorted(snapshot.members):
        value = snapshot.members[name]
        if not isinstance(value, Record) or not isinstance(value.data, dict):
            rows.append(MemberRow(name, "?", "?", "unreadable record", "", "", "", ""))
            continue
        data: dict[str, Any] = value.data
        role = str(data.get("role", "?"))
        if name == leader:
            role = "leader" if role == "primary" else f"leader ({role})"
        decision = data.get("decision")
        if not isinstance(decision, dict):
            decision = {}
        rows.append(
            MemberRow(
                name=name,
                address=f"{data.get('host', '?')}:{data.get('port', '?')}",
                role=role,
                state=str(data.get("state", "?")),
                timeline=str(data.get("timeline") or ""),
                position=str(data.get("position") or ""),
                upstream=str(data.get("upstream") or ""),
                decision=f"{decision.get('code', '')}: {decision.get('reason', '')}",
            )
        )
    return rows


def render_status(cluster: str, snapshot: ClusterSnapshot) -> str:
    """A table an operator reads at a glance, then the leader, its term, and any problems."""
    header = MemberRow(
        "member", "address", "role", "state", "tl", "lsn", "upstream", "last decision"
    )
    rows = [header, *member_rows(snapshot)]
    columns = list(zip(*[_cells(row) for row in rows], strict=True))
    widths = [max(len(cell) for cell in column) for column in columns[:-1]]
    lines = []
    for row in rows:
        cells = _cells(row)
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=False)]
        lines.append("  ".join([*padded, cells[-1]]).rstrip())
    leader = snapshot.leader
    if leader is None:
        lines.append(f"cluster {cluster}: no leader")
    else:
        lines.append(f"cluster {cluster}: leader {leader.holder}, term {leader.term}")
    lines.extend(f"problem: {problem}" for problem in snapshot.problems)
    return "\n".join(lines)


def _cells(row: MemberRow) -> list[str]:
    return [
        row.name,
        row.address,
        row.role,
        row.state,
        row.timeline,
        row.position,
        row.upstream,
        row.decision,
    ]


def healthy(snapshot: ClusterSnapshot, members: int) -> bool:
    """A leader whose Postgres is read-write, and every other member streaming from it."""
    leader = snapshot.leader
    if leader is None:
        return False
    rows = {row.name: row for row in member_rows(snapshot)}
    if len(rows) < members or rows.get(leader.holder) is None:
        return False
    if rows[leader.holder].role != "leader":
        return False
    followers = [row for name, row in rows.items() if name != leader.holder]
    return all(row.role == "replica" and row.upstream == leader.holder for row in followers)
