"""The WAL a rewind discarded: from the node that rewound, to the log and to `history`.

pg_rewind throws away the old primary's WAL past the point where the new timeline forked;
any transaction committed there is gone from the cluster. After an incident an operator
must be able to find that range. The node that rewound logs it and publishes it in its
member record (`diverged`); the leader, the only writer of `history`, copies it into the
history entry of the promotion that began the next timeline (`diverged`, a list), once.

A divergence is {"node", "timeline", "from", "to_at_least", "source", "term", "at"}:
`timeline` is the old timeline, `from` the LSN from which its WAL was discarded (the fork
point), `to_at_least` the furthest position the node is known to have reached on it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pgha.adapters.postgres_rebuild import diverged_at
from pgha.adapters.postgres_state import PostgresState, format_lsn, parse_lsn
from pgha.adapters.store import HISTORY, ClusterSnapshot, ClusterStore, LeaderClaim, Record
from pgha.errors import StoreError
from pgha.history_summary import DIVERGED, describe_divergence

log = logging.getLogger("pgha.agent")

NAME_LIMIT = 64
"""Member names longer than this are not ours: what a member record says is not trusted."""


def divergence_record(
    report: str,
    before: PostgresState,
    *,
    node: str,
    source: str,
    leader_term: int | None,
    at: float,
) -> dict[str, Any] | None:
    """What the rewind whose pg_rewind output is `report` discarded, or None when pg_rewind
    found nothing to discard ("no rewind required")."""
    found = diverged_at(report)
    if found is None or "no rewind required" in report:
        return None
    fork, timeline = found
    control = before.control
    reached = max(control.checkpoint_lsn, control.min_recovery_end_lsn) if control else None
    return {
        "node": node,
        "timeline": timeline,
        "from": format_lsn(fork),
        "to_at_least": format_lsn(max(reached, fork)) if reached is not None else None,
        "source": source,
        "term": leader_term,
        "at": at,
    }


def valid_divergence(value: object) -> dict[str, Any] | None:
    """A member record's `diverged` if it has the fields history needs, else None: member
    records are written by agents but may hold anything (hostile input, traps 14)."""
    if not isinstance(value, dict):
        return None
    node, timeline, start = value.get("node"), value.get("timeline"), value.get("from")
    if not isinstance(node, str) or not isinstance(start, str) or len(node) > NAME_LIMIT:
        return None
    if not isinstance(timeline, int) or isinstance(timeline, bool) or timeline < 1:
        return None
    try:
        parse_lsn(start)
    except ValueError:
        return None
    end, source = value.get("to_at_least"), value.get("source")
    term, at = value.get("term"), value.get("at")
    return {
        "node": node,
        "timeline": timeline,
        "from": start,
        "to_at_least": end if isinstance(end, str) and len(end) <= 17 else None,
        "source": source if isinstance(source, str) and len(source) <= NAME_LIMIT else None,
        "term": term if isinstance(term, int) and not isinstance(term, bool) else None,
        "at": at if isinstance(at, (int, float)) and not isinstance(at, bool) else None,
    }


def _same(one: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    return all(one.get(key) == other.get(key) for key in ("node", "timeline", "from", "at"))


def with_divergences(
    entries: Sequence[Any], divergences: Sequence[dict[str, Any]]
) -> tuple[list[Any], list[dict[str, Any]]]:
    """History entries with the divergences not yet in any entry attached, each to the
    entry of the promotion that began the next timeline (else the newest entry); and the
    divergences attached. Pure: no I/O."""
    history = [dict(entry) if isinstance(entry, dict) else entry for entry in entries]
    recorded = [
        known
        for entry in history
        if isinstance(entry, dict) and isinstance(entry.get(DIVERGED), list)
        for known in entry[DIVERGED]
        if isinstance(known, dict)
    ]
    added = []
    for divergence in divergences:
        if any(_same(divergence, known) for known in recorded):
            continue
        target = _entry_for(history, divergence["timeline"] + 1)
        if target is None:
            continue
        listed = target.get(DIVERGED)
        target[DIVERGED] = [*(listed if isinstance(listed, list) else []), divergence]
        recorded.append(divergence)
        added.append(divergence)
    return history, added


def _entry_for(history: list[Any], timeline: int) -> dict[str, Any] | None:
    entries = [entry for entry in history if isinstance(entry, dict)]
    for entry in reversed(entries):
        if entry.get("timeline") == timeline:
            return entry
    return entries[-1] if entries else None


def record_divergences(
    store: ClusterStore, claim: LeaderClaim, snapshot: ClusterSnapshot
) -> list[dict[str, Any]]:
    """As leader: copy the members' published divergences into `history`; returns those
    written. A write that loses a race is left for the next cycle."""
    found = []
    for value in snapshot.members.values():
        if isinstance(value, Record) and isinstance(value.data, dict):
            divergence = valid_divergence(value.data.get(DIVERGED))
            if divergence is not None:
                found.append(divergence)
    current = snapshot.get(HISTORY)
    if not found or not isinstance(current, Record) or not isinstance(current.data, list):
        return []
    history, added = with_divergences(current.data, found)
    if not added:
        return []
    try:
        written = store.put(
            HISTORY, history, expected_mod_revision=current.mod_revision, as_leader=claim
        )
    except StoreError as exc:
        log.warning("could not record a rewind's discarded WAL in history: %s", exc)
        return []
    if not written:
        return []
    for divergence in added:
        log.info("recorded in history: pg_rewind discarded %s", describe_divergence(divergence))
    return added
